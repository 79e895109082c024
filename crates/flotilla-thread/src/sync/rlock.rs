//! [`RLock`]: Python's `threading.RLock`, a lock the holding thread may take again,
//! here wrapping the value it protects (like std's unstable `ReentrantLock<T>`).
//!
//! The state machine lives in `Owner`, behind a std mutex: `thread == 0` and
//! `depth == 0` when free (no thread's serial is 0); `thread == serial` with `depth >= 1`
//! while the thread with that serial holds `depth` guards. Only the owning thread changes `depth` while it is non-zero, and the
//! protected value is only reached through a guard, so only the owner reads it.

use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use flotilla_core::Deadline;

use super::lock;
use crate::thread::current_serial;

/// A reentrant lock protecting a value: Python's `threading.RLock`.
///
/// The thread holding the lock may acquire it again; each acquisition returns an
/// [`RLockGuard`], and the lock is free for other threads once every guard is dropped
/// (each drop releases one level, as each Python `release()` does). Because the same
/// thread may hold several guards at once, a guard gives only `&T`; put a `Cell` or
/// `RefCell` inside for mutation. For that reason `RLock<T>` is `Sync` whenever `T` is
/// `Send`: only the owning thread ever touches the value.
///
/// Plain Python `RLock()` is `RLock<()>`, the default type: `RLock::default()`.
///
/// A guard is tied to the thread that acquired it (`RLockGuard` is not `Send`), so a
/// lock can never be released by a thread that does not hold it, the error Python
/// raises at run time.
///
/// # Examples
///
/// ```
/// use std::cell::RefCell;
/// use flotilla_thread::RLock;
///
/// let log = RLock::new(RefCell::new(Vec::new()));
///
/// fn record(log: &RLock<RefCell<Vec<&'static str>>>, what: &'static str) {
///     log.lock().borrow_mut().push(what);
/// }
///
/// let outer = log.lock();
/// record(&log, "inner"); // the same thread takes the lock again
/// outer.borrow_mut().push("outer");
/// drop(outer);
/// assert_eq!(*log.lock().borrow(), ["inner", "outer"]);
/// ```
pub struct RLock<T: ?Sized = ()> {
    owner: Mutex<Owner>,
    cv: Condvar,
    data: T,
}

#[derive(Debug)]
struct Owner {
    /// `current_serial()` of the holding thread; 0 when free (no thread has serial 0).
    thread: u64,
    depth: usize,
}

// SAFETY: the value is only reached through an `RLockGuard`, and guards exist on one
// thread at a time: the owner recorded in `Owner`, which other threads wait out before
// making their own guard (see `try_enter`). So `&RLock<T>` shared between threads never
// gives two threads `&T` at once, and `T: Send` is enough, as for `Mutex<T>`.
unsafe impl<T: ?Sized + Send> Sync for RLock<T> {}

impl<T> RLock<T> {
    /// A new, free lock protecting `data`.
    ///
    /// # Examples
    ///
    /// ```
    /// let lock = flotilla_thread::RLock::new(5);
    /// assert_eq!(*lock.lock(), 5);
    /// ```
    pub const fn new(data: T) -> Self {
        RLock {
            owner: Mutex::new(Owner {
                thread: 0,
                depth: 0,
            }),
            cv: Condvar::new(),
            data,
        }
    }

    /// Consumes the lock, returning the value. No guard can exist: they borrow the lock.
    ///
    /// # Examples
    ///
    /// ```
    /// let lock = flotilla_thread::RLock::new(String::from("x"));
    /// assert_eq!(lock.into_inner(), "x");
    /// ```
    pub fn into_inner(self) -> T {
        self.data
    }
}

