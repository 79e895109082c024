//! [`Future`], the handle to a task's eventual result, and [`Completer`], the side an
//! executor keeps to report that result.
//!
//! # State machine
//!
//! ```text
//!            set_running_or_notify_cancel          complete
//!   PENDING ─────────────────────────────> RUNNING ─────────> FINISHED_OK | FINISHED_ERR
//!      │
//!      │ cancel (Future) / cancel (Completer) / complete (a task that never ran)
//!      └────────────────────────────────> CANCELLED | FINISHED_*
//! ```
//!
//! The three terminal states are final: nothing leaves them, and the outcome slot is
//! written exactly once, in the same critical section that enters one of them.
//!
//! # Who touches what
//!
//! - `state` enters a terminal state only while holding `inner` (by compare-exchange);
//!   PENDING → RUNNING is a lock-free compare-exchange by the executor, so a racing
//!   `cancel` and `set_running_or_notify_cancel` have exactly one winner. The state is
//!   read without the lock (with `Acquire`) for the cheap `done()`-style checks and the
//!   spin before parking; whoever then needs the outcome takes the lock, which the
//!   terminal transition holds until the slot is filled.
//! - `inner.outcome` is written once by the transition to a terminal state; after that
//!   it is read (cloned) by `result` and moved out by `into_result`/`.await`, always under
//!   the lock.
//! - `inner.callbacks`, `wakers` and `watchers` are appended to while the future is not
//!   done, and drained by the terminal transition. They are invoked after the lock is
//!   released: no user code, waker or callback ever runs under the lock.
//! - Each `.await` (and each [`Completion`]) keeps the key of the one waker it
//!   registered, replaces it in place when polled with another waker, and removes it
//!   when dropped unfinished: an awaiting side that gives up (a `select!` that took
//!   another branch, an aborted task) leaves nothing behind in a future that lives on.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crossbeam_utils::Backoff;

use crate::deadline::Deadline;
use crate::error::TaskError;
use crate::wait::Signal;

const PENDING: u8 = 0;
const RUNNING: u8 = 1;
const FINISHED_OK: u8 = 2;
const FINISHED_ERR: u8 = 3;
const CANCELLED: u8 = 4;

/// Where a [`Future`] is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Submitted, not started; it can still be cancelled.
    Pending,
    /// A worker is running the task; it can no longer be cancelled.
    Running,
    /// The task ended, with a value or a failure.
    Finished,
    /// The future was cancelled before the task started.
    Cancelled,
}

/// Which task a [`Future`] stands for: equal for every clone of a future and for its
/// [`Completer`], different for different tasks, for as long as any of them is alive.
///
/// Python's futures are hashable by identity; this is that identity, for keying maps of
/// futures or telling an executor which task is meant (`ProcessPoolExecutor::stop`).
///
/// ```
/// use flotilla_core::Completer;
///
/// let (completer, fut) = Completer::<u8>::new();
/// let (_, other) = Completer::<u8>::new();
/// assert_eq!(fut.id(), fut.clone().id());
/// assert_eq!(fut.id(), completer.id());
/// assert_ne!(fut.id(), other.id());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FutureId(usize);

/// A done callback, as given to [`Future::add_done_callback`].
type Callback<T> = Box<dyn FnOnce(&Future<T>) + Send + 'static>;

enum Slot<T> {
    Empty,
    Ready(Result<T, TaskError>),
    Taken,
}

struct Inner<T> {
    outcome: Slot<T>,
    callbacks: Vec<Callback<T>>,
    /// Registered wakers with the key their registrant keeps (see [`WakerSlot`]).
    wakers: Vec<(u64, Waker)>,
    /// The key the next waker registration gets.
    next_waker: u64,
    watchers: Vec<(Arc<Signal>, usize)>,
    /// Threads parked on `Shared::cond`; the completing side skips the notify when zero.
    sleepers: usize,
}

struct Shared<T> {
    state: AtomicU8,
    inner: Mutex<Inner<T>>,
    cond: Condvar,
}

