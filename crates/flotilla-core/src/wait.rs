//! Waiting on many futures at once: [`wait()`] and [`as_completed()`], Python's
//! `concurrent.futures.wait` and `as_completed`.
//!
//! Both register one [`Signal`] with every unfinished future; a future fires it with its
//! index when it completes, so a waiter sleeps once for any number of futures instead
//! of polling them. Registrations are removed when the wait ends, so a future outliving
//! many waits does not accumulate them.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::deadline::Deadline;
use crate::error::TaskError;
use crate::future::{Future, FutureId};

/// When [`wait()`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReturnWhen {
    /// As soon as any future is done (finished or cancelled).
    FirstCompleted,
    /// As soon as any future fails (panics or returns `Err`); when none fails, once all
    /// are done.
    FirstException,
    /// Once every future is done.
    AllCompleted,
}

impl ReturnWhen {
    /// Whether a wait for this condition is over, with `done` of `total` futures done
    /// and `any_failed` telling whether one of those failed. Every `wait` decides by it
    /// (this crate's, and the async bridge's). Once every future is done, every
    /// condition holds, so a wait on no futures at all is over at once, as in Python.
    ///
    /// ```
    /// use flotilla_core::ReturnWhen;
    ///
    /// assert!(ReturnWhen::FirstCompleted.is_met(1, 3, false));
    /// assert!(!ReturnWhen::FirstException.is_met(1, 3, false));
    /// assert!(ReturnWhen::FirstException.is_met(1, 3, true));
    /// assert!(ReturnWhen::AllCompleted.is_met(3, 3, false));
    /// assert!(ReturnWhen::FirstCompleted.is_met(0, 0, false));
    /// ```
    pub fn is_met(self, done: usize, total: usize, any_failed: bool) -> bool {
        done == total
            || match self {
                ReturnWhen::FirstCompleted => done > 0,
                ReturnWhen::FirstException => any_failed,
                ReturnWhen::AllCompleted => false,
            }
    }
}

/// A set of futures' wake-up point: each future pushes its index when it completes.
#[derive(Debug, Default)]
pub struct Signal {
    fired: Mutex<Vec<usize>>,
    cond: Condvar,
}

impl Signal {
    fn lock(&self) -> MutexGuard<'_, Vec<usize>> {
        self.fired.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn fire(&self, index: usize) {
        self.lock().push(index);
        self.cond.notify_one();
    }

    /// Waits until something fired or `deadline` passed; returns what fired (maybe
    /// nothing, on timeout).
    fn take(&self, deadline: Deadline) -> Vec<usize> {
        let mut fired = self.lock();
        while fired.is_empty() && !deadline.expired() {
            fired = deadline.wait(&self.cond, fired);
        }
        std::mem::take(&mut *fired)
    }
}

mod sealed {
    use std::sync::Arc;

    /// The operations [`wait`](super::wait()) needs from a future, whatever its value type.
    pub trait Watch {
        fn id(&self) -> crate::future::FutureId;
        fn is_done(&self) -> bool;
        fn is_failed(&self) -> bool;
        fn watch(&self, signal: &Arc<super::Signal>, index: usize) -> bool;
        fn unwatch(&self, signal: &Arc<super::Signal>);
    }
}

/// Something [`wait()`] and [`as_completed()`] can wait for: a [`Future`] of any value
/// type, a reference to one, or a boxed `dyn Waitable` (to mix value types in one wait).
///
/// The trait is sealed: its methods are flotilla's own business.
pub trait Waitable: sealed::Watch {}

impl<T> sealed::Watch for Future<T> {
    fn id(&self) -> FutureId {
        Future::id(self)
    }
    fn is_done(&self) -> bool {
        self.done()
    }
    fn is_failed(&self) -> bool {
        Future::is_failed(self)
    }
    fn watch(&self, signal: &Arc<Signal>, index: usize) -> bool {
        Future::watch(self, signal, index)
    }
    fn unwatch(&self, signal: &Arc<Signal>) {
        Future::unwatch(self, signal)
    }
}
impl<T> Waitable for Future<T> {}

impl<W: sealed::Watch + ?Sized> sealed::Watch for &W {
    fn id(&self) -> FutureId {
        (**self).id()
    }
    fn is_done(&self) -> bool {
        (**self).is_done()
    }
    fn is_failed(&self) -> bool {
        (**self).is_failed()
    }
    fn watch(&self, signal: &Arc<Signal>, index: usize) -> bool {
        (**self).watch(signal, index)
    }
    fn unwatch(&self, signal: &Arc<Signal>) {
        (**self).unwatch(signal)
    }
}
impl<W: Waitable + ?Sized> Waitable for &W {}

