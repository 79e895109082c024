//! [`Condition`]: Python's `multiprocessing.Condition`, a condition variable in shared
//! memory over one of the crate's robust locks.
//!
//! # Words and the protocol
//!
//! - `SEQ`: bumped by every notification that wakes someone; waiters sleep on it.
//! - `COUNTS`: two counts in one 64-bit word, changed together by compare-and-swap:
//!   *waiting* (high half), the waiters not yet notified, and *signals* (low half),
//!   notifications given but not yet taken.
//! - `TICKETS`: how many waits ever began (wrapping); each waiter's ticket is its value
//!   when it began.
//! - `NOTIFIED_BELOW`: `TICKETS` as it was at the last notification. A waiter whose
//!   ticket is below it (in wrapping order) began before that notification: it is
//!   *eligible* to take a signal. A waiter that began after the last notification is
//!   not, so no notification can go to a wait that began after it was sent — the
//!   notifier's own next `wait` included.
//!
//! # Who touches what
//!
//! - **A waiter, holding the lock**, takes its ticket (`TICKETS` + 1) and adds itself
//!   to *waiting*; then it releases the lock.
//! - **A waiter, not holding the lock**, loops: read `SEQ`; if eligible, try to take a
//!   signal (*signals* − 1, by compare-and-swap: never below zero); sleep while `SEQ` is
//!   unchanged. It returns `true` as soon as it takes a signal. Reading `SEQ` before
//!   trying is what keeps a notification from being lost: if the signal (or the
//!   eligibility) was not visible yet, `SEQ` has not been bumped yet either, and the
//!   sleep returns at once when it is.
//! - **`notify(n)`, holding the lock**, sets `NOTIFIED_BELOW` to `TICKETS` (every
//!   waiter present is now eligible), moves up to `n` from *waiting* to *signals* in
//!   one step, bumps `SEQ` and wakes that many sleepers.
//! - **A waiter whose timeout passed** takes the lock back *first*, and only then
//!   decides, holding it (so no notification races the decision): if it is eligible
//!   and a signal is there, it takes it and returns `true` (the notification came
//!   before it left, and counts); otherwise it removes itself from *waiting*.
//!
//! So *waiting* + *signals* is always the number of waiters between their entry and
//! their exit. After a notification every waiter present is eligible, so *signals*
//! never exceeds the eligible waiters present (each eligible waiter leaves with a
//! signal while there is one): no signal is stranded, none is taken by a later wait,
//! and `notify(n)` makes at most `n` waits return `true`, as in Python.
//!
//! Tickets wrap at 2³²; the order "ticket below `NOTIFIED_BELOW`" is their wrapping
//! difference, sound while fewer than 2³¹ waits begin during any one wait.

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Kind, Segment};
use crate::futex::{self, sleep, spin};
use flotilla_core::Deadline;

use crate::error::{CreateError, OsError, WaitError};
use crate::lock::{AcquireError, Acquired, Lock, LockGuard, RLock, RLockGuard, RawMutex};
use crate::shm::SharedMemory;

const SEQ: usize = 4;
const COUNTS: usize = 8;
const TICKETS: usize = 16;
const NOTIFIED_BELOW: usize = 20;
/// One waiter in the high half of `COUNTS`.
const WAITER: u64 = 1 << 32;

fn waiting(counts: u64) -> u32 {
    (counts >> 32) as u32
}

fn signals(counts: u64) -> u32 {
    counts as u32
}

/// The lock a [`Condition`] is built on: Python's `Condition(lock)` accepts either.
///
/// ```
/// use flotilla_ipc::{Condition, Lock};
///
/// let cond = Condition::with_lock(Lock::new().unwrap()).unwrap();
/// # drop(cond);
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ConditionLock {
    /// A [`Lock`]: `wait` releases its one level.
    Lock(Lock),
    /// An [`RLock`]: `wait` releases every level the waiting thread holds, and restores
    /// them before returning, as Python does.
    RLock(RLock),
}

impl From<Lock> for ConditionLock {
    fn from(lock: Lock) -> Self {
        ConditionLock::Lock(lock)
    }
}

impl From<RLock> for ConditionLock {
    fn from(lock: RLock) -> Self {
        ConditionLock::RLock(lock)
    }
}

impl ConditionLock {
    fn raw(&self) -> &RawMutex {
        match self {
            ConditionLock::Lock(lock) => lock.raw(),
            ConditionLock::RLock(lock) => lock.raw(),
        }
    }
}

