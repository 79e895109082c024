//! Python's `threading` synchronization primitives that Rust's standard library lacks or
//! shapes differently: [`Event`], [`Semaphore`] and [`BoundedSemaphore`], [`RLock`],
//! [`Condition`] and [`Barrier`], each with a timed form of every blocking call.
//!
//! All of them are built on `std::sync::{Mutex, Condvar}`. None runs user code while
//! holding its internal lock, so a panic in user code cannot leave one half-updated;
//! that is why a poisoned internal mutex is simply recovered
//! (`PoisonError::into_inner`) rather than reported.

mod barrier;
mod condition;
mod event;
mod rlock;
mod semaphore;

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

pub use self::barrier::Barrier;
pub use self::condition::{Condition, ConditionGuard};
pub use self::event::Event;
pub use self::rlock::{RLock, RLockGuard};
pub use self::semaphore::{BoundedSemaphore, Semaphore, SemaphorePermit};

/// Locks `mutex`, recovering it if a panicking thread poisoned it. Only for mutexes
/// whose state is never left inconsistent by a panic (see the module doc).
pub(crate) fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The instant a timed wait gives up, computed once so that spurious wakeups and
/// re-waits do not extend it. `None` inside means "wait forever": no timeout, or a
/// timeout so large that `Instant` cannot represent its end.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline(Option<Instant>);

impl Deadline {
    /// The deadline `timeout` from now; `None` never expires.
    pub(crate) fn after(timeout: Option<Duration>) -> Self {
        Deadline(timeout.and_then(|t| Instant::now().checked_add(t)))
    }

    /// Whether the deadline has passed.
    pub(crate) fn expired(&self) -> bool {
        self.0.is_some_and(|end| Instant::now() >= end)
    }

    /// Blocks on `cv` once: until a notification, a spurious wakeup or the deadline.
    /// Callers re-check their condition, then [`expired`](Self::expired), in a loop.
    pub(crate) fn wait<'a, T>(&self, cv: &Condvar, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
        match self.0 {
            None => cv.wait(guard).unwrap_or_else(PoisonError::into_inner),
            Some(end) => {
                let left = end.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return guard;
                }
                cv.wait_timeout(guard, left)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
            }
        }
    }
}

#[cfg(test)]
mod tests;
