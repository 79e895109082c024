//! [`Condition`]: Python's `threading.Condition`, shaped the Rust way as one object that
//! owns the protected data, its mutex and the condition variable together.
//!
//! Every waiter gets its own std `Condvar` and a `notified` flag, queued in FIFO order in
//! the state behind the mutex (Python keeps a deque of per-waiter locks the same way).
//! `notify(n)` dequeues the first `n` waiters, sets their flags and wakes exactly them;
//! a waiter returns only when its flag is set or its deadline passes, so a spurious
//! wakeup of the underlying condvar is never mistaken for a notification.

use std::collections::VecDeque;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::Duration;

use flotilla_core::Deadline;

use super::lock;

/// A condition variable owning the data it guards: Python's `threading.Condition`, as
/// a `Mutex` and `Condvar` in one.
///
/// [`lock`](Self::lock) returns a [`ConditionGuard`] that derefs to the data. Waiting
/// and notifying are methods of the guard, because Python's rule that both need the
/// lock held is then checked by the compiler, and a guard can only ever wait on its own
/// condition: [`ConditionGuard::wait`], [`ConditionGuard::wait_for`],
/// [`ConditionGuard::notify`] and [`ConditionGuard::notify_all`].
///
/// Waiters are woken in the order they started waiting. There is no poisoning: a panic
/// while a guard is held leaves the data as that thread left it, as in Python.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use flotilla_thread::Condition;
///
/// let jobs = Arc::new(Condition::new(Vec::new()));
/// let consumer = {
///     let jobs = Arc::clone(&jobs);
///     std::thread::spawn(move || {
///         let mut jobs = jobs.lock();
///         let ready = jobs.wait_for_timeout(|jobs| !jobs.is_empty(), Duration::from_secs(10));
///         assert!(ready);
///         jobs.pop()
///     })
/// };
/// {
///     let mut guard = jobs.lock();
///     guard.push("job");
///     guard.notify(1);
/// }
/// assert_eq!(consumer.join().unwrap(), Some("job"));
/// ```
pub struct Condition<T> {
    state: Mutex<State<T>>,
}

struct State<T> {
    /// Waiters not yet notified, oldest first.
    waiters: VecDeque<Arc<Waiter>>,
    data: T,
}

#[derive(Debug, Default)]
struct Waiter {
    cv: Condvar,
    /// Set by `notify`, only while the condition's mutex is held; the mutex orders it,
    /// so `Relaxed` suffices. (An atomic only because the `Arc` crosses threads.)
    notified: AtomicBool,
}

impl<T> Condition<T> {
    /// A new condition guarding `data`.
    ///
    /// # Examples
    ///
    /// ```
    /// let cond = flotilla_thread::Condition::new(0_u32);
    /// assert_eq!(*cond.lock(), 0);
    /// ```
    pub const fn new(data: T) -> Self {
        Condition {
            state: Mutex::new(State {
                waiters: VecDeque::new(),
                data,
            }),
        }
    }

    /// Consumes the condition, returning the data.
    ///
    /// # Examples
    ///
    /// ```
    /// let cond = flotilla_thread::Condition::new(vec![1]);
    /// assert_eq!(cond.into_inner(), [1]);
    /// ```
    pub fn into_inner(self) -> T {
        self.state
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
            .data
    }
}

