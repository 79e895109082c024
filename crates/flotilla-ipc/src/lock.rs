//! [`Lock`] and [`RLock`]: Python's `multiprocessing.Lock` and `RLock`, as robust
//! process-shared pthread mutexes living in shared memory — and, unlike Python's, they
//! do not hang forever when a process dies holding them.
//!
//! # The mutex and who may touch it
//!
//! A lock is a `pthread_mutex_t` inside a [`SharedMemory`] segment (its own, or the
//! head of a [`Value`](crate::Value)'s or [`Array`](crate::Array)'s), initialised with
//! `PTHREAD_PROCESS_SHARED` and `PTHREAD_MUTEX_ROBUST`, and `PTHREAD_MUTEX_ERRORCHECK`
//! (`Lock`) or `PTHREAD_MUTEX_RECURSIVE` (`RLock`). The rules that make this sound:
//!
//! 1. **Initialised once, before anyone else can see it.** Only the constructor calls
//!    `pthread_mutex_init`, on a segment it has just created and not yet shared. A
//!    process that receives a lock maps the initialised memory and never initialises it.
//! 2. **After that, only `pthread_mutex_*` calls touch the mutex**, from any process
//!    mapping the segment. No Rust reference to it is ever made.
//! 3. **Unlocked only by the thread that locked it**, as POSIX requires: the unlock is a
//!    guard's `Drop`, and guards are neither `Send` nor `Sync`.
//! 4. **Never destroyed.** Another process may hold the mutex when ours is done with it,
//!    and destroying a mutex in use is undefined; on Linux a mutex owns nothing beyond
//!    its bytes, which the kernel frees with the segment's last mapping.
//!
//! What a user needs — owner death and how it differs from Python — is documented on
//! [`AcquireError`] and the lock types; this doc states the invariants the code keeps.

use std::fmt;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use nix::errno::Errno;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{CreateError, Error, LockError, OsError};
use crate::shm::SharedMemory;
use crate::sys;

/// A `pthread_mutex_t` at an offset of a shared segment. Clones share the mutex.
#[derive(Clone)]
pub(crate) struct RawMutex {
    shm: Arc<SharedMemory>,
    offset: usize,
    /// Where in the segment an owner's death is recorded until someone clears it (a
    /// `Value`'s or `Array`'s lock), if anywhere: an aligned `u32`, set by whoever
    /// gets `EOWNERDEAD`, cleared only by [`clear_owner_death`](Self::clear_owner_death).
    owner_died: Option<usize>,
}

/// How a lock was acquired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Acquired {
    /// The usual way.
    Clean,
    /// The previous holder died holding it; the mutex has been made consistent.
    OwnerDied,
}

#[cfg(target_env = "gnu")]
unsafe extern "C" {
    /// glibc 2.30 and later: `pthread_mutex_timedlock` against a chosen clock, so a
    /// timeout is measured on the monotonic clock, immune to wall-clock changes.
    fn pthread_mutex_clocklock(
        mutex: *mut libc::pthread_mutex_t,
        clock: libc::clockid_t,
        abstime: *const libc::timespec,
    ) -> libc::c_int;
}

impl RawMutex {
    /// The bytes a mutex takes.
    pub(crate) const SIZE: usize = size_of::<libc::pthread_mutex_t>();