/// A condition variable shared by processes: Python's `multiprocessing.Condition`.
///
/// It pairs a lock ([`ConditionLock`]: an [`RLock`] by default, as in Python) with a
/// place to wait. [`acquire`](Self::acquire) takes the lock and returns a
/// [`ConditionGuard`]; waiting and notifying are methods of the guard, so Python's rule
/// that both need the lock held is checked by the compiler:
/// [`wait`](ConditionGuard::wait), [`wait_for`](ConditionGuard::wait_for),
/// [`notify`](ConditionGuard::notify) and [`notify_all`](ConditionGuard::notify_all).
/// The data the condition is about lives elsewhere in shared memory — a
/// [`Value`](crate::Value), an [`Array`](crate::Array) — as in Python. Give the condition
/// to other processes by fork, as a process argument or over a `Connection`; a clone is
/// another handle to the same condition.
///
/// # When a process dies
///
/// - **The lock's holder** (a notifier, or a waiter between its wake-up and its
///   release): the lock is robust, so the next process to take it is told. From
///   [`acquire`](Self::acquire) that is [`AcquireError::OwnerDied`] with the guard;
///   from a `wait` that was re-taking the lock, it is [`WaitError::OwnerDied`] — the guard
///   holds the lock again all the same. Repair the shared data, then carry on.
/// - **A waiter**, killed while waiting: it stays counted, so one later `notify(1)` may
///   go to it and wake no live process, or a notification it was given stays unused
///   and a later waiter returns `true` from it. `notify_all`, `wait_for` (which
///   re-checks its predicate) and timeouts are unaffected. Python's `Condition` is worse
///   off here: its `notify` waits for the dead waiter to acknowledge, forever.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use flotilla_ipc::{Condition, Value};
///
/// let cond = Condition::new().unwrap();
/// let ready = Value::raw(0u32).unwrap();
/// let consumer = {
///     let (cond, ready) = (cond.clone(), ready.clone());
///     std::thread::spawn(move || {
///         let mut guard = cond.acquire().unwrap();
///         guard.wait_for_timeout(|| ready.load() == 1, Duration::from_secs(10)).unwrap()
///     })
/// };
/// {
///     let mut guard = cond.acquire().unwrap();
///     ready.store(1);
///     guard.notify(1);
/// }
/// assert!(consumer.join().unwrap());
/// ```
#[derive(Clone)]
pub struct Condition {
    lock: ConditionLock,
    segment: Segment,
}

impl Condition {
    /// A condition over a new [`RLock`], as Python's `Condition()`.
    ///
    /// # Errors
    ///
    /// [`CreateError::Os`] if the system refuses the memory or the mutex.
    ///
    /// ```
    /// let cond = flotilla_ipc::Condition::new().unwrap();
    /// let guard = cond.acquire().unwrap();
    /// assert_eq!(guard.waiting(), 0);
    /// ```
    pub fn new() -> Result<Self, CreateError> {
        Self::with_lock(RLock::new()?)
    }

    /// A condition over `lock`, which may be shared with other code (Python's
    /// `Condition(lock)`).
    ///
    /// # Errors
    ///
    /// [`CreateError::Os`] if the system refuses the memory.
    ///
    /// ```
    /// use flotilla_ipc::{Condition, Lock};
    ///
    /// let lock = Lock::new().unwrap();
    /// let cond = Condition::with_lock(lock.clone()).unwrap();
    /// let guard = cond.acquire().unwrap();
    /// assert!(lock.try_acquire().is_err(), "the condition's lock is that lock");
    /// # drop(guard);
    /// ```
    pub fn with_lock(lock: impl Into<ConditionLock>) -> Result<Self, CreateError> {
        let (segment, ()) = Segment::new(Kind::Condition, |_| Ok(()))?;
        Ok(Condition {
            lock: lock.into(),
            segment,
        })
    }

    /// The lock the condition is built on (as `Value::get_lock` gives a value's).
    ///
    /// ```
    /// use flotilla_ipc::{Condition, ConditionLock};
    ///
    /// let cond = Condition::new().unwrap();
    /// assert!(matches!(cond.get_lock(), ConditionLock::RLock(_)));
    /// ```
    pub fn get_lock(&self) -> &ConditionLock {
        &self.lock
    }

    /// Takes the lock, waiting as long as it takes: [`acquire(None)`](Self::acquire).
    /// The twin of the thread `Condition::lock`, which returns its guard the same way.
    ///
    /// # Errors
    ///
    /// As for [`acquire`](Self::acquire), less the timeout.
    ///
    /// ```
    /// let cond = flotilla_ipc::Condition::new().unwrap();
    /// let mut guard = cond.lock().unwrap();
    /// guard.notify_all();
    /// ```
    pub fn lock(&self) -> Result<ConditionGuard<'_>, AcquireError<ConditionGuard<'_>>> {
        self.acquire()
    }