impl<T> Condition<T> {
    /// Locks the data, blocking until it is free.
    ///
    /// # Examples
    ///
    /// ```
    /// let cond = flotilla_thread::Condition::new(1);
    /// *cond.lock() += 1;
    /// assert_eq!(*cond.lock(), 2);
    /// ```
    pub fn lock(&self) -> ConditionGuard<'_, T> {
        ConditionGuard {
            guard: Some(lock(&self.state)),
        }
    }

    /// Locks the data without blocking: `None` if another guard holds it.
    ///
    /// The lock is not reentrant: calling this while the same thread holds a guard
    /// returns `None` (and [`lock`](Self::lock) would deadlock), like std's `Mutex`.
    ///
    /// # Examples
    ///
    /// ```
    /// let cond = flotilla_thread::Condition::new(());
    /// let held = cond.lock();
    /// assert!(cond.try_lock().is_none());
    /// drop(held);
    /// assert!(cond.try_lock().is_some());
    /// ```
    pub fn try_lock(&self) -> Option<ConditionGuard<'_, T>> {
        let guard = match self.state.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return None,
        };
        Some(ConditionGuard { guard: Some(guard) })
    }

    /// [`try_lock`](Self::try_lock) under the process `Condition`'s (and Python's
    /// `acquire(blocking=False)`) name.
    ///
    /// # Examples
    ///
    /// ```
    /// let cond = flotilla_thread::Condition::new(());
    /// assert!(cond.try_acquire().is_some());
    /// ```
    pub fn try_acquire(&self) -> Option<ConditionGuard<'_, T>> {
        self.try_lock()
    }

    /// [`lock`](Self::lock) under the process `Condition`'s (and Python's `acquire()`)
    /// name: blocks until the data is free.
    ///
    /// # Examples
    ///
    /// ```
    /// let cond = flotilla_thread::Condition::new(1);
    /// assert_eq!(*cond.acquire(), 1);
    /// ```
    pub fn acquire(&self) -> ConditionGuard<'_, T> {
        self.lock()
    }

    /// Locks the data, blocking until it is free or `timeout` passes. `None` if the
    /// timeout passed first.
    ///
    /// The std mutex underneath has no timed lock, so this polls with short sleeps once
    /// the lock is contended; it is meant for the rare caller that must bound every
    /// wait, and the guard is normally held only briefly.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let cond = flotilla_thread::Condition::new(());
    /// assert!(cond.acquire_timeout(Duration::from_secs(1)).is_some());
    /// ```
    pub fn acquire_timeout(&self, timeout: Duration) -> Option<ConditionGuard<'_, T>> {
        let deadline = Deadline::after(Some(timeout));
        let mut pause = Duration::from_micros(50);
        loop {
            if let Some(guard) = self.try_lock() {
                return Some(guard);
            }
            if deadline.expired() {
                return None;
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(5));
        }
    }

    /// The data, through `&mut self`: no guard can exist, so no locking is needed.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut cond = flotilla_thread::Condition::new(1);
    /// *cond.get_mut() = 2;
    /// assert_eq!(*cond.lock(), 2);
    /// ```
    pub fn get_mut(&mut self) -> &mut T {
        &mut self
            .state
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .data
    }
}

impl<T: Default> Default for Condition<T> {
    fn default() -> Self {
        Condition::new(T::default())
    }
}

impl<T: fmt::Debug> fmt::Debug for Condition<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Condition");
        match self.try_lock() {
            Some(guard) => d.field("data", &&*guard).field("waiters", &guard.waiting()),
            None => d.field("data", &format_args!("<locked>")),
        };
        d.finish_non_exhaustive()
    }
}

/// The lock of a [`Condition`], held: derefs to the data, and waits and notifies.
///
/// Dropping it unlocks the data. Like std's `MutexGuard`, it is not `Send`: it must be
/// dropped by the thread that locked.
///
/// ```compile_fail
/// fn send<T: Send>() {}
/// send::<flotilla_thread::ConditionGuard<'static, ()>>();
/// ```
///
/// # Examples
///
/// ```
/// let cond = flotilla_thread::Condition::new(vec![1]);
/// let mut guard = cond.lock();
/// guard.push(2);
/// assert_eq!(*guard, [1, 2]);
/// ```
#[must_use = "the lock is released at once if the guard is not kept"]
pub struct ConditionGuard<'a, T> {
    /// Always `Some` outside `wait`, which hands the std guard to the condvar and takes
    /// it back before returning.
    guard: Option<MutexGuard<'a, State<T>>>,
}