    /// Initialises a robust, process-shared mutex at `offset` of `shm`.
    ///
    /// # Safety
    ///
    /// Nobody else — no other thread, no other process — may access those bytes yet:
    /// `shm` has just been created and not been shared (rule 1 of the module doc).
    pub(crate) unsafe fn init(
        shm: Arc<SharedMemory>,
        offset: usize,
        recursive: bool,
    ) -> Result<Self, CreateError> {
        let raw = RawMutex::attach(shm, offset)
            .map_err(|e| CreateError::InvalidArgument(e.to_string()))?;
        let kind = if recursive {
            libc::PTHREAD_MUTEX_RECURSIVE
        } else {
            libc::PTHREAD_MUTEX_ERRORCHECK
        };
        let mut attr = MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
        // SAFETY: `attr` is initialised by `pthread_mutexattr_init` before any other use
        // and destroyed at the end; `raw.ptr()` lies inside the segment (checked by
        // `attach`), suitably aligned, and nobody else touches it yet (our caller's
        // promise), so initialising it races with nothing.
        unsafe {
            check(
                "pthread_mutexattr_init",
                libc::pthread_mutexattr_init(attr.as_mut_ptr()),
            )?;
            let attr = attr.as_mut_ptr();
            let result = check(
                "pthread_mutexattr_setpshared",
                libc::pthread_mutexattr_setpshared(attr, libc::PTHREAD_PROCESS_SHARED),
            )
            .and_then(|()| {
                check(
                    "pthread_mutexattr_setrobust",
                    libc::pthread_mutexattr_setrobust(attr, libc::PTHREAD_MUTEX_ROBUST),
                )
            })
            .and_then(|()| {
                check(
                    "pthread_mutexattr_settype",
                    libc::pthread_mutexattr_settype(attr, kind),
                )
            })
            .and_then(|()| {
                check(
                    "pthread_mutex_init",
                    libc::pthread_mutex_init(raw.ptr(), attr),
                )
            });
            libc::pthread_mutexattr_destroy(attr);
            result?;
        }
        Ok(raw)
    }

    /// The mutex already initialised at `offset` of a received segment.
    pub(crate) fn attach(shm: Arc<SharedMemory>, offset: usize) -> Result<Self, Error> {
        let fits = offset
            .checked_add(Self::SIZE)
            .is_some_and(|end| end <= shm.size());
        if !fits || !offset.is_multiple_of(align_of::<libc::pthread_mutex_t>()) {
            return Err(Error::InvalidSegment(format!(
                "no room for a lock at offset {offset} of a segment of {} bytes",
                shm.size()
            )));
        }
        Ok(RawMutex {
            shm,
            offset,
            owner_died: None,
        })
    }

    /// This mutex, recording an owner's death in the `u32` at `offset` of its segment
    /// (outside the mutex), where it stays until
    /// [`clear_owner_death`](Self::clear_owner_death): so every later acquirer can be
    /// told, not only the one that got `EOWNERDEAD`.
    pub(crate) fn recording_owner_death(mut self, offset: usize) -> Result<Self, Error> {
        let fits = offset
            .checked_add(4)
            .is_some_and(|end| end <= self.shm.size());
        let overlaps = offset < self.offset + Self::SIZE && self.offset < offset + 4;
        if !fits || overlaps || !offset.is_multiple_of(4) {
            return Err(Error::InvalidSegment(format!(
                "no room for an owner-died word at offset {offset} of a segment of {} bytes",
                self.shm.size()
            )));
        }
        self.owner_died = Some(offset);
        Ok(self)
    }

    fn owner_died_word(&self) -> Option<&AtomicU32> {
        let offset = self.owner_died?;
        // SAFETY: `recording_owner_death` checked that the 4 bytes at `offset` lie in
        // the segment, outside the mutex, at a multiple of 4 of a page-aligned mapping;
        // they are only ever accessed as this atomic, which stays defined while other
        // processes write it; the mapping lives as long as `self.shm`.
        Some(unsafe { &*self.shm.as_ptr().add(offset).cast::<AtomicU32>() })
    }

    /// Whether a holder's death was recorded and not cleared since (never, for a
    /// mutex that does not record it).
    pub(crate) fn owner_death_recorded(&self) -> bool {
        self.owner_died_word()
            .is_some_and(|w| w.load(Ordering::SeqCst) != 0)
    }