/// The eventual result of a task: Python's `concurrent.futures.Future`.
///
/// A `Future` is a cheap, cloneable handle; every clone sees the same task. It is
/// returned by an executor's `submit`, and completed by the executor through the
/// matching [`Completer`]. Its result can be waited for with a timeout
/// ([`result`](Future::result)), polled ([`done`](Future::done)), cancelled while it has
/// not started ([`cancel`](Future::cancel)), observed by callbacks
/// ([`add_done_callback`](Future::add_done_callback)), waited for together with other
/// futures ([`wait`](crate::wait()), [`as_completed`](crate::as_completed())), and
/// `.await`ed from any async code, with no runtime of its own.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use flotilla_core::{Completer, Future};
///
/// let (completer, fut) = Completer::new();
/// std::thread::spawn(move || {
///     if completer.set_running_or_notify_cancel() {
///         completer.set_result(6 * 7);
///     }
/// });
/// assert_eq!(fut.result(Some(Duration::from_secs(10))).unwrap(), 42);
/// assert!(fut.done());
/// ```
pub struct Future<T> {
    shared: Arc<Shared<T>>,
}

/// The completing side of a [`Future`], owned by whatever runs the task.
///
/// Executor authors create one with [`Completer::new`], hand the [`Future`] to the user,
/// and when the task is picked up call
/// [`set_running_or_notify_cancel`](Completer::set_running_or_notify_cancel): `false`
/// means the user cancelled it, and the task must not run. Then exactly one of
/// [`set_result`](Completer::set_result), [`set_error`](Completer::set_error) or
/// [`complete`](Completer::complete) reports how it ended.
///
/// A `Completer` dropped without completing its future (a worker died, a queue was
/// dropped) fails the future with [`TaskError::Broken`], so no waiter ever hangs on a
/// task that nobody will finish.
pub struct Completer<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, Inner<T>> {
        // User code never runs under this lock, so a poisoned lock can only come from a
        // panic inside this module between consistent states; the data is still valid.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn state(&self) -> u8 {
        self.state.load(Ordering::Acquire)
    }

    /// Moves the future to a terminal state with `outcome`, if its current state is one
    /// that `from` accepts. Returns whether the transition happened.
    fn finish(self: &Arc<Self>, from: fn(u8) -> bool, outcome: Result<T, TaskError>) -> bool {
        let terminal = match &outcome {
            Ok(_) => FINISHED_OK,
            Err(TaskError::Cancelled) => CANCELLED,
            Err(_) => FINISHED_ERR,
        };
        let mut inner = self.lock();
        // Only this lock's holder enters a terminal state, but PENDING → RUNNING happens
        // without the lock (see `set_running_or_notify_cancel`), so the state may move
        // under us once: a compare-exchange settles which transition won.
        let mut current = self.state.load(Ordering::Acquire);
        loop {
            if !from(current) {
                return false;
            }
            match self.state.compare_exchange(
                current,
                terminal,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(now) => current = now,
            }
        }
        // Readers that saw the terminal state take this lock before reading the slot,
        // so they find it filled.
        inner.outcome = Slot::Ready(outcome);
        let callbacks = std::mem::take(&mut inner.callbacks);
        let wakers = std::mem::take(&mut inner.wakers);
        let watchers = std::mem::take(&mut inner.watchers);
        let sleepers = inner.sleepers > 0;
        drop(inner);

        if sleepers {
            self.cond.notify_all();
        }
        for (signal, index) in watchers {
            signal.fire(index);
        }
        for (_, waker) in wakers {
            waker.wake();
        }
        if !callbacks.is_empty() {
            let fut = Future {
                shared: Arc::clone(self),
            };
            for callback in callbacks {
                fut.run_callback(callback);
            }
        }
        true
    }

    /// Blocks until the future is done or `timeout` has passed; true when done.
    fn wait_done(&self, timeout: Option<Duration>) -> bool {
        if is_done(self.state()) {
            return true;
        }
        if timeout != Some(Duration::ZERO) {
            // A hand-off between two CPUs costs tens of microseconds when the waiter has
            // to be woken from a park; most short tasks finish within a brief spin.
            let backoff = Backoff::new();
            while !backoff.is_completed() {
                backoff.snooze();
                if is_done(self.state()) {
                    return true;
                }
            }
        }
        let deadline = Deadline::after(timeout);
        let mut inner = self.lock();
        while !is_done(self.state.load(Ordering::Relaxed)) {
            if deadline.expired() {
                return false;
            }
            inner.sleepers += 1;
            inner = deadline.wait(&self.cond, inner);
            inner.sleepers -= 1;
        }
        true
    }

    fn take_outcome(inner: &mut Inner<T>) -> Result<T, TaskError> {
        match std::mem::replace(&mut inner.outcome, Slot::Taken) {
            Slot::Ready(outcome) => outcome,
            Slot::Taken => Err(TaskError::ResultTaken),
            // Only called once the state is terminal, and the terminal transition fills
            // the slot in the same critical section.
            Slot::Empty => unreachable!("a done future always has an outcome"),
        }
    }
}

