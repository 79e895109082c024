//! Python's `queue` module: closable FIFO, LIFO and priority queues shared between
//! threads, with Python's `task_done` / `join` bookkeeping.
//!
//! [`Queue`], [`LifoQueue`] and [`PriorityQueue`] are one type, [`GenericQueue`], over
//! three [`Store`]s: the store orders the items, the queue does everything else. A queue
//! is a handle: [`Clone`] it to give another thread the same queue.
//!
//! | Python                          | flotilla                                        |
//! |---------------------------------|-------------------------------------------------|
//! | `Queue(maxsize=0)`              | [`Queue::new()`](GenericQueue::new)             |
//! | `Queue(maxsize=n)`              | [`Queue::bounded(n)`](GenericQueue::bounded)    |
//! | `put(x)` / `put(x, timeout=t)`  | [`put`](GenericQueue::put) / [`put_timeout`](GenericQueue::put_timeout) |
//! | `put_nowait(x)`                 | [`try_put`](GenericQueue::try_put)              |
//! | `get()` / `get(timeout=t)`      | [`get`](GenericQueue::get) / [`get_timeout`](GenericQueue::get_timeout) |
//! | `get_nowait()`                  | [`try_get`](GenericQueue::try_get)              |
//! | `qsize()`, `empty()`, `full()`  | [`len`](GenericQueue::len), [`is_empty`](GenericQueue::is_empty), [`is_full`](GenericQueue::is_full) |
//! | `task_done()`, `join()`         | [`task_done`](GenericQueue::task_done), [`join`](GenericQueue::join) / [`join_timeout`](GenericQueue::join_timeout) |
//! | `shutdown()` (3.13)             | [`close`](GenericQueue::close)                  |
//! | `shutdown(immediate=True)`      | [`close_immediately`](GenericQueue::close_immediately), which hands the dropped items back |
//! | `queue.Full`, `queue.Empty`     | [`TryPutError::Full`], [`TryGetError::Empty`], and the `Timeout` variants |
//!
//! What Python lacks: a closed queue ends the consumers' `for item in &queue` loops once
//! it is drained, so workers need no `None` sentinels; a put that fails hands its item
//! back; every blocking call has a timed form, `join` included.
//!
//! # State and its rules
//!
//! All state is in one `Mutex<State>`; three condition variables hang off it.
//!
//! - `store`: the items. Pushed only by a putter that saw `!closed` and room; popped by
//!   any getter.
//! - `closed`: goes `false → true` once, in [`close`](GenericQueue::close), and never
//!   back. From then on no item is pushed, so a getter that finds the store empty and
//!   `closed` set may report `Closed`: nothing can come any more.
//! - `unfinished`: incremented with every push, decremented by `task_done`, never below
//!   zero. `join` waits for it to reach zero.
//! - `getters`, `putters`, `joiners`: how many threads wait (or are about to wait, the
//!   lock still held) on `not_empty`, `not_full` and `all_done`. A waiter increments its
//!   count before waiting and decrements it after waking, both under the lock. A notifier
//!   reads the count under the lock and notifies only if it is non-zero, after releasing
//!   the lock, so an uncontended put or get makes no futex call at all and a woken
//!   thread does not bump into the lock its waker still holds.
//!
//! No lost wake-ups: a waiter re-checks its condition under the lock before every wait,
//! and counted itself before releasing the lock, so any change it did not see is
//! followed by a notify it will receive. Each push wakes at most one getter and each pop
//! at most one putter; a woken getter that finds an item always takes it (even if its
//! timeout also ran out), so no wake-up is spent without the item moving on. `close`
//! wakes every getter and putter, and reaching zero unfinished tasks wakes every joiner.
//!
//! No user code runs under the lock, except the [`Store`] methods, that is, `Ord`
//! comparisons for a [`PriorityQueue`] (O(log n) of them per put and get). Items are
//! dropped and handed back outside it. The lock ignores poisoning: a panicking `Ord` may
//! leave the heap out of order, as with any `BinaryHeap`, but cannot wedge the queue.

