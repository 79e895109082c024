//! [`Map`]: the lazy, ordered iterator behind [`ThreadPoolExecutor::map`].
//!
//! It cuts the input into chunks of `chunksize` items, one task per chunk, and keeps a
//! window of the chunks' futures in input order, topping it up from the input as the
//! consumer takes results, so at most `buffer_size` items (and never less than one
//! chunk) are taken from the input ahead of the consumer. Like every Rust iterator
//! adapter it is lazy: the first chunks are submitted by the first `next`, after
//! `buffer_size`, `chunksize` and `timeout` have been set.
//!
//! A chunk runs its items in order and stops at the first failure (an `Err` or a panic),
//! returning the values before it and the failure; the iterator yields those values,
//! then the failure, then nothing. The window itself is flotilla-core's
//! `OrderedWindow`: a failure ends it and cancels the chunks that have not started, as
//! does dropping the iterator; a shared stop flag makes the chunks already running skip
//! their remaining items.
//!
//! Why chunks: a task costs an allocation, a queue hand-off and, when the consumer is
//! ahead of the workers, a wake-up; for `x + 1` that is nearly all of the cost. So by
//! default a long input (its `size_hint`) is batched automatically, in chunks small
//! enough that every worker still gets many of them.
//!
//! [`ThreadPoolExecutor::map`]: super::ThreadPoolExecutor::map

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use flotilla_core::{Future, OrderedWindow, Task, TaskError};

use super::Pool;

/// The default look-ahead of a `map`, in items.
const DEFAULT_BUFFER: usize = 256;
/// The largest chunk the automatic `chunksize` picks: enough that a task's own cost is a
/// few percent of a chunk of trivial items.
const MAX_AUTO_CHUNK: usize = 64;
/// The automatic `chunksize` leaves at least this many chunks per worker, so slow or
/// uneven items still spread over every worker.
const CHUNKS_PER_WORKER: usize = 16;
/// ... and at least this many chunks in the look-ahead, so workers have the next chunk
/// while the consumer takes one (per worker, when the look-ahead is the default one).
const CHUNKS_IN_BUFFER: usize = 4;

type MapFn<A, T> = Arc<dyn Fn(A) -> Result<T, TaskError> + Send + Sync>;

/// What one chunk's task returns: the values of its items, in order, up to its first
/// failure, and that failure.
struct Chunk<T> {
    values: Vec<T>,
    failure: Option<TaskError>,
}

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
///     .buffer_size(64)
///     .chunksize(8)
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
    window: OrderedWindow<Chunk<T>>,
    /// The values of the chunk taken from the window, not yet yielded.
    ready: std::vec::IntoIter<T>,
    /// That chunk's failure, yielded after its values.
    failure: Option<TaskError>,
    /// Set once the iteration ends early (a failure, a drop): running chunks skip the
    /// rest of their items.
    stop: Arc<AtomicBool>,
    /// `None`: the default, which grows with the chunks.
    buffer_size: Option<usize>,
    /// `None`: automatic, chosen by the first `next`.
    chunksize: Option<usize>,
    started: Instant,
}

