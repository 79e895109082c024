//! [`OrderedWindow`]: the part every executor's `map` shares — futures kept in input
//! order, waited for one by one against one deadline, the rest cancelled after the
//! first failure or when the window is dropped.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use crate::deadline::Deadline;
use crate::error::TaskError;
use crate::future::Future;

/// Futures in input order, for an executor's lazy `map`.
///
/// The executor keeps it topped up (its look-ahead bound is `len()`), and takes results
/// from the front with [`next_result`](OrderedWindow::next_result): the first failure
/// (including [`TaskError::TimedOut`] once the deadline has passed) ends the window and
/// cancels every future still in it, as does dropping it.
///
/// ```
/// use flotilla_core::{Future, OrderedWindow, TaskError};
///
/// let mut window = OrderedWindow::new();
/// window.push(Future::ready(1));
/// window.push(Future::failed(TaskError::Panicked { message: "two".into() }));
/// window.push(Future::ready(3));
/// assert_eq!(window.next_result().unwrap().unwrap(), 1);
/// assert!(window.next_result().unwrap().is_err());
/// assert!(window.is_finished() && window.next_result().is_none());
/// ```
pub struct OrderedWindow<T> {
    futures: VecDeque<Future<T>>,
    deadline: Deadline,
    finished: bool,
}

impl<T> OrderedWindow<T> {
    /// An empty window with no deadline.
    pub fn new() -> Self {
        OrderedWindow {
            futures: VecDeque::new(),
            deadline: Deadline::NEVER,
            finished: false,
        }
    }

    /// Fails the results not ready by `start + timeout` with [`TaskError::TimedOut`].
    pub fn set_deadline(&mut self, start: Instant, timeout: Duration) {
        self.deadline = start
            .checked_add(timeout)
            .map_or(Deadline::NEVER, Deadline::at);
    }

    /// Adds the next future in input order.
    pub fn push(&mut self, future: Future<T>) {
        self.futures.push_back(future);
    }

    /// How many futures wait in the window.
    pub fn len(&self) -> usize {
        self.futures.len()
    }

    /// True when no future waits in the window.
    pub fn is_empty(&self) -> bool {
        self.futures.is_empty()
    }

    /// True once a failure ended the window.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Waits for the front future and returns its outcome; `None` when the window is
    /// empty or finished. A failure finishes the window and cancels the rest.
    pub fn next_result(&mut self) -> Option<Result<T, TaskError>> {
        if self.finished {
            return None;
        }
        let future = self.futures.pop_front()?;
        // A plain wait (a short spin, then a park): no yield, which on a CPU shared with a
        // busy process hands away the rest of a time slice. A map of trivial items pays a
        // wake-up per task here, so executors batch items into tasks instead (the thread
        // executor's automatic `chunksize`).
        let outcome = if future.wait_within(self.deadline.remaining()) {
            future.into_result()
        } else {
            future.cancel();
            Err(TaskError::TimedOut)
        };
        if outcome.is_err() {
            self.finish();
        }
        Some(outcome)
    }

    /// Ends the window, cancelling every future in it that has not started.
    pub fn finish(&mut self) {
        self.finished = true;
        for future in self.futures.drain(..) {
            future.cancel();
        }
    }
}

impl<T> Default for OrderedWindow<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Drop for OrderedWindow<T> {
    fn drop(&mut self) {
        self.finish();
    }
}

impl<T> fmt::Debug for OrderedWindow<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OrderedWindow")
            .field("len", &self.futures.len())
            .field("deadline", &self.deadline.instant())
            .field("finished", &self.finished)
            .finish()
    }
}
