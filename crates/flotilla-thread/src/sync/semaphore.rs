//! [`Semaphore`] and [`BoundedSemaphore`]: Python's counting semaphores, with
//! [`SemaphorePermit`] as the RAII form of an acquisition.
//!
//! Both share one counter (`Inner`); the bounded kind only adds the check that a release
//! never lifts the value past the initial one.

use std::fmt;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use flotilla_core::Deadline;

use super::lock;
use crate::Error;

/// The counter behind both semaphores.
struct Inner {
    state: Mutex<State>,
    cv: Condvar,
    /// `Some(initial value)` for a [`BoundedSemaphore`].
    bound: Option<usize>,
}

#[derive(Debug)]
struct State {
    value: usize,
    /// Threads blocked in `acquire`, so that `release(n)` wakes at most that many.
    waiters: usize,
}

impl Inner {
    const fn new(value: usize, bound: Option<usize>) -> Self {
        Inner {
            state: Mutex::new(State { value, waiters: 0 }),
            cv: Condvar::new(),
            bound,
        }
    }

    fn value(&self) -> usize {
        lock(&self.state).value
    }

    fn acquire_within(&self, timeout: Option<Duration>) -> bool {
        let mut state = lock(&self.state);
        let deadline = Deadline::after(timeout);
        loop {
            // The value is checked before the deadline, so a waiter that was woken by a
            // release as its timeout ran out still takes the permit it was woken for.
            if state.value > 0 {
                state.value -= 1;
                return true;
            }
            if deadline.expired() {
                return false;
            }
            state.waiters += 1;
            state = deadline.wait(&self.cv, state);
            state.waiters -= 1;
        }
    }

    fn try_acquire(&self) -> bool {
        let mut state = lock(&self.state);
        if state.value > 0 {
            state.value -= 1;
            true
        } else {
            false
        }
    }

    fn release(&self, n: usize) -> Result<(), Error> {
        let mut state = lock(&self.state);
        let value = match self.bound {
            Some(bound) => match state.value.checked_add(n) {
                Some(v) if v <= bound => v,
                _ => return Err(Error::SemaphoreOverReleased { bound }),
            },
            None => state.value.saturating_add(n),
        };
        state.value = value;
        for _ in 0..n.min(state.waiters) {
            self.cv.notify_one();
        }
        Ok(())
    }
}

/// A counting semaphore: Python's `threading.Semaphore`.
///
/// The value counts free permits. [`acquire`](Self::acquire) takes one, blocking while
/// there are none; [`release`](Self::release) gives permits back and wakes as many
/// waiters. Nothing ties a release to an earlier acquire: any thread may release, and
/// releasing more than was acquired simply raises the value (use [`BoundedSemaphore`]
/// to forbid that). [`acquire_permit`](Self::acquire_permit) is the RAII form: the
/// permit is released when the returned [`SemaphorePermit`] is dropped, as Python's
/// `with semaphore:` does.
///
/// # Examples
///
/// At most two threads in the section at once:
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use flotilla_thread::Semaphore;
///
/// let slots = Arc::new(Semaphore::new(2));
/// let inside = Arc::new(AtomicUsize::new(0));
/// let workers: Vec<_> = (0..4)
///     .map(|_| {
///         let (slots, inside) = (Arc::clone(&slots), Arc::clone(&inside));
///         std::thread::spawn(move || {
///             let _permit = slots.acquire_permit();
///             assert!(inside.fetch_add(1, Ordering::SeqCst) < 2);
///             inside.fetch_sub(1, Ordering::SeqCst);
///         })
///     })
///     .collect();
/// for worker in workers {
///     worker.join().unwrap();
/// }
/// assert_eq!(slots.value(), 2);
/// ```
pub struct Semaphore {
    inner: Inner,
}

impl Semaphore {
    /// A semaphore with `value` free permits (Python's default is 1).
    ///
    /// # Examples
    ///
    /// ```
    /// let sem = flotilla_thread::Semaphore::new(3);
    /// assert_eq!(sem.value(), 3);
    /// ```
    pub const fn new(value: usize) -> Self {
        Semaphore {
            inner: Inner::new(value, None),
        }
    }