mod iter;
mod store;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use flotilla_core::Deadline;

pub use self::iter::{Iter, TryIter};
pub use self::store::{Fifo, Lifo, Priority, Store};
pub use crate::error::{
    GetError, GetTimeoutError, PutError, PutTimeoutError, TaskDoneError, TryGetError, TryPutError,
};

/// A first-in, first-out queue: Python's `queue.Queue`.
///
/// All its methods are [`GenericQueue`]'s.
///
/// ```
/// use std::thread;
/// use flotilla_thread::Queue;
///
/// let q = Queue::bounded(2);
/// let producer = thread::spawn({
///     let q = q.clone();
///     move || {
///         for i in 0..10 {
///             q.put(i).unwrap(); // waits while 2 items are in the queue
///         }
///         q.close();
///     }
/// });
/// let got: Vec<i32> = q.iter().collect(); // ends once closed and drained
/// assert_eq!(got, (0..10).collect::<Vec<_>>());
/// producer.join().unwrap();
/// ```
pub type Queue<T> = GenericQueue<Fifo<T>>;

/// A last-in, first-out queue (a stack): Python's `queue.LifoQueue`.
///
/// All its methods are [`GenericQueue`]'s.
///
/// ```
/// use flotilla_thread::LifoQueue;
///
/// let q = LifoQueue::new();
/// for i in 1..=3 {
///     q.put(i).unwrap();
/// }
/// assert_eq!(q.try_iter().collect::<Vec<_>>(), [3, 2, 1]);
/// ```
pub type LifoQueue<T> = GenericQueue<Lifo<T>>;

/// A queue that hands out its smallest item first: Python's `queue.PriorityQueue`.
///
/// As in Python, lower sorts first, so `(1, job)` comes out before `(5, job)`. Items that
/// compare equal come out in the order they were put (Python makes no such promise). For
/// largest-first, put [`std::cmp::Reverse`]`(item)`. All its methods are
/// [`GenericQueue`]'s. The `Ord` comparisons run under the queue's lock, so they should
/// be cheap, and must not touch the queue.
///
/// ```
/// use std::cmp::Reverse;
/// use flotilla_thread::PriorityQueue;
///
/// let q = PriorityQueue::new();
/// q.put((5, "low")).unwrap();
/// q.put((1, "urgent")).unwrap();
/// q.put((3, "normal")).unwrap();
/// assert_eq!(q.get(), Ok((1, "urgent")));
///
/// let max_first = PriorityQueue::new();
/// for n in [2, 9, 4] {
///     max_first.put(Reverse(n)).unwrap();
/// }
/// assert_eq!(max_first.get().map(|Reverse(n)| n), Ok(9));
/// ```
pub type PriorityQueue<T> = GenericQueue<Priority<T>>;

/// A thread-safe queue, closable, bounded or not, with the order of its [`Store`] `S`.
///
/// Use it as [`Queue`], [`LifoQueue`] or [`PriorityQueue`]; name `GenericQueue` only to
/// bring your own [`Store`]. A `GenericQueue` is a handle: clones share one queue, and
/// the queue lives until its last handle is dropped. It is [`Send`] and [`Sync`] when
/// its items are [`Send`].
///
/// Dropping handles does not close the queue: consumers iterating it end only after
/// [`close`](Self::close).
///
/// ```
/// use std::thread;
/// use flotilla_thread::Queue;
///
/// let q = Queue::new();
/// let workers: Vec<_> = (0..2)
///     .map(|_| {
///         let q = q.clone();
///         thread::spawn(move || {
///             let mut sum = 0;
///             for n in &q {
///                 sum += n;
///                 q.task_done().unwrap();
///             }
///             sum
///         })
///     })
///     .collect();
/// for n in 1..=100 {
///     q.put(n).unwrap();
/// }
/// q.join(); // every item has been taken and marked done
/// q.close(); // the workers' loops end
/// let total: i32 = workers.into_iter().map(|w| w.join().unwrap()).sum();
/// assert_eq!(total, 5050);
/// ```
///
/// Items that may not cross threads make a queue that may not either:
///
/// ```compile_fail
/// use std::rc::Rc;
/// use flotilla_thread::Queue;
///
/// let q = Queue::new();
/// q.put(Rc::new(1)).unwrap();
/// std::thread::spawn(move || q.get()); // `Rc` is not `Send`
/// ```
pub struct GenericQueue<S> {
    shared: Arc<Shared<S>>,
}

