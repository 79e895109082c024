//! [`Executor`]: what every closure-running executor offers, so code (the async bridge,
//! helpers, tests) can be written once for all of them.

use crate::error::TaskError;
use crate::future::Future;

/// An executor that runs closures and hands back [`Future`]s: Python's
/// `concurrent.futures.Executor` for in-process work.
///
/// Executors that run code in other processes take tasks in a different form (a function
/// and serialized arguments), so they have their own `submit`.
pub trait Executor {
    /// Schedules `task` and returns the future of its value. A panic in `task` fails the
    /// future with [`TaskError::Panicked`]. After shutdown, fails with
    /// [`TaskError::ShutDown`] (or [`TaskError::Broken`]) instead of scheduling.
    fn submit<F, T>(&self, task: F) -> Result<Future<T>, TaskError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static;

    /// Schedules a task that reports failure by returning `Err`: its future fails with
    /// [`TaskError::Failed`] holding that error.
    fn try_submit<F, T, E>(&self, task: F) -> Result<Future<T>, TaskError>
    where
        F: FnOnce() -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: std::error::Error + Send + Sync + 'static;

    /// Stops taking tasks. With `cancel_futures`, cancels the tasks that have not
    /// started; with `wait`, blocks until every running and queued task is done.
    fn shutdown(&self, wait: bool, cancel_futures: bool);
}