    /// Clears a recorded death: whoever holds the mutex has repaired what it protects.
    pub(crate) fn clear_owner_death(&self) {
        if let Some(word) = self.owner_died_word() {
            word.store(0, Ordering::SeqCst);
        }
    }

    #[inline]
    fn ptr(&self) -> *mut libc::pthread_mutex_t {
        // SAFETY: `attach` checked that `offset + SIZE <= size`, so the result lies
        // inside the mapping, which lives as long as `self.shm`.
        unsafe { self.shm.as_ptr().add(self.offset) }.cast()
    }

    /// Locks the mutex, waiting at most `timeout`: the guard that unlocks it, and how it
    /// was acquired. The only ways to acquire it, so every acquisition is released by
    /// exactly one guard (rule 3).
    #[inline]
    pub(crate) fn lock_within(
        &self,
        timeout: Option<Duration>,
    ) -> Result<(RawGuard<'_>, Acquired), LockError> {
        let acquired = self.acquire_within(timeout)?;
        Ok((RawGuard::new(self), acquired))
    }

    /// [`lock_within`](Self::lock_within) without limit.
    #[inline]
    pub(crate) fn lock(&self) -> Result<(RawGuard<'_>, Acquired), LockError> {
        self.lock_within(None)
    }

    /// [`lock_within`](Self::lock_within) giving up after `timeout`.
    #[inline]
    pub(crate) fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> Result<(RawGuard<'_>, Acquired), LockError> {
        self.lock_within(Some(timeout))
    }

    /// Locks the mutex, leaving the release to the caller: [`lock_within`](Self::lock_within),
    /// and [`relock`](Self::relock), whose levels the guards already out release.
    #[inline]
    fn acquire_within(&self, timeout: Option<Duration>) -> Result<Acquired, LockError> {
        let rc = match timeout.and_then(deadline) {
            // SAFETY: the mutex was initialised before the segment was shared (rule 1),
            // and its memory lives as long as `self`.
            None => unsafe { libc::pthread_mutex_lock(self.ptr()) },
            Some(at) => timed_lock(self.ptr(), &at),
        };
        match rc {
            0 => Ok(Acquired::Clean),
            rc => self.outcome("pthread_mutex_lock", rc, timeout),
        }
    }

    /// Locks the mutex if it is free, without waiting; as [`lock`](Self::lock).
    #[inline]
    pub(crate) fn try_lock(&self) -> Result<(RawGuard<'_>, Acquired), LockError> {
        // SAFETY: as in `lock`.
        let rc = unsafe { libc::pthread_mutex_trylock(self.ptr()) };
        let acquired = match rc {
            0 => Acquired::Clean,
            rc => self.outcome("pthread_mutex_trylock", rc, None)?,
        };
        Ok((RawGuard::new(self), acquired))
    }

    /// What a non-zero return of a lock call means (0 is handled inline by the callers).
    #[cold]
    fn outcome(
        &self,
        op: &'static str,
        rc: libc::c_int,
        timeout: Option<Duration>,
    ) -> Result<Acquired, LockError> {
        match rc {
            0 => Ok(Acquired::Clean),
            libc::EOWNERDEAD => {
                // SAFETY: we hold the mutex (EOWNERDEAD means acquired), initialised as
                // robust, which is exactly when `pthread_mutex_consistent` may be called.
                let rc = unsafe { libc::pthread_mutex_consistent(self.ptr()) };
                if let Err(e) = check("pthread_mutex_consistent", rc) {
                    // Leave it unlocked rather than held forever; the error says why.
                    // SAFETY: we hold it, on this thread.
                    unsafe { libc::pthread_mutex_unlock(self.ptr()) };
                    return Err(e.into());
                }
                if let Some(word) = self.owner_died_word() {
                    word.store(1, Ordering::SeqCst);
                }
                Ok(Acquired::OwnerDied)
            }
            libc::EBUSY => Err(LockError::WouldBlock),
            libc::ETIMEDOUT => Err(LockError::Timeout(timeout.unwrap_or_default())),
            libc::EDEADLK => Err(LockError::WouldDeadlock),
            rc => Err(LockError::os(op, Errno::from_raw(rc))),
        }
    }