struct Shared<S> {
    state: Mutex<State<S>>,
    /// Getters wait here for an item (or for `closed`).
    not_empty: Condvar,
    /// Putters wait here for room (or for `closed`). Only bounded queues use it.
    not_full: Condvar,
    /// Joiners wait here for `unfinished == 0`.
    all_done: Condvar,
    /// `None` for unbounded. Never `Some(0)`.
    maxsize: Option<usize>,
}

struct State<S> {
    store: S,
    closed: bool,
    unfinished: usize,
    getters: usize,
    putters: usize,
    joiners: usize,
}

impl<S> State<S> {
    fn is_full(&self, maxsize: Option<usize>) -> bool
    where
        S: Store,
    {
        maxsize.is_some_and(|max| self.store.len() >= max)
    }
}

impl<S: Store + Default> GenericQueue<S> {
    /// Creates an unbounded queue: [`put`](Self::put) never waits.
    ///
    /// ```
    /// use flotilla_thread::Queue;
    ///
    /// let q = Queue::new();
    /// q.put("hello").unwrap();
    /// assert_eq!(q.maxsize(), None);
    /// ```
    pub fn new() -> Self {
        Self::with_maxsize(None)
    }

    /// Creates a queue that holds at most `maxsize` items: [`put`](Self::put) waits while
    /// it is full. A `maxsize` of zero means unbounded, as Python's `Queue(maxsize=0)`
    /// (a queue of zero places could never take an item).
    ///
    /// ```
    /// use flotilla_thread::Queue;
    ///
    /// let q = Queue::bounded(1);
    /// q.put(1).unwrap();
    /// assert!(q.is_full());
    /// assert!(q.try_put(2).unwrap_err().is_full());
    /// ```
    pub fn bounded(maxsize: usize) -> Self {
        Self::with_maxsize((maxsize > 0).then_some(maxsize))
    }

    fn with_maxsize(maxsize: Option<usize>) -> Self {
        GenericQueue {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    store: S::default(),
                    closed: false,
                    unfinished: 0,
                    getters: 0,
                    putters: 0,
                    joiners: 0,
                }),
                not_empty: Condvar::new(),
                not_full: Condvar::new(),
                all_done: Condvar::new(),
                maxsize,
            }),
        }
    }
}

impl<S: Store> GenericQueue<S> {
    /// Puts `item`, waiting while the queue is full.
    ///
    /// Fails, handing `item` back, if the queue is closed, or is closed while waiting.
    ///
    /// ```
    /// use flotilla_thread::Queue;
    ///
    /// let q = Queue::new();
    /// q.put(1).unwrap();
    /// q.close();
    /// assert_eq!(q.put(2).unwrap_err().into_inner(), 2);
    /// ```
    pub fn put(&self, item: S::Item) -> Result<(), PutError<S::Item>> {
        self.put_until(item, Deadline::NEVER)
            .map_err(|err| match err {
                PutTimeoutError::Closed(item) => PutError::Closed(item),
                PutTimeoutError::Timeout(_) => unreachable!("a put without a deadline timed out"),
            })
    }

    /// Puts `item`, waiting at most `timeout` for room.
    ///
    /// Fails, handing `item` back, with [`PutTimeoutError::Timeout`] if the queue is still
    /// full when the time is up, or [`PutTimeoutError::Closed`] if it is or gets closed.
    ///
    /// ```
    /// use std::time::Duration;
    /// use flotilla_thread::{PutTimeoutError, Queue};
    ///
    /// let q = Queue::bounded(1);
    /// q.put_timeout("a", Duration::from_secs(1)).unwrap();
    /// let err = q.put_timeout("b", Duration::from_millis(10)).unwrap_err();
    /// assert_eq!(err, PutTimeoutError::Timeout("b"));
    /// ```
    pub fn put_timeout(
        &self,
        item: S::Item,
        timeout: Duration,
    ) -> Result<(), PutTimeoutError<S::Item>> {
        self.put_until(item, Deadline::after(Some(timeout)))
    }

