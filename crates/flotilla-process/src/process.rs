//! [`Process`] and its [`ProcessBuilder`]: Python's `multiprocessing.Process`, started
//! by one of the three start methods.

use std::fmt;
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::Arc;
use std::time::Duration;

use flotilla_core::codec;
use flotilla_ipc::{Connection, handle, pipe};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::boot::{self, Boot, ROLE_TASK};
use crate::child::{Child, ExitWatch, Outcome, PageReport, Report};
use crate::context::{Context, StartMethod};
use crate::error::Error;
use crate::fds::Internal;
use crate::state::{self, ProcessInfo};
use crate::target::Target;
use crate::{fds, forkserver, sys};

/// A target that runs under every start method: a fn item, fn pointer or non-capturing
/// closure of one or several arguments (a [`Target`]), and its serde arguments.
pub struct FnTarget<F: Target<M>, M> {
    f: F,
    args: F::Args,
    entry: boot::Target,
    _m: PhantomData<fn() -> M>,
}

impl<F: Target<M>, M> fmt::Debug for FnTarget<F, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnTarget")
            .field("entry", &self.entry)
            .finish_non_exhaustive()
    }
}

/// A target for the fork start method only: any closure, capturing anything.
pub struct ForkTarget<C, R> {
    closure: C,
    _r: PhantomData<fn() -> R>,
}

impl<C, R> fmt::Debug for ForkTarget<C, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ForkTarget")
    }
}

/// Options for a new process: its name, daemon flag and start method. Made by
/// [`Process::new`], [`Process::fork`] or [`Context::process`].
#[derive(Debug)]
#[must_use = "a builder does nothing until `start`"]
pub struct ProcessBuilder<T> {
    target: T,
    name: Option<String>,
    daemon: bool,
    method: StartMethod,
}

/// A child process: Python's `multiprocessing.Process`, with the target's return value
/// coming back typed.
///
/// Start one with [`Process::new`] (a function and its arguments, under any start
/// method) or [`Process::fork`] (any closure, under fork), then `start()`. `join` waits
/// for it and hands over its value; `exitcode` follows Python: `0` on success, `1` when
/// the target panicked, `-N` when killed by signal N.
///
/// A child is always reaped: by `join`, `is_alive` or `exitcode`, or, when its
/// `Process` was dropped first, by the next process start or `active_children()`.
/// At normal exit of the parent, daemonic children are terminated and the others
/// waited for, as in Python.
///
/// # Examples
///
/// ```
/// use flotilla_process::{Process, StartMethod, get_context};
///
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// for method in [StartMethod::Spawn, StartMethod::ForkServer] {
///     let child = get_context(Some(method)).process(square, 12).name("squarer").start().unwrap();
///     assert_eq!(child.name(), "squarer");
///     assert_eq!(child.join().unwrap(), 144);
///     assert_eq!(child.exitcode(), Some(0));
/// }
/// ```
pub struct Process<R> {
    child: Arc<Child>,
    _r: PhantomData<fn() -> R>,
}

impl Process<()> {
    /// A process running `target(args)`, under the program's start method.
    ///
    /// `target` takes one argument, or several spread from the tuple `args` (Python's
    /// `Process(target=f, args=(a, b))`; see [`Target`]). It must be a fn item, a fn
    /// pointer (`fn(A) -> R`, `fn(A, B) -> R`, ...: a target chosen at run time, from a
    /// table or a helper's parameter) or a closure that captures nothing, its argument
    /// types written out (`|a: u32, b: u32| a + b`):
    /// the child finds it by its place in the same binary. A closure that captures data
    /// does not build, or, if the data is pointer-sized, `start` refuses it with
    /// [`Error::Unsupported`]; under fork use [`Process::fork`] instead. Its arguments and
    /// return value cross in serialized form, with any flotilla handles in them (a
    /// `Connection` end, ...).
    ///
    /// ```compile_fail
    /// let captured = String::from("not allowed");
    /// let p = flotilla_process::Process::new(move |_: ()| captured.len(), ()).start();
    /// ```
    #[allow(
        clippy::new_ret_no_self,
        reason = "Python's Process(target, args) is an unstarted process: here, its builder"
    )]
    pub fn new<F, M>(target: F, args: F::Args) -> ProcessBuilder<FnTarget<F, M>>
    where
        F: Target<M>,
        F::Args: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned,
    {
        Context::default_context().process(target, args)
    }

    /// A process running `closure` in a fork of this one: it may capture anything, and
    /// sees a copy of this process's memory.
    ///
    /// The child also inherits every open descriptor of the user's, the parent's ends of
    /// pipes included — but none of flotilla's own (the forkserver's socket, other
    /// children's channels: see the `fds` module) — and ends without running destructors: a pipe whose other end the parent
    /// still holds does not reach end of file in the child until the child exits. Send
    /// an explicit "stop" message rather than relying on end of file, as in Python.
    ///
    /// ```
    /// let data = vec![1, 2, 3];
    /// let child = flotilla_process::Process::fork(move || data.iter().sum::<i32>()).start();
    /// # // The doctest runs single-threaded, so the safe fork check passes.
    /// assert_eq!(child.unwrap().join().unwrap(), 6);
    /// ```
    pub fn fork<C, R>(closure: C) -> ProcessBuilder<ForkTarget<C, R>>
    where
        C: FnOnce() -> R,
        R: Serialize + DeserializeOwned,
    {
        ProcessBuilder {
            target: ForkTarget {
                closure,
                _r: PhantomData,
            },
            name: None,
            daemon: false,
            method: StartMethod::Fork,
        }
    }
}