impl<I, T> Map<I, T>
where
    I: Iterator,
    I::Item: Send + 'static,
    T: Send + 'static,
{
    pub(super) fn new(pool: Arc<Pool>, items: I, f: MapFn<I::Item, T>) -> Self {
        Map {
            pool,
            items,
            f,
            window: OrderedWindow::new(),
            ready: Vec::new().into_iter(),
            failure: None,
            stop: Arc::new(AtomicBool::new(false)),
            buffer_size: None,
            chunksize: None,
            started: Instant::now(),
        }
    }

    /// Takes at most `n` (at least 1) items from the input ahead of the consumer, and
    /// never less than one chunk. Default: 256, or 4 × `max_workers` when that is more,
    /// or 4 chunks per worker when that is more still.
    pub fn buffer_size(mut self, n: usize) -> Self {
        self.buffer_size = Some(n.max(1));
        self
    }

    /// Runs `n` (at least 1) consecutive items per task, as `ProcessPoolExecutor.map`'s
    /// `chunksize` does: fewer tasks, so less overhead per item, at the price of coarser
    /// load balancing.
    ///
    /// By default it is automatic: the input's `size_hint` lower bound divided by 16
    /// chunks per worker, at most 64 (and at most a quarter of a `buffer_size` that was
    /// set), and 1 for a short input or one of unknown length. Results still come one by
    /// one, in order; a failure in a chunk ends the iteration after the values before it.
    pub fn chunksize(mut self, n: usize) -> Self {
        self.chunksize = Some(n.max(1));
        self
    }

    /// Fails the iteration with [`TaskError::TimedOut`] (and cancels what has not
    /// started) when a result is not ready `timeout` after the call to `map`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.window.set_deadline(self.started, timeout);
        self
    }

    /// The chunk size, chosen on first use when automatic.
    pub(super) fn chunk(&mut self) -> usize {
        *self.chunksize.get_or_insert_with(|| {
            let known = self.items.size_hint().0;
            (known / (CHUNKS_PER_WORKER * self.pool.max_workers))
                .min(MAX_AUTO_CHUNK)
                .min(
                    self.buffer_size
                        .map_or(usize::MAX, |b| b / CHUNKS_IN_BUFFER),
                )
                .max(1)
        })
    }

    /// The most items taken from the input and not yet yielded, for chunks of `chunk`.
    fn limit(&self, chunk: usize) -> usize {
        match self.buffer_size {
            Some(n) => n.max(chunk),
            // Deep enough that trivial items keep every worker busy (measured by
            // `cargo xtask bench map`: with fewer chunks queued the workers run dry and
            // sleep between chunks), bounded so a huge input is not consumed eagerly.
            None => DEFAULT_BUFFER
                .max(4 * self.pool.max_workers)
                .max(CHUNKS_IN_BUFFER * self.pool.max_workers * chunk),
        }
    }

    fn fill(&mut self) {
        let chunk = self.chunk();
        // Items taken from the input and not yet yielded (a chunk in the window may be
        // short, at the end of the input: counted as full, which only errs on the lazy
        // side).
        let limit = self.limit(chunk);
        while !self.window.is_finished()
            && self.window.len() * chunk + self.ready.len() + chunk <= limit
        {
            let items: Vec<I::Item> = self.items.by_ref().take(chunk).collect();
            if items.is_empty() {
                return;
            }
            let f = Arc::clone(&self.f);
            let stop = Arc::clone(&self.stop);
            let (job, fut) = Task::new(move || Ok(run_chunk(&*f, items, &stop)));
            // A refused submission (the executor was shut down) surfaces in order, as
            // that chunk's first item's failure.
            if let Err(error) = self.pool.submit_job(job) {
                self.window.push(Future::failed(error));
                return;
            }
            self.window.push(fut);
        }
    }

    /// Ends the iteration: nothing more is submitted, and running chunks stop early.
    fn end(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.window.finish();
    }
}

/// A chunk's task: `f` over `items` in order, up to the first failure (or until the map
/// is stopped).
fn run_chunk<A, T>(
    f: &(dyn Fn(A) -> Result<T, TaskError> + Send + Sync),
    items: Vec<A>,
    stop: &AtomicBool,
) -> Chunk<T> {
    let mut values = Vec::with_capacity(items.len());
    for item in items {
        let failure = if stop.load(Ordering::Relaxed) {
            // Nobody will read the rest: the map failed or was dropped.
            TaskError::Cancelled
        } else {
            match catch_unwind(AssertUnwindSafe(|| f(item))) {
                Ok(Ok(value)) => {
                    values.push(value);
                    continue;
                }
                Ok(Err(error)) => error,
                Err(payload) => TaskError::from_panic(&*payload),
            }
        };
        return Chunk {
            values,
            failure: Some(failure),
        };
    }
    Chunk {
        values,
        failure: None,
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
        loop {
            if let Some(value) = self.ready.next() {
                // Top the window up before handing the value over, so the workers have
                // the next chunks while the consumer works on this one.
                self.fill();
                return Some(Ok(value));
            }
            if let Some(error) = self.failure.take() {
                return Some(Err(error));
            }
            self.fill();
            match self.window.next_result()? {
                Ok(chunk) => {
                    self.ready = chunk.values.into_iter();
                    if let Some(error) = chunk.failure {
                        // Stop the rest now, not once the values before it are yielded.
                        self.end();
                        self.failure = Some(error);
                    }
                }
                Err(error) => {
                    // The window has ended itself (and cancelled the rest).
                    self.stop.store(true, Ordering::Relaxed);
                    return Some(Err(error));
                }
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let sure = self.ready.len() + usize::from(self.failure.is_some());
        if self.window.is_finished() {
            return (sure, Some(sure));
        }
        let (low, high) = self.items.size_hint();
        let queued = self.window.len() * self.chunksize.unwrap_or(1);
        let more = if low > 0 || !self.window.is_empty() {
            1
        } else {
            0
        };
        (
            sure.max(more),
            high.and_then(|h| h.checked_add(queued)?.checked_add(sure)),
        )
    }
}

impl<I: Iterator, T> Drop for Map<I, T> {
    fn drop(&mut self) {
        // The window cancels the chunks that have not started when it drops.
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl<I: Iterator, T> fmt::Debug for Map<I, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Map")
            .field("window", &self.window)
            .field("ready", &self.ready.len())
            .field("buffer_size", &self.buffer_size)
            .field("chunksize", &self.chunksize)
            .finish_non_exhaustive()
    }
}