    /// Puts `item`, waiting for room until `deadline` at the latest.
    ///
    /// The same as [`put_timeout`](Self::put_timeout), for callers that share one
    /// deadline between several calls.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use flotilla_thread::Queue;
    ///
    /// let q = Queue::bounded(2);
    /// let deadline = Instant::now() + Duration::from_millis(10);
    /// let refused: Vec<_> = (0..3)
    ///     .filter_map(|i| q.put_deadline(i, deadline).err())
    ///     .map(|err| err.into_inner())
    ///     .collect();
    /// assert_eq!(refused, [2]);
    /// ```
    pub fn put_deadline(
        &self,
        item: S::Item,
        deadline: Instant,
    ) -> Result<(), PutTimeoutError<S::Item>> {
        self.put_until(item, Deadline::at(deadline))
    }

    /// Puts `item` if there is room now, without waiting: Python's `put_nowait`.
    ///
    /// Fails, handing `item` back, with [`TryPutError::Full`] or [`TryPutError::Closed`].
    ///
    /// ```
    /// use flotilla_thread::{Queue, TryPutError};
    ///
    /// let q = Queue::bounded(1);
    /// assert_eq!(q.try_put('a'), Ok(()));
    /// assert_eq!(q.try_put('b'), Err(TryPutError::Full('b')));
    /// ```
    #[doc(alias = "put_nowait")]
    pub fn try_put(&self, item: S::Item) -> Result<(), TryPutError<S::Item>> {
        let state = self.lock();
        if state.closed {
            return Err(TryPutError::Closed(item));
        }
        if state.is_full(self.shared.maxsize) {
            return Err(TryPutError::Full(item));
        }
        self.push_and_wake(state, item);
        Ok(())
    }

    fn put_until(&self, item: S::Item, deadline: Deadline) -> Result<(), PutTimeoutError<S::Item>> {
        let mut state = self.lock();
        loop {
            // Checked before the deadline after every wake-up, the last one included:
            // close or room may have come with the timeout.
            if state.closed {
                return Err(PutTimeoutError::Closed(item));
            }
            if !state.is_full(self.shared.maxsize) {
                self.push_and_wake(state, item);
                return Ok(());
            }
            if deadline.expired() {
                return Err(PutTimeoutError::Timeout(item));
            }
            state.putters += 1;
            state = deadline.wait(&self.shared.not_full, state);
            state.putters -= 1;
        }
    }

    /// Pushes under the lock, then wakes one waiting getter after releasing it.
    fn push_and_wake(&self, mut state: MutexGuard<'_, State<S>>, item: S::Item) {
        // Count the task only once the push has returned: a panicking `Ord` then costs
        // the count nothing.
        state.store.push(item);
        state.unfinished += 1;
        let wake = state.getters > 0;
        drop(state);
        if wake {
            self.shared.not_empty.notify_one();
        }
    }

    /// Takes the next item, waiting while the queue is empty.
    ///
    /// Once the queue is closed, the items already in it still come out; then it fails
    /// with [`GetError`], at once and every time after, instead of waiting forever.
    ///
    /// ```
    /// use std::thread;
    /// use flotilla_thread::{GetError, Queue};
    ///
    /// let q = Queue::new();
    /// let getter = thread::spawn({
    ///     let q = q.clone();
    ///     move || (q.get(), q.get())
    /// });
    /// q.put("only one").unwrap();
    /// q.close(); // wakes the getter's second, otherwise endless, wait
    /// assert_eq!(getter.join().unwrap(), (Ok("only one"), Err(GetError::Closed)));
    /// ```
    pub fn get(&self) -> Result<S::Item, GetError> {
        self.get_until(Deadline::NEVER).map_err(|err| match err {
            GetTimeoutError::Closed => GetError::Closed,
            GetTimeoutError::Timeout => unreachable!("a get without a deadline timed out"),
        })
    }

