//! [`Value`] and [`Array`]: Python's `multiprocessing.Value` and `Array` (and, made with
//! `raw`, `RawValue` and `RawArray`): plain data in shared memory, with a recursive lock
//! by default.
//!
//! # Layout and access
//!
//! Each value or array has a segment of its own:
//!
//! ```text
//! offset 0    the RLock's pthread_mutex_t (unused by a raw value or array)
//! offset 56   owner died: a u32, set to 1 by whoever acquires the lock with
//!             EOWNERDEAD, back to 0 only by a guard's `mark_recovered`; read by
//!             every locked accessor while it holds the lock
//! offset 64   the elements, each at its natural alignment
//! ```
//!
//! How elements are accessed, and what that promises, is documented on [`Value`].

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::element::sealed::Atomic as _;
use crate::element::{Element, Integer};
use crate::error::{
    AccessError, CopyError, CreateError, Error, IndexError, IndexOutOfRange, LengthMismatch,
    LockError, OsError,
};
use crate::futex;
use crate::lock::{AcquireError, RLock, RLockGuard, RawMutex};
use crate::shm::SharedMemory;

/// Where the elements start: past the lock, on a cache line of their own.
const DATA: usize = 64;
/// Where the lock records that a holder died, until a guard marks the data recovered.
const OWNER_DIED: usize = 56;
const _: () = assert!(RawMutex::SIZE <= OWNER_DIED && OWNER_DIED + 4 <= DATA);

/// What `Value` and `Array` share: a segment, an optional lock at its head, and `len`
/// elements after it.
#[derive(Clone)]
struct Shared<T> {
    shm: Arc<SharedMemory>,
    lock: Option<RLock>,
    len: usize,
    _elements: PhantomData<T>,
}

impl<T: Element> Shared<T> {
    fn new(len: usize, locked: bool) -> Result<Self, CreateError> {
        let bytes = len
            .checked_mul(size_of::<T::Atomic>())
            .and_then(|b| b.checked_add(DATA))
            .ok_or_else(|| {
                CreateError::InvalidArgument(format!("an array of {len} elements is too large"))
            })?;
        let shm = Arc::new(SharedMemory::new(bytes).map_err(CreateError::shm)?);
        let lock = if locked {
            // SAFETY: the segment was created just now and has not been shared.
            let raw = unsafe { RawMutex::init(Arc::clone(&shm), 0, true) }?;
            Some(RLock::from_raw(
                raw.recording_owner_death(OWNER_DIED)
                    .map_err(|e| CreateError::InvalidArgument(e.to_string()))?,
            ))
        } else {
            None
        };
        Ok(Shared {
            shm,
            lock,
            len,
            _elements: PhantomData,
        })
    }

    fn received(shm: SharedMemory, len: usize, locked: bool, code: u8) -> Result<Self, Error> {
        if code != T::CODE {
            return Err(Error::InvalidSegment(format!(
                "received shared data of another element type than {}",
                std::any::type_name::<T>()
            )));
        }
        let needed = len
            .checked_mul(size_of::<T::Atomic>())
            .and_then(|b| b.checked_add(DATA));
        if needed.is_none_or(|needed| needed > shm.size()) {
            return Err(Error::InvalidSegment(format!(
                "a segment of {} bytes cannot hold {len} elements",
                shm.size()
            )));
        }
        let shm = Arc::new(shm);
        let lock = if locked {
            Some(RLock::from_raw(
                RawMutex::attach(Arc::clone(&shm), 0)?.recording_owner_death(OWNER_DIED)?,
            ))
        } else {
            None
        };
        Ok(Shared {
            shm,
            lock,
            len,
            _elements: PhantomData,
        })
    }

    fn check(&self, index: usize) -> Result<(), IndexOutOfRange> {
        if index < self.len {
            Ok(())
        } else {
            Err(IndexOutOfRange {
                index,
                len: self.len,
            })
        }
    }

    /// The element at `index`, which must be below `len`.
    fn cell(&self, index: usize) -> &T::Atomic {
        debug_assert!(index < self.len);
        // SAFETY: `new` and `received` made sure the segment holds `DATA + len * size`
        // bytes and `index < len`; the mapping is page-aligned and `DATA` a multiple of
        // 64, so the cell is aligned for its atomic type (whose alignment is its size).
        // An atomic is the one kind of reference that stays valid while other processes
        // write the same memory, and the mapping lives as long as `&self`.
        unsafe {
            &*self
                .shm
                .as_ptr()
                .add(DATA + index * size_of::<T::Atomic>())
                .cast::<T::Atomic>()
        }
    }

    fn load(&self, index: usize) -> T {
        T::from_repr(self.cell(index).load(Ordering::Acquire))
    }

    fn store(&self, index: usize, value: T) {
        self.cell(index).store(value.into_repr(), Ordering::Release);
    }

