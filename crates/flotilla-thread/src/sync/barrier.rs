//! [`Barrier`]: Python's `threading.Barrier`, a meeting point for a fixed number of
//! threads, with timeouts, `abort` and `reset`.
//!
//! Each round of `parties` arrivals is a generation. Waiters hold an `Arc` of their
//! generation and wait for its outcome to leave `PENDING`: the last arrival marks it
//! `PASSED`; `abort`, a timed-out waiter or a `reset` with waiters marks it `BROKEN`.
//! Either way the barrier moves on to a fresh generation at once, so a waiter that wakes
//! late still reads its own round's outcome, however many rounds ran meanwhile. Outcomes
//! are only written with the barrier's mutex held.

use std::fmt;
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
}

impl State {
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
///         std::thread::spawn(move || barrier.wait(Some(Duration::from_secs(10))))
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
}

impl Barrier {
    /// A barrier for `parties` threads. Like std's `Barrier`, 0 parties behaves as 1:
    /// every `wait` passes at once.
    ///
    /// # Examples
    ///
    /// ```
    /// let barrier = flotilla_thread::Barrier::new(1);
    /// assert_eq!(barrier.wait(None)?, 0);
    /// # Ok::<(), flotilla_thread::Error>(())
    /// ```
    pub fn new(parties: usize) -> Self {
        Barrier {
            parties: parties.max(1),
            state: Mutex::new(State {
                count: 0,
                current: Generation::new(),
                broken: false,
            }),
            cv: Condvar::new(),
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

    /// Waits until `parties` threads have called `wait`, or until `timeout` passes
    /// (`None`: no timeout). Returns this thread's arrival index, `0..parties`.
    ///
    /// # Errors
    ///
    /// [`Error::BrokenBarrier`] if the barrier is broken when called, breaks while
    /// waiting (abort, another waiter's timeout, or a reset), or this call's own
    /// timeout passes, which also breaks it for the other waiters, as in Python.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use flotilla_thread::{Barrier, Error};
    ///
    /// let barrier = Barrier::new(2);
    /// // Nobody else comes: the wait times out and breaks the barrier.
    /// let alone = barrier.wait(Some(Duration::from_millis(10)));
    /// assert!(matches!(alone, Err(Error::BrokenBarrier)));
    /// assert!(barrier.broken());
    /// ```
    pub fn wait(&self, timeout: Option<Duration>) -> Result<usize, Error> {
        let mut state = lock(&self.state);
        if state.broken {
            return Err(Error::BrokenBarrier);
        }
        let index = state.count;
        if index + 1 >= self.parties {
            state.next_generation(PASSED);
            self.cv.notify_all();
            return Ok(index);
        }
        state.count += 1;
        let round = Arc::clone(&state.current);
        let deadline = Deadline::after(timeout);
        loop {
            // The outcome is checked before the deadline: a round that completed as the
            // timeout ran out still counts as passed.
            match round.outcome() {
                PASSED => return Ok(index),
                BROKEN => return Err(Error::BrokenBarrier),
                _ => {}
            }
            if deadline.expired() {
                state.broken = true;
                state.next_generation(BROKEN);
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
    /// assert!(matches!(barrier.wait(None), Err(Error::BrokenBarrier)));
    /// ```
    pub fn abort(&self) {
        let mut state = lock(&self.state);
        state.broken = true;
        state.next_generation(BROKEN);
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
    /// assert_eq!(barrier.wait(None)?, 0);
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
            .finish()
    }
}