    /// Takes the next item, waiting at most `timeout` for one.
    ///
    /// Fails with [`GetTimeoutError::Timeout`] if the queue is still empty when the time is
    /// up, or [`GetTimeoutError::Closed`] if it is closed and drained.
    ///
    /// ```
    /// use std::time::Duration;
    /// use flotilla_thread::{GetTimeoutError, Queue};
    ///
    /// let q = Queue::new();
    /// q.put(1).unwrap();
    /// assert_eq!(q.get_timeout(Duration::from_secs(1)), Ok(1));
    /// assert_eq!(q.get_timeout(Duration::from_millis(10)), Err(GetTimeoutError::Timeout));
    /// ```
    pub fn get_timeout(&self, timeout: Duration) -> Result<S::Item, GetTimeoutError> {
        self.get_until(Deadline::after(Some(timeout)))
    }

    /// Takes the next item, waiting for one until `deadline` at the latest.
    ///
    /// The same as [`get_timeout`](Self::get_timeout), for callers that share one deadline
    /// between several calls.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use flotilla_thread::Queue;
    ///
    /// let q = Queue::new();
    /// q.put(1).unwrap();
    /// let deadline = Instant::now() + Duration::from_millis(10);
    /// assert_eq!(q.get_deadline(deadline), Ok(1));
    /// assert!(q.get_deadline(deadline).unwrap_err().is_timeout());
    /// ```
    pub fn get_deadline(&self, deadline: Instant) -> Result<S::Item, GetTimeoutError> {
        self.get_until(Deadline::at(deadline))
    }

    /// Takes the next item if there is one now, without waiting: Python's `get_nowait`.
    ///
    /// Fails with [`TryGetError::Empty`], or [`TryGetError::Closed`] if the queue is closed
    /// and drained.
    ///
    /// ```
    /// use flotilla_thread::{Queue, TryGetError};
    ///
    /// let q = Queue::new();
    /// assert_eq!(q.try_get(), Err(TryGetError::Empty));
    /// q.put(1).unwrap();
    /// assert_eq!(q.try_get(), Ok(1));
    /// ```
    #[doc(alias = "get_nowait")]
    pub fn try_get(&self) -> Result<S::Item, TryGetError> {
        let mut state = self.lock();
        match state.store.pop() {
            Some(item) => {
                self.wake_putter(state);
                Ok(item)
            }
            None if state.closed => Err(TryGetError::Closed),
            None => Err(TryGetError::Empty),
        }
    }

    fn get_until(&self, deadline: Deadline) -> Result<S::Item, GetTimeoutError> {
        let mut state = self.lock();
        loop {
            // An item first, even when the time is up or the queue closed: a getter woken
            // for an item must take it, or that wake-up would be lost.
            if let Some(item) = state.store.pop() {
                self.wake_putter(state);
                return Ok(item);
            }
            if state.closed {
                return Err(GetTimeoutError::Closed);
            }
            if deadline.expired() {
                return Err(GetTimeoutError::Timeout);
            }
            state.getters += 1;
            state = deadline.wait(&self.shared.not_empty, state);
            state.getters -= 1;
        }
    }

    /// After a pop: releases the lock, then wakes one waiting putter, if any.
    fn wake_putter(&self, state: MutexGuard<'_, State<S>>) {
        let wake = state.putters > 0;
        drop(state);
        if wake {
            self.shared.not_full.notify_one();
        }
    }

    /// Marks one item taken from the queue as fully processed: Python's `task_done`.
    ///
    /// Every [`put`](Self::put) adds one unfinished task; every `task_done` removes one;
    /// [`join`](Self::join) waits until none is left. Call it once per item you got, when
    /// you are done with it.
    ///
    /// Fails with [`TaskDoneError`], changing nothing, if there is no unfinished task:
    /// it was called more times than items were put.
    ///
    /// ```
    /// use flotilla_thread::Queue;
    ///
    /// let q = Queue::new();
    /// q.put("job").unwrap();
    /// let job = q.get().unwrap();
    /// // ... process the job ...
    /// q.task_done().unwrap();
    /// assert!(q.task_done().is_err()); // nothing left to mark
    /// ```
    pub fn task_done(&self) -> Result<(), TaskDoneError> {
        let mut state = self.lock();
        if state.unfinished == 0 {
            return Err(TaskDoneError);
        }
        state.unfinished -= 1;
        let wake = state.unfinished == 0 && state.joiners > 0;
        drop(state);
        if wake {
            self.shared.all_done.notify_all();
        }
        Ok(())
    }