impl<T> ConditionGuard<'_, T> {
    fn state(&self) -> &State<T> {
        self.guard
            .as_deref()
            .expect("a ConditionGuard holds its lock outside of wait")
    }

    fn state_mut(&mut self) -> &mut State<T> {
        self.guard
            .as_deref_mut()
            .expect("a ConditionGuard holds its lock outside of wait")
    }

    /// Releases the lock and blocks until notified, then locks again: Python's
    /// `Condition.wait()`. Spurious wakeups are absorbed: it never returns without a
    /// [`notify`](Self::notify) or [`notify_all`](Self::notify_all).
    pub fn wait(&mut self) {
        self.wait_until(Deadline::NEVER);
    }

    /// Like [`wait`](Self::wait), but gives up after `timeout`. Returns `true` if
    /// notified, `false` on timeout, like Python's `Condition.wait(timeout)`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let cond = flotilla_thread::Condition::new(());
    /// let mut guard = cond.lock();
    /// assert!(!guard.wait_timeout(Duration::from_millis(10))); // nobody notifies
    /// ```
    pub fn wait_timeout(&mut self, timeout: Duration) -> bool {
        self.wait_until(Deadline::after(Some(timeout)))
    }

    fn wait_until(&mut self, deadline: Deadline) -> bool {
        let me = Arc::new(Waiter::default());
        let Some(mut guard) = self.guard.take() else {
            return false;
        };
        guard.waiters.push_back(Arc::clone(&me));
        let notified = loop {
            // Checked before the deadline: a notification that raced the timeout counts.
            if me.notified.load(Ordering::Relaxed) {
                break true;
            }
            if deadline.expired() {
                guard.waiters.retain(|w| !Arc::ptr_eq(w, &me));
                break false;
            }
            guard = deadline.wait(&me.cv, guard);
        };
        self.guard = Some(guard);
        notified
    }

    /// Waits until `predicate` returns `true`: Python's `Condition.wait_for(predicate)`.
    ///
    /// The predicate is called with the lock held, first before any waiting, then after
    /// each notification.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use flotilla_thread::Condition;
    ///
    /// let count = Arc::new(Condition::new(0));
    /// let counter = {
    ///     let count = Arc::clone(&count);
    ///     std::thread::spawn(move || {
    ///         for _ in 0..3 {
    ///             let mut n = count.lock();
    ///             *n += 1;
    ///             n.notify_all();
    ///         }
    ///     })
    /// };
    /// let mut n = count.lock();
    /// n.wait_for(|n| *n == 3);
    /// drop(n);
    /// counter.join().unwrap();
    /// ```
    pub fn wait_for<F>(&mut self, predicate: F)
    where
        F: FnMut(&mut T) -> bool,
    {
        self.wait_for_until(predicate, Deadline::NEVER);
    }

    /// Like [`wait_for`](Self::wait_for), but gives up after `timeout`, and returns the
    /// predicate's last result: Python's `Condition.wait_for(predicate, timeout)`. The
    /// timeout bounds the whole call, not each wait.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let cond = flotilla_thread::Condition::new(0);
    /// let mut n = cond.lock();
    /// assert!(!n.wait_for_timeout(|n| *n == 3, Duration::from_millis(10)));
    /// ```
    pub fn wait_for_timeout<F>(&mut self, predicate: F, timeout: Duration) -> bool
    where
        F: FnMut(&mut T) -> bool,
    {
        self.wait_for_until(predicate, Deadline::after(Some(timeout)))
    }

    /// The body of [`wait_for`](Self::wait_for) and
    /// [`wait_for_timeout`](Self::wait_for_timeout).
    fn wait_for_until<F>(&mut self, mut predicate: F, deadline: Deadline) -> bool
    where
        F: FnMut(&mut T) -> bool,
    {
        loop {
            if predicate(&mut self.state_mut().data) {
                return true;
            }
            if deadline.expired() {
                return false;
            }
            self.wait_until(deadline);
        }
    }

    /// Wakes up to `n` threads waiting on this condition, the longest-waiting first.
    /// They run once this guard is dropped (or waits). Python's `Condition.notify`.
    ///
    /// # Examples
    ///
    /// ```
    /// let cond = flotilla_thread::Condition::new(false);
    /// let mut guard = cond.lock();
    /// *guard = true;
    /// guard.notify(1); // no waiter: nothing happens
    /// ```
    pub fn notify(&mut self, n: usize) {
        let state = self.state_mut();
        for _ in 0..n {
            let Some(waiter) = state.waiters.pop_front() else {
                break;
            };
            waiter.notified.store(true, Ordering::Relaxed);
            waiter.cv.notify_one();
        }
    }

    /// Wakes every thread waiting on this condition: Python's `Condition.notify_all`.
    ///
    /// # Examples
    ///
    /// ```
    /// let cond = flotilla_thread::Condition::new(0);
    /// let mut guard = cond.lock();
    /// *guard += 1;
    /// guard.notify_all();
    /// ```
    pub fn notify_all(&mut self) {
        self.notify(usize::MAX);
    }

    /// How many threads are waiting on this condition and not yet notified.
    ///
    /// # Examples
    ///
    /// ```
    /// let cond = flotilla_thread::Condition::new(());
    /// assert_eq!(cond.lock().waiting(), 0);
    /// ```
    pub fn waiting(&self) -> usize {
        self.state().waiters.len()
    }
}

impl<T> Deref for ConditionGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.state().data
    }
}

impl<T> DerefMut for ConditionGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.state_mut().data
    }
}

impl<T: fmt::Debug> fmt::Debug for ConditionGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}