impl<W: sealed::Watch + ?Sized> sealed::Watch for Box<W> {
    fn id(&self) -> FutureId {
        (**self).id()
    }
    fn is_done(&self) -> bool {
        (**self).is_done()
    }
    fn is_failed(&self) -> bool {
        (**self).is_failed()
    }
    fn watch(&self, signal: &Arc<Signal>, index: usize) -> bool {
        (**self).watch(signal, index)
    }
    fn unwatch(&self, signal: &Arc<Signal>) {
        (**self).unwatch(signal)
    }
}
impl<W: Waitable + ?Sized> Waitable for Box<W> {}

/// Waits until `return_when` holds for `futures`, or `timeout` passes, and returns them
/// split into `(done, not_done)`, each in input order.
///
/// The futures may come from different executors. On timeout nothing fails: the split
/// just has futures left in `not_done`. A future given more than once (the same future
/// or clones of it) counts, and is returned, once, in its first place: Python's sets.
/// Python's `concurrent.futures.wait`.
///
/// ```
/// use std::time::Duration;
/// use flotilla_core::{Completer, Future, ReturnWhen, wait, wait_timeout};
///
/// let (slow, slow_fut) = Completer::<i32>::new();
/// let futures = vec![Future::ready(1), slow_fut];
/// let (done, not_done) = wait(futures, ReturnWhen::FirstCompleted);
/// assert_eq!((done.len(), not_done.len()), (1, 1));
///
/// let (done, not_done) = wait_timeout(&not_done, ReturnWhen::AllCompleted, Duration::from_millis(10));
/// assert!(done.is_empty() && not_done.len() == 1); // timed out
/// slow.set_result(2);
/// ```
pub fn wait<I, W>(futures: I, return_when: ReturnWhen) -> (Vec<W>, Vec<W>)
where
    I: IntoIterator<Item = W>,
    W: Waitable,
{
    wait_within(futures, return_when, None)
}

/// Like [`wait()`], but returns after `timeout` at the latest, with the futures not yet
/// done in the second vector: Python's `concurrent.futures.wait(fs, timeout,
/// return_when)`.
pub fn wait_timeout<I, W>(
    futures: I,
    return_when: ReturnWhen,
    timeout: Duration,
) -> (Vec<W>, Vec<W>)
where
    I: IntoIterator<Item = W>,
    W: Waitable,
{
    wait_within(futures, return_when, Some(timeout))
}

/// The body of [`wait()`] and [`wait_timeout()`]; `None` waits without limit.
fn wait_within<I, W>(
    futures: I,
    return_when: ReturnWhen,
    timeout: Option<Duration>,
) -> (Vec<W>, Vec<W>)
where
    I: IntoIterator<Item = W>,
    W: Waitable,
{
    use sealed::Watch;

    let futures = distinct(futures);
    let deadline = Deadline::after(timeout);
    let satisfied = |done: usize, failed: bool| return_when.is_met(done, futures.len(), failed);

    let mut done = futures.iter().filter(|f| f.is_done()).count();
    let mut failed = futures.iter().any(|f| f.is_failed());
    if !satisfied(done, failed) && timeout != Some(Duration::ZERO) {
        let signal = Arc::new(Signal::default());
        // Count afresh while registering: a future that completes between the scan above
        // and its registration is seen here, one that completes after fires the signal.
        done = 0;
        for (index, f) in futures.iter().enumerate() {
            if !f.watch(&signal, index) {
                done += 1;
                failed |= f.is_failed();
            }
        }
        while !satisfied(done, failed) {
            let fired = signal.take(deadline);
            if fired.is_empty() {
                break; // timed out
            }
            done += fired.len();
            failed |= fired.iter().any(|&i| futures[i].is_failed());
        }
        for f in &futures {
            f.unwatch(&signal);
        }
    }
    futures.into_iter().partition(|f| f.is_done())
}

/// `futures` with every future after its first appearance left out (a future and its
/// clones are one future).
fn distinct<I, W>(futures: I) -> Vec<W>
where
    I: IntoIterator<Item = W>,
    W: Waitable,
{
    let mut futures: Vec<W> = futures.into_iter().collect();
    if futures.len() > 1 {
        let mut seen = HashSet::with_capacity(futures.len());
        futures.retain(|f| seen.insert(f.id()));
    }
    futures
}