    /// Takes the lock if it is free, without waiting: [`try_acquire`](Self::try_acquire),
    /// under the thread `Condition`'s name.
    ///
    /// # Errors
    ///
    /// As for [`try_acquire`](Self::try_acquire).
    pub fn try_lock(&self) -> Result<ConditionGuard<'_>, AcquireError<ConditionGuard<'_>>> {
        self.try_acquire()
    }

    /// Takes the lock, waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// As for [`Lock::acquire`]: [`AcquireError::OwnerDied`] with the guard if the
    /// previous holder died holding the lock; [`AcquireError::Failed`] with
    /// [`LockError::WouldDeadlock`](crate::LockError::WouldDeadlock) if the condition is
    /// over a [`Lock`] this thread holds.
    ///
    /// ```
    /// let cond = flotilla_ipc::Condition::new().unwrap();
    /// let guard = cond.acquire().unwrap();
    /// # drop(guard);
    /// ```
    pub fn acquire(&self) -> Result<ConditionGuard<'_>, AcquireError<ConditionGuard<'_>>> {
        self.acquire_within(None)
    }

    /// Takes the lock, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// As for [`acquire`](Self::acquire), and [`AcquireError::Failed`] with
    /// [`LockError::Timeout`](crate::LockError::Timeout) if the timeout passed first.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let cond = flotilla_ipc::Condition::new().unwrap();
    /// let guard = cond.acquire_timeout(Duration::from_secs(1)).unwrap();
    /// # drop(guard);
    /// ```
    pub fn acquire_timeout(
        &self,
        timeout: Duration,
    ) -> Result<ConditionGuard<'_>, AcquireError<ConditionGuard<'_>>> {
        self.acquire_within(Some(timeout))
    }

    /// The body of [`acquire`](Self::acquire) and [`acquire_timeout`](Self::acquire_timeout).
    fn acquire_within(
        &self,
        timeout: Option<Duration>,
    ) -> Result<ConditionGuard<'_>, AcquireError<ConditionGuard<'_>>> {
        match &self.lock {
            ConditionLock::Lock(lock) => self.guard(lock.acquire_within(timeout), Held::Lock),
            ConditionLock::RLock(lock) => self.guard(lock.acquire_within(timeout), Held::RLock),
        }
    }

    /// Takes the lock if it is free, without waiting.
    ///
    /// # Errors
    ///
    /// [`AcquireError::Failed`] with
    /// [`LockError::WouldBlock`](crate::LockError::WouldBlock) if it is held;
    /// [`AcquireError::OwnerDied`] as for [`acquire`](Self::acquire).
    ///
    /// ```
    /// let cond = flotilla_ipc::Condition::new().unwrap();
    /// let guard = cond.try_acquire().unwrap();
    /// # drop(guard);
    /// ```
    pub fn try_acquire(&self) -> Result<ConditionGuard<'_>, AcquireError<ConditionGuard<'_>>> {
        match &self.lock {
            ConditionLock::Lock(lock) => self.guard(lock.try_acquire(), Held::Lock),
            ConditionLock::RLock(lock) => self.guard(lock.try_acquire(), Held::RLock),
        }
    }

    fn guard<'a, G>(
        &'a self,
        acquired: Result<G, AcquireError<G>>,
        held: impl FnOnce(G) -> Held<'a>,
    ) -> Result<ConditionGuard<'a>, AcquireError<ConditionGuard<'a>>> {
        let wrap = |guard| ConditionGuard {
            cond: self,
            _held: held(guard),
        };
        match acquired {
            Ok(guard) => Ok(wrap(guard)),
            Err(e) => Err(e.map(wrap)),
        }
    }

    fn seq(&self) -> &AtomicU32 {
        self.segment.u32_at(SEQ)
    }

    fn counts(&self) -> &AtomicU64 {
        self.segment.u64_at(COUNTS)
    }

    fn tickets(&self) -> &AtomicU32 {
        self.segment.u32_at(TICKETS)
    }

    fn notified_below(&self) -> &AtomicU32 {
        self.segment.u32_at(NOTIFIED_BELOW)
    }

    /// Whether the waiter of `ticket` began before the last notification, and so may
    /// take a signal.
    fn eligible(&self, ticket: u32) -> bool {
        let below = self.notified_below().load(Ordering::SeqCst);
        // Wrapping order: `ticket` is below `below` when the difference is positive.
        (below.wrapping_sub(ticket) as i32) > 0
    }

    /// Takes a signal if there is one.
    fn take_signal(&self) -> bool {
        self.counts()
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |c| {
                (signals(c) > 0).then(|| c - 1)
            })
            .is_ok()
    }

    /// Leaves after a timeout, holding the lock again (so no notification races
    /// this): with a signal if this waiter is eligible and one is there, otherwise by
    /// removing itself from *waiting*. Returns whether a signal was taken.
    fn leave(&self, ticket: u32) -> bool {
        let eligible = self.eligible(ticket);
        let before = self
            .counts()
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |c| {
                Some(if eligible && signals(c) > 0 {
                    c - 1
                } else {
                    // Never 0 here (the module doc's sum); saturate all the same.
                    c.saturating_sub(WAITER)
                })
            })
            .unwrap_or_default();
        eligible && signals(before) > 0
    }

    /// The wait itself, between the release and the re-acquisition of the lock: `true`
    /// once this waiter took a signal, `false` when the deadline passed first (the
    /// waiter is still counted; [`leave`](Self::leave) decides, under the lock).
    fn sleep_until(&self, ticket: u32, deadline: Deadline) -> bool {
        loop {
            let seq = self.seq().load(Ordering::SeqCst);
            if self.eligible(ticket) && self.take_signal() {
                return true;
            }
            if deadline.expired() {
                return false;
            }
            if spin(|| self.seq().load(Ordering::Relaxed) != seq) {
                continue;
            }
            sleep(self.seq(), seq, deadline);
        }
    }
}