    /// # Safety
    ///
    /// The calling thread holds the mutex, once for each unlock.
    #[inline]
    unsafe fn unlock(&self) {
        // SAFETY: our caller holds the mutex on this thread.
        let rc = unsafe { libc::pthread_mutex_unlock(self.ptr()) };
        if rc != 0 {
            flotilla_core::event!(flotilla_core::log::Level::ERROR, error = %Errno::from_raw(rc), "pthread_mutex_unlock failed");
        }
    }

    /// Releases every level the calling thread holds (one for a `Lock`, all of an
    /// `RLock`'s), as Python's `Condition.wait` does with `_release_save`; returns how
    /// many levels that was, for [`relock`](Self::relock).
    ///
    /// # Safety
    ///
    /// The calling thread holds the mutex at least once, through guards that stay alive
    /// (and so must not unlock) until [`relock`](Self::relock) has restored the levels.
    pub(crate) unsafe fn unlock_all(&self) -> usize {
        let mut levels = 0;
        // SAFETY: we hold the mutex (our caller's promise); the loop stops at the first
        // unlock refused with EPERM, which robust and recursive mutexes return once this
        // thread no longer owns them, so it never releases a level it does not hold.
        while unsafe { libc::pthread_mutex_unlock(self.ptr()) } == 0 {
            levels += 1;
        }
        levels
    }

    /// Takes back the `levels` released by [`unlock_all`](Self::unlock_all), waiting
    /// as long as it takes for the first.
    pub(crate) fn relock(&self, levels: usize) -> Result<Acquired, LockError> {
        if levels == 0 {
            return Ok(Acquired::Clean);
        }
        let first = self.acquire_within(None)?;
        for _ in 1..levels {
            // A recursive mutex this thread owns: each further level is immediate.
            if let Err(e) = self.acquire_within(None) {
                flotilla_core::event!(flotilla_core::log::Level::ERROR, error = %e, "could not restore a level of a recursive lock");
            }
        }
        Ok(first)
    }
}

/// The absolute monotonic time `timeout` from now, or `None` if it is too far away to
/// tell apart from forever.
fn deadline(timeout: Duration) -> Option<libc::timespec> {
    sys::monotonic_after(timeout).ok().flatten()
}

#[cfg(target_env = "gnu")]
fn timed_lock(mutex: *mut libc::pthread_mutex_t, at: &libc::timespec) -> libc::c_int {
    // SAFETY: `mutex` is an initialised mutex (see `RawMutex::lock`), and `at` a valid
    // absolute time on the clock named.
    unsafe { pthread_mutex_clocklock(mutex, libc::CLOCK_MONOTONIC, at) }
}

#[cfg(not(target_env = "gnu"))]
fn timed_lock(mutex: *mut libc::pthread_mutex_t, at: &libc::timespec) -> libc::c_int {
    // Without pthread_mutex_clocklock, convert the monotonic deadline to the realtime
    // clock that pthread_mutex_timedlock measures against.
    let now_mono = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC);
    let now_real = nix::time::clock_gettime(nix::time::ClockId::CLOCK_REALTIME);
    let (Ok(mono), Ok(real)) = (now_mono, now_real) else {
        return libc::EINVAL;
    };
    let left = nix::sys::time::TimeSpec::from(*at) - mono;
    let real_at = real + left;
    // SAFETY: `mutex` is an initialised mutex, and `real_at` a valid realtime deadline.
    unsafe { libc::pthread_mutex_timedlock(mutex, real_at.as_ref()) }
}

fn check(op: &'static str, rc: libc::c_int) -> Result<(), OsError> {
    match rc {
        0 => Ok(()),
        rc => Err(OsError::new(op, Errno::from_raw(rc))),
    }
}