    fn as_ptr(&self) -> *mut T {
        // SAFETY: `DATA` lies inside the segment, which is at least `DATA` bytes long.
        unsafe { self.shm.as_ptr().add(DATA) }.cast()
    }

    /// Holds the lock for one access, if there is a lock: [`AccessError::OwnerDied`]
    /// (the lock released again) while a holder's death is recorded and not yet marked
    /// recovered, since that holder may have been halfway through an update of several
    /// elements (or of this one and other data).
    fn enter(&self) -> Result<Option<RLockGuard<'_>>, AccessError> {
        match &self.lock {
            None => Ok(None),
            Some(lock) => {
                let held = lock
                    .acquire()
                    .or_else(AcquireError::recover)
                    .map_err(|e| OsError::mutex("pthread_mutex_lock", e))?;
                if lock.raw().owner_death_recorded() {
                    return Err(AccessError::OwnerDied);
                }
                Ok(Some(held))
            }
        }
    }

    /// Marks the data recovered after a holder's death (the caller holds the lock).
    fn mark_recovered(&self) {
        if let Some(lock) = &self.lock {
            lock.raw().clear_owner_death();
        }
    }

    /// Holds the lock for a locked section, the held lock wrapped by `guard` (also when
    /// the previous holder died): `Value::lock` and `Array::lock`.
    fn section<'a, G>(
        &'a self,
        timeout: Option<Duration>,
        guard: impl FnOnce(&'a Self, RLockGuard<'a>) -> G,
    ) -> Result<G, AcquireError<G>> {
        let held = match &self.lock {
            None => Err(AcquireError::Failed(LockError::NoLock)),
            Some(lock) => lock.acquire_within(timeout),
        };
        let died = |lock: &Option<RLock>| {
            lock.as_ref()
                .is_some_and(|l| l.raw().owner_death_recorded())
        };
        match held {
            Ok(held) if died(&self.lock) => Err(AcquireError::OwnerDied(guard(self, held))),
            Ok(held) => Ok(guard(self, held)),
            Err(e) => Err(e.map(|held| guard(self, held))),
        }
    }

    fn to_vec(&self) -> Vec<T> {
        (0..self.len).map(|i| self.load(i)).collect()
    }

    fn check_len(&self, values: &[T]) -> Result<(), LengthMismatch> {
        if values.len() == self.len {
            Ok(())
        } else {
            Err(LengthMismatch {
                got: values.len(),
                len: self.len,
            })
        }
    }

    /// Stores `values`, which must have `len` elements.
    fn store_all(&self, values: &[T]) {
        debug_assert_eq!(values.len(), self.len);
        for (i, &v) in values.iter().enumerate() {
            self.store(i, v);
        }
    }
}

/// What a value or array serializes as.
#[derive(Serialize)]
#[serde(rename = "SharedData")]
struct Sent<'a> {
    shm: &'a SharedMemory,
    len: usize,
    locked: bool,
    code: u8,
}

#[derive(Deserialize)]
#[serde(rename = "SharedData")]
struct Received {
    shm: SharedMemory,
    len: usize,
    locked: bool,
    code: u8,
}

impl<T: Element> Serialize for Shared<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Sent {
            shm: &self.shm,
            len: self.len,
            locked: self.lock.is_some(),
            code: T::CODE,
        }
        .serialize(serializer)
    }
}

impl<'de, T: Element> Deserialize<'de> for Shared<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let r = Received::deserialize(deserializer)?;
        Shared::received(r.shm, r.len, r.locked, r.code).map_err(D::Error::custom)
    }
}