    /// The number of free permits now. Another thread may change it at once; use it
    /// for reports, not for deciding whether to acquire.
    ///
    /// # Examples
    ///
    /// ```
    /// let sem = flotilla_thread::Semaphore::new(1);
    /// assert!(sem.try_acquire());
    /// assert_eq!(sem.value(), 0);
    /// ```
    pub fn value(&self) -> usize {
        self.inner.value()
    }

    /// Takes a permit, blocking until one is free: Python's `acquire()`.
    ///
    /// # Examples
    ///
    /// ```
    /// let sem = flotilla_thread::Semaphore::new(1);
    /// sem.acquire();
    /// assert_eq!(sem.value(), 0);
    /// ```
    pub fn acquire(&self) {
        self.inner.acquire_within(None);
    }

    /// Takes a permit, blocking until one is free or `timeout` passes: Python's
    /// `acquire(timeout=..)`. Returns whether a permit was taken.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let sem = flotilla_thread::Semaphore::new(1);
    /// assert!(sem.acquire_timeout(Duration::from_secs(1)));
    /// assert!(!sem.acquire_timeout(Duration::ZERO));
    /// ```
    pub fn acquire_timeout(&self, timeout: Duration) -> bool {
        self.inner.acquire_within(Some(timeout))
    }

    /// Takes a permit if one is free now, without blocking.
    ///
    /// # Examples
    ///
    /// ```
    /// let sem = flotilla_thread::Semaphore::new(1);
    /// assert!(sem.try_acquire());
    /// assert!(!sem.try_acquire());
    /// ```
    pub fn try_acquire(&self) -> bool {
        self.inner.try_acquire()
    }

    /// Gives back `n` permits and wakes up to `n` waiting threads. The value
    /// saturates at `usize::MAX` rather than overflowing.
    ///
    /// # Examples
    ///
    /// ```
    /// let sem = flotilla_thread::Semaphore::new(0);
    /// sem.release(2);
    /// assert_eq!(sem.value(), 2);
    /// ```
    pub fn release(&self, n: usize) {
        // An unbounded semaphore saturates instead of failing, so this cannot fail.
        let _ = self.inner.release(n);
    }

    /// [`acquire`](Self::acquire) in RAII form: the permit is released when the
    /// returned guard is dropped.
    ///
    /// # Examples
    ///
    /// ```
    /// let sem = flotilla_thread::Semaphore::new(1);
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

    /// [`acquire_timeout`](Self::acquire_timeout) in RAII form: `None` if `timeout`
    /// passed first.
    pub fn acquire_permit_timeout(&self, timeout: Duration) -> Option<SemaphorePermit<'_>> {
        self.inner
            .acquire_within(Some(timeout))
            .then_some(SemaphorePermit { inner: &self.inner })
    }

    /// [`try_acquire`](Self::try_acquire) in RAII form.
    ///
    /// # Examples
    ///
    /// ```
    /// let sem = flotilla_thread::Semaphore::new(1);
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

impl Default for Semaphore {
    /// A semaphore with one permit, as Python's `Semaphore()`.
    fn default() -> Self {
        Semaphore::new(1)
    }
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore")
            .field("value", &self.value())
            .finish()
    }
}

/// A semaphore whose value may never exceed its initial value: Python's
/// `threading.BoundedSemaphore`.
///
/// A release that would lift the value past the initial value is refused with
/// [`Error::SemaphoreOverReleased`] and changes nothing: it catches the bug of
/// releasing a resource more often than it was taken.
///
/// # Examples
///
/// ```
/// use flotilla_thread::{BoundedSemaphore, Error};
///
/// let pool = BoundedSemaphore::new(2);
/// assert!(pool.try_acquire());
/// pool.release(1)?;
/// assert!(matches!(pool.release(1), Err(Error::SemaphoreOverReleased { bound: 2 })));
/// assert_eq!(pool.value(), 2);
/// # Ok::<(), Error>(())
/// ```
pub struct BoundedSemaphore {
    inner: Inner,
}