    /// Waits until every item ever put has been marked done with
    /// [`task_done`](Self::task_done): Python's `join`.
    ///
    /// Returns at once when no task is unfinished. Closing the queue does not end the
    /// wait; marking the tasks done does.
    ///
    /// ```
    /// use std::thread;
    /// use flotilla_thread::Queue;
    ///
    /// let q = Queue::new();
    /// q.put(1).unwrap();
    /// let worker = thread::spawn({
    ///     let q = q.clone();
    ///     move || {
    ///         q.get().unwrap();
    ///         q.task_done().unwrap();
    ///     }
    /// });
    /// q.join();
    /// assert_eq!(q.unfinished_tasks(), 0);
    /// worker.join().unwrap();
    /// ```
    pub fn join(&self) {
        let done = self.join_until(Deadline::NEVER);
        debug_assert!(done, "a join without a deadline timed out");
    }

    /// Waits at most `timeout` until every item put has been marked done; returns whether
    /// they all were.
    ///
    /// ```
    /// use std::time::Duration;
    /// use flotilla_thread::Queue;
    ///
    /// let q = Queue::new();
    /// q.put(1).unwrap();
    /// assert!(!q.join_timeout(Duration::from_millis(10)));
    /// q.get().unwrap();
    /// q.task_done().unwrap();
    /// assert!(q.join_timeout(Duration::from_millis(10)));
    /// ```
    #[must_use = "`false` means some tasks are still unfinished"]
    pub fn join_timeout(&self, timeout: Duration) -> bool {
        self.join_until(Deadline::after(Some(timeout)))
    }

    /// Waits until `deadline` at the latest for every item put to be marked done;
    /// returns whether they all were.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use flotilla_thread::Queue;
    ///
    /// let q = Queue::<()>::new();
    /// assert!(q.join_deadline(Instant::now() + Duration::from_millis(10)));
    /// ```
    #[must_use = "`false` means some tasks are still unfinished"]
    pub fn join_deadline(&self, deadline: Instant) -> bool {
        self.join_until(Deadline::at(deadline))
    }

    fn join_until(&self, deadline: Deadline) -> bool {
        let mut state = self.lock();
        while state.unfinished > 0 {
            if deadline.expired() {
                return false;
            }
            state.joiners += 1;
            state = deadline.wait(&self.shared.all_done, state);
            state.joiners -= 1;
        }
        true
    }

    /// Closes the queue: no more items go in, the ones in it still come out.
    ///
    /// Afterwards every put fails with `Closed`, handing its item back; gets take the
    /// items left and then fail with `Closed` instead of waiting; iterators end once the
    /// queue is drained. Threads waiting in a put or get wake up to this. Closing twice
    /// does nothing more. Python 3.13 calls this `shutdown()`.
    ///
    /// ```
    /// use flotilla_thread::Queue;
    ///
    /// let q = Queue::new();
    /// q.put(1).unwrap();
    /// q.close();
    /// assert!(q.is_closed());
    /// assert!(q.put(2).is_err());
    /// assert_eq!(q.iter().collect::<Vec<_>>(), [1]);
    /// ```
    #[doc(alias = "shutdown")]
    pub fn close(&self) {
        let mut state = self.lock();
        if state.closed {
            return;
        }
        state.closed = true;
        self.wake_after_close(state, false);
    }