impl<T: ?Sized> RLock<T> {
    /// Acquires the lock, blocking while another thread holds it; returns at once if
    /// this thread already holds it.
    ///
    /// # Panics
    ///
    /// If this thread already holds `usize::MAX` guards, which only leaking guards
    /// (`mem::forget`) can reach.
    ///
    /// # Examples
    ///
    /// ```
    /// let lock = flotilla_thread::RLock::new(());
    /// let a = lock.lock();
    /// let b = lock.lock();
    /// assert_eq!(lock.depth(), 2);
    /// ```
    #[track_caller]
    pub fn lock(&self) -> RLockGuard<'_, T> {
        match self.acquire_within(None) {
            Some(guard) => guard,
            None => panic!("RLock acquired usize::MAX times by one thread"),
        }
    }

    /// [`lock`](Self::lock) under the process `RLock`'s (and Python's `acquire()`)
    /// name: blocks until the lock is free or held by this thread.
    ///
    /// # Panics
    ///
    /// As [`lock`](Self::lock), if this thread already holds it `usize::MAX` times.
    ///
    /// # Examples
    ///
    /// ```
    /// let lock = flotilla_thread::RLock::new(());
    /// let _held = lock.acquire();
    /// ```
    #[track_caller]
    pub fn acquire(&self) -> RLockGuard<'_, T> {
        self.lock()
    }

    /// Acquires the lock, blocking until it is free or `timeout` passes. `None` if the
    /// timeout passed first. Returns at once if this thread already holds the lock.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use flotilla_thread::RLock;
    ///
    /// let lock = RLock::new(());
    /// let _held = lock.lock();
    /// std::thread::scope(|s| {
    ///     s.spawn(|| assert!(lock.acquire_timeout(Duration::from_millis(10)).is_none()));
    /// });
    /// ```
    pub fn acquire_timeout(&self, timeout: Duration) -> Option<RLockGuard<'_, T>> {
        self.acquire_within(Some(timeout))
    }

    /// The body of [`lock`](Self::lock) and [`acquire_timeout`](Self::acquire_timeout);
    /// `None` waits without limit.
    fn acquire_within(&self, timeout: Option<Duration>) -> Option<RLockGuard<'_, T>> {
        let me = current_serial();
        let deadline = Deadline::after(timeout);
        let mut owner = lock(&self.owner);
        loop {
            match Self::try_enter(&mut owner, me) {
                Enter::Entered => return Some(self.guard()),
                Enter::Overflow => return None,
                Enter::Busy if deadline.expired() => return None,
                Enter::Busy => owner = deadline.wait(&self.cv, owner),
            }
        }
    }

    /// Acquires the lock if it is free or already held by this thread, without
    /// blocking.
    ///
    /// # Examples
    ///
    /// ```
    /// let lock = flotilla_thread::RLock::new(());
    /// let first = lock.try_lock();
    /// assert!(first.is_some());
    /// assert!(lock.try_lock().is_some()); // reentrant
    /// std::thread::scope(|s| {
    ///     s.spawn(|| assert!(lock.try_lock().is_none()));
    /// });
    /// ```
    pub fn try_lock(&self) -> Option<RLockGuard<'_, T>> {
        let me = current_serial();
        match Self::try_enter(&mut lock(&self.owner), me) {
            Enter::Entered => Some(self.guard()),
            Enter::Busy | Enter::Overflow => None,
        }
    }

    /// Whether the calling thread holds the lock (Python's `RLock._is_owned`).
    ///
    /// # Examples
    ///
    /// ```
    /// let lock = flotilla_thread::RLock::new(());
    /// assert!(!lock.is_owned());
    /// let _guard = lock.lock();
    /// assert!(lock.is_owned());
    /// ```
    pub fn is_owned(&self) -> bool {
        lock(&self.owner).thread == current_serial()
    }

    /// How many guards the calling thread holds: 0 if it does not hold the lock.
    ///
    /// # Examples
    ///
    /// ```
    /// let lock = flotilla_thread::RLock::new(());
    /// let _a = lock.lock();
    /// let _b = lock.lock();
    /// assert_eq!(lock.depth(), 2);
    /// ```
    pub fn depth(&self) -> usize {
        let owner = lock(&self.owner);
        if owner.thread == current_serial() {
            owner.depth
        } else {
            0
        }
    }

    /// The value, through `&mut self`: no guard can exist, so no locking is needed.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut lock = flotilla_thread::RLock::new(1);
    /// *lock.get_mut() += 1;
    /// assert_eq!(*lock.lock(), 2);
    /// ```
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.data
    }

    fn try_enter(owner: &mut Owner, me: u64) -> Enter {
        if owner.depth == 0 {
            owner.thread = me;
            owner.depth = 1;
            Enter::Entered
        } else if owner.thread == me {
            match owner.depth.checked_add(1) {
                Some(depth) => {
                    owner.depth = depth;
                    Enter::Entered
                }
                None => Enter::Overflow,
            }
        } else {
            Enter::Busy
        }
    }

    fn guard(&self) -> RLockGuard<'_, T> {
        RLockGuard {
            lock: self,
            _not_send: PhantomData,
        }
    }
}

enum Enter {
    Entered,
    Busy,
    Overflow,
}

impl<T: Default> Default for RLock<T> {
    fn default() -> Self {
        RLock::new(T::default())
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("RLock");
        match self.try_lock() {
            Some(guard) => d.field("data", &&*guard),
            None => d.field("data", &format_args!("<locked>")),
        };
        d.finish_non_exhaustive()
    }
}

/// One level of holding an [`RLock`]: gives `&T`, and releases that level when dropped.
///
/// Not `Send`: it must be dropped by the thread that acquired it.
///
/// ```compile_fail
/// fn send<T: Send>() {}
/// send::<flotilla_thread::RLockGuard<'static, ()>>();
/// ```
///
/// # Examples
///
/// ```
/// let lock = flotilla_thread::RLock::new(vec![1, 2]);
/// let guard = lock.lock();
/// assert_eq!(guard.len(), 2);
/// drop(guard);
/// assert!(!lock.is_owned());
/// ```
#[must_use = "the lock is released at once if the guard is not kept"]
pub struct RLockGuard<'a, T: ?Sized> {
    lock: &'a RLock<T>,
    /// Keeps the guard on its thread: the owner check in `RLock` is per thread.
    _not_send: PhantomData<*const ()>,
}

impl<T: ?Sized> Deref for RLockGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.lock.data
    }
}

impl<T: ?Sized> Drop for RLockGuard<'_, T> {
    fn drop(&mut self) {
        let mut owner = lock(&self.lock.owner);
        owner.depth -= 1;
        if owner.depth == 0 {
            owner.thread = 0;
            drop(owner);
            self.lock.cv.notify_one();
        }
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RLockGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}
