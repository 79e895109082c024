//! [`Thread`]: Python's `threading.Thread` done the Rust way — a [`ThreadBuilder`] with
//! a name and a daemon flag, a join with a timeout that can be retried, and Python's
//! daemon semantics at process exit.
//!
//! # Daemon threads and process exit
//!
//! As in Python, a process does not end while a *non-daemon* flotilla thread is still
//! running: when `main` returns, or any thread calls `std::process::exit`, the exit waits
//! for every non-daemon [`Thread`] (including ones they start meanwhile) to finish.
//! Daemon threads are not waited for; they stop, mid-work, when the process ends.
//!
//! This module owns the one process-wide singleton behind that: the registry of live
//! non-daemon threads (`LIVE`), and a `libc::atexit` hook, registered once, on the
//! first non-daemon spawn, that waits for them. Each registry entry belongs to the
//! process that spawned it: in a forked child the hook ignores the parent's threads,
//! which do not exist there. A thread that calls `std::process::exit` itself is not
//! waited for (it would wait for itself); if it exits while another non-daemon thread
//! waits on it, the process hangs, as in Python. `std::process::abort`, `_exit` and
//! death by a signal skip the hook, and every thread stops at once.
//!
//! Threads made with `std::thread::spawn` are outside the registry: they behave like
//! daemon threads, as they always have in Rust.

use std::cell::Cell;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once, PoisonError};
use std::thread::{JoinHandle, ThreadId};
use std::time::Duration;

use crate::Error;
use crate::sync::{Event, lock};

thread_local! {
    /// This thread's serial number, 0 until first asked for. A `const`-initialised
    /// `Cell` has no destructor, so it stays readable in TLS destructors and in the
    /// exit hook, where `std::thread::current()` may already be gone.
    static SERIAL: Cell<u64> = const { Cell::new(0) };
    /// Whether this thread is a daemon flotilla thread: what threads it spawns inherit.
    static DAEMON: Cell<bool> = const { Cell::new(false) };
}

/// Serial numbers of threads; never 0, never reused.
static NEXT_SERIAL: AtomicU64 = AtomicU64::new(1);
/// The N of the default names, "Thread-N", counted over unnamed threads as in Python.
static NEXT_NAME: AtomicU64 = AtomicU64::new(1);

/// The live non-daemon threads the exit hook waits for.
static LIVE: Mutex<Vec<Arc<Status>>> = Mutex::new(Vec::new());
/// Registers the exit hook once.
static EXIT_HOOK: Once = Once::new();

/// A number identifying the calling thread, unique for the life of the process and
/// never 0. Works in any thread, flotilla's or not, at any point of its life.
pub(crate) fn current_serial() -> u64 {
    SERIAL
        .try_with(|serial| {
            if serial.get() == 0 {
                serial.set(NEXT_SERIAL.fetch_add(1, Ordering::Relaxed));
            }
            serial.get()
        })
        // Unreachable for a destructor-less `const` thread-local; a fresh serial is the
        // safe answer anyway (at worst an `RLock` sees a stranger, never a twin).
        .unwrap_or_else(|_| NEXT_SERIAL.fetch_add(1, Ordering::Relaxed))
}

/// Whether a flotilla thread has finished, shared by its handle, the thread itself and
/// (for non-daemon threads) the exit hook.
#[derive(Debug)]
struct Status {
    /// The thread's `current_serial()`, chosen before it starts.
    serial: u64,
    /// The process that spawned the thread.
    pid: u32,
    /// Set once the target has returned or unwound; never cleared.
    finished: Event,
}

impl Status {
    fn finish(self: &Arc<Self>, registered: bool) {
        self.finished.set();
        if registered {
            lock(&LIVE).retain(|s| !Arc::ptr_eq(s, self));
        }
    }
}

/// Marks the thread finished when dropped: at the end of its target, or while a panic
/// unwinds out of it.
struct Finish {
    status: Arc<Status>,
    registered: bool,
}

impl Drop for Finish {
    fn drop(&mut self) {
        self.status.finish(self.registered);
    }
}

/// Waits for every live non-daemon [`Thread`] of this process except the calling one,
/// including threads they spawn while it waits: what the process exit does. For
/// runtimes that end a process with `_exit`, which skips the exit hook (a flotilla
/// child process calls it before it ends).
pub fn join_non_daemon() {
    join_non_daemon_threads();
}