impl BoundedSemaphore {
    /// A bounded semaphore with `value` free permits, which is also its bound.
    ///
    /// # Examples
    ///
    /// ```
    /// let sem = flotilla_thread::BoundedSemaphore::new(3);
    /// assert_eq!((sem.value(), sem.bound()), (3, 3));
    /// ```
    pub const fn new(value: usize) -> Self {
        BoundedSemaphore {
            inner: Inner::new(value, Some(value)),
        }
    }

    /// The bound: the initial value, which the value may never exceed.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(flotilla_thread::BoundedSemaphore::new(5).bound(), 5);
    /// ```
    pub fn bound(&self) -> usize {
        self.inner.bound.unwrap_or(usize::MAX)
    }

    /// The number of free permits now (see [`Semaphore::value`]).
    ///
    /// # Examples
    ///
    /// ```
    /// let sem = flotilla_thread::BoundedSemaphore::new(1);
    /// assert_eq!(sem.value(), 1);
    /// ```
    pub fn value(&self) -> usize {
        self.inner.value()
    }

    /// Takes a permit, blocking until one is free: Python's `acquire()`.
    ///
    /// # Examples
    ///
    /// ```
    /// let sem = flotilla_thread::BoundedSemaphore::new(1);
    /// sem.acquire();
    /// assert_eq!(sem.value(), 0);
    /// ```
    pub fn acquire(&self) {
        self.inner.acquire_within(None);
    }

    /// Takes a permit, blocking until one is free or `timeout` passes: Python's
    /// `acquire(timeout=..)`. Returns whether a permit was taken.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let sem = flotilla_thread::BoundedSemaphore::new(1);
    /// assert!(sem.acquire_timeout(Duration::from_secs(1)));
    /// assert!(!sem.acquire_timeout(Duration::ZERO));
    /// ```
    pub fn acquire_timeout(&self, timeout: Duration) -> bool {
        self.inner.acquire_within(Some(timeout))
    }

    /// Takes a permit if one is free now, without blocking.
    ///
    /// # Examples
    ///
    /// ```
    /// let sem = flotilla_thread::BoundedSemaphore::new(1);
    /// assert!(sem.try_acquire());
    /// assert!(!sem.try_acquire());
    /// ```
    pub fn try_acquire(&self) -> bool {
        self.inner.try_acquire()
    }

    /// Gives back `n` permits and wakes up to `n` waiting threads.
    ///
    /// # Errors
    ///
    /// [`Error::SemaphoreOverReleased`] if the value would exceed the
    /// [`bound`](Self::bound); the value is then left unchanged.
    ///
    /// # Examples
    ///
    /// ```
    /// let sem = flotilla_thread::BoundedSemaphore::new(2);
    /// assert!(sem.try_acquire() && sem.try_acquire());
    /// sem.release(2)?;
    /// assert!(sem.release(1).is_err());
    /// # Ok::<(), flotilla_thread::Error>(())
    /// ```
    pub fn release(&self, n: usize) -> Result<(), Error> {
        self.inner.release(n)
    }

    /// [`acquire`](Self::acquire) in RAII form: the permit is released when the
    /// returned guard is dropped.
    ///
    /// # Examples
    ///
    /// ```
    /// let sem = flotilla_thread::BoundedSemaphore::new(1);
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

    /// [`acquire_timeout`](Self::acquire_timeout) in RAII form: `None` if `timeout`
    /// passed first.
    pub fn acquire_permit_timeout(&self, timeout: Duration) -> Option<SemaphorePermit<'_>> {
        self.inner
            .acquire_within(Some(timeout))
            .then_some(SemaphorePermit { inner: &self.inner })
    }

    /// [`try_acquire`](Self::try_acquire) in RAII form.
    ///
    /// # Examples
    ///
    /// ```
    /// let sem = flotilla_thread::BoundedSemaphore::new(1);
    /// let _permit = sem.try_acquire_permit().unwrap();
    /// assert!(sem.try_acquire_permit().is_none());
    /// ```
    pub fn try_acquire_permit(&self) -> Option<SemaphorePermit<'_>> {
        self.inner
            .try_acquire()
            .then_some(SemaphorePermit { inner: &self.inner })
    }
}

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
/// # Examples
///
/// ```
/// let sem = flotilla_thread::Semaphore::new(1);
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