fn is_done(state: u8) -> bool {
    state >= FINISHED_OK
}

impl<T> Future<T> {
    fn with_state(state: u8, outcome: Slot<T>) -> Self {
        Future {
            shared: Arc::new(Shared {
                state: AtomicU8::new(state),
                inner: Mutex::new(Inner {
                    outcome,
                    callbacks: Vec::new(),
                    wakers: Vec::new(),
                    next_waker: 0,
                    watchers: Vec::new(),
                    sleepers: 0,
                }),
                cond: Condvar::new(),
            }),
        }
    }

    /// A future that is already finished with `value`.
    ///
    /// ```
    /// let fut = flotilla_core::Future::ready("done");
    /// assert_eq!(fut.result(None).unwrap(), "done");
    /// ```
    pub fn ready(value: T) -> Self {
        Self::with_state(FINISHED_OK, Slot::Ready(Ok(value)))
    }

    /// A future that is already finished with `error` (or cancelled, when `error` is
    /// [`TaskError::Cancelled`]).
    pub fn failed(error: TaskError) -> Self {
        let state = match error {
            TaskError::Cancelled => CANCELLED,
            _ => FINISHED_ERR,
        };
        Self::with_state(state, Slot::Ready(Err(error)))
    }

    /// Which task this future stands for; see [`FutureId`].
    pub fn id(&self) -> FutureId {
        FutureId(Arc::as_ptr(&self.shared).addr())
    }

    /// Where the future is in its life.
    pub fn state(&self) -> State {
        match self.shared.state() {
            PENDING => State::Pending,
            RUNNING => State::Running,
            CANCELLED => State::Cancelled,
            _ => State::Finished,
        }
    }

    /// True once the task finished or the future was cancelled.
    pub fn done(&self) -> bool {
        is_done(self.shared.state())
    }

    /// True while a worker is running the task.
    pub fn running(&self) -> bool {
        self.shared.state() == RUNNING
    }

    /// True when the future was cancelled before its task started.
    pub fn cancelled(&self) -> bool {
        self.shared.state() == CANCELLED
    }

    /// True when the task has finished with a failure: it panicked, returned `Err`, or
    /// was lost with its worker — what Python calls a done future with an exception,
    /// and what [`ReturnWhen::FirstException`](crate::ReturnWhen) stops on. False while
    /// it runs, after a success, and after a cancellation. Never waits.
    ///
    /// ```
    /// use flotilla_core::{Future, TaskError};
    ///
    /// assert!(Future::<u8>::failed(TaskError::ShutDown).is_failed());
    /// assert!(!Future::<u8>::failed(TaskError::Cancelled).is_failed());
    /// assert!(!Future::ready(1).is_failed());
    /// ```
    pub fn is_failed(&self) -> bool {
        self.shared.state() == FINISHED_ERR
    }

