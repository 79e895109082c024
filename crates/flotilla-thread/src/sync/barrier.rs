//! [`Barrier`]: Python's `threading.Barrier`, a meeting point for a fixed number of
//! threads, with timeouts, `abort` and `reset`.
//!
//! Each round of `parties` arrivals is a generation. Waiters hold an `Arc` of their
//! generation and wait for its outcome to leave `PENDING`: the last arrival marks it
//! `PASSED`; `abort`, a timed-out waiter or a `reset` with waiters marks it `BROKEN`.
//! Either way the barrier moves on to a fresh generation at once, so a waiter that wakes
//! late still reads its own round's outcome, however many rounds ran meanwhile. Outcomes
//! are only written with the barrier's mutex held.
//!
//! The action (Python's `action=`) runs in the last arrival's thread *without* the
//! mutex, so it may call the barrier's own methods. While it runs, `acting` is set and
//! the round is full: a thread arriving then waits for the next round. The action's
//! round ends when it returns (passed) or panics (broken, and the panic goes on in the
//! thread that ran it); an abort, reset or timeout meanwhile breaks the round as usual,
//! and the acting thread then finds it broken.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use flotilla_core::Deadline;

use super::lock;
use crate::Error;

const PENDING: u8 = 0;
const PASSED: u8 = 1;
const BROKEN: u8 = 2;

/// One round of the barrier.
#[derive(Debug)]
struct Generation {
    /// `PENDING`, `PASSED` or `BROKEN`; written under the barrier's mutex, which orders
    /// it, so `Relaxed` suffices.
    outcome: AtomicU8,
}

impl Generation {
    fn new() -> Arc<Self> {
        Arc::new(Generation {
            outcome: AtomicU8::new(PENDING),
        })
    }

    fn outcome(&self) -> u8 {
        self.outcome.load(Ordering::Relaxed)
    }

    fn end(&self, outcome: u8) {
        self.outcome.store(outcome, Ordering::Relaxed);
    }
}

#[derive(Debug)]
struct State {
    /// Threads waiting in the current generation. Always 0 while `broken`: breaking
    /// starts a fresh generation, and a broken barrier turns every `wait` away.
    count: usize,
    current: Arc<Generation>,
    /// Set by `abort` or a timeout, cleared by `reset`: while set, `wait` fails at once.
    broken: bool,
    /// The last arrival is running the action; arrivals wait for the next round.
    acting: bool,
}

impl State {
    /// Breaks the barrier (abort, a timeout, a failed action): its round ends broken and
    /// every later `wait` fails until `reset`.
    fn break_barrier(&mut self) {
        self.broken = true;
        self.next_generation(BROKEN);
    }

    /// Ends the current generation with `outcome` and starts a fresh, empty one.
    fn next_generation(&mut self, outcome: u8) {
        self.current.end(outcome);
        self.current = Generation::new();
        self.count = 0;
    }
}

/// A barrier for a fixed number of threads: Python's `threading.Barrier`.
///
/// Each thread calls [`wait`](Self::wait); all block until `parties` have arrived, then
/// all are released together, and the barrier is ready for the next round. Each gets
/// its arrival index, `0..parties` (the last to arrive gets `parties - 1`), handy for
/// picking one thread to do some housekeeping.
///
/// The barrier *breaks* when it is [`abort`](Self::abort)ed or when a waiter's timeout
/// passes: every thread waiting then, and every later caller of `wait`, gets
/// [`Error::BrokenBarrier`], until [`reset`](Self::reset) mends it.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use flotilla_thread::Barrier;
///
/// let barrier = Arc::new(Barrier::new(3));
/// let threads: Vec<_> = (0..3)
///     .map(|_| {
///         let barrier = Arc::clone(&barrier);
///         std::thread::spawn(move || barrier.wait_timeout(Duration::from_secs(10)))
///     })
///     .collect();
/// let mut indices: Vec<usize> = threads
///     .into_iter()
///     .map(|t| t.join().unwrap())
///     .collect::<Result<_, _>>()?;
/// indices.sort();
/// assert_eq!(indices, [0, 1, 2]);
/// # Ok::<(), flotilla_thread::Error>(())
/// ```
pub struct Barrier {
    parties: usize,
    state: Mutex<State>,
    cv: Condvar,
    action: Option<Action>,
    timeout: Option<Duration>,
}

/// What the last arrival of each round runs before the round is released.
type Action = Box<dyn Fn() + Send + Sync + 'static>;

