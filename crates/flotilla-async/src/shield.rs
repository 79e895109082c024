//! [`shield`] (work that outlives the await that started it) and [`wait_for`] (an
//! await with a deadline that cancels what it gives up on).

use std::future::{Future as _, IntoFuture};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::task::Poll;
use std::time::Duration;

use flotilla_core::{Completer, Future, TaskError};

/// Runs `future` as a task of its own on the current tokio runtime and returns a
/// flotilla [`Future`] of its output: Python's `asyncio.shield`.
///
/// Dropping (or aborting) whatever awaits the returned future does not reach the work:
/// it runs to the end, and its output can still be awaited through any clone of the
/// returned future (by value, moving it out, or by reference, cloning it). A panic in
/// the work fails the future with [`TaskError::Panicked`]; a runtime shut down before
/// the work ended fails it with [`TaskError::Broken`]. [`Future::cancel`] on it does
/// nothing: the work counts as running from the start.
///
/// For a [`Task`](crate::Task) already running on an executor, use
/// [`Task::detach`](crate::Task::detach), which shields it without a tokio task.
///
/// # Panics
///
/// When called outside a tokio runtime, as `tokio::spawn` does.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::time::Duration;
/// use flotilla_async::shield;
///
/// let inner = shield(async {
///     tokio::time::sleep(Duration::from_millis(20)).await;
///     "saved"
/// });
/// let outer = tokio::spawn({
///     let inner = inner.clone();
///     async move { inner.await }
/// });
/// outer.abort();
/// assert!(outer.await.unwrap_err().is_cancelled());
/// assert_eq!(inner.await.unwrap(), "saved"); // the shielded work ran on
/// # }
/// ```
#[track_caller]
pub fn shield<F>(future: F) -> Future<F::Output>
where
    F: IntoFuture,
    F::IntoFuture: Send + 'static,
    F::Output: Send + 'static,
{
    let (completer, fut) = Completer::new();
    // Running from the start: nothing can cancel the shielded work.
    completer.set_running_or_notify_cancel();
    let work = future.into_future();
    tokio::spawn(async move {
        let mut work = std::pin::pin!(work);
        // Each poll inside `catch_unwind`, so a panic becomes the future's failure.
        let outcome = std::future::poll_fn(|cx| {
            match catch_unwind(AssertUnwindSafe(|| work.as_mut().poll(cx))) {
                Ok(Poll::Pending) => Poll::Pending,
                Ok(Poll::Ready(value)) => Poll::Ready(Ok(value)),
                Err(payload) => Poll::Ready(Err(TaskError::from_panic(&*payload))),
            }
        })
        .await;
        completer.complete(outcome);
    });
    fut
}

/// Awaits `future` for at most `timeout`: its value, or [`TaskError::TimedOut`] when
/// the time ran out first, in which case `future` is dropped, so a [`Task`](crate::Task)
/// is cancelled. Python's `asyncio.wait_for`.
///
/// For futures whose output is not a `Result<_, TaskError>`, `tokio::time::timeout`
/// does the same.
///
/// # Panics
///
/// When called outside a tokio runtime with its time driver enabled.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::time::Duration;
/// use flotilla_async::{to_thread, wait_for};
/// use flotilla_core::TaskError;
///
/// let quick = wait_for(to_thread(|| 1), Duration::from_secs(60)).await;
/// assert_eq!(quick.unwrap(), 1);
/// let slow = to_thread(|| std::thread::sleep(Duration::from_secs(5)));
/// let gave_up = wait_for(slow, Duration::from_millis(10)).await;
/// assert!(matches!(gave_up, Err(TaskError::TimedOut)));
/// # }
/// ```
pub async fn wait_for<F, T>(future: F, timeout: Duration) -> Result<T, TaskError>
where
    F: IntoFuture<Output = Result<T, TaskError>>,
{
    match tokio::time::timeout(timeout, future).await {
        Ok(outcome) => outcome,
        Err(_elapsed) => Err(TaskError::TimedOut),
    }
}