/// Why a lock was not simply acquired: either it *was* acquired, from a holder that
/// died ([`OwnerDied`](Self::OwnerDied), carrying the guard), or it was not
/// ([`Failed`](Self::Failed)).
///
/// `?` turns it into an [`Error`], or a `Box<dyn std::error::Error + Send + Sync>` (or
/// without `Send`/`Sync`): an `OwnerDied` guard is dropped, releasing the lock, and
/// becomes [`Error::OwnerDied`]. For `anyhow` and other error types, go through
/// [`Error`] (`.map_err(Error::from)?`) or [`recover`](Self::recover) first.
///
/// # Owner death
///
/// glibc registers every robust mutex a thread holds on that thread's robust list. When
/// the thread dies — the process exits, is SIGKILLed, or the thread ends — the kernel
/// walks the list, marks each mutex *owner died* and wakes one waiter. The next acquirer
/// gets `EOWNERDEAD`: it holds the mutex, but whatever the mutex protected may be
/// half-updated.
///
/// flotilla marks the mutex consistent again at once (`pthread_mutex_consistent`), so
/// the lock itself stays usable forever, and hands the acquirer the guard inside
/// [`AcquireError::OwnerDied`] — the same shape as std's `PoisonError`, which carries the
/// guard: match on it to repair the protected data while holding the lock, or call
/// [`AcquireError::recover`] to take the guard and move on. Only that one acquirer is
/// told; if it dies too before releasing, the next one is told again.
///
/// # Differences from Python
///
/// - A Python `Lock` may be released by a process other than the one that acquired it
///   (it is a semaphore). A flotilla `Lock` is released by dropping its guard, on the
///   acquiring thread.
/// - Acquiring a `Lock` the same thread already holds blocks forever in Python; here it
///   is [`LockError::WouldDeadlock`].
///
/// # Examples
///
/// ```
/// use flotilla_ipc::{AcquireError, Lock};
///
/// let lock = Lock::new().unwrap();
/// let guard = match lock.acquire() {
///     Ok(guard) => guard,
///     Err(AcquireError::OwnerDied(guard)) => {
///         // Repair what the lock protects here, then carry on.
///         guard
///     }
///     Err(AcquireError::Failed(e)) => panic!("{e}"),
/// };
/// drop(guard);
/// ```
#[derive(Debug)]
pub enum AcquireError<G> {
    /// The previous holder died while holding the lock (its process exited or was
    /// killed, or its thread ended). You hold the lock now, through the guard, and the
    /// lock itself works as before; but the data it protects may have been left
    /// half-updated. Only this acquirer is told.
    OwnerDied(G),
    /// The lock was not acquired: [`LockError::Timeout`], [`LockError::WouldBlock`],
    /// [`LockError::WouldDeadlock`], [`LockError::NoLock`], or an OS error.
    Failed(LockError),
}

impl<G> AcquireError<G> {
    /// The guard if the lock was acquired after all (from a holder that died), the error
    /// otherwise: for callers with nothing to repair.
    ///
    /// ```
    /// use flotilla_ipc::{AcquireError, RLock};
    ///
    /// let lock = RLock::new().unwrap();
    /// let guard = lock.acquire().or_else(AcquireError::recover).unwrap();
    /// # drop(guard);
    /// ```
    ///
    /// # Errors
    ///
    /// The [`LockError`] of [`Failed`](Self::Failed).
    pub fn recover(self) -> Result<G, LockError> {
        match self {
            AcquireError::OwnerDied(guard) => Ok(guard),
            AcquireError::Failed(e) => Err(e),
        }
    }

    pub(crate) fn map<H>(self, f: impl FnOnce(G) -> H) -> AcquireError<H> {
        match self {
            AcquireError::OwnerDied(guard) => AcquireError::OwnerDied(f(guard)),
            AcquireError::Failed(e) => AcquireError::Failed(e),
        }
    }
}