/// The `atexit` hook: waits for every live non-daemon thread of this process except
/// the calling one, including threads they spawn while it waits.
///
/// It must not unwind (it is called from C): it only locks (recovering poison) and
/// waits.
extern "C" fn join_non_daemon_threads() {
    let me = current_serial();
    let pid = std::process::id();
    loop {
        let next = lock(&LIVE)
            .iter()
            .find(|s| s.pid == pid && s.serial != me && !s.finished.is_set())
            .cloned();
        match next {
            Some(status) => {
                status.finished.wait();
            }
            None => break,
        }
    }
}

fn register_non_daemon(status: &Arc<Status>) {
    EXIT_HOOK.call_once(|| {
        // SAFETY: `atexit` only requires a valid `extern "C" fn()`; the hook never
        // unwinds into C (see its doc) and touches only statics that live for the
        // whole process, so it is sound to call at exit.
        let rc = unsafe { libc::atexit(join_non_daemon_threads) };
        if rc != 0 {
            flotilla_core::event!(flotilla_core::log::Level::WARN,
                "could not register the exit hook: non-daemon threads will not be waited for at exit"
            );
        }
    });
    lock(&LIVE).push(Arc::clone(status));
}

/// Options for a new [`Thread`]: its name, whether it is a daemon, its stack size.
///
/// # Examples
///
/// ```
/// use flotilla_thread::ThreadBuilder;
///
/// let worker = ThreadBuilder::new()
///     .name("worker")
///     .daemon(true)
///     .spawn(|| std::thread::current().name().map(str::to_owned))?;
/// assert_eq!(worker.name(), "worker");
/// assert_eq!(worker.join()?, Some("worker".to_owned()));
/// # Ok::<(), flotilla_thread::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
#[must_use = "a builder does nothing until `spawn` is called"]
pub struct ThreadBuilder {
    name: Option<String>,
    daemon: Option<bool>,
    stack_size: Option<usize>,
}

impl ThreadBuilder {
    /// Default options: named "Thread-N", daemon if the spawning thread is a daemon
    /// flotilla thread (Python's inheritance rule; the main thread is not a daemon).
    ///
    /// # Examples
    ///
    /// ```
    /// let t = flotilla_thread::ThreadBuilder::new().spawn(|| 1)?;
    /// assert!(t.name().starts_with("Thread-"));
    /// assert!(!t.daemon());
    /// t.join()?;
    /// # Ok::<(), flotilla_thread::Error>(())
    /// ```
    pub fn new() -> Self {
        ThreadBuilder::default()
    }

    /// The thread's name, also given to the OS thread (and so shown by
    /// `std::thread::current().name()`, debuggers and panic messages).
    ///
    /// # Examples
    ///
    /// ```
    /// let t = flotilla_thread::ThreadBuilder::new().name("loader").spawn(|| ())?;
    /// assert_eq!(t.name(), "loader");
    /// t.join()?;
    /// # Ok::<(), flotilla_thread::Error>(())
    /// ```
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Whether the thread is a daemon: the process may end while a daemon thread
    /// still runs, but waits for non-daemon ones (see the [module docs](crate::Thread)).
    ///
    /// # Examples
    ///
    /// ```
    /// let t = flotilla_thread::ThreadBuilder::new().daemon(true).spawn(|| ())?;
    /// assert!(t.daemon());
    /// t.join()?;
    /// # Ok::<(), flotilla_thread::Error>(())
    /// ```
    pub fn daemon(mut self, daemon: bool) -> Self {
        self.daemon = Some(daemon);
        self
    }