    /// Cancels the task if it has not started yet.
    ///
    /// Returns true when the future is (now or already) cancelled, false when the task is
    /// running or finished, as Python's `Future.cancel`. To stop a task that is already
    /// running, give it a [`CancelToken`](crate::CancelToken) to check.
    ///
    /// ```
    /// use flotilla_core::{Completer, TaskError};
    ///
    /// let (completer, fut) = Completer::<()>::new();
    /// assert!(fut.cancel());
    /// assert!(!completer.set_running_or_notify_cancel()); // the executor skips it
    /// assert!(matches!(fut.result(None), Err(TaskError::Cancelled)));
    /// ```
    pub fn cancel(&self) -> bool {
        match self.shared.state() {
            CANCELLED => return true,
            RUNNING | FINISHED_OK | FINISHED_ERR => return false,
            _ => {}
        }
        self.shared
            .finish(|s| s == PENDING, Err(TaskError::Cancelled))
            || self.cancelled()
    }

    /// Waits up to `timeout` (forever when `None`) and returns a clone of the value.
    ///
    /// Fails with the task's failure, [`TaskError::Cancelled`], or
    /// [`TaskError::TimedOut`] when the time ran out first (the task goes on). The clone
    /// is made under the future's internal lock: keep `Clone` impls cheap and
    /// non-blocking. For values that are not `Clone`, use
    /// [`into_result`](Future::into_result).
    pub fn result(&self, timeout: Option<Duration>) -> Result<T, TaskError>
    where
        T: Clone,
    {
        if !self.shared.wait_done(timeout) {
            return Err(TaskError::TimedOut);
        }
        match &self.shared.lock().outcome {
            Slot::Ready(outcome) => outcome.clone(),
            Slot::Taken => Err(TaskError::ResultTaken),
            Slot::Empty => unreachable!("a done future always has an outcome"),
        }
    }

    /// Waits up to `timeout` and moves the value out of the future.
    ///
    /// Needs no `Clone`. Other handles to the same future keep seeing it as done, but
    /// `result` on them then fails with [`TaskError::ResultTaken`]. On
    /// [`TaskError::TimedOut`] nothing is taken, but the handle is consumed: keep a clone
    /// if you want to wait again.
    ///
    /// ```
    /// let fut = flotilla_core::Future::ready(vec![1, 2, 3]);
    /// assert_eq!(fut.into_result(None).unwrap(), vec![1, 2, 3]);
    /// ```
    pub fn into_result(self, timeout: Option<Duration>) -> Result<T, TaskError> {
        if !self.shared.wait_done(timeout) {
            return Err(TaskError::TimedOut);
        }
        Shared::take_outcome(&mut self.shared.lock())
    }

    /// Waits up to `timeout` and returns how the task failed, or `None` when it
    /// succeeded: Python's `Future.exception`.
    ///
    /// Like Python, a cancelled future and a timeout are errors of the call itself
    /// ([`TaskError::Cancelled`], [`TaskError::TimedOut`]), not the task's failure.
    ///
    /// ```
    /// use flotilla_core::{Future, TaskError};
    ///
    /// assert!(Future::ready(1).error(None).unwrap().is_none());
    /// let failed = Future::<i32>::failed(TaskError::Panicked { message: "no".into() });
    /// assert!(matches!(failed.error(None), Ok(Some(TaskError::Panicked { .. }))));
    /// ```
    #[doc(alias = "exception")]
    pub fn error(&self, timeout: Option<Duration>) -> Result<Option<TaskError>, TaskError> {
        if !self.shared.wait_done(timeout) {
            return Err(TaskError::TimedOut);
        }
        match &self.shared.lock().outcome {
            Slot::Ready(Ok(_)) => Ok(None),
            Slot::Ready(Err(TaskError::Cancelled)) => Err(TaskError::Cancelled),
            Slot::Ready(Err(e)) => Ok(Some(e.clone())),
            Slot::Taken => Err(TaskError::ResultTaken),
            Slot::Empty => unreachable!("a done future always has an outcome"),
        }
    }

    /// Blocks until the future is done or `timeout` passes; true when it is done.
    pub fn wait(&self, timeout: Option<Duration>) -> bool {
        self.shared.wait_done(timeout)
    }