impl<G> fmt::Display for AcquireError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AcquireError::OwnerDied(_) => fmt::Display::fmt(&Error::OwnerDied, f),
            AcquireError::Failed(e) => fmt::Display::fmt(e, f),
        }
    }
}

// `AcquireError` is not a `std::error::Error` itself: its `OwnerDied` guard is `!Send`
// (a robust mutex is released by the thread that holds it), so as an `Error` it would
// not box into the `Box<dyn Error + Send + Sync>` that `?` most often meets. Instead it
// converts into `Error` and into the boxed errors, dropping the guard (which releases
// the lock), so `lock.acquire(t)?` works in any function returning one of them.
macro_rules! into_boxed_error {
    ($($bounds:tt)*) => {
        impl<'a, G> From<AcquireError<G>> for Box<dyn std::error::Error $($bounds)* + 'a> {
            fn from(e: AcquireError<G>) -> Self {
                Box::new(Error::from(e))
            }
        }
    };
}
into_boxed_error!();
into_boxed_error!(+ Send);
into_boxed_error!(+ Send + Sync);

impl<G> From<AcquireError<G>> for Error {
    fn from(e: AcquireError<G>) -> Self {
        match e {
            AcquireError::OwnerDied(_) => Error::OwnerDied,
            AcquireError::Failed(e) => e.into(),
        }
    }
}

impl<G> From<LockError> for AcquireError<G> {
    fn from(e: LockError) -> Self {
        AcquireError::Failed(e)
    }
}

/// Holds a [`RawMutex`] that this thread acquired, once; releases it when dropped. Made
/// only by [`RawMutex::lock`] and [`RawMutex::try_lock`]; `!Send` and `!Sync`, so the
/// release happens on the acquiring thread (rule 3 of the module doc).
#[must_use = "the mutex is released as soon as the guard is dropped"]
pub(crate) struct RawGuard<'a> {
    raw: &'a RawMutex,
    _not_send: PhantomData<*const ()>,
}

impl<'a> RawGuard<'a> {
    #[inline]
    fn new(raw: &'a RawMutex) -> Self {
        RawGuard {
            raw,
            _not_send: PhantomData,
        }
    }
}

impl Drop for RawGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: a guard exists only for an acquisition made on this thread (guards
        // are !Send), and each guard releases it exactly once.
        unsafe { self.raw.unlock() }
    }
}

/// A lock attempt's outcome as the public face of a lock: a guard made by `guard`, or
/// the guard inside [`AcquireError::OwnerDied`].
#[inline]
fn acquire_with<'a, G>(
    outcome: Result<(RawGuard<'a>, Acquired), LockError>,
    guard: impl FnOnce(RawGuard<'a>) -> G,
) -> Result<G, AcquireError<G>> {
    match outcome {
        Ok((held, Acquired::Clean)) => Ok(guard(held)),
        Ok((held, Acquired::OwnerDied)) => Err(AcquireError::OwnerDied(guard(held))),
        Err(e) => Err(AcquireError::Failed(e)),
    }
}

/// What a lock serializes as: its segment, where in it the mutex is, and which kind it
/// is (so a `Lock` cannot be received as an `RLock`).
#[derive(Serialize)]
#[serde(rename = "Lock")]
struct Sent<'a> {
    shm: &'a SharedMemory,
    offset: usize,
    recursive: bool,
}

#[derive(Deserialize)]
#[serde(rename = "Lock")]
struct Received {
    shm: SharedMemory,
    offset: usize,
    recursive: bool,
}

fn serialize_raw<S: Serializer>(
    raw: &RawMutex,
    recursive: bool,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    Sent {
        shm: &raw.shm,
        offset: raw.offset,
        recursive,
    }
    .serialize(serializer)
}