impl Context {
    /// A process running `target(args)` under this context's start method; see
    /// [`Process::new`].
    pub fn process<F, M>(&self, target: F, args: F::Args) -> ProcessBuilder<FnTarget<F, M>>
    where
        F: Target<M>,
        F::Args: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned,
    {
        let entry = boot::entry_of_target::<F, M>(&target);
        ProcessBuilder {
            target: FnTarget {
                f: target,
                args,
                // Named here, for every method, so a target that would not work under
                // spawn fails to compile under fork too.
                entry,
                _m: PhantomData,
            },
            name: None,
            daemon: false,
            method: self.start_method(),
        }
    }
}

impl<T> ProcessBuilder<T> {
    /// The process's name. Default `Process-N`, N counting this process's children.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// A daemonic process is terminated when its parent exits normally, and killed when
    /// the parent dies any other way (even by `SIGKILL`). Default false.
    ///
    /// Its life is tied to the parent *process*, whichever thread started it, under
    /// every start method: a fork or spawn child watches a pidfd of its parent from a
    /// small thread of its own, and a forkserver child dies with its server, which
    /// itself ends with the parent.
    pub fn daemon(mut self, daemon: bool) -> Self {
        self.daemon = daemon;
        self
    }
}

impl<F, M> ProcessBuilder<FnTarget<F, M>>
where
    F: Target<M>,
    F::Args: Serialize + DeserializeOwned,
    F::Output: Serialize + DeserializeOwned,
{
    /// Starts the process.
    ///
    /// Under the fork start method this refuses, with [`Error::Unsupported`], when this
    /// process runs other threads: a lock one of them holds would stay locked forever in
    /// the child. Use spawn or forkserver then, or, if you know the child touches no such
    /// lock, [`start_unchecked`](Self::start_unchecked).
    pub fn start(self) -> Result<Process<F::Output>, Error> {
        if self.method == StartMethod::Fork {
            ensure_single_threaded()?;
        }
        // SAFETY: under fork, this process has one thread (checked just above), so no
        // lock can be held by a thread missing from the child; the other methods do not
        // fork this process.
        unsafe { self.start_checked(true) }
    }

    /// Starts the process without the fork start method's thread check.
    ///
    /// # Safety
    ///
    /// Under the fork start method, when this process has other threads, the child may
    /// only use what those threads could not have been holding locked at the moment of
    /// the fork (the allocator is safe; stdout, loggers and user mutexes may not be).
    /// Such a child does not flush Rust's stdout buffer when it ends, for that reason:
    /// end its output with a newline or flush it in the target. Under spawn and
    /// forkserver this is the same as [`start`](Self::start).
    pub unsafe fn start_unchecked(self) -> Result<Process<F::Output>, Error> {
        // SAFETY: forwarded from this function's contract.
        unsafe { self.start_checked(false) }
    }

    /// Starts the process; `single_threaded` says whether a fork child may take the
    /// locks of this process's other threads (it has none) when it ends.
    ///
    /// # Safety
    ///
    /// As for [`start_unchecked`](Self::start_unchecked).
    unsafe fn start_checked(self, single_threaded: bool) -> Result<Process<F::Output>, Error> {
        let FnTarget { f, args, entry, .. } = self.target;
        if self.method == StartMethod::Fork {
            // SAFETY: forwarded from this function's contract.
            return unsafe {
                fork_child(self.name, self.daemon, single_threaded, move || {
                    f.call(args)
                })
            };
        }
        let (name, parent) = prepare(self.name)?;
        let daemon = self.daemon;
        let (ours, theirs) = pipe(true)?;
        let entry = entry.map_err(Error::Unsupported)?;
        let (bytes, fds) = entry.encode_args(&args)?;
        let boot = Boot {
            fingerprint: boot::fingerprint(),
            entry: entry.offset,
            args: bytes,
            name: name.clone(),
            daemon,
            parent: (parent.name, parent.pid),
            log: crate::log::for_child(),
        };
        let (pid, watch) = if self.method == StartMethod::Spawn {
            let pid = boot::spawn(ROLE_TASK, theirs)?;
            let pidfd = pidfd_or_reap(pid)?;
            send_boot(&ours, &boot, &fds)?;
            (pid, ExitWatch::Direct { pidfd })
        } else {
            let (pid, status) = forkserver::get()?
                .fork(daemon, theirs.into_fd(), || send_boot(&ours, &boot, &fds))?;
            let pidfd = sys::pidfd_open(pid).ok();
            (pid, ExitWatch::Server { status, pidfd })
        };
        flotilla_core::event!(
            flotilla_core::log::Level::DEBUG,
            child = %name,
            child_pid = pid,
            method = %self.method,
            daemon,
            "started a process"
        );
        Ok(register(Child::new(pid, name, daemon, watch, ours, None)))
    }
}