    /// Calls `callback` with this future once it is done: at once, on this thread, when
    /// it already is; otherwise on the thread that completes or cancels it.
    ///
    /// Callbacks run in the order they were added. A callback that panics is reported
    /// through `tracing` and changes nothing else: the future keeps its outcome, the
    /// other callbacks still run, and the worker that completed it lives on.
    ///
    /// ```
    /// use std::sync::mpsc;
    /// use flotilla_core::Future;
    ///
    /// let (tx, rx) = mpsc::channel();
    /// Future::ready(42).add_done_callback(move |f| tx.send(f.result(None).unwrap()).unwrap());
    /// assert_eq!(rx.recv().unwrap(), 42);
    /// ```
    pub fn add_done_callback<F>(&self, callback: F)
    where
        F: FnOnce(&Future<T>) + Send + 'static,
    {
        let callback: Callback<T> = Box::new(callback);
        if !self.done() {
            let mut inner = self.shared.lock();
            if !is_done(self.shared.state.load(Ordering::Relaxed)) {
                inner.callbacks.push(callback);
                return;
            }
        }
        self.run_callback(callback);
    }

    fn run_callback(&self, callback: Callback<T>) {
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| callback(self))) {
            crate::event!(crate::log::Level::ERROR,
                panic = %crate::error::panic_message(&*payload),
                "a done callback panicked; the future and its executor are unaffected"
            );
        }
    }

    /// Registers `signal` to be fired with `index` when the future is done; false (and
    /// nothing registered) when it already is.
    pub(crate) fn watch(&self, signal: &Arc<Signal>, index: usize) -> bool {
        let mut inner = self.shared.lock();
        if is_done(self.shared.state.load(Ordering::Relaxed)) {
            return false;
        }
        inner.watchers.push((Arc::clone(signal), index));
        true
    }

    pub(crate) fn unwatch(&self, signal: &Arc<Signal>) {
        if self.done() {
            // The terminal transition already drained the watchers.
            return;
        }
        self.shared
            .lock()
            .watchers
            .retain(|(s, _)| !Arc::ptr_eq(s, signal));
    }

    #[cfg(test)]
    pub(crate) fn watcher_count(&self) -> usize {
        self.shared.lock().watchers.len()
    }
}

impl<T> Clone for Future<T> {
    fn clone(&self) -> Self {
        Future {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<T> fmt::Debug for Future<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Future")
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl<T> Completer<T> {
    /// A new pending future and the completer that will finish it.
    pub fn new() -> (Completer<T>, Future<T>) {
        let fut = Future::with_state(PENDING, Slot::Empty);
        let completer = Completer {
            shared: Arc::clone(&fut.shared),
        };
        (completer, fut)
    }

    /// Marks the future running, unless it was cancelled: then returns false, and the
    /// task must not run. Python's `Future.set_running_or_notify_cancel`.
    ///
    /// Call it once, when a worker picks the task up; after it returns true,
    /// [`Future::cancel`] no longer succeeds.
    pub fn set_running_or_notify_cancel(&self) -> bool {
        // Lock-free: racing a `cancel`, exactly one compare-exchange from PENDING wins.
        match self.shared.state.compare_exchange(
            PENDING,
            RUNNING,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) | Err(RUNNING) => true,
            Err(_) => false,
        }
    }

    /// Which task this completer finishes: its future's [`Future::id`].
    pub fn id(&self) -> FutureId {
        FutureId(Arc::as_ptr(&self.shared).addr())
    }

    /// True when the user cancelled the future before it started.
    pub fn is_cancelled(&self) -> bool {
        self.shared.state() == CANCELLED
    }

    /// Finishes the future with `value`.
    pub fn set_result(self, value: T) {
        self.complete(Ok(value));
    }

    /// Finishes the future with a failure.
    pub fn set_error(self, error: TaskError) {
        self.complete(Err(error));
    }

    /// Finishes the future with `outcome`. Does nothing if it was cancelled meanwhile.
    pub fn complete(self, outcome: Result<T, TaskError>) {
        self.shared.finish(|s| !is_done(s), outcome);
        // Drop now finds the future done and releases this side's reference, nothing more.
    }

    /// Cancels a future whose task will never run (an executor shutting down with
    /// `cancel_futures`). Does nothing if the task already started.
    pub fn cancel(self) {
        self.shared
            .finish(|s| s == PENDING, Err(TaskError::Cancelled));
        // Whether or not that happened, the task will not run: fail a running one
        // rather than leave it pending.
        drop(self);
    }

    /// Runs a task for this future: marks it running (skipping it if it was cancelled),
    /// runs `task`, catches a panic, and completes the future with the outcome.
    ///
    /// ```
    /// use flotilla_core::Completer;
    ///
    /// let (completer, fut) = Completer::new();
    /// completer.run(|| -> u8 { panic!("bad input") });
    /// assert!(fut.result(None).unwrap_err().to_string().contains("bad input"));
    /// ```
    pub fn run<F>(self, task: F)
    where
        F: FnOnce() -> T,
    {
        if self.set_running_or_notify_cancel() {
            let outcome =
                catch_unwind(AssertUnwindSafe(task)).map_err(|p| TaskError::from_panic(&*p));
            self.complete(outcome);
        }
    }

    /// Like [`run`](Completer::run), for a task that reports failure by returning `Err`.
    pub fn run_fallible<F, E>(self, task: F)
    where
        F: FnOnce() -> Result<T, E>,
        E: std::error::Error + Send + Sync + 'static,
    {
        if self.set_running_or_notify_cancel() {
            let outcome = match catch_unwind(AssertUnwindSafe(task)) {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(e)) => Err(TaskError::failed(e)),
                Err(p) => Err(TaskError::from_panic(&*p)),
            };
            self.complete(outcome);
        }
    }
}

impl<T> Drop for Completer<T> {
    fn drop(&mut self) {
        // The usual case, a completed task, needs neither the lock nor the error below.
        // A racing cancel after this check is settled by `finish`'s own state check.
        if is_done(self.shared.state.load(Ordering::Acquire)) {
            return;
        }
        self.shared.finish(
            |s| !is_done(s),
            Err(TaskError::Broken {
                reason: "the task was dropped by its executor without being completed".into(),
            }),
        );
    }
}

impl<T> fmt::Debug for Completer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Completer")
            .field(
                "state",
                &Future {
                    shared: Arc::clone(&self.shared),
                }
                .state(),
            )
            .finish_non_exhaustive()
    }
}

