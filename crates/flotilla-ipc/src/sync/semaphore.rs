//! [`Semaphore`] and [`BoundedSemaphore`]: Python's `multiprocessing.Semaphore` and
//! `BoundedSemaphore`, a counter of permits in shared memory, with [`SemaphorePermit`]
//! as the RAII form of an acquisition.
//!
//! # Words
//!
//! - `VALUE`: the free permits, the futex word acquirers sleep on while it is 0. Only
//!   compare-and-swap changes it, so it never goes below 0 nor above `BOUND`.
//! - `WAITERS`: acquirers about to sleep or asleep (rule 3 of the `sync` module doc), so
//!   that a release makes a wake-up syscall only when someone may sleep.
//! - `BOUND`: the largest value, fixed at creation: the initial value of a bounded
//!   semaphore, `u32::MAX` otherwise.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Kind, Segment, to_u32};
use crate::futex::{notify, sleep, spin};
use flotilla_core::Deadline;

use crate::error::{CreateError, ReleaseError};

const VALUE: usize = 4;
const WAITERS: usize = 8;
const BOUND: usize = 12;

/// The counter behind both semaphores.
#[derive(Clone)]
struct Inner {
    segment: Segment,
}

impl Inner {
    /// A counter at `value`, bounded by it for a [`BoundedSemaphore`], by `u32::MAX`
    /// otherwise.
    fn new(kind: Kind, value: usize) -> Result<Self, CreateError> {
        let value = to_u32(value, "a semaphore value of")?;
        let bound = if kind == Kind::BoundedSemaphore {
            value
        } else {
            u32::MAX
        };
        let (segment, ()) = Segment::new(kind, |s| {
            s.u32_at(VALUE).store(value, Ordering::Relaxed);
            s.u32_at(BOUND).store(bound, Ordering::Relaxed);
            Ok(())
        })?;
        Ok(Inner { segment })
    }

    fn value_word(&self) -> &AtomicU32 {
        self.segment.u32_at(VALUE)
    }

    fn waiters(&self) -> &AtomicU32 {
        self.segment.u32_at(WAITERS)
    }

    fn bound(&self) -> u32 {
        self.segment.u32_at(BOUND).load(Ordering::Relaxed)
    }

    fn value(&self) -> usize {
        self.value_word().load(Ordering::Relaxed) as usize
    }

    fn try_acquire(&self) -> bool {
        let word = self.value_word();
        let mut value = word.load(Ordering::Relaxed);
        while value > 0 {
            match word.compare_exchange_weak(value, value - 1, Ordering::SeqCst, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(now) => value = now,
            }
        }
        false
    }