impl<C, R> ProcessBuilder<ForkTarget<C, R>>
where
    C: FnOnce() -> R,
    R: Serialize + DeserializeOwned,
{
    /// Forks, and runs the closure in the child.
    ///
    /// Refuses, with [`Error::Unsupported`], when this process runs other threads: see
    /// [`start_unchecked`](Self::start_unchecked).
    pub fn start(self) -> Result<Process<R>, Error> {
        ensure_single_threaded()?;
        // SAFETY: this process has one thread (checked just above), so no lock can be
        // held by a thread missing from the child.
        unsafe { fork_child(self.name, self.daemon, true, self.target.closure) }
    }

    /// Forks without checking for other threads.
    ///
    /// # Safety
    ///
    /// When this process has other threads, the closure may only use what those threads
    /// could not have been holding locked at the moment of the fork (the allocator is
    /// safe; stdout, loggers and user mutexes may not be). Such a child does not flush
    /// Rust's stdout buffer when it ends, for that reason: end its output with a newline
    /// or flush it in the closure.
    pub unsafe fn start_unchecked(self) -> Result<Process<R>, Error> {
        // SAFETY: forwarded from this function's contract.
        unsafe { fork_child(self.name, self.daemon, false, self.target.closure) }
    }
}

fn ensure_single_threaded() -> Result<(), Error> {
    match sys::thread_count()? {
        1 => Ok(()),
        n => Err(Error::Unsupported(format!(
            "refusing to fork: this process runs {n} threads, and a lock held by one of them \
             would stay locked forever in the child; use the spawn or forkserver start method, \
             or start_unchecked if the child touches no such lock"
        ))),
    }
}

/// Checks this process may start children, reaps finished ones, and names the new one.
fn prepare(name: Option<String>) -> Result<(String, ProcessInfo), Error> {
    boot::guard()?;
    let mut state = state::lock();
    state
        .children
        .retain(|c| !matches!(c.exitcode(), Ok(Some(_))));
    state.counter += 1;
    let name = name.unwrap_or_else(|| format!("Process-{}", state.counter));
    Ok((name, state.identity.clone()))
}

fn register<R>(child: Child) -> Process<R> {
    let child = Arc::new(child);
    let mut state = state::lock();
    state.children.push(Arc::clone(&child));
    if !state.exit_hook {
        state.exit_hook = true;
        // SAFETY: `at_exit` is an `extern "C" fn()` that lives for the whole program.
        unsafe { libc::atexit(at_exit) };
    }
    Process {
        child,
        _r: PhantomData,
    }
}

/// Python's exit handling: terminate the daemonic children, then wait for all.
extern "C" fn at_exit() {
    join_children();
}

/// Terminates this process's daemonic children, then waits for all of them: at the
/// exit of the main process (`atexit`) and at the end of every child process.
pub(crate) fn join_children() {
    let children = {
        let mut state = state::lock();
        if state.identity.pid != std::process::id() as i32 {
            return; // a forked child inherited the registration; children end with _exit
        }
        std::mem::take(&mut state.children)
    };
    for child in children.iter().filter(|c| c.daemon) {
        let _ = child.signal(libc::SIGTERM);
    }
    for child in &children {
        let _ = child.wait();
    }
}