/// Python's `multiprocessing.Value` (and, made with [`raw`](Value::raw), `RawValue`):
/// one [`Element`] in shared memory, with a recursive lock unless made raw.
///
/// Give it to other processes by fork, as a process argument or over a `Connection`; a
/// clone is another handle to the same memory. An integer value also offers atomic
/// operations, which need no lock.
///
/// # Access
///
/// Every element is read and written through the std atomic type of its size — plain
/// `mov`s on x86-64 for loads and stores — never through a `&T`, since another process
/// may write it at any time (see [`SharedMemory`]'s module doc). So even a raw array
/// written by several processes at once is defined behaviour: each element read is some
/// value that was written, though a read-modify-write without the lock may lose updates,
/// as in Python. Loads are `Acquire` and stores `Release`, so a value set after other
/// data publishes that data to a process that reads the value; the atomic operations of
/// integer values are `SeqCst`.
///
/// `get` and `set` take the lock (when there is one) for that one access, as Python's
/// `.value` does; the lock is recursive, so they also work inside a section that holds
/// it.
///
/// # When a lock holder dies
///
/// A holder killed in the middle of an update may leave the data torn (half of an
/// array written, or a value out of step with other shared data). The lock records the
/// death in the segment, and from then on *every* locked accessor reports it — `get`,
/// `set`, `to_vec` and `copy_from_slice` with [`AccessError::OwnerDied`] (inside
/// [`IndexError::Access`] or [`CopyError::Access`] for an array's), [`Value::lock`] and
/// [`Array::lock`] with [`AcquireError::OwnerDied`] and the guard — in every process,
/// until a guard's `mark_recovered` ([`ValueGuard::mark_recovered`],
/// [`ArrayGuard::mark_recovered`]) says the data is repaired. So the notice cannot be
/// lost to whichever accessor happens to run first. (The lock-free atomic operations of
/// integer values do not look.)
///
/// # Examples
///
/// ```
/// use flotilla_ipc::Value;
///
/// let v = Value::new(1.5f64).unwrap();
/// v.set(2.5).unwrap();
/// assert_eq!(v.get().unwrap(), 2.5);
///
/// // A read-modify-write, as Python's `with v.get_lock(): v.value += 1`:
/// let n = Value::new(0i32).unwrap();
/// {
///     let _held = n.get_lock().unwrap().acquire().unwrap();
///     n.set(n.get().unwrap() + 1).unwrap(); // the lock is recursive
/// }
/// // Or with no lock at all:
/// n.fetch_add(1);
/// assert_eq!(n.load(), 2);
/// ```
#[derive(Clone)]
pub struct Value<T: Element> {
    shared: Shared<T>,
}

impl<T: Element> Value<T> {
    /// A value in a new shared segment, with a recursive lock (Python's
    /// `Value(typecode, initial)`).
    ///
    /// # Errors
    ///
    /// [`CreateError::Os`] if the system refuses the memory or the lock.
    ///
    /// ```
    /// let flag = flotilla_ipc::Value::new(true).unwrap();
    /// assert!(flag.get().unwrap());
    /// assert!(flag.get_lock().is_some());
    /// ```
    pub fn new(initial: T) -> Result<Self, CreateError> {
        Self::make(initial, true)
    }

    /// A value in a new shared segment, without a lock (Python's `RawValue`, or
    /// `Value(..., lock=False)`): `get` and `set` do not lock, and there is no locked
    /// section.
    ///
    /// # Errors
    ///
    /// [`CreateError::Os`] if the system refuses the memory.
    ///
    /// ```
    /// let v = flotilla_ipc::Value::raw(7u8).unwrap();
    /// assert_eq!(v.get().unwrap(), 7);
    /// assert!(v.get_lock().is_none());
    /// ```
    pub fn raw(initial: T) -> Result<Self, CreateError> {
        Self::make(initial, false)
    }

    fn make(initial: T, locked: bool) -> Result<Self, CreateError> {
        let shared = Shared::new(1, locked)?;
        shared.store(0, initial);
        Ok(Value { shared })
    }

    /// The value, read under the lock (Python's `.value`).
    ///
    /// There is no timed form: to bound the wait, hold the lock with a timeout first
    /// ([`lock`](Self::lock) or [`get_lock`](Self::get_lock)), then read.
    ///
    /// # Errors
    ///
    /// [`AccessError::OwnerDied`] while a lock holder's death is not marked recovered
    /// (see [When a lock holder dies](Value#when-a-lock-holder-dies)); [`AccessError::Os`]
    /// if the lock fails.
    ///
    /// ```
    /// let v = flotilla_ipc::Value::new(-3i64).unwrap();
    /// assert_eq!(v.get().unwrap(), -3);
    /// ```
    pub fn get(&self) -> Result<T, AccessError> {
        let _held = self.shared.enter()?;
        Ok(self.shared.load(0))
    }

    /// Sets the value under the lock (Python's `.value = x`).
    ///
    /// # Errors
    ///
    /// As for [`get`](Self::get).
    ///
    /// ```
    /// let v = flotilla_ipc::Value::new(0u16).unwrap();
    /// v.set(9).unwrap();
    /// assert_eq!(v.get().unwrap(), 9);
    /// ```
    pub fn set(&self, value: T) -> Result<(), AccessError> {
        let _held = self.shared.enter()?;
        self.shared.store(0, value);
        Ok(())
    }

    /// The value's recursive lock (Python's `get_lock()`); `None` for a raw value.
    ///
    /// ```
    /// let v = flotilla_ipc::Value::new(0u32).unwrap();
    /// let held = v.get_lock().unwrap().acquire().unwrap();
    /// v.set(v.get().unwrap() + 1).unwrap();
    /// drop(held);
    /// ```
    pub fn get_lock(&self) -> Option<&RLock> {
        self.shared.lock.as_ref()
    }

