//! [`Barrier`]: Python's `multiprocessing.Barrier`, a meeting point in shared memory for
//! a fixed number of processes, with timeouts, `abort` and `reset`.
//!
//! # Words and rounds
//!
//! Each round of `PARTIES` arrivals is numbered by `ROUND`, the futex word waiters sleep
//! on. `COUNT` (arrivals in this round), `BROKEN`, `OUTCOMES` and `ROUND` change only
//! with the segment's own robust mutex held, for a few instructions and never across a
//! sleep; `ROUND` and `BROKEN` are also read without it.
//!
//! A round ends in one of two ways: the last arrival *passes* it, or `abort`, a waiter's
//! timeout or a `reset` with waiters *breaks* it. Either way the ender records the
//! outcome in bit `round % 64` of `OUTCOMES`, empties `COUNT`, bumps `ROUND` (release)
//! and wakes every sleeper. A waiter that sees `ROUND` move reads its own round's bit:
//! however many rounds ran before it woke, the bit is still its round's unless 64 more
//! rounds ended meanwhile — each needing every party, and a reset after each break —
//! which no real schedule produces; such a waiter reports its round passed.
//!
//! If a process dies holding the mutex, the next one to take it finds the bookkeeping
//! perhaps half-done and breaks the barrier: everyone waiting is told, and `reset`
//! makes it usable again.
//!
//! # The action and the default timeout
//!
//! Both are fixed when the barrier is made and live in the segment, so every process's
//! handle sees them: `TIMEOUT` holds the default timeout in nanoseconds plus one (0: none),
//! `ACTION` the action's [offset](flotilla_core::build::offset_of_fn) in the binary plus
//! one (0: none), and `BUILD` the [fingerprint](flotilla_core::build::fingerprint) of the
//! build that offset belongs to. The last arrival of a round runs the action with the
//! mutex held, as Python runs it under the barrier's lock; a process that dies in it
//! leaves the mutex owner-died, which breaks the barrier for everyone.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Kind, Segment, to_u32};
use crate::futex::{notify_all, sleep, spin};
use flotilla_core::{Deadline, build};

use crate::error::{BarrierError, CreateError, OsError};
use crate::lock::{Acquired, RawGuard, RawMutex};

const ROUND: usize = 4;
const COUNT: usize = 8;
const BROKEN: usize = 12;
const PARTIES: usize = 16;
const OUTCOMES: usize = 24;
const TIMEOUT: usize = 32;
const ACTION: usize = 40;
const BUILD: usize = 48;

/// A barrier for a fixed number of processes: Python's `multiprocessing.Barrier`.
///
/// Each participant calls [`wait`](Self::wait); all block until `parties` have arrived,
/// then all return at once, each with a distinct arrival index in `0..parties` (Python's
/// way to choose one process for a follow-up action: `if index == 0`). The barrier then
/// serves the next round. Give it to other processes by fork, as a process argument or
/// over a `Connection`; a clone is another handle to the same barrier.
///
/// A barrier is *broken* by [`abort`](Self::abort) or by a `wait` whose timeout
/// passes: every process waiting then, and every later `wait`, gets
/// [`BarrierError::Broken`] until [`reset`](Self::reset).
///
/// # When a process dies
///
/// A participant killed before it arrives never comes: the others wait until the first
/// of their timeouts passes, which breaks the barrier for all of them, as in Python.
/// Waits without a timeout would wait for it forever, so give every `wait` a timeout
/// where a participant may die. A participant killed after arriving still counts as
/// arrived in that round.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use flotilla_ipc::Barrier;
///
/// let barrier = Barrier::new(3).unwrap();
/// let others: Vec<_> = (0..2)
///     .map(|_| {
///         let barrier = barrier.clone();
///         std::thread::spawn(move || barrier.wait_timeout(Duration::from_secs(10)))
///     })
///     .collect();
/// let mut indices = vec![barrier.wait_timeout(Duration::from_secs(10))?];
/// for other in others {
///     indices.push(other.join().unwrap()?);
/// }
/// indices.sort();
/// assert_eq!(indices, [0, 1, 2]);
/// # Ok::<(), flotilla_ipc::Error>(())
/// ```
#[derive(Clone)]
pub struct Barrier {
    segment: Segment,
    mutex: RawMutex,
    parties: u32,
}