/// Starts a process by forking: the child runs `body` and reports its value.
/// `single_threaded` says whether the child may take the locks of this process's other
/// threads (it has none) when it ends.
///
/// # Safety
///
/// See [`ProcessBuilder::start_unchecked`].
unsafe fn fork_child<G, R>(
    name: Option<String>,
    daemon: bool,
    single_threaded: bool,
    body: G,
) -> Result<Process<R>, Error>
where
    G: FnOnce() -> R,
    R: Serialize,
{
    let (name, parent) = prepare(name)?;
    // The child's name in logs, made here: the child allocates nothing of its own.
    let log_name = name.clone();
    let (ours, theirs) = pipe(true)?;
    // Without a page (no memory to map one), the report travels on the channel.
    let page = sys::ReportPage::new(parent.pid).ok();
    warm_for_fork();
    // SAFETY: forwarded from this function's contract: the child only runs `body` and
    // flotilla's own bootstrap, which takes no lock another thread could hold (the
    // process state is replaced, not locked, in the child; stdout is flushed at the end
    // only when there was no other thread to hold its lock).
    match unsafe { nix::unistd::fork() }.map_err(|e| Error::os("fork", e))? {
        nix::unistd::ForkResult::Child => {
            boot::set_flush_stdout(single_threaded);
            // None of the parent's own descriptors (its forkserver's control socket,
            // its other children's channels, ...) may live on here: see `fds`.
            fds::scrub_after_fork(&[theirs.as_fd().as_raw_fd()]);
            sys::forget_watcher();
            // Closed, not dropped: freeing its buffers would write (and so copy) heap
            // pages for nothing in a process about to end.
            let ours = std::mem::ManuallyDrop::new(ours);
            // SAFETY: closes the parent's end of the result channel, which this
            // process's copy of `ours` owns and, being never dropped, never closes again.
            unsafe { libc::close(ours.as_fd().as_raw_fd()) };
            let parent_pid = parent.pid;
            // SAFETY: a fork child, which has one thread until its target starts more.
            unsafe {
                state::reset_in_fork_child(
                    ProcessInfo {
                        name,
                        pid: std::process::id() as i32,
                    },
                    parent,
                    log_name,
                );
            }
            if daemon {
                sys::watch_parent(parent_pid);
            }
            boot::run_and_report(&theirs, page.as_ref(), body)
        }
        nix::unistd::ForkResult::Parent { child } => {
            let page = page.map(|page| PageReport {
                page,
                child_end: Internal::new(theirs),
            });
            let pid = child.as_raw();
            flotilla_core::event!(
                flotilla_core::log::Level::DEBUG,
                child = %name,
                child_pid = pid,
                method = "fork",
                daemon,
                "started a process"
            );
            let watch = ExitWatch::Direct {
                pidfd: pidfd_or_reap(pid)?,
            };
            Ok(register(Child::new(pid, name, daemon, watch, ours, page)))
        }
    }
}

/// Just before a fork: first touches what every fork child touches, so that the child
/// finds it ready in the memory it copies rather than setting it up itself. In the child
/// each first-time setup costs page faults (a registered thread-local destructor four,
/// stdout's buffer two, a first allocation about five), which were a good part of what
/// a fork start cost beyond the bare fork. All are one-time setups here: later calls
/// cost next to nothing.
fn warm_for_fork() {
    // The handle encoder's thread-locals, which encoding the child's value uses.
    let _ = flotilla_ipc::handle::encode(&());
    // Stdout, which the child flushes as it ends.
    let _ = std::io::stdout();
    // The buffer the child encodes its value into.
    boot::reserve_report_buffer();
}

/// A pidfd for our new child `pid`; on failure the child is killed and reaped, so it is
/// never left running unwatched.
fn pidfd_or_reap(pid: i32) -> Result<std::os::fd::OwnedFd, Error> {
    sys::pidfd_open(pid).inspect_err(|_| {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
    })
}