    /// The thread's stack size in bytes (the OS may round it up).
    ///
    /// # Examples
    ///
    /// ```
    /// let t = flotilla_thread::ThreadBuilder::new().stack_size(1 << 20).spawn(|| 7)?;
    /// assert_eq!(t.join()?, 7);
    /// # Ok::<(), flotilla_thread::Error>(())
    /// ```
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = Some(bytes);
        self
    }

    /// Starts a thread running `f`. Python's `Thread(target=f).start()`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidThreadName`] if the name contains a NUL byte;
    /// [`Error::Spawn`] if the OS refuses to create the thread.
    ///
    /// # Examples
    ///
    /// ```
    /// let t = flotilla_thread::ThreadBuilder::new().spawn(|| 6 * 7)?;
    /// assert_eq!(t.join()?, 42);
    /// # Ok::<(), flotilla_thread::Error>(())
    /// ```
    pub fn spawn<F, T>(self, f: F) -> Result<Thread<T>, Error>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let name = self
            .name
            .unwrap_or_else(|| format!("Thread-{}", NEXT_NAME.fetch_add(1, Ordering::Relaxed)));
        if name.contains('\0') {
            return Err(Error::InvalidThreadName(name));
        }
        let daemon = self
            .daemon
            .unwrap_or_else(|| DAEMON.try_with(Cell::get).unwrap_or(false));
        let serial = NEXT_SERIAL.fetch_add(1, Ordering::Relaxed);
        let status = Arc::new(Status {
            serial,
            pid: std::process::id(),
            finished: Event::new(),
        });
        // Registered before the thread exists, so an exit racing this spawn still
        // waits for it.
        if !daemon {
            register_non_daemon(&status);
        }
        let finish = Finish {
            status: Arc::clone(&status),
            registered: !daemon,
        };

        let mut builder = std::thread::Builder::new().name(name.clone());
        if let Some(bytes) = self.stack_size {
            builder = builder.stack_size(bytes);
        }
        let spawned = builder.spawn(move || {
            SERIAL.with(|s| s.set(serial));
            DAEMON.with(|d| d.set(daemon));
            let _finish = finish;
            f()
        });
        // If the spawn failed, the closure (and so `finish`) was dropped with it,
        // which has already marked the thread finished and unregistered it.
        let handle = spawned?;
        Ok(Thread {
            id: handle.thread().id(),
            handle: Mutex::new(Joined::Running(handle)),
            status,
            name,
            daemon,
        })
    }
}

/// Starts a thread running `f` with default options (see [`ThreadBuilder::new`]).
///
/// # Errors
///
/// [`Error::Spawn`] if the OS refuses to create the thread.
///
/// # Examples
///
/// ```
/// let t = flotilla_thread::spawn(|| "done")?;
/// assert_eq!(t.join()?, "done");
/// # Ok::<(), flotilla_thread::Error>(())
/// ```
pub fn spawn<F, T>(f: F) -> Result<Thread<T>, Error>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    ThreadBuilder::new().spawn(f)
}

/// A running (or finished) thread: Python's `threading.Thread`, made by
/// [`ThreadBuilder::spawn`] or [`spawn`].
///
/// [`join`](Self::join) waits for it, with an optional timeout, and hands over the value
/// its target returned. A join that times out changes nothing and may be retried, the
/// way Python's `join(timeout)` followed by `is_alive()` is used; the value is handed
/// out once, by the first join that sees the thread finished.
///
/// Dropping a `Thread` detaches it: it runs on, and (unless it is a daemon) the process
/// still waits for it at exit.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use flotilla_thread::{Error, Event, ThreadBuilder};
/// use std::sync::Arc;
///
/// let go = Arc::new(Event::new());
/// let t = {
///     let go = Arc::clone(&go);
///     ThreadBuilder::new().name("waiter").spawn(move || go.wait())?
/// };
/// // Still running: the timed join says so, and may be tried again.
/// assert!(matches!(t.join_timeout(Duration::from_millis(10)), Err(Error::Timeout(_))));
/// assert!(t.is_alive());
/// go.set();
/// t.join_timeout(Duration::from_secs(10))?;
/// assert!(!t.is_alive());
/// # Ok::<(), flotilla_thread::Error>(())
/// ```
pub struct Thread<T> {
    handle: Mutex<Joined<T>>,
    status: Arc<Status>,
    name: String,
    daemon: bool,
    id: ThreadId,
}

/// What a [`Thread`]'s joins have seen of its end.
enum Joined<T> {
    /// Not joined yet.
    Running(JoinHandle<T>),
    /// A join took the value.
    Taken,
    /// The target panicked with this message (told to every join).
    Panicked(String),
}