impl Serialize for Condition {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (&self.lock, &*self.segment.shm).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Condition {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (lock, shm) = <(ConditionLock, SharedMemory)>::deserialize(deserializer)?;
        let segment = Segment::received(shm, Kind::Condition).map_err(D::Error::custom)?;
        Ok(Condition { lock, segment })
    }
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Condition")
            .field("lock", &self.lock)
            .field("waiting", &waiting(self.counts().load(Ordering::Relaxed)))
            .finish()
    }
}

/// The lock guard a [`ConditionGuard`] holds.
#[allow(dead_code, reason = "held only for its Drop, which releases the lock")]
enum Held<'a> {
    Lock(LockGuard<'a>),
    RLock(RLockGuard<'a>),
}

/// Holds a [`Condition`]'s lock; releases it when dropped. Waiting and notifying happen
/// through it.
///
/// Neither `Send` nor `Sync`, like the lock guards it wraps.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ConditionGuard<'a> {
    cond: &'a Condition,
    /// Released by its own `Drop`; `wait` only lends its levels out and takes them back.
    _held: Held<'a>,
}

impl ConditionGuard<'_> {
    /// Releases the lock, blocks until notified, then takes the lock again: Python's
    /// `Condition.wait()`. Spurious wake-ups are absorbed: it returns only for a
    /// [`notify`](Self::notify) or [`notify_all`](Self::notify_all). Over an [`RLock`],
    /// every level this thread holds is released and restored, as in Python.
    ///
    /// # Errors
    ///
    /// [`WaitError::OwnerDied`] if, taking the lock back, this process found that its
    /// holder had died holding it: the guard holds the lock again, and the data it
    /// protects may be half-updated (see [`Condition`]). An OS error if the lock could
    /// not be taken back ([`WaitError::Os`]).
    pub fn wait(&mut self) -> Result<(), WaitError> {
        self.wait_until(Deadline::NEVER).map(drop)
    }

    /// Like [`wait`](Self::wait), but gives up waiting for a notification after
    /// `timeout`. Returns `Ok(true)` if notified, `Ok(false)` on timeout, like Python's
    /// `Condition.wait(timeout)`.
    ///
    /// As in Python, the timeout bounds the wait for a notification; taking the lock
    /// back afterwards waits as long as the lock is held.
    ///
    /// # Errors
    ///
    /// As for [`wait`](Self::wait).
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let cond = flotilla_ipc::Condition::new().unwrap();
    /// let mut guard = cond.acquire().unwrap();
    /// assert!(!guard.wait_timeout(Duration::from_millis(10)).unwrap()); // nobody notifies
    /// ```
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<bool, WaitError> {
        self.wait_until(Deadline::after(Some(timeout)))
    }

    fn wait_until(&mut self, deadline: Deadline) -> Result<bool, WaitError> {
        let cond = self.cond;
        let raw = cond.lock.raw();
        // Ticketed and counted while the lock is still held, so a notifier sees this
        // waiter, and only a notification sent from now on may go to it.
        let ticket = cond.tickets().fetch_add(1, Ordering::SeqCst);
        cond.counts().fetch_add(WAITER, Ordering::SeqCst);
        // SAFETY: this thread holds the lock through `self._held`, which stays alive and
        // untouched until `relock` below has restored every level released here.
        let levels = unsafe { raw.unlock_all() };
        let signalled = cond.sleep_until(ticket, deadline);
        let relocked = raw.relock(levels);
        // Timed out: decide with the lock held again (or, if it could not be taken
        // back, as well as can be), so the count is never left wrong.
        let notified = signalled || cond.leave(ticket);
        match relocked.map_err(|e| OsError::mutex("pthread_mutex_lock", e))? {
            Acquired::Clean => Ok(notified),
            Acquired::OwnerDied => Err(WaitError::OwnerDied),
        }
    }

    /// Waits until `predicate` returns `true`: Python's `Condition.wait_for(predicate)`.
    ///
    /// The predicate is called with the lock held, first before any waiting, then after
    /// each wake-up.
    ///
    /// # Errors
    ///
    /// As for [`wait`](Self::wait): [`WaitError::OwnerDied`] stops the loop so that the
    /// caller can repair the data before testing it again.
    ///
    /// ```
    /// let cond = flotilla_ipc::Condition::new().unwrap();
    /// let mut guard = cond.acquire().unwrap();
    /// guard.wait_for(|| true).unwrap();
    /// ```
    pub fn wait_for<F>(&mut self, predicate: F) -> Result<(), WaitError>
    where
        F: FnMut() -> bool,
    {
        self.wait_for_until(predicate, Deadline::NEVER).map(drop)
    }

    /// Like [`wait_for`](Self::wait_for), but gives up after `timeout`, and returns the
    /// predicate's last result: Python's `Condition.wait_for(predicate, timeout)`. The
    /// timeout bounds the whole call, not each wait.
    ///
    /// # Errors
    ///
    /// As for [`wait`](Self::wait).
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let cond = flotilla_ipc::Condition::new().unwrap();
    /// let mut guard = cond.acquire().unwrap();
    /// assert!(!guard.wait_for_timeout(|| false, Duration::from_millis(10)).unwrap());
    /// ```
    pub fn wait_for_timeout<F>(
        &mut self,
        predicate: F,
        timeout: Duration,
    ) -> Result<bool, WaitError>
    where
        F: FnMut() -> bool,
    {
        self.wait_for_until(predicate, Deadline::after(Some(timeout)))
    }

    /// The body of [`wait_for`](Self::wait_for) and
    /// [`wait_for_timeout`](Self::wait_for_timeout).
    fn wait_for_until<F>(&mut self, mut predicate: F, deadline: Deadline) -> Result<bool, WaitError>
    where
        F: FnMut() -> bool,
    {
        loop {
            if predicate() {
                return Ok(true);
            }
            if deadline.expired() {
                return Ok(false);
            }
            self.wait_until(deadline)?;
        }
    }

    /// Wakes up to `n` waiters, in any process. They run once this guard is dropped (or
    /// waits). Python's `Condition.notify`.
    ///
    /// ```
    /// let cond = flotilla_ipc::Condition::new().unwrap();
    /// let mut guard = cond.acquire().unwrap();
    /// guard.notify(1); // no waiter: nothing happens
    /// ```
    pub fn notify(&mut self, n: usize) {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        let cond = self.cond;
        // Every waiter present (each took its ticket under the lock we hold) may now
        // take a signal; a wait that begins later may not take these.
        let tickets = cond.tickets().load(Ordering::SeqCst);
        cond.notified_below().store(tickets, Ordering::SeqCst);
        let before = cond
            .counts()
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |c| {
                let k = waiting(c).min(n);
                (k > 0).then(|| c - u64::from(k) * WAITER + u64::from(k))
            });
        if let Ok(before) = before {
            cond.seq().fetch_add(1, Ordering::SeqCst);
            futex::notify(cond.seq(), waiting(before).min(n));
        }
    }

    /// Wakes every waiter, in every process: Python's `Condition.notify_all`.
    ///
    /// ```
    /// let cond = flotilla_ipc::Condition::new().unwrap();
    /// cond.acquire().unwrap().notify_all();
    /// ```
    pub fn notify_all(&mut self) {
        self.notify(usize::MAX);
    }

    /// How many waiters, in all processes, are waiting and not yet notified.
    ///
    /// ```
    /// let cond = flotilla_ipc::Condition::new().unwrap();
    /// assert_eq!(cond.acquire().unwrap().waiting(), 0);
    /// ```
    pub fn waiting(&self) -> usize {
        waiting(self.cond.counts().load(Ordering::SeqCst)) as usize
    }
}

impl fmt::Debug for ConditionGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConditionGuard")
            .field("waiting", &self.waiting())
            .finish_non_exhaustive()
    }
}