    /// Holds the lock, waiting as long as it takes, and returns a guard through which
    /// the value is read and written without locking again.
    ///
    /// # Errors
    ///
    /// [`AcquireError::OwnerDied`] with the guard if a holder died holding the lock
    /// and nobody has marked the value recovered since
    /// ([`ValueGuard::mark_recovered`]); [`AcquireError::Failed`] with
    /// [`LockError::NoLock`] for a raw value, or an OS error.
    ///
    /// ```
    /// let v = flotilla_ipc::Value::new(10i32).unwrap();
    /// let guard = v.lock().unwrap();
    /// guard.set(guard.get() * 2);
    /// drop(guard);
    /// assert_eq!(v.get().unwrap(), 20);
    /// ```
    pub fn lock(&self) -> Result<ValueGuard<'_, T>, AcquireError<ValueGuard<'_, T>>> {
        self.lock_within(None)
    }

    /// Like [`lock`](Self::lock), waiting at most `timeout`: fails with
    /// [`AcquireError::Failed`] holding [`LockError::Timeout`] when it passes first.
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> Result<ValueGuard<'_, T>, AcquireError<ValueGuard<'_, T>>> {
        self.lock_within(Some(timeout))
    }

    /// The body of [`lock`](Self::lock) and [`lock_timeout`](Self::lock_timeout).
    fn lock_within(
        &self,
        timeout: Option<Duration>,
    ) -> Result<ValueGuard<'_, T>, AcquireError<ValueGuard<'_, T>>> {
        self.shared
            .section(timeout, |shared, _held| ValueGuard { shared, _held })
    }

    /// The value's address in this process's mapping, for access by atomics or volatile
    /// operations; valid while `self` lives.
    ///
    /// ```
    /// let v = flotilla_ipc::Value::raw(5u32).unwrap();
    /// // SAFETY: the address is valid and aligned while `v` lives; a volatile read
    /// // stays defined if another process writes.
    /// assert_eq!(unsafe { v.as_ptr().read_volatile() }, 5);
    /// ```
    pub fn as_ptr(&self) -> *mut T {
        self.shared.as_ptr()
    }
}

/// Atomic operations on the shared integer itself, without the lock: a counter needs
/// none. All are sequentially consistent (`SeqCst`); arithmetic wraps on overflow, as
/// std's atomics do. They do not wait for the lock, so one can land in the middle of
/// another process's locked read-modify-write: use one or the other for a given value.
impl<T: Integer> Value<T> {
    fn atomic(&self) -> &T::Atomic {
        self.shared.cell(0)
    }

    /// The value, read atomically.
    ///
    /// ```
    /// assert_eq!(flotilla_ipc::Value::new(3u8).unwrap().load(), 3);
    /// ```
    pub fn load(&self) -> T {
        self.atomic().load(Ordering::SeqCst)
    }

    /// Stores `value` atomically.
    ///
    /// ```
    /// let v = flotilla_ipc::Value::new(0i8).unwrap();
    /// v.store(-1);
    /// assert_eq!(v.load(), -1);
    /// ```
    pub fn store(&self, value: T) {
        self.atomic().store(value, Ordering::SeqCst);
    }

    /// Stores `value` and returns the previous value, atomically.
    ///
    /// ```
    /// let v = flotilla_ipc::Value::new(1u64).unwrap();
    /// assert_eq!(v.swap(2), 1);
    /// assert_eq!(v.load(), 2);
    /// ```
    pub fn swap(&self, value: T) -> T {
        self.atomic().swap(value, Ordering::SeqCst)
    }

    /// Adds `value` (wrapping) and returns the previous value, atomically.
    ///
    /// ```
    /// let v = flotilla_ipc::Value::new(40i32).unwrap();
    /// assert_eq!(v.fetch_add(2), 40);
    /// assert_eq!(v.load(), 42);
    /// ```
    pub fn fetch_add(&self, value: T) -> T {
        self.atomic().fetch_add(value, Ordering::SeqCst)
    }

    /// Subtracts `value` (wrapping) and returns the previous value, atomically.
    ///
    /// ```
    /// let v = flotilla_ipc::Value::new(0u32).unwrap();
    /// assert_eq!(v.fetch_sub(1), 0);
    /// assert_eq!(v.load(), u32::MAX);
    /// ```
    pub fn fetch_sub(&self, value: T) -> T {
        self.atomic().fetch_sub(value, Ordering::SeqCst)
    }

    /// Stores `new` if the value is `current`, atomically: `Ok(previous)` if it was
    /// stored, `Err(actual)` if the value was something else.
    ///
    /// ```
    /// let v = flotilla_ipc::Value::new(5i64).unwrap();
    /// assert_eq!(v.compare_exchange(5, 6), Ok(5));
    /// assert_eq!(v.compare_exchange(5, 7), Err(6));
    /// ```
    pub fn compare_exchange(&self, current: T, new: T) -> Result<T, T> {
        self.atomic()
            .compare_exchange(current, new, Ordering::SeqCst, Ordering::SeqCst)
    }
}

