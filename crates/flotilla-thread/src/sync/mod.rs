//! Python's `threading` synchronization primitives that Rust's standard library lacks or
//! shapes differently: [`Event`], [`Semaphore`] and [`BoundedSemaphore`], [`RLock`],
//! [`Condition`] and [`Barrier`], each with a timed form of every blocking call.
//!
//! All of them are built on `std::sync::{Mutex, Condvar}`, and count their timeouts down
//! to a [`flotilla_core::Deadline`]. None runs user code while
//! holding its internal lock, so a panic in user code cannot leave one half-updated;
//! that is why a poisoned internal mutex is simply recovered
//! (`PoisonError::into_inner`) rather than reported.

mod barrier;
mod condition;
mod event;
mod rlock;
mod semaphore;

use std::sync::{Mutex, MutexGuard, PoisonError};

pub use self::barrier::{Barrier, BarrierBuilder};
pub use self::condition::{Condition, ConditionGuard};
pub use self::event::Event;
pub use self::rlock::{RLock, RLockGuard};
pub use self::semaphore::{BoundedSemaphore, Semaphore, SemaphorePermit};

/// Locks `mutex`, recovering it if a panicking thread poisoned it. Only for mutexes
/// whose state is never left inconsistent by a panic (see the module doc).
pub(crate) fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests;