    /// Wakes, after a close, everyone who waits in a put or a get (and in a `join`, when
    /// `joiners` says they should), once the lock is released.
    fn wake_after_close(&self, state: MutexGuard<'_, State<S>>, joiners: bool) {
        let wake_getters = state.getters > 0;
        let wake_putters = state.putters > 0;
        let wake_joiners = joiners && state.joiners > 0;
        drop(state);
        if wake_getters {
            self.shared.not_empty.notify_all();
        }
        if wake_putters {
            self.shared.not_full.notify_all();
        }
        if wake_joiners {
            self.shared.all_done.notify_all();
        }
    }

    /// Closes the queue and empties it at once: Python 3.13's `shutdown(immediate=True)`.
    ///
    /// Like [`close`](Self::close), and the items still in the queue are taken out and
    /// handed back, in the order gets would have taken them, instead of being left for
    /// the getters: threads waiting in a get wake up to `Closed` at once. Each item taken
    /// counts as done, so [`join`](Self::join) returns once the items already handed
    /// out are marked done (Python's `unfinished_tasks` drops the same way).
    ///
    /// ```
    /// use flotilla_thread::Queue;
    ///
    /// let q = Queue::new();
    /// q.put(1).unwrap();
    /// q.put(2).unwrap();
    /// assert_eq!(q.close_immediately(), [1, 2]);
    /// assert!(q.is_closed() && q.is_empty());
    /// assert!(q.try_get().unwrap_err().is_closed());
    /// q.join(); // the dropped items count as done
    /// ```
    #[doc(alias = "shutdown")]
    pub fn close_immediately(&self) -> Vec<S::Item> {
        let mut state = self.lock();
        state.closed = true;
        let mut taken = Vec::with_capacity(state.store.len());
        while let Some(item) = state.store.pop() {
            taken.push(item);
        }
        state.unfinished = state.unfinished.saturating_sub(taken.len());
        let all_done = state.unfinished == 0;
        self.wake_after_close(state, all_done);
        taken
    }

    /// Whether [`close`](Self::close) has been called.
    ///
    /// ```
    /// use flotilla_thread::Queue;
    ///
    /// let q = Queue::<()>::new();
    /// assert!(!q.is_closed());
    /// q.close();
    /// assert!(q.is_closed());
    /// ```
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// How many items are in the queue: Python's `qsize`.
    ///
    /// Like every size query on a shared queue, the answer may be stale by the time it
    /// is read.
    ///
    /// ```
    /// use flotilla_thread::Queue;
    ///
    /// let q = Queue::new();
    /// q.put('x').unwrap();
    /// assert_eq!(q.len(), 1);
    /// ```
    #[doc(alias = "qsize")]
    pub fn len(&self) -> usize {
        self.lock().store.len()
    }

    /// Whether the queue holds no items: Python's `empty`.
    ///
    /// ```
    /// use flotilla_thread::Queue;
    ///
    /// let q = Queue::new();
    /// assert!(q.is_empty());
    /// q.put(()).unwrap();
    /// assert!(!q.is_empty());
    /// ```
    #[doc(alias = "empty")]
    pub fn is_empty(&self) -> bool {
        self.lock().store.is_empty()
    }

    /// Whether the queue holds [`maxsize`](Self::maxsize) items, so a put would wait:
    /// Python's `full`. Always `false` for an unbounded queue.
    ///
    /// ```
    /// use flotilla_thread::Queue;
    ///
    /// let q = Queue::bounded(1);
    /// assert!(!q.is_full());
    /// q.put(()).unwrap();
    /// assert!(q.is_full());
    /// ```
    #[doc(alias = "full")]
    pub fn is_full(&self) -> bool {
        self.lock().is_full(self.shared.maxsize)
    }

    /// The most items the queue holds, or `None` if it is unbounded.
    ///
    /// ```
    /// use flotilla_thread::Queue;
    ///
    /// assert_eq!(Queue::<()>::bounded(8).maxsize(), Some(8));
    /// assert_eq!(Queue::<()>::new().maxsize(), None);
    /// ```
    pub fn maxsize(&self) -> Option<usize> {
        self.shared.maxsize
    }

