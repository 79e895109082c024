//! [`Deadline`]: the instant a timed wait gives up, for every blocking call in flotilla
//! that takes an `Option<Duration>` timeout.

use std::cmp::Ordering;
use std::sync::{Condvar, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// The instant a timed wait gives up, computed once so that spurious wakeups and
/// re-waits do not extend it.
///
/// A deadline that never comes stands for "wait forever": no timeout, or a timeout so
/// large that `Instant` cannot represent its end. Deadlines compare by when they come,
/// and one that never comes is later than all others, so `a.min(b)` is whichever gives
/// up first.
///
/// This is for authors of blocking calls (executors, primitives); a blocking call
/// checks its condition, then [`expired`](Deadline::expired), then
/// [`wait`](Deadline::wait)s, in a loop:
///
/// ```
/// use std::sync::{Condvar, Mutex};
/// use std::time::Duration;
/// use flotilla_core::Deadline;
///
/// /// Waits until `*ready` is true, or `timeout` passes; whether it became true.
/// fn wait_ready(ready: &Mutex<bool>, cv: &Condvar, timeout: Option<Duration>) -> bool {
///     let deadline = Deadline::after(timeout);
///     let mut guard = ready.lock().unwrap();
///     loop {
///         if *guard {
///             return true;
///         }
///         if deadline.expired() {
///             return false;
///         }
///         guard = deadline.wait(cv, guard);
///     }
/// }
///
/// let (ready, cv) = (Mutex::new(false), Condvar::new());
/// assert!(!wait_ready(&ready, &cv, Some(Duration::from_millis(1))));
/// *ready.lock().unwrap() = true;
/// assert!(wait_ready(&ready, &cv, None));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Deadline(Option<Instant>);

impl Deadline {
    /// The deadline that never comes.
    pub const NEVER: Deadline = Deadline(None);

    /// The deadline `timeout` from now; `None` (or a timeout too large to represent)
    /// never comes.
    pub fn after(timeout: Option<Duration>) -> Self {
        Deadline(timeout.and_then(|t| Instant::now().checked_add(t)))
    }

    /// The deadline at `instant`.
    pub const fn at(instant: Instant) -> Self {
        Deadline(Some(instant))
    }

    /// The instant it comes; `None` when it never does.
    pub const fn instant(&self) -> Option<Instant> {
        self.0
    }

    /// Whether the deadline has passed.
    pub fn expired(&self) -> bool {
        self.0.is_some_and(|end| Instant::now() >= end)
    }

    /// The time left until the deadline, zero once it has passed; `None` when it never
    /// comes.
    pub fn remaining(&self) -> Option<Duration> {
        self.0
            .map(|end| end.saturating_duration_since(Instant::now()))
    }

    /// Blocks on `cv` once: until a notification, a spurious wakeup or the deadline
    /// (returning at once when it has passed). A poisoned mutex is recovered, not
    /// reported. Callers re-check their condition, then [`expired`](Self::expired), in a
    /// loop.
    pub fn wait<'a, T>(&self, cv: &Condvar, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
        match self.remaining() {
            None => cv.wait(guard).unwrap_or_else(PoisonError::into_inner),
            Some(left) if left.is_zero() => guard,
            Some(left) => {
                cv.wait_timeout(guard, left)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
            }
        }
    }
}

impl Ord for Deadline {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self.0, other.0) {
            (Some(a), Some(b)) => a.cmp(&b),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        }
    }
}

impl PartialOrd for Deadline {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
