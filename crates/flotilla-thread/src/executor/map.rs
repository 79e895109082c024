//! [`Map`]: the lazy, ordered iterator behind [`ThreadPoolExecutor::map`].
//!
//! It keeps a window of submitted futures in input order, topping it up from the input
//! as the consumer takes results, so at most `buffer_size` tasks are ahead of the
//! consumer. Like every Rust iterator adapter it is lazy: the first window is submitted
//! by the first `next`, after `buffer_size` and `timeout` have been set. The window
//! itself is flotilla-core's `OrderedWindow`: the first failure ends the iteration and
//! cancels the rest of the window;
//! so does dropping the iterator.
//!
//! [`ThreadPoolExecutor::map`]: super::ThreadPoolExecutor::map

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flotilla_core::{Future, OrderedWindow, Task, TaskError};

use super::Pool;

/// The default look-ahead of a `map`.
const DEFAULT_BUFFER: usize = 256;

type MapFn<A, T> = Arc<dyn Fn(A) -> Result<T, TaskError> + Send + Sync>;

/// The iterator returned by [`ThreadPoolExecutor::map`] and
/// [`ThreadPoolExecutor::try_map`]: each item's result, in input order, up to and
/// including the first failure.
///
/// ```
/// use std::time::Duration;
/// use flotilla_thread::ThreadPoolExecutor;
///
/// let pool = ThreadPoolExecutor::builder().max_workers(4).build().unwrap();
/// let total: u64 = pool
///     .map(|x: u64| x + 1, 0..1000)
///     .buffer_size(16)
///     .timeout(Duration::from_secs(60))
///     .map(Result::unwrap)
///     .sum();
/// assert_eq!(total, 500_500);
/// ```
///
/// [`ThreadPoolExecutor::map`]: super::ThreadPoolExecutor::map
/// [`ThreadPoolExecutor::try_map`]: super::ThreadPoolExecutor::try_map
#[must_use = "map runs nothing until it is iterated: consume it (a for loop, collect, or for_each(drop))"]
pub struct Map<I: Iterator, T> {
    pool: Arc<Pool>,
    items: I,
    f: MapFn<I::Item, T>,
    window: OrderedWindow<T>,
    buffer_size: usize,
    started: Instant,
}

impl<I, T> Map<I, T>
where
    I: Iterator,
    I::Item: Send + 'static,
    T: Send + 'static,
{
    pub(super) fn new(pool: Arc<Pool>, items: I, f: MapFn<I::Item, T>) -> Self {
        // Deep enough that trivial tasks keep every worker busy (measured by
        // `cargo xtask bench map`), bounded so a huge input is not consumed eagerly.
        let buffer_size = DEFAULT_BUFFER.max(4 * pool.max_workers);
        Map {
            pool,
            items,
            f,
            window: OrderedWindow::new(),
            buffer_size,
            started: Instant::now(),
        }
    }

    /// Keeps at most `n` (at least 1) tasks submitted ahead of the consumer.
    pub fn buffer_size(mut self, n: usize) -> Self {
        self.buffer_size = n.max(1);
        self
    }

    /// Fails the iteration with [`TaskError::TimedOut`] (and cancels what has not
    /// started) when a result is not ready `timeout` after the call to `map`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.window.set_deadline(self.started, timeout);
        self
    }

    fn fill(&mut self) {
        while !self.window.is_finished() && self.window.len() < self.buffer_size {
            let Some(item) = self.items.next() else {
                return;
            };
            let f = Arc::clone(&self.f);
            let (job, fut) = Task::new(move || f(item));
            // A refused submission (the executor was shut down) surfaces in order, as
            // that item's failure.
            if let Err(error) = self.pool.submit_job(job) {
                self.window.push(Future::failed(error));
                return;
            }
            self.window.push(fut);
        }
    }
}

impl<I, T> Iterator for Map<I, T>
where
    I: Iterator,
    I::Item: Send + 'static,
    T: Send + 'static,
{
    type Item = Result<T, TaskError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.fill();
        let outcome = self.window.next_result()?;
        if outcome.is_ok() {
            // Top the window up before handing the value over, so the workers have the
            // next tasks while the consumer works on this one.
            self.fill();
        }
        Some(outcome)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.window.is_finished() {
            return (0, Some(0));
        }
        let (low, high) = self.items.size_hint();
        let queued = self.window.len();
        (
            low.saturating_add(queued).min(1),
            high.and_then(|h| h.checked_add(queued)),
        )
    }
}

impl<I: Iterator, T> fmt::Debug for Map<I, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Map")
            .field("window", &self.window)
            .field("buffer_size", &self.buffer_size)
            .finish_non_exhaustive()
    }
}
