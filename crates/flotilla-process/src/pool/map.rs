//! [`ProcessMap`]: the lazy, ordered, chunked iterator behind
//! [`ProcessPoolExecutor::map`](super::ProcessPoolExecutor::map).

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flotilla_core::{Future, TaskError};
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
    window: VecDeque<Future<Vec<R>>>,
    current: std::vec::IntoIter<R>,
    buffer_size: usize,
    started: Instant,
    deadline: Option<Instant>,
    finished: bool,
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
            window: VecDeque::new(),
            current: Vec::new().into_iter(),
            buffer_size: buffer_size.max(1),
            started: Instant::now(),
            deadline: None,
            finished: false,
        }
    }

    /// Keeps at most `n` (at least 1) chunks in flight ahead of the consumer.
    pub fn buffer_size(mut self, n: usize) -> Self {
        self.buffer_size = n.max(1);
        self
    }

    /// Fails the iteration with [`TaskError::TimedOut`] when a result is not ready
    /// `timeout` after the call to `map`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.deadline = self.started.checked_add(timeout);
        self
    }

    fn fill(&mut self) {
        while self.window.len() < self.buffer_size {
            let chunk: Vec<I::Item> = self.items.by_ref().take(self.chunksize).collect();
            if chunk.is_empty() {
                return;
            }
            let fut = self
                .shared
                .submit_entry::<_, Vec<R>>(self.entry, &chunk)
                .unwrap_or_else(Future::failed);
            self.window.push_back(fut);
        }
    }
}

impl<I: Iterator, R> ProcessMap<I, R> {
    fn cancel_window(&mut self) {
        for fut in self.window.drain(..) {
            fut.cancel();
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
        if self.finished {
            return None;
        }
        self.fill();
        let Some(fut) = self.window.pop_front() else {
            self.finished = true;
            return None;
        };
        let timeout = self
            .deadline
            .map(|d| d.saturating_duration_since(Instant::now()));
        let outcome = if fut.wait(timeout) {
            fut.into_result(None)
        } else {
            fut.cancel();
            Err(TaskError::TimedOut)
        };
        match outcome {
            Ok(values) => {
                self.fill();
                self.current = values.into_iter();
                self.next()
            }
            Err(error) => {
                self.finished = true;
                self.cancel_window();
                Some(Err(error))
            }
        }
    }
}

impl<I: Iterator, R> Drop for ProcessMap<I, R> {
    fn drop(&mut self) {
        self.cancel_window();
    }
}

impl<I: Iterator, R> fmt::Debug for ProcessMap<I, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessMap")
            .field("chunksize", &self.chunksize)
            .field("in_flight", &self.window.len())
            .field("buffer_size", &self.buffer_size)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}