/// Options for a [`Barrier`]: Python's `Barrier(parties, action=None, timeout=None)`.
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::time::Duration;
/// use flotilla_thread::Barrier;
///
/// let rounds = Arc::new(AtomicUsize::new(0));
/// let counted = Arc::clone(&rounds);
/// let barrier = Barrier::builder(2)
///     .action(move || {
///         counted.fetch_add(1, Ordering::SeqCst);
///     })
///     .timeout(Duration::from_secs(10)) // for every wait()
///     .build();
/// std::thread::scope(|s| {
///     s.spawn(|| barrier.wait().unwrap());
///     barrier.wait().unwrap();
/// });
/// assert_eq!(rounds.load(Ordering::SeqCst), 1);
/// ```
#[must_use = "a builder does nothing until build() is called"]
pub struct BarrierBuilder {
    parties: usize,
    action: Option<Action>,
    timeout: Option<Duration>,
}

impl BarrierBuilder {
    /// Runs `action` once per round, in the thread that arrives last, before any waiter
    /// is released. If it panics, the barrier breaks (every waiter of that round gets
    /// [`Error::BrokenBarrier`]) and the panic continues in the thread that ran it, as
    /// Python's exception does.
    pub fn action<F>(mut self, action: F) -> Self
    where
        F: Fn() + Send + Sync + 'static,
    {
        self.action = Some(Box::new(action));
        self
    }

    /// The timeout of every [`wait`](Barrier::wait) called with `None`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The barrier.
    pub fn build(self) -> Barrier {
        Barrier {
            parties: self.parties.max(1),
            state: Mutex::new(State {
                count: 0,
                current: Generation::new(),
                broken: false,
                acting: false,
            }),
            cv: Condvar::new(),
            action: self.action,
            timeout: self.timeout,
        }
    }
}