fn deserialize_raw<'de, D: Deserializer<'de>>(
    deserializer: D,
    recursive: bool,
) -> Result<RawMutex, D::Error> {
    let r = Received::deserialize(deserializer)?;
    if r.recursive != recursive {
        let (sent, asked) = if r.recursive {
            ("an RLock", "a Lock")
        } else {
            ("a Lock", "an RLock")
        };
        return Err(D::Error::custom(format!(
            "received {sent} where {asked} was expected"
        )));
    }
    RawMutex::attach(Arc::new(r.shm), r.offset).map_err(D::Error::custom)
}

macro_rules! lock_type {
    (
        $(#[$doc:meta])*
        $name:ident, $guard:ident, recursive: $recursive:literal, $guard_doc:literal
    ) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name {
            raw: RawMutex,
        }

        impl $name {
            /// A new lock, unlocked, in a small shared segment of its own.
            ///
            /// # Errors
            ///
            /// [`CreateError::Os`] if the system refuses the memory or the mutex.
            ///
            /// ```
            #[doc = concat!("let lock = flotilla_ipc::", stringify!($name), "::new().unwrap();")]
            /// drop(lock.try_acquire().unwrap());
            /// ```
            pub fn new() -> Result<Self, CreateError> {
                let shm = Arc::new(SharedMemory::new(RawMutex::SIZE).map_err(CreateError::shm)?);
                // SAFETY: the segment was created just now and has not been shared.
                let raw = unsafe { RawMutex::init(shm, 0, $recursive) }?;
                Ok($name { raw })
            }

            /// A lock in a Value's or Array's segment (only RLocks are, so far).
            #[allow(dead_code)]
            pub(crate) fn from_raw(raw: RawMutex) -> Self {
                $name { raw }
            }

            /// The mutex, for a `Condition` over this lock.
            pub(crate) fn raw(&self) -> &RawMutex {
                &self.raw
            }

            /// Acquires the lock, waiting as long as it takes, and returns a guard that
            /// releases it when dropped.
            ///
            /// # Errors
            ///
            /// [`AcquireError::OwnerDied`] with the guard if the previous holder died
            /// holding the lock; [`AcquireError::Failed`] with an OS error (never
            /// [`LockError::Timeout`]: that is [`acquire_timeout`](Self::acquire_timeout)'s).
            ///
            /// ```
            #[doc = concat!("let lock = flotilla_ipc::", stringify!($name), "::new().unwrap();")]
            /// let guard = lock.acquire().unwrap();
            /// // ... the critical section ...
            /// drop(guard);
            /// ```
            #[inline]
            pub fn acquire(&self) -> Result<$guard<'_>, AcquireError<$guard<'_>>> {
                self.acquire_within(None)
            }

            /// Acquires the lock, waiting at most `timeout`.
            ///
            /// # Errors
            ///
            /// As for [`acquire`](Self::acquire), and [`AcquireError::Failed`] with
            /// [`LockError::Timeout`] if the timeout passed first.
            ///
            /// ```
            /// use std::time::Duration;
            #[doc = concat!("let lock = flotilla_ipc::", stringify!($name), "::new().unwrap();")]
            /// let guard = lock.acquire_timeout(Duration::from_secs(10)).unwrap();
            /// # drop(guard);
            /// ```
            #[inline]
            pub fn acquire_timeout(
                &self,
                timeout: Duration,
            ) -> Result<$guard<'_>, AcquireError<$guard<'_>>> {
                self.acquire_within(Some(timeout))
            }

            /// The body of [`acquire`](Self::acquire) and
            /// [`acquire_timeout`](Self::acquire_timeout); `None` waits without limit.
            #[inline]
            pub(crate) fn acquire_within(
                &self,
                timeout: Option<Duration>,
            ) -> Result<$guard<'_>, AcquireError<$guard<'_>>> {
                acquire_with(self.raw.lock_within(timeout), $guard::new)
            }

            /// Acquires the lock if nobody holds it, without waiting.
            ///
            /// # Errors
            ///
            /// [`AcquireError::Failed`] with [`LockError::WouldBlock`] if someone else
            /// holds it; [`AcquireError::OwnerDied`] as for [`acquire`](Self::acquire).
            ///
            /// ```
            #[doc = concat!("let lock = flotilla_ipc::", stringify!($name), "::new().unwrap();")]
            /// let guard = lock.try_acquire().unwrap();
            /// # drop(guard);
            /// ```
            #[inline]
            pub fn try_acquire(&self) -> Result<$guard<'_>, AcquireError<$guard<'_>>> {
                acquire_with(self.raw.try_lock(), $guard::new)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("segment", &self.raw.shm)
                    .field("offset", &self.raw.offset)
                    .finish()
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serialize_raw(&self.raw, $recursive, serializer)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserialize_raw(deserializer, $recursive).map(|raw| $name { raw })
            }
        }

        #[doc = $guard_doc]
        ///
        /// Neither `Send` nor `Sync`: a pthread mutex must be released by the thread
        /// that acquired it.
        #[must_use = "the lock is released as soon as the guard is dropped"]
        pub struct $guard<'a> {
            /// Releases the mutex when dropped; `!Send` and `!Sync` (rule 3 of the
            /// module doc).
            held: RawGuard<'a>,
        }

        impl<'a> $guard<'a> {
            #[inline]
            fn new(held: RawGuard<'a>) -> Self {
                $guard { held }
            }
        }

        impl fmt::Debug for $guard<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($guard))
                    .field("offset", &self.held.raw.offset)
                    .finish_non_exhaustive()
            }
        }
    };
}

