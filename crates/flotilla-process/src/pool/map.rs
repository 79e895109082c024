//! [`ProcessMap`]: the lazy, ordered, chunked iterator behind
//! [`ProcessPoolExecutor::map`](super::ProcessPoolExecutor::map).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use flotilla_core::{Future, OrderedWindow, TaskError};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Shared;

/// The results of [`ProcessPoolExecutor::map`](super::ProcessPoolExecutor::map), in input
/// order, up to and including the first failure.
///
/// Items travel `chunksize` to a message; at most [`buffer_size`](Self::buffer_size)
/// chunks are in flight ahead of the consumer. Dropping the iterator cancels the chunks
/// not yet sent to a worker.
#[must_use = "iterators are lazy: nothing is submitted before the first `next()`"]
pub struct ProcessMap<I: Iterator, R> {
    shared: Arc<Shared>,
    entry: usize,
    items: I,
    chunksize: usize,
    window: OrderedWindow<Vec<R>>,
    current: std::vec::IntoIter<R>,
    buffer_size: usize,
    started: Instant,
    progress: Option<Arc<Progress>>,
}

/// Progress reporting: how many items are done, out of how many.
struct Progress {
    completed: AtomicUsize,
    total: Option<usize>,
    report: Box<dyn Fn(usize, Option<usize>) + Send + Sync>,
}

impl<I, R> ProcessMap<I, R>
where
    I: Iterator,
    I::Item: Serialize + DeserializeOwned,
    R: DeserializeOwned + Send + 'static,
{
    pub(super) fn new(
        shared: Arc<Shared>,
        entry: usize,
        items: I,
        chunksize: usize,
        buffer_size: usize,
    ) -> Self {
        ProcessMap {
            shared,
            entry,
            items,
            chunksize,
            window: OrderedWindow::new(),
            current: Vec::new().into_iter(),
            buffer_size: buffer_size.max(1),
            started: Instant::now(),
            progress: None,
        }
    }

    /// Calls `report(completed, total)` each time a chunk of items completes (on the
    /// pool's manager thread, in completion order: keep it short), so a program can
    /// drive a progress bar. `total` is known when the input knows its length.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    /// use flotilla_process::ProcessPoolExecutor;
    ///
    /// fn inc(x: u32) -> u32 {
    ///     x + 1
    /// }
    ///
    /// let pool = ProcessPoolExecutor::builder().max_workers(2).build().unwrap();
    /// let last = Arc::new(AtomicUsize::new(0));
    /// let seen = Arc::clone(&last);
    /// let out: Vec<u32> = pool
    ///     .map(inc, 0..100, 10)
    ///     .progress(move |done, total| {
    ///         assert_eq!(total, Some(100));
    ///         seen.fetch_max(done, Ordering::SeqCst);
    ///     })
    ///     .map(Result::unwrap)
    ///     .collect();
    /// assert_eq!(out.len(), 100);
    /// # pool.shutdown(true, false); // callbacks have all run once the pool is shut down
    /// assert_eq!(last.load(Ordering::SeqCst), 100);
    /// ```
    pub fn progress<P>(mut self, report: P) -> Self
    where
        P: Fn(usize, Option<usize>) + Send + Sync + 'static,
    {
        let (low, high) = self.items.size_hint();
        self.progress = Some(Arc::new(Progress {
            completed: AtomicUsize::new(0),
            total: (high == Some(low)).then_some(low),
            report: Box::new(report),
        }));
        self
    }

    /// Keeps at most `n` (at least 1) chunks in flight ahead of the consumer.
    pub fn buffer_size(mut self, n: usize) -> Self {
        self.buffer_size = n.max(1);
        self
    }

    /// Fails the iteration with [`TaskError::TimedOut`] when a result is not ready
    /// `timeout` after the call to `map`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.window.set_deadline(self.started, timeout);
        self
    }

    fn fill(&mut self) {
        while !self.window.is_finished() && self.window.len() < self.buffer_size {
            let chunk: Vec<I::Item> = self.items.by_ref().take(self.chunksize).collect();
            if chunk.is_empty() {
                return;
            }
            let items = chunk.len();
            let fut = self
                .shared
                .submit_entry::<_, Vec<R>>(self.entry, &chunk)
                .unwrap_or_else(Future::failed);
            if let Some(progress) = &self.progress {
                let progress = Arc::clone(progress);
                fut.add_done_callback(move |_| {
                    let done = progress.completed.fetch_add(items, Ordering::AcqRel) + items;
                    (progress.report)(done, progress.total);
                });
            }
            self.window.push(fut);
        }
    }
}

impl<I, R> Iterator for ProcessMap<I, R>
where
    I: Iterator,
    I::Item: Serialize + DeserializeOwned,
    R: DeserializeOwned + Send + 'static,
{
    type Item = Result<R, TaskError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(value) = self.current.next() {
            return Some(Ok(value));
        }
        self.fill();
        match self.window.next_result()? {
            Ok(values) => {
                self.fill();
                self.current = values.into_iter();
                self.next()
            }
            Err(error) => Some(Err(error)),
        }
    }
}

impl<I: Iterator, R> fmt::Debug for ProcessMap<I, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessMap")
            .field("chunksize", &self.chunksize)
            .field("window", &self.window)
            .field("buffer_size", &self.buffer_size)
            .finish_non_exhaustive()
    }
}