fn send_boot(conn: &Connection, boot: &Boot, fds: &[std::os::fd::OwnedFd]) -> Result<(), Error> {
    let bytes = codec::encode(boot).map_err(flotilla_ipc::Error::from)?;
    match conn.send_frame(&bytes, fds) {
        // A child that died before reading its task is reported by `join`.
        Ok(()) | Err(flotilla_ipc::SendError::Disconnected) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

impl<R: DeserializeOwned> Process<R> {
    /// Waits for the process to end, and returns the target's value: Python's `join()`
    /// (with the value, which Python's `Process` does not give back).
    ///
    /// When it ended without a value: [`Error::Panicked`] with the child's panic
    /// message, [`Error::Signaled`] when killed, [`Error::Exited`] when it exited by
    /// itself, [`Error::Refused`] when it would not run the task. The value is handed to
    /// the first join that sees it; later joins get [`Error::AlreadyJoined`], while
    /// failures are reported to every join. Never [`Error::Timeout`]: that is
    /// [`join_timeout`](Self::join_timeout)'s.
    pub fn join(&self) -> Result<R, Error> {
        self.join_within(None)
    }

    /// Like [`join`](Self::join), but gives up after `timeout` with [`Error::Timeout`]
    /// when the process still runs (join again later): Python's `join(timeout)`.
    pub fn join_timeout(&self, timeout: Duration) -> Result<R, Error> {
        self.join_within(Some(timeout))
    }

    /// The body of [`join`](Self::join) and [`join_timeout`](Self::join_timeout); `None`
    /// waits without limit.
    fn join_within(&self, timeout: Option<Duration>) -> Result<R, Error> {
        if !self.child.wait_within(timeout)? {
            return Err(Error::Timeout(timeout.unwrap_or_default()));
        }
        let (code, outcome) = self.child.take_outcome();
        match outcome {
            Outcome::Reported(Report::Returned(bytes), fds) => {
                Ok(handle::decode(&bytes, fds).map_err(flotilla_ipc::Error::from)?)
            }
            Outcome::Reported(Report::Panicked(message), _) => Err(Error::Panicked { message }),
            Outcome::Reported(Report::Refused(reason), _) => Err(Error::Refused(reason)),
            Outcome::Taken => Err(Error::AlreadyJoined),
            Outcome::Pending => match code {
                Some(code) if code < 0 => Err(Error::Signaled {
                    signal: -code,
                    name: sys::signal_name(-code),
                }),
                Some(code) => Err(Error::Exited { code }),
                None => Err(Error::ForkServer(format!(
                    "{} (pid {}) ended without a result after its forkserver died, so how \
                     it ended cannot be known",
                    self.child.name, self.child.pid
                ))),
            },
        }
    }
}

impl<R> Process<R> {
    /// The child's process id.
    pub fn pid(&self) -> i32 {
        self.child.pid
    }

    /// The child's name.
    pub fn name(&self) -> &str {
        &self.child.name
    }

    /// Whether the child is daemonic.
    pub fn daemon(&self) -> bool {
        self.child.daemon
    }

    /// True while the child runs.
    pub fn is_alive(&self) -> bool {
        matches!(self.child.exitcode(), Ok(None))
    }

    /// The exit code once the child has ended: 0 on success, 1 when the target
    /// panicked, `-N` when killed by signal N; `None` while it runs. 255 for a
    /// forkserver child that ended without a result after its forkserver died: how it
    /// ended cannot be known then (`join` says so).
    pub fn exitcode(&self) -> Option<i32> {
        self.child.exitcode().ok().flatten()
    }

    /// Asks the child to stop with `SIGTERM` (its exit code becomes -15).
    pub fn terminate(&self) -> Result<(), Error> {
        self.child.signal(libc::SIGTERM)
    }

    /// Kills the child with `SIGKILL` (its exit code becomes -9).
    pub fn kill(&self) -> Result<(), Error> {
        self.child.signal(libc::SIGKILL)
    }

    /// A descriptor that becomes readable when the child ends: Python's
    /// `Process.sentinel`, for `flotilla_ipc::wait` beside connections.
    pub fn sentinel(&self) -> BorrowedFd<'_> {
        self.child.sentinel()
    }
}

impl<R> fmt::Debug for Process<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Process")
            .field("name", &self.child.name)
            .field("pid", &self.child.pid)
            .field("daemon", &self.child.daemon)
            .field("exitcode", &self.exitcode())
            .finish()
    }
}

/// The live children of this process, reaping the ones that ended.
pub fn active_children() -> Vec<ProcessInfo> {
    let mut state = state::lock();
    state
        .children
        .retain(|c| !matches!(c.exitcode(), Ok(Some(_))));
    state
        .children
        .iter()
        .map(|c| ProcessInfo {
            name: c.name.clone(),
            pid: c.pid,
        })
        .collect()
}