    /// How many items were put but not yet marked [`task_done`](Self::task_done): what
    /// [`join`](Self::join) waits on. Python's `unfinished_tasks` attribute.
    ///
    /// ```
    /// use flotilla_thread::Queue;
    ///
    /// let q = Queue::new();
    /// q.put(1).unwrap();
    /// q.get().unwrap();
    /// assert_eq!(q.unfinished_tasks(), 1); // taken, but not marked done
    /// ```
    pub fn unfinished_tasks(&self) -> usize {
        self.lock().unfinished
    }

    /// An iterator that [`get`](Self::get)s item after item, waiting for each, and ends
    /// once the queue is closed and drained. `for item in &queue` does the same.
    ///
    /// This is how worker threads end without sentinel values: close the queue.
    ///
    /// ```
    /// use std::thread;
    /// use flotilla_thread::Queue;
    ///
    /// let q = Queue::new();
    /// let worker = thread::spawn({
    ///     let q = q.clone();
    ///     move || q.iter().map(|s: &str| s.len()).sum::<usize>()
    /// });
    /// q.put("four").unwrap();
    /// q.put("three").unwrap();
    /// q.close();
    /// assert_eq!(worker.join().unwrap(), 9);
    /// ```
    pub fn iter(&self) -> Iter<'_, S> {
        Iter::new(self)
    }

    /// An iterator over the items in the queue now: it [`try_get`](Self::try_get)s until
    /// the queue is empty, never waiting.
    ///
    /// ```
    /// use flotilla_thread::Queue;
    ///
    /// let q = Queue::new();
    /// q.put(1).unwrap();
    /// q.put(2).unwrap();
    /// assert_eq!(q.try_iter().collect::<Vec<_>>(), [1, 2]);
    /// assert!(q.is_empty());
    /// ```
    pub fn try_iter(&self) -> TryIter<'_, S> {
        TryIter::new(self)
    }

    fn lock(&self) -> MutexGuard<'_, State<S>> {
        // No invariant of ours spans a panic: counters change only after the store
        // method that could panic has returned.
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl<S> Clone for GenericQueue<S> {
    /// Another handle to the same queue.
    ///
    /// ```
    /// use flotilla_thread::Queue;
    ///
    /// let a = Queue::new();
    /// let b = a.clone();
    /// a.put(1).unwrap();
    /// assert_eq!(b.get(), Ok(1));
    /// ```
    fn clone(&self) -> Self {
        GenericQueue {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: Store + Default> Default for GenericQueue<S> {
    /// An unbounded queue, as [`new`](Self::new).
    ///
    /// ```
    /// use flotilla_thread::Queue;
    ///
    /// let q: Queue<u8> = Default::default();
    /// assert_eq!(q.maxsize(), None);
    /// ```
    fn default() -> Self {
        Self::new()
    }
}

impl<S: Store> fmt::Debug for GenericQueue<S> {
    /// Shows the queue's sizes and state, not its items (which need not be `Debug`).
    ///
    /// ```
    /// use flotilla_thread::Queue;
    ///
    /// let q = Queue::bounded(4);
    /// q.put(1).unwrap();
    /// assert_eq!(
    ///     format!("{q:?}"),
    ///     "GenericQueue { len: 1, maxsize: Some(4), unfinished_tasks: 1, closed: false }",
    /// );
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("GenericQueue")
            .field("len", &state.store.len())
            .field("maxsize", &self.shared.maxsize)
            .field("unfinished_tasks", &state.unfinished)
            .field("closed", &state.closed)
            .finish()
    }
}

impl<'a, S: Store> IntoIterator for &'a GenericQueue<S> {
    type Item = S::Item;
    type IntoIter = Iter<'a, S>;

    /// The same as [`GenericQueue::iter`]: waits for each item, ends once the queue is
    /// closed and drained.
    ///
    /// ```
    /// use flotilla_thread::Queue;
    ///
    /// let q = Queue::new();
    /// q.put(1).unwrap();
    /// q.close();
    /// for item in &q {
    ///     assert_eq!(item, 1);
    /// }
    /// ```
    fn into_iter(self) -> Iter<'a, S> {
        self.iter()
    }
}