/// The `.await` form of a [`Future`], moving the value out like
/// [`Future::into_result`].
///
/// Needs no async runtime: completion wakes whatever waker polled it last.
///
/// ```
/// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     // A minimal executor, so the example needs no runtime.
/// #     use std::task::{Context, Poll, Waker};
/// #     let mut f = std::pin::pin!(f);
/// #     let mut cx = Context::from_waker(Waker::noop());
/// #     loop { if let Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; } std::thread::yield_now(); }
/// # }
/// let fut = flotilla_core::Future::ready(7);
/// assert_eq!(block_on(async { fut.await }).unwrap(), 7);
/// ```
#[must_use = "futures do nothing unless awaited"]
pub struct ResultFuture<T> {
    fut: Future<T>,
    slot: WakerSlot,
}

/// The `.await` form of a `&Future`, cloning the value like [`Future::result`].
#[must_use = "futures do nothing unless awaited"]
pub struct ResultRefFuture<'a, T> {
    fut: &'a Future<T>,
    slot: WakerSlot,
}

/// A std future that resolves once a [`Future`] is done, without taking or cloning its
/// value: [`Future::completion`].
///
/// Dropping it before then removes its waker from the future, so giving up on a wait
/// (a `select!` that took another branch, a timeout) leaves nothing behind.
///
/// ```
/// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     use std::task::{Context, Poll, Waker};
/// #     let mut f = std::pin::pin!(f);
/// #     let mut cx = Context::from_waker(Waker::noop());
/// #     loop { if let Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; } std::thread::yield_now(); }
/// # }
/// use flotilla_core::Completer;
///
/// let (completer, fut) = Completer::<String>::new();
/// std::thread::spawn(move || completer.set_result("not cloned".to_owned()));
/// block_on(fut.completion());
/// assert!(fut.done());
/// ```
#[must_use = "futures do nothing unless awaited"]
pub struct Completion<T> {
    fut: Future<T>,
    slot: WakerSlot,
}

/// The key of the one waker an awaiting side has registered with a future, if any.
#[derive(Debug, Default)]
struct WakerSlot(Option<u64>);