impl fmt::Debug for BarrierBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BarrierBuilder")
            .field("parties", &self.parties)
            .field("action", &self.action.is_some())
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Barrier {
    /// A barrier for `parties` threads. Like std's `Barrier`, 0 parties behaves as 1:
    /// every `wait` passes at once.
    ///
    /// # Examples
    ///
    /// ```
    /// let barrier = flotilla_thread::Barrier::new(1);
    /// assert_eq!(barrier.wait()?, 0);
    /// # Ok::<(), flotilla_thread::Error>(())
    /// ```
    pub fn new(parties: usize) -> Self {
        Barrier::builder(parties).build()
    }

    /// A builder for a barrier of `parties` threads with an action or a default timeout.
    pub fn builder(parties: usize) -> BarrierBuilder {
        BarrierBuilder {
            parties,
            action: None,
            timeout: None,
        }
    }

    /// How many threads must call [`wait`](Self::wait) to pass the barrier.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(flotilla_thread::Barrier::new(4).parties(), 4);
    /// ```
    pub fn parties(&self) -> usize {
        self.parties
    }

    /// How many threads are waiting in the current round (0 while broken).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(flotilla_thread::Barrier::new(2).n_waiting(), 0);
    /// ```
    pub fn n_waiting(&self) -> usize {
        lock(&self.state).count
    }

    /// Whether the barrier is broken (see the type's documentation).
    ///
    /// # Examples
    ///
    /// ```
    /// let barrier = flotilla_thread::Barrier::new(2);
    /// barrier.abort();
    /// assert!(barrier.broken());
    /// barrier.reset();
    /// assert!(!barrier.broken());
    /// ```
    pub fn broken(&self) -> bool {
        lock(&self.state).broken
    }

    /// Waits until `parties` threads have called `wait` (or the barrier's default
    /// timeout, if it was built with one, passes): Python's `Barrier.wait()`. Returns
    /// this thread's arrival index, `0..parties`.
    ///
    /// The last arrival runs the barrier's action, if it has one, before the others are
    /// released.
    ///
    /// # Errors
    ///
    /// [`Error::BrokenBarrier`] if the barrier is broken when called, breaks while
    /// waiting (abort, another waiter's timeout, or a reset), or the default timeout
    /// passes, which also breaks it for the other waiters, as in Python.
    ///
    /// # Examples
    ///
    /// ```
    /// let barrier = flotilla_thread::Barrier::new(1);
    /// assert_eq!(barrier.wait()?, 0);
    /// # Ok::<(), flotilla_thread::Error>(())
    /// ```
    pub fn wait(&self) -> Result<usize, Error> {
        self.wait_within(None)
    }

    /// Like [`wait`](Self::wait), but gives up after `timeout` (instead of the default
    /// one): Python's `Barrier.wait(timeout)`. A timeout breaks the barrier, for the
    /// other waiters too, and fails with [`Error::BrokenBarrier`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use flotilla_thread::{Barrier, Error};
    ///
    /// let barrier = Barrier::new(2);
    /// // Nobody else comes: the wait times out and breaks the barrier.
    /// let alone = barrier.wait_timeout(Duration::from_millis(10));
    /// assert!(matches!(alone, Err(Error::BrokenBarrier)));
    /// assert!(barrier.broken());
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> Result<usize, Error> {
        self.wait_within(Some(timeout))
    }

    /// The body of [`wait`](Self::wait) and [`wait_timeout`](Self::wait_timeout); `None`
    /// uses the barrier's default timeout.
    fn wait_within(&self, timeout: Option<Duration>) -> Result<usize, Error> {
        let deadline = Deadline::after(timeout.or(self.timeout));
        let mut state = lock(&self.state);
        // A round whose action is running is full: wait for the next one.
        while state.acting && !state.broken {
            if deadline.expired() {
                state.break_barrier();
                self.cv.notify_all();
                return Err(Error::BrokenBarrier);
            }
            state = deadline.wait(&self.cv, state);
        }
        if state.broken {
            return Err(Error::BrokenBarrier);
        }
        let index = state.count;
        if index + 1 >= self.parties {
            let Some(action) = &self.action else {
                state.next_generation(PASSED);
                self.cv.notify_all();
                return Ok(index);
            };
            let round = Arc::clone(&state.current);
            state.acting = true;
            drop(state);
            let outcome = catch_unwind(AssertUnwindSafe(action));
            let mut state = lock(&self.state);
            state.acting = false;
            // An abort, reset or timeout while the action ran already broke the round.
            let ours = round.outcome() == PENDING;
            match outcome {
                Ok(()) if ours => state.next_generation(PASSED),
                Err(_) if ours => state.break_barrier(),
                _ => {}
            }
            self.cv.notify_all();
            drop(state);
            return match outcome {
                Ok(()) if ours => Ok(index),
                Ok(()) => Err(Error::BrokenBarrier),
                Err(panic) => resume_unwind(panic),
            };
        }
        state.count += 1;
        let round = Arc::clone(&state.current);
        loop {
            // The outcome is checked before the deadline: a round that completed as the
            // timeout ran out still counts as passed.
            match round.outcome() {
                PASSED => return Ok(index),
                BROKEN => return Err(Error::BrokenBarrier),
                _ => {}
            }
            if deadline.expired() {
                state.break_barrier();
                self.cv.notify_all();
                return Err(Error::BrokenBarrier);
            }
            state = deadline.wait(&self.cv, state);
        }
    }

    /// Breaks the barrier: the threads waiting now and all later callers of
    /// [`wait`](Self::wait) get [`Error::BrokenBarrier`] until [`reset`](Self::reset).
    /// Python's `Barrier.abort`, for when a party cannot come.
    ///
    /// # Examples
    ///
    /// ```
    /// use flotilla_thread::{Barrier, Error};
    ///
    /// let barrier = Barrier::new(2);
    /// barrier.abort();
    /// assert!(matches!(barrier.wait(), Err(Error::BrokenBarrier)));
    /// ```
    pub fn abort(&self) {
        lock(&self.state).break_barrier();
        self.cv.notify_all();
    }

    /// Returns the barrier to its initial state, empty and not broken. Threads waiting
    /// on it now get [`Error::BrokenBarrier`], as in Python.
    ///
    /// # Examples
    ///
    /// ```
    /// let barrier = flotilla_thread::Barrier::new(1);
    /// barrier.abort();
    /// barrier.reset();
    /// assert_eq!(barrier.wait()?, 0);
    /// # Ok::<(), flotilla_thread::Error>(())
    /// ```
    pub fn reset(&self) {
        let mut state = lock(&self.state);
        if state.count > 0 {
            state.next_generation(BROKEN);
            self.cv.notify_all();
        }
        state.broken = false;
    }
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = lock(&self.state);
        f.debug_struct("Barrier")
            .field("parties", &self.parties)
            .field("n_waiting", &state.count)
            .field("broken", &state.broken)
            .field("action", &self.action.is_some())
            .field("timeout", &self.timeout)
            .finish()
    }
}
