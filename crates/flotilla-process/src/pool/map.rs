//! [`ProcessMap`]: the lazy, ordered, chunked iterator behind
//! [`ProcessPoolExecutor::map`](super::ProcessPoolExecutor::map); and [`Unordered`], its
//! completion-order sibling behind [`Pool::imap_unordered`](super::Pool::imap_unordered).

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use flotilla_core::{Future, OrderedWindow, TaskError};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Shared;
use crate::boot::Target;

/// The results of [`ProcessPoolExecutor::map`](super::ProcessPoolExecutor::map), in input
/// order, up to and including the first failure.
///
/// Items travel `chunksize` to a message; at most [`buffer_size`](Self::buffer_size)
/// chunks are in flight ahead of the consumer. Dropping the iterator cancels the chunks
/// that have not reached a worker (those in a worker's pipeline run, their results
/// dropped, as in Python, whose executor marks them running as it queues them for a
/// worker).
#[must_use = "map runs nothing until it is iterated: consume it (a for loop, collect, or for_each(drop))"]
pub struct ProcessMap<I: Iterator, R> {
    shared: Arc<Shared>,
    entry: Target,
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
        entry: Target,
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
                .submit_chunk::<_, Vec<R>>(&self.entry, &chunk)
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

/// The results of [`Pool::imap_unordered`](super::Pool::imap_unordered): `f` over the
/// items in completion order, as lazy as [`ProcessMap`]: at most `buffer_size` chunks
/// are in flight, and the input is read only as results are taken, so an endless input
/// works. Dropping it cancels the chunks that have not reached a worker.
pub(super) struct Unordered<I: Iterator, R> {
    shared: Arc<Shared>,
    entry: Target,
    items: I,
    chunksize: usize,
    buffer_size: usize,
    /// The chunks in flight, by their number.
    pending: HashMap<usize, Future<Vec<R>>>,
    next_chunk: usize,
    /// Each chunk's number, sent by its future's done callback.
    done_tx: mpsc::Sender<usize>,
    done_rx: mpsc::Receiver<usize>,
    current: std::vec::IntoIter<R>,
}

impl<I, R> Unordered<I, R>
where
    I: Iterator,
    I::Item: Serialize + DeserializeOwned,
    R: DeserializeOwned + Send + 'static,
{
    pub(super) fn new(
        shared: Arc<Shared>,
        entry: Target,
        items: I,
        chunksize: usize,
        buffer_size: usize,
    ) -> Self {
        let (done_tx, done_rx) = mpsc::channel();
        Unordered {
            shared,
            entry,
            items,
            chunksize: chunksize.max(1),
            buffer_size: buffer_size.max(1),
            pending: HashMap::new(),
            next_chunk: 0,
            done_tx,
            done_rx,
            current: Vec::new().into_iter(),
        }
    }

    /// Submits chunks until `buffer_size` are in flight or the input ends.
    fn fill(&mut self) {
        while self.pending.len() < self.buffer_size {
            let chunk: Vec<I::Item> = self.items.by_ref().take(self.chunksize).collect();
            if chunk.is_empty() {
                return;
            }
            let fut = self
                .shared
                .submit_chunk::<_, Vec<R>>(&self.entry, &chunk)
                .unwrap_or_else(Future::failed);
            let number = self.next_chunk;
            self.next_chunk += 1;
            let done = self.done_tx.clone();
            fut.add_done_callback(move |_| {
                let _ = done.send(number);
            });
            self.pending.insert(number, fut);
        }
    }
}

impl<I: Iterator, R> Unordered<I, R> {
    /// How many times the consumer yields the processor, looking for a result after
    /// each, before it sleeps until one comes.
    const YIELDS: u32 = 50;

    /// The number of the next chunk done, waiting for one.
    fn next_done(&self) -> Option<usize> {
        // Results of small tasks come one by one, each a moment after the one before: the
        // manager is usually completing one as the consumer asks. Yielding to it a few
        // times spares both a wake-up per result; then the consumer sleeps.
        for _ in 0..Self::YIELDS {
            match self.done_rx.try_recv() {
                Ok(number) => return Some(number),
                Err(mpsc::TryRecvError::Empty) => std::thread::yield_now(),
                Err(mpsc::TryRecvError::Disconnected) => return None,
            }
        }
        // Every future completes (a lost task's completer fails it), and this holds a
        // sender: the receive ends.
        self.done_rx.recv().ok()
    }
}

impl<I, R> Iterator for Unordered<I, R>
where
    I: Iterator,
    I::Item: Serialize + DeserializeOwned,
    R: DeserializeOwned + Send + 'static,
{
    type Item = Result<R, TaskError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(value) = self.current.next() {
                return Some(Ok(value));
            }
            self.fill();
            if self.pending.is_empty() {
                return None;
            }
            let number = self.next_done()?;
            let fut = self.pending.remove(&number)?;
            match fut.into_result_timeout(Duration::ZERO) {
                Ok(values) => self.current = values.into_iter(),
                Err(error) => return Some(Err(error)),
            }
        }
    }
}

impl<I: Iterator, R> Drop for Unordered<I, R> {
    fn drop(&mut self) {
        for fut in self.pending.values() {
            fut.cancel();
        }
    }
}