/// A `u32` value as a word to sleep on, between processes: a futex on the shared word.
/// A waiter sleeps while the word holds what it last saw; whoever changes the word wakes
/// it. (The wait is a hint: look at the value again after it returns.)
impl Value<u32> {
    /// Sleeps while the value is `expected`, until [`wake_all`](Self::wake_all) is
    /// called in any process. Returns at once when the value is something else. It may
    /// also return for no reason at all: look at the value again.
    ///
    /// # Errors
    ///
    /// [`OsError`] if the kernel refuses the wait (it should not).
    ///
    /// ```
    /// let v = flotilla_ipc::Value::raw(0u32).unwrap();
    /// v.wait_while(1).unwrap(); // not 1: returns at once
    /// ```
    pub fn wait_while(&self, expected: u32) -> Result<(), OsError> {
        self.wait_while_within(expected, None).map(drop)
    }

    /// Like [`wait_while`](Self::wait_while), but gives up after `timeout`: `Ok(false)`
    /// when the time ran out, `Ok(true)` otherwise.
    ///
    /// # Errors
    ///
    /// As for [`wait_while`](Self::wait_while).
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let v = flotilla_ipc::Value::raw(0u32).unwrap();
    /// assert!(!v.wait_while_timeout(0, Duration::from_millis(1)).unwrap()); // timed out
    /// ```
    pub fn wait_while_timeout(&self, expected: u32, timeout: Duration) -> Result<bool, OsError> {
        self.wait_while_within(expected, Some(timeout))
    }

    /// The body of [`wait_while`](Self::wait_while) and its timed form.
    fn wait_while_within(&self, expected: u32, timeout: Option<Duration>) -> Result<bool, OsError> {
        let deadline = timeout.and_then(|t| std::time::Instant::now().checked_add(t));
        match futex::wait(self.atomic(), expected, deadline) {
            Ok(futex::Wake::Woken) => Ok(true),
            Ok(futex::Wake::TimedOut) => Ok(false),
            Err(e) => Err(OsError::new("futex wait", e)),
        }
    }

    /// Wakes everyone sleeping in [`wait_while`](Self::wait_while) on this value, in
    /// any process; how many were woken. Change the value first.
    ///
    /// # Errors
    ///
    /// [`OsError`] if the kernel refuses the wake (it should not).
    ///
    /// ```
    /// let v = flotilla_ipc::Value::raw(0u32).unwrap();
    /// v.store(1);
    /// assert_eq!(v.wake_all().unwrap(), 0); // nobody was waiting
    /// ```
    pub fn wake_all(&self) -> Result<usize, OsError> {
        futex::wake_all(self.atomic()).map_err(|e| OsError::new("futex wake", e))
    }
}

impl<T: Element> fmt::Debug for Value<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Value")
            .field("value", &self.shared.load(0))
            .field("locked", &self.shared.lock.is_some())
            .finish()
    }
}

impl<T: Element> Serialize for Value<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.shared.serialize(serializer)
    }
}

impl<'de, T: Element> Deserialize<'de> for Value<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let shared = Shared::<T>::deserialize(deserializer)?;
        if shared.len != 1 {
            return Err(D::Error::custom(
                "received a shared array where a Value was expected",
            ));
        }
        Ok(Value { shared })
    }
}

/// Holds a [`Value`]'s lock; reads and writes through it do not lock again. Releases
/// the lock when dropped; not `Send`, like every lock guard here.
pub struct ValueGuard<'a, T: Element> {
    shared: &'a Shared<T>,
    _held: RLockGuard<'a>,
}

impl<T: Element> ValueGuard<'_, T> {
    /// Marks the value recovered after a holder's death: from now on its accessors
    /// work again, instead of reporting [`AccessError::OwnerDied`]. Call it once the value
    /// (and whatever else the lock protects) is repaired.
    ///
    /// ```
    /// let v = flotilla_ipc::Value::new(1u8).unwrap();
    /// let guard = v.lock().unwrap();
    /// guard.mark_recovered(); // nothing to recover: no effect
    /// ```
    pub fn mark_recovered(&self) {
        self.shared.mark_recovered();
    }
    /// The value.
    ///
    /// ```
    /// let v = flotilla_ipc::Value::new(4u8).unwrap();
    /// assert_eq!(v.lock().unwrap().get(), 4);
    /// ```
    pub fn get(&self) -> T {
        self.shared.load(0)
    }

    /// Sets the value.
    ///
    /// ```
    /// let v = flotilla_ipc::Value::new(4u8).unwrap();
    /// v.lock().unwrap().set(5);
    /// assert_eq!(v.get().unwrap(), 5);
    /// ```
    pub fn set(&self, value: T) {
        self.shared.store(0, value);
    }
}