/// A [`Barrier`] with an action or a default timeout: Python's
/// `multiprocessing.Barrier(parties, action, timeout)`. Made by [`Barrier::builder`].
///
/// The action is a plain `fn()`: it runs in whichever process arrives last, which may be
/// another process of this program (a fork or spawn child, a pool worker), so it is named
/// by its place in the binary, as a process target is, and carries no data of this one.
///
/// ```
/// use std::time::Duration;
/// use flotilla_ipc::Barrier;
///
/// fn announce() {
///     println!("everyone is here");
/// }
///
/// let barrier = Barrier::builder(2)
///     .action(announce)
///     .timeout(Duration::from_secs(10)) // for every wait(None), in every process
///     .build()?;
/// let other = barrier.clone();
/// let t = std::thread::spawn(move || other.wait());
/// barrier.wait()?;
/// t.join().unwrap()?;
/// # Ok::<(), flotilla_ipc::Error>(())
/// ```
#[derive(Debug)]
#[must_use = "a builder does nothing until build() is called"]
pub struct BarrierBuilder {
    parties: usize,
    action: Option<fn()>,
    timeout: Option<Duration>,
}

impl BarrierBuilder {
    /// Runs `action` once per round, in the process that arrives last, before any waiter
    /// is released, holding the barrier's lock (as Python does: a wait whose timeout
    /// passes meanwhile returns when the action ends). If it panics, the barrier breaks
    /// (every waiter of that round gets [`BarrierError::Broken`]) and the panic continues
    /// in the process that ran it; if that process dies in it, the barrier breaks too.
    ///
    /// A process running another build of the program (which can only happen when a
    /// barrier is passed between unrelated programs) cannot run it: its arrival breaks
    /// the round and says why in the log.
    pub fn action(mut self, action: fn()) -> Self {
        self.action = Some(action);
        self
    }

    /// The timeout of every [`wait`](Barrier::wait) called with `None`, in every process.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The barrier.
    ///
    /// # Errors
    ///
    /// As [`Barrier::new`].
    pub fn build(self) -> Result<Barrier, CreateError> {
        let parties = to_u32(self.parties, "a barrier of")?.max(1);
        let timeout = self.timeout.map_or(0, |t| {
            u64::try_from(t.as_nanos())
                .unwrap_or(u64::MAX)
                .saturating_add(1)
        });
        let action = self
            .action
            .map_or(0, |f| (build::offset_of_fn(f) as u64).wrapping_add(1));
        let (segment, mutex) = Segment::new(Kind::Barrier, |s| {
            s.u32_at(PARTIES).store(parties, Ordering::Relaxed);
            s.u64_at(TIMEOUT).store(timeout, Ordering::Relaxed);
            s.u64_at(ACTION).store(action, Ordering::Relaxed);
            s.u64_at(BUILD)
                .store(build::fingerprint(), Ordering::Relaxed);
            // SAFETY: the segment was created just now and has not been shared.
            unsafe { RawMutex::init(Arc::clone(&s.shm), Segment::MUTEX, false) }
        })?;
        Ok(Barrier {
            segment,
            mutex,
            parties,
        })
    }
}

impl Barrier {
    /// A barrier for `parties` processes, in a small shared segment of its own. Like
    /// std's `Barrier` (and `flotilla_thread::Barrier`), 0 parties behaves as 1: every
    /// `wait` passes at once.
    ///
    /// # Errors
    ///
    /// [`CreateError::InvalidArgument`] for more than `u32::MAX` parties;
    /// [`CreateError::Os`] if the
    /// system refuses the memory or the mutex.
    ///
    /// ```
    /// let barrier = flotilla_ipc::Barrier::new(1).unwrap();
    /// assert_eq!(barrier.wait().unwrap(), 0);
    /// ```
    pub fn new(parties: usize) -> Result<Self, CreateError> {
        Barrier::builder(parties).build()
    }