impl<T> Thread<T> {
    /// Waits for the thread to finish, and returns what its target returned: the twin
    /// of `Process::join`.
    ///
    /// # Errors
    ///
    /// - [`Error::Panicked`] if the target panicked, with the panic message (to every
    ///   join).
    /// - [`Error::AlreadyJoined`] if an earlier join already returned the value.
    /// - [`Error::JoinSelf`] if called from the thread itself.
    ///
    /// Never [`Error::Timeout`]: that is [`join_timeout`](Self::join_timeout)'s.
    ///
    /// # Examples
    ///
    /// ```
    /// use flotilla_thread::{Error, spawn};
    ///
    /// let t = spawn(|| -> u8 { panic!("no luck") })?;
    /// match t.join() {
    ///     Err(Error::Panicked { message, .. }) => assert_eq!(message, "no luck"),
    ///     other => panic!("unexpected {other:?}"),
    /// }
    /// // A failure is told to every join; a value goes to the first.
    /// assert!(matches!(t.join(), Err(Error::Panicked { .. })));
    /// let ok = spawn(|| 5)?;
    /// assert_eq!(ok.join()?, 5);
    /// assert!(matches!(ok.join(), Err(Error::AlreadyJoined(_))));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn join(&self) -> Result<T, Error> {
        self.join_within(None)
    }

    /// Like [`join`](Self::join), but gives up after `timeout` with [`Error::Timeout`]
    /// if the thread still runs (join again later): Python's `join(timeout)`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use flotilla_thread::{Error, Event, spawn};
    /// use std::sync::Arc;
    ///
    /// let go = Arc::new(Event::new());
    /// let t = spawn({
    ///     let go = Arc::clone(&go);
    ///     move || go.wait()
    /// })?;
    /// assert!(matches!(t.join_timeout(Duration::from_millis(10)), Err(Error::Timeout(_))));
    /// go.set();
    /// t.join_timeout(Duration::from_secs(60))?;
    /// # Ok::<(), Error>(())
    /// ```
    pub fn join_timeout(&self, timeout: Duration) -> Result<T, Error> {
        self.join_within(Some(timeout))
    }

    /// The body of [`join`](Self::join) and [`join_timeout`](Self::join_timeout); `None`
    /// waits without limit.
    fn join_within(&self, timeout: Option<Duration>) -> Result<T, Error> {
        if self.status.serial == current_serial() {
            return Err(Error::JoinSelf(self.name.clone()));
        }
        if !self.status.finished.wait_within(timeout) {
            return Err(Error::Timeout(timeout.unwrap_or_default()));
        }
        let mut joined = self.handle.lock().unwrap_or_else(PoisonError::into_inner);
        if matches!(*joined, Joined::Running(_)) {
            let Joined::Running(handle) = std::mem::replace(&mut *joined, Joined::Taken) else {
                unreachable!("matched just above");
            };
            // The target has returned; this only waits for the OS thread to wind down
            // (thread-local destructors), which the timeout does not cover.
            match handle.join() {
                Ok(value) => return Ok(value),
                Err(payload) => *joined = Joined::Panicked(flotilla_core::panic_message(&*payload)),
            }
        }
        match &*joined {
            Joined::Panicked(message) => Err(Error::Panicked {
                thread: self.name.clone(),
                message: message.clone(),
            }),
            _ => Err(Error::AlreadyJoined(self.name.clone())),
        }
    }

    /// Whether the thread's target is still running.
    ///
    /// # Examples
    ///
    /// ```
    /// let t = flotilla_thread::spawn(|| ())?;
    /// t.join()?;
    /// assert!(!t.is_alive());
    /// # Ok::<(), flotilla_thread::Error>(())
    /// ```
    pub fn is_alive(&self) -> bool {
        !self.status.finished.is_set()
    }

    /// The thread's identifier: unique for the life of the process and never reused,
    /// the same as `std::thread::current().id()` inside the thread. (Python's `ident`
    /// may be reused after a thread ends; this one is not.)
    ///
    /// # Examples
    ///
    /// ```
    /// let t = flotilla_thread::spawn(|| std::thread::current().id())?;
    /// let id = t.ident();
    /// assert_eq!(t.join()?, id);
    /// # Ok::<(), flotilla_thread::Error>(())
    /// ```
    pub fn ident(&self) -> ThreadId {
        self.id
    }

    /// The thread's name: the one given to [`ThreadBuilder::name`], or "Thread-N".
    ///
    /// # Examples
    ///
    /// ```
    /// let t = flotilla_thread::ThreadBuilder::new().name("io").spawn(|| ())?;
    /// assert_eq!(t.name(), "io");
    /// # t.join()?;
    /// # Ok::<(), flotilla_thread::Error>(())
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the thread is a daemon (see [`ThreadBuilder::daemon`]).
    ///
    /// # Examples
    ///
    /// ```
    /// let t = flotilla_thread::ThreadBuilder::new().daemon(true).spawn(|| ())?;
    /// assert!(t.daemon());
    /// # t.join()?;
    /// # Ok::<(), flotilla_thread::Error>(())
    /// ```
    pub fn daemon(&self) -> bool {
        self.daemon
    }
}

impl<T> fmt::Debug for Thread<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Thread")
            .field("name", &self.name)
            .field("ident", &self.id)
            .field("daemon", &self.daemon)
            .field("alive", &self.is_alive())
            .field(
                "joined",
                &!matches!(
                    *self.handle.lock().unwrap_or_else(PoisonError::into_inner),
                    Joined::Running(_)
                ),
            )
            .finish()
    }
}