impl<T: Element> fmt::Debug for ValueGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ValueGuard")
            .field("value", &self.get())
            .finish()
    }
}

/// Python's `multiprocessing.Array` (and, made with [`raw`](Array::raw), `RawArray`): a
/// fixed number of [`Element`]s in shared memory, with a recursive lock unless made raw.
///
/// Indexing is checked: an index past the end is [`IndexOutOfRange`], never a
/// panic. Each element access is atomic (see [`Value`'s access rules](Value#access)); for
/// updates of several elements that others must see together, hold the lock with
/// [`lock`](Self::lock). Give it to other processes by fork, as a process argument or
/// over a `Connection`; a clone is another handle to the same memory.
///
/// # Examples
///
/// ```
/// use flotilla_ipc::{Array, IndexError, IndexOutOfRange};
///
/// let a = Array::from_slice(&[1i32, 2, 3]).unwrap();
/// a.set(0, 10).unwrap();
/// assert_eq!(a.to_vec().unwrap(), [10, 2, 3]);
/// assert!(matches!(
///     a.get(3),
///     Err(IndexError::OutOfRange(IndexOutOfRange { index: 3, len: 3 }))
/// ));
///
/// // Several elements at once, under the lock:
/// let section = a.lock().unwrap();
/// let (x, y) = (section.get(1).unwrap(), section.get(2).unwrap());
/// section.set(1, y).unwrap();
/// section.set(2, x).unwrap();
/// drop(section);
/// assert_eq!(a.to_vec().unwrap(), [10, 3, 2]);
/// ```
#[derive(Clone)]
pub struct Array<T: Element> {
    shared: Shared<T>,
}

impl<T: Element> Array<T> {
    /// An array of `len` zeros (`false`, `0.0`) with a recursive lock (Python's
    /// `Array(typecode, len)`).
    ///
    /// # Errors
    ///
    /// [`CreateError::InvalidArgument`] for a `len` too large to address;
    /// [`CreateError::Os`] if the system refuses the memory or the lock.
    ///
    /// ```
    /// let a = flotilla_ipc::Array::<f32>::new(4).unwrap();
    /// assert_eq!(a.to_vec().unwrap(), [0.0; 4]);
    /// ```
    pub fn new(len: usize) -> Result<Self, CreateError> {
        Ok(Array {
            shared: Shared::new(len, true)?,
        })
    }

    /// An array holding a copy of `values`, with a recursive lock (Python's
    /// `Array(typecode, initializer)`).
    ///
    /// # Errors
    ///
    /// As for [`new`](Self::new).
    ///
    /// ```
    /// let a = flotilla_ipc::Array::from_slice(&[true, false]).unwrap();
    /// assert_eq!(a.to_vec().unwrap(), [true, false]);
    /// ```
    pub fn from_slice(values: &[T]) -> Result<Self, CreateError> {
        let array = Self::new(values.len())?;
        array.shared.store_all(values);
        Ok(array)
    }

    /// An array of `len` zeros without a lock (Python's `RawArray(typecode, len)`).
    ///
    /// # Errors
    ///
    /// As for [`new`](Self::new), less the lock.
    ///
    /// ```
    /// let a = flotilla_ipc::Array::<u8>::raw(3).unwrap();
    /// assert!(a.get_lock().is_none());
    /// ```
    pub fn raw(len: usize) -> Result<Self, CreateError> {
        Ok(Array {
            shared: Shared::new(len, false)?,
        })
    }

    /// An array holding a copy of `values`, without a lock (Python's
    /// `RawArray(typecode, initializer)`).
    ///
    /// # Errors
    ///
    /// As for [`raw`](Self::raw).
    ///
    /// ```
    /// let a = flotilla_ipc::Array::raw_from_slice(&[1u64, 2]).unwrap();
    /// assert_eq!(a.get(1).unwrap(), 2);
    /// ```
    pub fn raw_from_slice(values: &[T]) -> Result<Self, CreateError> {
        let array = Self::raw(values.len())?;
        array.shared.store_all(values);
        Ok(array)
    }

    /// The number of elements.
    ///
    /// ```
    /// assert_eq!(flotilla_ipc::Array::<i16>::new(5).unwrap().len(), 5);
    /// ```
    pub fn len(&self) -> usize {
        self.shared.len
    }