    /// A builder for a barrier of `parties` processes with an
    /// [action](BarrierBuilder::action) or a default [timeout](BarrierBuilder::timeout).
    pub fn builder(parties: usize) -> BarrierBuilder {
        BarrierBuilder {
            parties,
            action: None,
            timeout: None,
        }
    }

    /// The timeout of [`wait`](Self::wait), if the barrier was built with one.
    ///
    /// ```
    /// use std::time::Duration;
    /// let barrier = flotilla_ipc::Barrier::builder(2).timeout(Duration::from_secs(3)).build()?;
    /// assert_eq!(barrier.timeout(), Some(Duration::from_secs(3)));
    /// # Ok::<(), flotilla_ipc::Error>(())
    /// ```
    pub fn timeout(&self) -> Option<Duration> {
        match self.segment.u64_at(TIMEOUT).load(Ordering::Relaxed) {
            0 => None,
            nanos => Some(Duration::from_nanos(nanos - 1)),
        }
    }

    fn word(&self, offset: usize) -> &AtomicU32 {
        self.segment.u32_at(offset)
    }

    fn outcomes(&self) -> &AtomicU64 {
        self.segment.u64_at(OUTCOMES)
    }

    /// How many processes must call [`wait`](Self::wait) to pass the barrier.
    ///
    /// ```
    /// assert_eq!(flotilla_ipc::Barrier::new(4).unwrap().parties(), 4);
    /// ```
    pub fn parties(&self) -> usize {
        self.parties as usize
    }

    /// How many processes are waiting in the current round (0 while broken).
    ///
    /// ```
    /// assert_eq!(flotilla_ipc::Barrier::new(2).unwrap().n_waiting(), 0);
    /// ```
    pub fn n_waiting(&self) -> usize {
        if self.broken() {
            0
        } else {
            self.word(COUNT).load(Ordering::Relaxed) as usize
        }
    }

    /// Whether the barrier is broken (see the type's documentation).
    ///
    /// ```
    /// let barrier = flotilla_ipc::Barrier::new(2).unwrap();
    /// barrier.abort().unwrap();
    /// assert!(barrier.broken());
    /// barrier.reset().unwrap();
    /// assert!(!barrier.broken());
    /// ```
    pub fn broken(&self) -> bool {
        self.word(BROKEN).load(Ordering::Acquire) != 0
    }

    /// Waits until `parties` processes have called `wait` (or the barrier's default
    /// [`timeout`](Self::timeout), if it was built with one, passes): Python's
    /// `Barrier.wait()`. Returns this caller's arrival index, `0..parties`. The last
    /// arrival runs the barrier's [action](BarrierBuilder::action) first.
    ///
    /// # Errors
    ///
    /// [`BarrierError::Broken`] if the barrier is broken when called, breaks while
    /// waiting (abort, another waiter's timeout, a reset, a participant dying inside
    /// the barrier's bookkeeping), or the default timeout passes, which also breaks it
    /// for the others, as in Python; [`BarrierError::Os`] if its mutex fails.
    ///
    /// ```
    /// let barrier = flotilla_ipc::Barrier::new(1).unwrap();
    /// assert_eq!(barrier.wait().unwrap(), 0);
    /// ```
    pub fn wait(&self) -> Result<usize, BarrierError> {
        self.wait_within(None)
    }