/// An iterator over futures in the order they complete: Python's
/// `concurrent.futures.as_completed`.
///
/// Futures already done come first, in input order; then each one as it completes. Every
/// distinct future is yielded exactly once, however many times the input holds it (or
/// clones of it), as in Python. Without a timeout every item is `Ok`; the
/// [`TaskError::Unfinished`] item comes only from [`as_completed_timeout()`].
///
/// ```
/// use flotilla_core::{Completer, Future, as_completed};
///
/// let (later, later_fut) = Completer::new();
/// let mut done = as_completed(vec![later_fut, Future::ready("first")]);
/// // The future that is already done comes first, whatever its place in the input.
/// assert_eq!(done.next().unwrap().unwrap().result().unwrap(), "first");
/// later.set_result("second");
/// assert_eq!(done.next().unwrap().unwrap().result().unwrap(), "second");
/// assert!(done.next().is_none());
/// ```
pub fn as_completed<I, W>(futures: I) -> AsCompleted<W>
where
    I: IntoIterator<Item = W>,
    W: Waitable,
{
    as_completed_within(futures, None)
}

/// Like [`as_completed()`], but when `timeout` (counted from the call) passes with
/// futures unfinished, the iterator yields one [`TaskError::Unfinished`] and ends:
/// Python's `as_completed(fs, timeout)`.
///
/// ```
/// use std::time::Duration;
/// use flotilla_core::{Completer, TaskError, as_completed_timeout};
///
/// let (_never, fut) = Completer::<u8>::new();
/// let mut it = as_completed_timeout([fut], Duration::from_millis(1));
/// assert!(matches!(it.next(), Some(Err(TaskError::Unfinished { unfinished: 1, total: 1 }))));
/// assert!(it.next().is_none());
/// ```
pub fn as_completed_timeout<I, W>(futures: I, timeout: Duration) -> AsCompleted<W>
where
    I: IntoIterator<Item = W>,
    W: Waitable,
{
    as_completed_within(futures, Some(timeout))
}

/// The body of [`as_completed()`] and [`as_completed_timeout()`].
fn as_completed_within<I, W>(futures: I, timeout: Option<Duration>) -> AsCompleted<W>
where
    I: IntoIterator<Item = W>,
    W: Waitable,
{
    let futures = distinct(futures);
    let signal = Arc::new(Signal::default());
    let mut ready = VecDeque::new();
    for (index, f) in futures.iter().enumerate() {
        if !f.watch(&signal, index) {
            ready.push_back(index);
        }
    }
    let futures: Vec<Option<W>> = futures.into_iter().map(Some).collect();
    AsCompleted {
        total: futures.len(),
        remaining: futures.len(),
        futures,
        ready,
        signal,
        deadline: Deadline::after(timeout),
        timed_out: false,
    }
}

/// The iterator returned by [`as_completed()`] and [`as_completed_timeout()`].
pub struct AsCompleted<W: Waitable> {
    futures: Vec<Option<W>>,
    ready: VecDeque<usize>,
    signal: Arc<Signal>,
    deadline: Deadline,
    total: usize,
    remaining: usize,
    timed_out: bool,
}

impl<W: Waitable> Iterator for AsCompleted<W> {
    type Item = Result<W, TaskError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.timed_out || self.remaining == 0 {
            return None;
        }
        if self.ready.is_empty() {
            let fired = self.signal.take(self.deadline);
            if fired.is_empty() {
                self.timed_out = true;
                return Some(Err(TaskError::Unfinished {
                    unfinished: self.remaining,
                    total: self.total,
                }));
            }
            self.ready.extend(fired);
        }
        let index = self.ready.pop_front()?;
        self.remaining -= 1;
        self.futures[index].take().map(Ok)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.timed_out {
            (0, Some(0))
        } else {
            (self.ready.len(), Some(self.remaining + 1))
        }
    }
}

impl<W: Waitable> Drop for AsCompleted<W> {
    fn drop(&mut self) {
        for f in self.futures.iter().flatten() {
            f.unwatch(&self.signal);
        }
    }
}

impl<W: Waitable> fmt::Debug for AsCompleted<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsCompleted")
            .field("total", &self.total)
            .field("remaining", &self.remaining)
            .field("timed_out", &self.timed_out)
            .finish_non_exhaustive()
    }
}