    /// Whether the array has no elements.
    ///
    /// ```
    /// assert!(flotilla_ipc::Array::<i16>::new(0).unwrap().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.shared.len == 0
    }

    /// The element at `index`, read under the lock.
    ///
    /// # Errors
    ///
    /// [`IndexError::OutOfRange`] past the end; [`IndexError::Access`] with
    /// [`AccessError::OwnerDied`] while a lock holder's death is not marked recovered (see
    /// [When a lock holder dies](Value#when-a-lock-holder-dies)), or
    /// [`AccessError::Os`] if the lock fails.
    ///
    /// ```
    /// let a = flotilla_ipc::Array::from_slice(&[5u32, 6]).unwrap();
    /// assert_eq!(a.get(1).unwrap(), 6);
    /// assert!(a.get(2).is_err());
    /// ```
    pub fn get(&self, index: usize) -> Result<T, IndexError> {
        self.shared.check(index)?;
        let _held = self.shared.enter()?;
        Ok(self.shared.load(index))
    }

    /// Sets the element at `index` under the lock.
    ///
    /// # Errors
    ///
    /// As for [`get`](Self::get).
    ///
    /// ```
    /// let a = flotilla_ipc::Array::<f64>::new(2).unwrap();
    /// a.set(1, 0.5).unwrap();
    /// assert_eq!(a.to_vec().unwrap(), [0.0, 0.5]);
    /// assert!(a.set(2, 1.0).is_err());
    /// ```
    pub fn set(&self, index: usize, value: T) -> Result<(), IndexError> {
        self.shared.check(index)?;
        let _held = self.shared.enter()?;
        self.shared.store(index, value);
        Ok(())
    }

    /// A copy of every element, taken under the lock (so, with a lock, a consistent
    /// snapshot).
    ///
    /// # Errors
    ///
    /// [`AccessError::OwnerDied`] while a lock holder's death is not marked recovered;
    /// [`AccessError::Os`] if the lock fails.
    ///
    /// ```
    /// let a = flotilla_ipc::Array::from_slice(&[1i8, 2]).unwrap();
    /// assert_eq!(a.to_vec().unwrap(), vec![1, 2]);
    /// ```
    pub fn to_vec(&self) -> Result<Vec<T>, AccessError> {
        let _held = self.shared.enter()?;
        Ok(self.shared.to_vec())
    }

    /// Overwrites every element from `values`, under the lock.
    ///
    /// # Errors
    ///
    /// [`CopyError::LengthMismatch`] unless `values` has the array's length (nothing is
    /// written); [`CopyError::Access`] as for [`to_vec`](Self::to_vec).
    ///
    /// ```
    /// let a = flotilla_ipc::Array::<u16>::new(2).unwrap();
    /// a.copy_from_slice(&[3, 4]).unwrap();
    /// assert_eq!(a.to_vec().unwrap(), [3, 4]);
    /// assert!(a.copy_from_slice(&[1]).is_err());
    /// ```
    pub fn copy_from_slice(&self, values: &[T]) -> Result<(), CopyError> {
        self.shared.check_len(values)?;
        let _held = self.shared.enter()?;
        self.shared.store_all(values);
        Ok(())
    }

    /// The array's recursive lock (Python's `get_lock()`); `None` for a raw array.
    ///
    /// ```
    /// let a = flotilla_ipc::Array::<u8>::new(1).unwrap();
    /// let held = a.get_lock().unwrap().acquire().unwrap();
    /// a.set(0, 1).unwrap(); // recursive: no deadlock
    /// drop(held);
    /// ```
    pub fn get_lock(&self) -> Option<&RLock> {
        self.shared.lock.as_ref()
    }

    /// Holds the lock, waiting as long as it takes, and returns a guard through which
    /// elements are read and written without locking again: the locked section for
    /// updates of several elements.
    ///
    /// # Errors
    ///
    /// [`AcquireError::OwnerDied`] with the guard if a holder died holding the lock
    /// (perhaps halfway through an update) and nobody has marked the array recovered
    /// since ([`ArrayGuard::mark_recovered`]); [`AcquireError::Failed`] with
    /// [`LockError::NoLock`] for a raw array, or an OS error.
    ///
    /// ```
    /// use flotilla_ipc::{AcquireError, Array};
    ///
    /// let a = Array::<i64>::new(3).unwrap();
    /// let section = a.lock().or_else(AcquireError::recover).unwrap();
    /// for i in 0..section.len() {
    ///     section.set(i, i as i64 * 10).unwrap();
    /// }
    /// drop(section);
    /// assert_eq!(a.to_vec().unwrap(), [0, 10, 20]);
    /// ```
    pub fn lock(&self) -> Result<ArrayGuard<'_, T>, AcquireError<ArrayGuard<'_, T>>> {
        self.lock_within(None)
    }

    /// Like [`lock`](Self::lock), waiting at most `timeout`: fails with
    /// [`AcquireError::Failed`] holding [`LockError::Timeout`] when it passes first.
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> Result<ArrayGuard<'_, T>, AcquireError<ArrayGuard<'_, T>>> {
        self.lock_within(Some(timeout))
    }

    /// The body of [`lock`](Self::lock) and [`lock_timeout`](Self::lock_timeout).
    fn lock_within(
        &self,
        timeout: Option<Duration>,
    ) -> Result<ArrayGuard<'_, T>, AcquireError<ArrayGuard<'_, T>>> {
        self.shared
            .section(timeout, |shared, _held| ArrayGuard { shared, _held })
    }

    /// The first element's address in this process's mapping, for access by atomics or
    /// volatile operations; valid for [`len`](Self::len) elements while `self` lives.
    ///
    /// ```
    /// let a = flotilla_ipc::Array::raw_from_slice(&[1u16, 2]).unwrap();
    /// // SAFETY: two aligned elements live at the address while `a` does; a volatile
    /// // read stays defined if another process writes.
    /// assert_eq!(unsafe { a.as_ptr().add(1).read_volatile() }, 2);
    /// ```
    pub fn as_ptr(&self) -> *mut T {
        self.shared.as_ptr()
    }
}