    fn acquire_within(&self, timeout: Option<Duration>) -> bool {
        if self.try_acquire() {
            return true;
        }
        let deadline = Deadline::after(timeout);
        if spin(|| self.value_word().load(Ordering::Relaxed) > 0 && self.try_acquire()) {
            return true;
        }
        loop {
            // The value is checked before the deadline, so a waiter woken by a release
            // as its timeout ran out still takes the permit it was woken for.
            if self.try_acquire() {
                return true;
            }
            if deadline.expired() {
                return false;
            }
            self.waiters().fetch_add(1, Ordering::SeqCst);
            if self.value_word().load(Ordering::SeqCst) == 0 {
                sleep(self.value_word(), 0, deadline);
            }
            self.waiters().fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Adds `n` permits unless that would pass the bound; wakes up to `n` sleepers.
    fn release(&self, n: usize) -> Result<(), ReleaseError> {
        let bound = self.bound();
        let over = || ReleaseError::OverReleased {
            bound: bound as usize,
        };
        let n = u32::try_from(n).map_err(|_| over())?;
        let word = self.value_word();
        let mut value = word.load(Ordering::Relaxed);
        loop {
            let new = value
                .checked_add(n)
                .filter(|&new| new <= bound)
                .ok_or_else(over)?;
            match word.compare_exchange_weak(value, new, Ordering::SeqCst, Ordering::Relaxed) {
                Ok(_) => break,
                Err(now) => value = now,
            }
        }
        let waiters = self.waiters().load(Ordering::SeqCst);
        if waiters > 0 {
            notify(word, n.min(waiters));
        }
        Ok(())
    }
}

macro_rules! semaphore_common {
    ($name:ident, $kind:expr) => {
        impl $name {
            /// The number of free permits now: Python's `get_value()`. Another process
            /// may change it at once; use it for reports, not for deciding whether to
            /// acquire.
            ///
            /// ```
            #[doc = concat!("let sem = flotilla_ipc::", stringify!($name), "::new(2).unwrap();")]
            /// assert!(sem.try_acquire());
            /// assert_eq!(sem.value(), 1);
            /// ```
            pub fn value(&self) -> usize {
                self.inner.value()
            }

            /// Takes a permit, blocking until one is free: Python's `acquire()`.
            ///
            /// ```
            #[doc = concat!("let sem = flotilla_ipc::", stringify!($name), "::new(1).unwrap();")]
            /// sem.acquire();
            /// assert_eq!(sem.value(), 0);
            /// ```
            pub fn acquire(&self) {
                self.inner.acquire_within(None);
            }

            /// Takes a permit, blocking until one is free or `timeout` passes: Python's
            /// `acquire(timeout=..)`. Returns whether a permit was taken.
            ///
            /// ```
            /// use std::time::Duration;
            ///
            #[doc = concat!("let sem = flotilla_ipc::", stringify!($name), "::new(1).unwrap();")]
            /// assert!(sem.acquire_timeout(Duration::from_secs(60)));
            /// assert!(!sem.acquire_timeout(Duration::from_millis(10)));
            /// ```
            pub fn acquire_timeout(&self, timeout: Duration) -> bool {
                self.inner.acquire_within(Some(timeout))
            }

            /// Takes a permit if one is free now, without blocking.
            ///
            /// ```
            #[doc = concat!("let sem = flotilla_ipc::", stringify!($name), "::new(1).unwrap();")]
            /// assert!(sem.try_acquire());
            /// assert!(!sem.try_acquire());
            /// ```
            pub fn try_acquire(&self) -> bool {
                self.inner.try_acquire()
            }

            /// [`acquire`](Self::acquire) in RAII form: the permit is released when the
            /// returned guard is dropped, as Python's `with semaphore:` does.
            ///
            /// ```
            #[doc = concat!("let sem = flotilla_ipc::", stringify!($name), "::new(1).unwrap();")]
            /// {
            ///     let _permit = sem.acquire_permit();
            ///     assert_eq!(sem.value(), 0);
            /// }
            /// assert_eq!(sem.value(), 1);
            /// ```
            pub fn acquire_permit(&self) -> SemaphorePermit<'_> {
                self.inner.acquire_within(None);
                SemaphorePermit { inner: &self.inner }
            }

            /// [`acquire_timeout`](Self::acquire_timeout) in RAII form: `None` if
            /// `timeout` passed first.
            pub fn acquire_permit_timeout(&self, timeout: Duration) -> Option<SemaphorePermit<'_>> {
                self.inner
                    .acquire_within(Some(timeout))
                    .then_some(SemaphorePermit { inner: &self.inner })
            }

            /// [`try_acquire`](Self::try_acquire) in RAII form.
            ///
            /// ```
            #[doc = concat!("let sem = flotilla_ipc::", stringify!($name), "::new(1).unwrap();")]
            /// let permit = sem.try_acquire_permit();
            /// assert!(permit.is_some());
            /// assert!(sem.try_acquire_permit().is_none());
            /// ```
            pub fn try_acquire_permit(&self) -> Option<SemaphorePermit<'_>> {
                self.inner
                    .try_acquire()
                    .then_some(SemaphorePermit { inner: &self.inner })
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                self.inner.segment.serialize(serializer)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let segment = Segment::deserialize(deserializer, $kind)?;
                Ok($name {
                    inner: Inner { segment },
                })
            }
        }
    };
}

/// A counting semaphore shared by processes: Python's `multiprocessing.Semaphore`.
///
/// The value counts free permits. [`acquire`](Self::acquire) takes one, blocking while
/// there are none; [`release`](Self::release) gives permits back and wakes as many
/// waiters, in any process. Nothing ties a release to an earlier acquire: any process
/// may release. Give it to other processes by fork, as a process argument or over a
/// `Connection`; a clone is another handle to the same semaphore.
///
/// # When a process dies
///
/// A semaphore has no owner, so (as with Python's and POSIX semaphores) a process that
/// dies holding permits takes them with it: the value stays lower by that many. Where
/// holders may be killed and exclusion is what you need, use a [`Lock`](crate::Lock),
/// which reports its dead holder.
///
/// # Examples
///
/// At most two processes in the section at once:
///
/// ```no_run
/// use flotilla_ipc::Semaphore;
///
/// fn work(slots: Semaphore) {
///     let _permit = slots.acquire_permit();
///     // ... at most two processes are here at a time ...
/// }
///
/// # fn main() {
/// let slots = Semaphore::new(2).unwrap();
/// // flotilla_process::get_context(None).process(work, slots.clone()).start() ...
/// # work(slots);
/// # }
/// ```
#[derive(Clone)]
pub struct Semaphore {
    inner: Inner,
}

impl Semaphore {
    /// A semaphore with `value` free permits (Python's default is 1), in a small shared
    /// segment of its own.
    ///
    /// # Errors
    ///
    /// [`CreateError::InvalidArgument`] for a value beyond `u32::MAX`; [`CreateError::Os`] if the
    /// system refuses the memory.
    ///
    /// ```
    /// let sem = flotilla_ipc::Semaphore::new(3).unwrap();
    /// assert_eq!(sem.value(), 3);
    /// ```
    pub fn new(value: usize) -> Result<Self, CreateError> {
        Ok(Semaphore {
            inner: Inner::new(Kind::Semaphore, value)?,
        })
    }