impl<T> Future<T> {
    /// Registers `cx`'s waker under `slot` unless the future is done; reads the outcome
    /// with `read` (under the lock) when it is.
    fn poll_with<R>(
        &self,
        cx: &mut Context<'_>,
        slot: &mut WakerSlot,
        read: impl FnOnce(&mut Inner<T>) -> R,
    ) -> Poll<R> {
        let mut inner = self.shared.lock();
        if is_done(self.shared.state.load(Ordering::Relaxed)) {
            // The terminal transition drained the wakers, ours included.
            slot.0 = None;
            return Poll::Ready(read(&mut inner));
        }
        let registered = slot
            .0
            .and_then(|key| inner.wakers.iter_mut().find(|(k, _)| *k == key));
        match registered {
            Some((_, waker)) => {
                if !waker.will_wake(cx.waker()) {
                    waker.clone_from(cx.waker());
                }
            }
            None => {
                let key = inner.next_waker;
                inner.next_waker += 1;
                inner.wakers.push((key, cx.waker().clone()));
                slot.0 = Some(key);
            }
        }
        Poll::Pending
    }

    /// Removes the waker registered under `slot`, if it is still there.
    fn forget_waker(&self, slot: &mut WakerSlot) {
        if let Some(key) = slot.0.take() {
            if self.done() {
                return; // the terminal transition already drained it
            }
            self.shared.lock().wakers.retain(|(k, _)| *k != key);
        }
    }

    /// A std future that resolves once this future is done, leaving its value in place
    /// (for [`result`](Future::result) or another `.await`): what an async `wait` over
    /// many futures needs. See [`Completion`].
    pub fn completion(&self) -> Completion<T> {
        Completion {
            fut: self.clone(),
            slot: WakerSlot::default(),
        }
    }

    #[cfg(test)]
    pub(crate) fn waker_count(&self) -> usize {
        self.shared.lock().wakers.len()
    }
}

impl<T> std::future::Future for ResultFuture<T> {
    type Output = Result<T, TaskError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        this.fut.poll_with(cx, &mut this.slot, Shared::take_outcome)
    }
}

impl<T: Clone> std::future::Future for ResultRefFuture<'_, T> {
    type Output = Result<T, TaskError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        this.fut
            .poll_with(cx, &mut this.slot, |inner| match &inner.outcome {
                Slot::Ready(outcome) => outcome.clone(),
                Slot::Taken => Err(TaskError::ResultTaken),
                Slot::Empty => unreachable!("a done future always has an outcome"),
            })
    }
}

impl<T> std::future::Future for Completion<T> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        this.fut.poll_with(cx, &mut this.slot, |_| ())
    }
}

impl<T> Drop for ResultFuture<T> {
    fn drop(&mut self) {
        self.fut.forget_waker(&mut self.slot);
    }
}

impl<T> Drop for ResultRefFuture<'_, T> {
    fn drop(&mut self) {
        self.fut.forget_waker(&mut self.slot);
    }
}

impl<T> Drop for Completion<T> {
    fn drop(&mut self) {
        self.fut.forget_waker(&mut self.slot);
    }
}

impl<T> std::future::IntoFuture for Future<T> {
    type Output = Result<T, TaskError>;
    type IntoFuture = ResultFuture<T>;

    fn into_future(self) -> ResultFuture<T> {
        ResultFuture {
            fut: self,
            slot: WakerSlot::default(),
        }
    }
}

impl<'a, T: Clone> std::future::IntoFuture for &'a Future<T> {
    type Output = Result<T, TaskError>;
    type IntoFuture = ResultRefFuture<'a, T>;

    fn into_future(self) -> ResultRefFuture<'a, T> {
        ResultRefFuture {
            fut: self,
            slot: WakerSlot::default(),
        }
    }
}

impl<T> fmt::Debug for Completion<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Completion").field(&self.fut).finish()
    }
}

impl<T> fmt::Debug for ResultFuture<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ResultFuture").field(&self.fut).finish()
    }
}

impl<T> fmt::Debug for ResultRefFuture<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ResultRefFuture").field(self.fut).finish()
    }
}