    /// Like [`wait`](Self::wait), but gives up after `timeout` (instead of the default
    /// one): Python's `Barrier.wait(timeout)`. A timeout breaks the barrier, for the
    /// others too, and fails with [`BarrierError::Broken`].
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait).
    ///
    /// ```
    /// use std::time::Duration;
    /// use flotilla_ipc::{Barrier, BarrierError};
    ///
    /// let barrier = Barrier::new(2).unwrap();
    /// // Nobody else comes: the wait times out and breaks the barrier.
    /// let alone = barrier.wait_timeout(Duration::from_millis(10));
    /// assert!(matches!(alone, Err(BarrierError::Broken)));
    /// assert!(barrier.broken());
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> Result<usize, BarrierError> {
        self.wait_within(Some(timeout))
    }

    /// The body of [`wait`](Self::wait) and [`wait_timeout`](Self::wait_timeout); `None`
    /// uses the barrier's default timeout.
    fn wait_within(&self, timeout: Option<Duration>) -> Result<usize, BarrierError> {
        let deadline = Deadline::after(timeout.or_else(|| self.timeout()));
        let (index, round) = {
            let book = self.bookkeeping()?;
            if self.broken() {
                return Err(BarrierError::Broken);
            }
            let index = self.word(COUNT).load(Ordering::Relaxed);
            if index + 1 >= self.parties {
                return self.last_arrival(book, index);
            }
            self.word(COUNT).store(index + 1, Ordering::Relaxed);
            (index, self.word(ROUND).load(Ordering::Relaxed))
        };
        let ended = || self.word(ROUND).load(Ordering::Acquire) != round;
        if !spin(ended) {
            loop {
                // The round is checked before the deadline: one that ended as the
                // timeout ran out counts with its outcome.
                if ended() {
                    break;
                }
                if deadline.expired() {
                    let _book = self.bookkeeping()?;
                    if !ended() {
                        self.break_round();
                    }
                    break;
                }
                sleep(self.word(ROUND), round, deadline);
            }
        }
        if self.passed(round) {
            Ok(index as usize)
        } else {
            Err(BarrierError::Broken)
        }
    }

    /// The last arrival of a round: runs the action, if any, with the mutex (`book`)
    /// held, then passes the round, or breaks it if the action cannot run or panics.
    fn last_arrival(&self, book: RawGuard<'_>, index: u32) -> Result<usize, BarrierError> {
        let action = self.segment.u64_at(ACTION).load(Ordering::Relaxed);
        if action == 0 {
            self.end_round(false);
            return Ok(index as usize);
        }
        let built_by = self.segment.u64_at(BUILD).load(Ordering::Relaxed);
        if built_by != build::fingerprint() {
            flotilla_core::event!(
                flotilla_core::log::Level::ERROR,
                "a barrier's action belongs to another build of the program (fingerprint \
                 {built_by:016x}, this one's is {:016x}) and cannot run here; the barrier \
                 is broken",
                build::fingerprint()
            );
            self.break_round();
            return Err(BarrierError::Broken);
        }
        // SAFETY: the offset was taken by `offset_of_fn` in a process of this very build
        // (the fingerprints match).
        let action = unsafe { build::fn_at(action.wrapping_sub(1) as usize) };
        match catch_unwind(AssertUnwindSafe(action)) {
            Ok(()) => {
                self.end_round(false);
                Ok(index as usize)
            }
            Err(panic) => {
                self.break_round();
                drop(book);
                resume_unwind(panic)
            }
        }
    }

    /// Breaks the barrier: the processes waiting now and all later callers of
    /// [`wait`](Self::wait) get [`BarrierError::Broken`] until [`reset`](Self::reset).
    /// Python's `Barrier.abort`, for when a party cannot come.
    ///
    /// # Errors
    ///
    /// [`OsError`] if the barrier's mutex could not be taken.
    ///
    /// ```
    /// use flotilla_ipc::{Barrier, BarrierError};
    ///
    /// let barrier = Barrier::new(2).unwrap();
    /// barrier.abort().unwrap();
    /// assert!(matches!(barrier.wait(), Err(BarrierError::Broken)));
    /// ```
    pub fn abort(&self) -> Result<(), OsError> {
        let _book = self.bookkeeping()?;
        self.break_round();
        Ok(())
    }

    /// Returns the barrier to its initial state, empty and not broken. Processes waiting
    /// on it now get [`BarrierError::Broken`], as in Python.
    ///
    /// # Errors
    ///
    /// [`OsError`] if the barrier's mutex could not be taken.
    ///
    /// ```
    /// let barrier = flotilla_ipc::Barrier::new(1).unwrap();
    /// barrier.abort().unwrap();
    /// barrier.reset().unwrap();
    /// assert_eq!(barrier.wait().unwrap(), 0);
    /// ```
    pub fn reset(&self) -> Result<(), OsError> {
        let _book = self.bookkeeping()?;
        if self.word(COUNT).load(Ordering::Relaxed) > 0 {
            self.end_round(true);
        }
        self.word(BROKEN).store(0, Ordering::Release);
        Ok(())
    }

    /// Takes the barrier's mutex. If its last holder died holding it, the bookkeeping
    /// may be half-done: the barrier is broken, so that every waiter hears of it.
    pub(super) fn bookkeeping(&self) -> Result<RawGuard<'_>, OsError> {
        let (book, acquired) = self
            .mutex
            .lock()
            .map_err(|e| OsError::mutex("barrier mutex", e))?;
        if acquired == Acquired::OwnerDied {
            flotilla_core::event!(
                flotilla_core::log::Level::WARN,
                "a process died inside a barrier's bookkeeping; the barrier is broken"
            );
            self.break_round();
        }
        Ok(book)
    }

    /// Marks the barrier broken and ends the current round as broken. The mutex is held.
    fn break_round(&self) {
        self.word(BROKEN).store(1, Ordering::Release);
        self.end_round(true);
    }

    /// Ends the current round with its outcome and wakes everyone waiting in it. The
    /// mutex is held.
    fn end_round(&self, broken: bool) {
        let round = self.word(ROUND).load(Ordering::Relaxed);
        let bit = 1u64 << (round % 64);
        if broken {
            self.outcomes().fetch_or(bit, Ordering::Relaxed);
        } else {
            self.outcomes().fetch_and(!bit, Ordering::Relaxed);
        }
        self.word(COUNT).store(0, Ordering::Relaxed);
        self.word(ROUND)
            .store(round.wrapping_add(1), Ordering::Release);
        notify_all(self.word(ROUND));
    }

    /// Whether `round`, which has ended, passed (see the module doc).
    fn passed(&self, round: u32) -> bool {
        let now = self.word(ROUND).load(Ordering::Acquire);
        now.wrapping_sub(round) > 64
            || self.outcomes().load(Ordering::Relaxed) & (1 << (round % 64)) == 0
    }
}