lock_type! {
    /// Python's `multiprocessing.Lock`: a mutual-exclusion lock shared by processes,
    /// robust against a holder's death (see [`AcquireError`]).
    ///
    /// Not recursive: acquiring it again on the thread that holds it is
    /// [`LockError::WouldDeadlock`]. Give it to other processes by fork, as a process
    /// argument or over a `Connection`; a clone is another handle to the same lock.
    ///
    /// # Examples
    ///
    /// ```
    /// use flotilla_ipc::{AcquireError, Lock, LockError};
    ///
    /// let lock = Lock::new().unwrap();
    /// let guard = lock.acquire().unwrap();
    /// assert!(matches!(lock.acquire(), Err(AcquireError::Failed(LockError::WouldDeadlock))));
    /// drop(guard);
    /// assert!(lock.try_acquire().is_ok());
    /// ```
    ///
    /// A guard stays on the thread that acquired the lock:
    ///
    /// ```compile_fail
    /// let lock = flotilla_ipc::Lock::new().unwrap();
    /// let guard = lock.acquire().unwrap();
    /// std::thread::scope(|s| {
    ///     s.spawn(move || drop(guard));
    /// });
    /// ```
    Lock, LockGuard, recursive: false, "Holds a [`Lock`]; releases it when dropped."
}

lock_type! {
    /// Python's `multiprocessing.RLock`: a recursive lock shared by processes, which the
    /// thread holding it may acquire again, robust against a holder's death (see
    /// [`AcquireError`]).
    ///
    /// Each acquisition returns its own guard; the lock is free again when the holder
    /// has dropped them all. It is the lock of a [`Value`](crate::Value) or
    /// [`Array`](crate::Array), so a thread holding it may still call their `get` and
    /// `set`.
    ///
    /// # Examples
    ///
    /// ```
    /// use flotilla_ipc::RLock;
    ///
    /// let lock = RLock::new().unwrap();
    /// let outer = lock.acquire().unwrap();
    /// let inner = lock.acquire().unwrap(); // the same thread: no deadlock
    /// drop(inner);
    /// drop(outer);
    /// ```
    RLock, RLockGuard, recursive: true, "Holds one level of an [`RLock`]; releases that level when dropped."
}