    /// Gives back `n` permits and wakes up to `n` waiters, in any process.
    ///
    /// # Errors
    ///
    /// [`ReleaseError::OverReleased`] if the value would pass `u32::MAX` (Python's
    /// limit is `SEM_VALUE_MAX`); the value is then unchanged.
    ///
    /// ```
    /// let sem = flotilla_ipc::Semaphore::new(0).unwrap();
    /// sem.release(2).unwrap();
    /// assert_eq!(sem.value(), 2);
    /// ```
    pub fn release(&self, n: usize) -> Result<(), ReleaseError> {
        self.inner.release(n)
    }
}

semaphore_common!(Semaphore, Kind::Semaphore);

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore")
            .field("value", &self.value())
            .finish()
    }
}

/// A semaphore whose value may never exceed its initial value: Python's
/// `multiprocessing.BoundedSemaphore`.
///
/// A release that would lift the value past the initial value is refused with
/// [`ReleaseError::OverReleased`] and changes nothing, in whichever process it was
/// made: it catches the bug of releasing a resource more often than it was taken.
/// Everything else is as for [`Semaphore`].
///
/// # Examples
///
/// ```
/// use flotilla_ipc::{BoundedSemaphore, Error, ReleaseError};
///
/// let pool = BoundedSemaphore::new(2)?;
/// assert!(pool.try_acquire());
/// pool.release(1)?;
/// assert!(matches!(pool.release(1), Err(ReleaseError::OverReleased { bound: 2 })));
/// assert_eq!(pool.value(), 2);
/// # Ok::<(), Error>(())
/// ```
#[derive(Clone)]
pub struct BoundedSemaphore {
    inner: Inner,
}

impl BoundedSemaphore {
    /// A bounded semaphore with `value` free permits, which is also its bound.
    ///
    /// # Errors
    ///
    /// As for [`Semaphore::new`].
    ///
    /// ```
    /// let sem = flotilla_ipc::BoundedSemaphore::new(3).unwrap();
    /// assert_eq!((sem.value(), sem.bound()), (3, 3));
    /// ```
    pub fn new(value: usize) -> Result<Self, CreateError> {
        Ok(BoundedSemaphore {
            inner: Inner::new(Kind::BoundedSemaphore, value)?,
        })
    }

    /// The bound: the initial value, which the value may never exceed.
    ///
    /// ```
    /// assert_eq!(flotilla_ipc::BoundedSemaphore::new(5).unwrap().bound(), 5);
    /// ```
    pub fn bound(&self) -> usize {
        self.inner.bound() as usize
    }

    /// Gives back `n` permits and wakes up to `n` waiters, in any process.
    ///
    /// # Errors
    ///
    /// [`ReleaseError::OverReleased`] if the value would exceed the
    /// [`bound`](Self::bound); the value is then left unchanged.
    ///
    /// ```
    /// let sem = flotilla_ipc::BoundedSemaphore::new(2).unwrap();
    /// assert!(sem.try_acquire() && sem.try_acquire());
    /// sem.release(2)?;
    /// assert!(sem.release(1).is_err());
    /// # Ok::<(), flotilla_ipc::ReleaseError>(())
    /// ```
    pub fn release(&self, n: usize) -> Result<(), ReleaseError> {
        self.inner.release(n)
    }
}

semaphore_common!(BoundedSemaphore, Kind::BoundedSemaphore);

impl fmt::Debug for BoundedSemaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundedSemaphore")
            .field("value", &self.value())
            .field("bound", &self.bound())
            .finish()
    }
}

/// One permit of a [`Semaphore`] or [`BoundedSemaphore`], released when dropped.
///
/// If a [`BoundedSemaphore`] was meanwhile released past its bound by hand, the drop
/// cannot report it (a destructor has no caller to tell): the permit is then not
/// returned, and a warning is logged.
///
/// ```
/// let sem = flotilla_ipc::Semaphore::new(1).unwrap();
/// let permit = sem.acquire_permit();
/// assert_eq!(sem.value(), 0);
/// drop(permit);
/// assert_eq!(sem.value(), 1);
/// ```
#[must_use = "the permit is released at once if it is not kept"]
pub struct SemaphorePermit<'a> {
    inner: &'a Inner,
}

impl Drop for SemaphorePermit<'_> {
    fn drop(&mut self) {
        if let Err(err) = self.inner.release(1) {
            flotilla_core::event!(flotilla_core::log::Level::WARN, %err, "semaphore permit not returned");
        }
    }
}

impl fmt::Debug for SemaphorePermit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemaphorePermit").finish_non_exhaustive()
    }
}