impl Serialize for Barrier {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.segment.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Barrier {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let segment = Segment::deserialize(deserializer, Kind::Barrier)?;
        let parties = segment.u32_at(PARTIES).load(Ordering::Relaxed);
        if parties == 0 {
            return Err(D::Error::custom("received a barrier of 0 parties"));
        }
        let mutex =
            RawMutex::attach(Arc::clone(&segment.shm), Segment::MUTEX).map_err(D::Error::custom)?;
        Ok(Barrier {
            segment,
            mutex,
            parties,
        })
    }
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Barrier")
            .field("parties", &self.parties)
            .field("n_waiting", &self.n_waiting())
            .field("broken", &self.broken())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static RAN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    fn count() {
        RAN.fetch_add(1, Ordering::SeqCst);
    }

    #[test]
    fn an_action_of_another_build_is_not_run_and_breaks_the_round() {
        let barrier = Barrier::builder(1).action(count).build().unwrap();
        assert_eq!(barrier.wait().unwrap(), 0);
        assert_eq!(RAN.load(Ordering::SeqCst), 1);

        // As if the barrier had been made by another build of the program.
        let other = build::fingerprint().wrapping_add(1);
        barrier
            .segment
            .u64_at(BUILD)
            .store(other, Ordering::Relaxed);
        assert!(matches!(barrier.wait(), Err(BarrierError::Broken)));
        assert_eq!(RAN.load(Ordering::SeqCst), 1, "not run");
        assert!(barrier.broken());
    }

    #[test]
    fn a_default_timeout_of_zero_is_kept_apart_from_none() {
        let zero = Barrier::builder(2).timeout(Duration::ZERO).build().unwrap();
        assert_eq!(zero.timeout(), Some(Duration::ZERO));
        assert!(matches!(zero.wait(), Err(BarrierError::Broken)));
        let huge = Barrier::builder(2).timeout(Duration::MAX).build().unwrap();
        assert!(
            huge.timeout()
                .is_some_and(|t| t > Duration::from_secs(1 << 30))
        );
        assert_eq!(Barrier::new(2).unwrap().timeout(), None);
    }
}