impl<T: Element> fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Array")
            .field("len", &self.shared.len)
            .field("locked", &self.shared.lock.is_some())
            .finish_non_exhaustive()
    }
}

impl<T: Element> Serialize for Array<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.shared.serialize(serializer)
    }
}

impl<'de, T: Element> Deserialize<'de> for Array<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Shared::deserialize(deserializer).map(|shared| Array { shared })
    }
}

/// Holds an [`Array`]'s lock: the locked section. Reads and writes through it do not
/// lock again. Releases the lock when dropped; not `Send`, like every lock guard here.
pub struct ArrayGuard<'a, T: Element> {
    shared: &'a Shared<T>,
    _held: RLockGuard<'a>,
}

impl<T: Element> ArrayGuard<'_, T> {
    /// Marks the array recovered after a holder's death: from now on its accessors
    /// work again, instead of reporting [`AccessError::OwnerDied`]. Call it once the elements
    /// (and whatever else the lock protects) are repaired.
    ///
    /// ```
    /// let a = flotilla_ipc::Array::<u8>::new(2).unwrap();
    /// let guard = a.lock().unwrap();
    /// guard.mark_recovered(); // nothing to recover: no effect
    /// ```
    pub fn mark_recovered(&self) {
        self.shared.mark_recovered();
    }
    /// The number of elements.
    ///
    /// ```
    /// let a = flotilla_ipc::Array::<u8>::new(2).unwrap();
    /// assert_eq!(a.lock().unwrap().len(), 2);
    /// ```
    pub fn len(&self) -> usize {
        self.shared.len
    }

    /// Whether the array has no elements.
    ///
    /// ```
    /// let a = flotilla_ipc::Array::<u8>::new(0).unwrap();
    /// assert!(a.lock().unwrap().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.shared.len == 0
    }

    /// The element at `index`.
    ///
    /// # Errors
    ///
    /// [`IndexOutOfRange`] past the end.
    ///
    /// ```
    /// let a = flotilla_ipc::Array::from_slice(&[7u8]).unwrap();
    /// let section = a.lock().unwrap();
    /// assert_eq!(section.get(0).unwrap(), 7);
    /// assert!(section.get(1).is_err());
    /// ```
    pub fn get(&self, index: usize) -> Result<T, IndexOutOfRange> {
        self.shared.check(index)?;
        Ok(self.shared.load(index))
    }

    /// Sets the element at `index`.
    ///
    /// # Errors
    ///
    /// [`IndexOutOfRange`] past the end.
    ///
    /// ```
    /// let a = flotilla_ipc::Array::<u8>::new(1).unwrap();
    /// a.lock().unwrap().set(0, 3).unwrap();
    /// assert_eq!(a.get(0).unwrap(), 3);
    /// ```
    pub fn set(&self, index: usize, value: T) -> Result<(), IndexOutOfRange> {
        self.shared.check(index)?;
        self.shared.store(index, value);
        Ok(())
    }

    /// A copy of every element.
    ///
    /// ```
    /// let a = flotilla_ipc::Array::from_slice(&[1u8, 2]).unwrap();
    /// assert_eq!(a.lock().unwrap().to_vec(), [1, 2]);
    /// ```
    pub fn to_vec(&self) -> Vec<T> {
        self.shared.to_vec()
    }

    /// Overwrites every element from `values`.
    ///
    /// # Errors
    ///
    /// [`LengthMismatch`] unless `values` has the array's length; nothing is written.
    ///
    /// ```
    /// let a = flotilla_ipc::Array::<u8>::new(2).unwrap();
    /// a.lock().unwrap().copy_from_slice(&[8, 9]).unwrap();
    /// assert_eq!(a.to_vec().unwrap(), [8, 9]);
    /// ```
    pub fn copy_from_slice(&self, values: &[T]) -> Result<(), LengthMismatch> {
        self.shared.check_len(values)?;
        self.shared.store_all(values);
        Ok(())
    }
}

impl<T: Element> fmt::Debug for ArrayGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArrayGuard")
            .field("len", &self.shared.len)
            .finish_non_exhaustive()
    }
}
