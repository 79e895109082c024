//! The system calls behind processes, the nix way: results at once, owned descriptors
//! from the start. Linux-specific calls (pidfd, prctl) live here and nowhere else.

use std::ffi::{CString, OsString};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStringExt;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use nix::spawn::{PosixSpawnAttr, PosixSpawnFileActions, PosixSpawnFlags};
use nix::sys::signal::SigSet;
use nix::sys::wait::{WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::error::Error;

/// A descriptor that becomes readable when process `pid` ends (Linux 5.3+).
pub(crate) fn pidfd_open(pid: i32) -> Result<OwnedFd, Error> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1; it
    // touches no memory of ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(Error::os("pidfd_open", Errno::last()));
    }
    // SAFETY: the kernel just created this descriptor for us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Sends `signal` to the process behind `pidfd`, which cannot have been replaced by a
/// newer process with the same pid.
pub(crate) fn pidfd_send_signal(pidfd: BorrowedFd<'_>, signal: i32) -> Result<(), Error> {
    // SAFETY: the call reads no memory of ours (the siginfo pointer is null).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    match rc {
        0 => Ok(()),
        // Already gone (and maybe reaped): there is nothing left to signal.
        _ if Errno::last() == Errno::ESRCH => Ok(()),
        _ => Err(Error::os("pidfd_send_signal", Errno::last())),
    }
}

/// The exit code of child `pid` if it has ended (reaping it), in Python's convention:
/// the code, or minus the signal number.
pub(crate) fn try_reap(pid: i32) -> Result<Option<i32>, Error> {
    loop {
        match nix::sys::wait::waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(Some(code)),
            Ok(WaitStatus::Signaled(_, signal, _)) => return Ok(Some(-(signal as i32))),
            Ok(_) => return Ok(None),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(Error::os("waitpid", e)),
        }
    }
}

/// Reaps every ended child of this process whose pid is not watched by anyone (the
/// forkserver does this for its children): (pid, exit code) for each.
pub(crate) fn reap_any() -> Vec<(i32, i32)> {
    let mut reaped = Vec::new();
    loop {
        match nix::sys::wait::waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => reaped.push((pid.as_raw(), code)),
            Ok(WaitStatus::Signaled(pid, signal, _)) => {
                reaped.push((pid.as_raw(), -(signal as i32)))
            }
            Err(Errno::EINTR) => continue,
            _ => return reaped,
        }
    }
}

/// Ties this process's life to its parent *process* `parent`: when that process ends,
/// however it ends, this one is killed (`SIGKILL`). Exits at once (as if killed) if the
/// parent already ended.
///
/// `PR_SET_PDEATHSIG` would fire when the parent *thread* that forked us ends, which
/// for a child started from a pool thread or a short-lived thread is far too early. So
/// a small watcher thread of this process waits on a pidfd of the parent instead, and
/// a pidfd becomes readable only when the whole parent process has ended. The watcher
/// is a bare pthread (no Rust runtime state, no locks): [`thread_count`] leaves it out,
/// and a fork of this process does not copy it.
pub(crate) fn watch_parent(parent: i32) {
    WATCHER.store(false, Ordering::SeqCst);
    let pidfd = pidfd_open(parent);
    // The pidfd may name a newer process with a recycled pid if ours already ended; but
    // then we were re-parented, which getppid shows.
    if nix::unistd::getppid().as_raw() != parent {
        die();
    }
    let Ok(pidfd) = pidfd else {
        // No pidfd (kernel before 5.3): the thread-bound signal is all there is.
        kill_me_when_my_forker_ends();
        return;
    };
    let raw = pidfd.into_raw_fd();
    crate::fds::register(raw);
    let mut thread: libc::pthread_t = 0;
    // SAFETY: `parent_watcher` is an `extern "C"` function that takes the descriptor
    // number as its argument (no pointer is dereferenced); a null attribute means the
    // defaults.
    let rc = unsafe {
        libc::pthread_create(
            &mut thread,
            std::ptr::null(),
            parent_watcher,
            raw as usize as *mut libc::c_void,
        )
    };
    if rc == 0 {
        WATCHER.store(true, Ordering::SeqCst);
        // SAFETY: `thread` was just created and is detached once.
        unsafe { libc::pthread_detach(thread) };
    } else {
        kill_me_when_my_forker_ends();
    }
}

/// Whether this process runs a [`watch_parent`] thread.
static WATCHER: AtomicBool = AtomicBool::new(false);

/// In a child just forked: it has no watcher thread, whatever its parent had.
pub(crate) fn forget_watcher() {
    WATCHER.store(false, Ordering::SeqCst);
}

/// The watcher thread: sleeps until the parent process ends, then kills this process.
extern "C" fn parent_watcher(arg: *mut libc::c_void) -> *mut libc::c_void {
    let fd = arg as usize as RawFd;
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: `pfd` is one valid pollfd that outlives the call.
        let rc = unsafe { libc::poll(&mut pfd, 1, -1) };
        if rc > 0 {
            break;
        }
        if rc < 0 && Errno::last() != Errno::EINTR {
            return std::ptr::null_mut(); // cannot watch: leave it be
        }
    }
    die()
}

/// Kills this process with `SIGKILL`, as a parent's death does.
fn die() -> ! {
    // SAFETY: kill takes integers only.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    exit_now(128 + libc::SIGKILL)
}

/// `PR_SET_PDEATHSIG(SIGKILL)`: the kernel kills this process when the thread that
/// forked it ends. A kernel that refuses it leaves the child unguarded, not broken: the
/// failure is logged, and the child goes on.
fn kill_me_when_my_forker_ends() {
    if let Err(errno) = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL) {
        flotilla_core::event!(
            flotilla_core::log::Level::WARN,
            %errno,
            "prctl(PR_SET_PDEATHSIG) failed: this process will outlive its parent"
        );
    }
}

/// For a forkserver child: asks the kernel to kill this process when the server ends,
/// and dies at once if it already did. `PR_SET_PDEATHSIG` is tied to the thread that
/// forked, which is right here: the server has one thread, which lives as long as it.
pub(crate) fn die_with_server(server: i32) {
    kill_me_when_my_forker_ends();
    if nix::unistd::getppid().as_raw() != server {
        die();
    }
}

/// Names this thread (the process's main thread, in a new child) `name`, cut to the
/// kernel's 15 bytes: the name `ps` and `top` show. Best effort: a failure changes
/// nothing else, and is logged.
pub(crate) fn set_process_name(name: &str) {
    let mut len = 0;
    for (i, c) in name.char_indices() {
        if c == '\0' || i + c.len_utf8() > 15 {
            break;
        }
        len = i + c.len_utf8();
    }
    // No NUL inside: the cut stops at the first one.
    let Ok(cut) = CString::new(&name.as_bytes()[..len]) else {
        return;
    };
    if let Err(errno) = nix::sys::prctl::set_name(&cut) {
        flotilla_core::event!(flotilla_core::log::Level::DEBUG, %errno, name, "prctl(PR_SET_NAME) failed");
    }
}

/// Ends this process now, running no destructors, atexit handlers or buffered-output
/// flushes: the way every flotilla child ends, so it never unwinds into its parent's
/// code.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit is async-signal-safe and ends the process; nothing runs after it.
    unsafe { libc::_exit(code) }
}

/// How many threads this process has, not counting the [`watch_parent`] thread (which
/// holds no lock a fork child could need).
///
/// One `stat` of `/proc/self/task`: procfs gives that directory a link count of two
/// plus the number of threads, so nothing is listed (listing it took five system calls,
/// on every fork start and in every child's ending). A kernel that counted otherwise
/// (a link count below three) gets the listing.
pub(crate) fn thread_count() -> Result<usize, Error> {
    let watcher = usize::from(WATCHER.load(Ordering::SeqCst));
    let threads = match nix::sys::stat::stat("/proc/self/task") {
        Ok(st) if st.st_nlink >= 3 => st.st_nlink as usize - 2,
        _ => std::fs::read_dir("/proc/self/task")
            .map_err(|e| Error::Os {
                op: "reading /proc/self/task",
                source: e,
            })?
            .count(),
    };
    Ok(threads.saturating_sub(watcher).max(1))
}

/// Starts a fresh copy of this very executable (`/proc/self/exe`, so a binary replaced on
/// disk since is not picked up), with `extra_env` added to the environment and `fd`
/// available in the child as descriptor `child_fd`. The child's signal mask is cleared.
pub(crate) fn spawn_self(
    extra_env: &[(&str, String)],
    fd: BorrowedFd<'_>,
    child_fd: RawFd,
) -> Result<i32, Error> {
    let path = CString::new("/proc/self/exe").expect("no NUL");
    let argv0 = std::env::args_os()
        .next()
        .map(|a| CString::new(a.into_vec()).unwrap_or_else(|_| path.clone()))
        .unwrap_or_else(|| path.clone());
    // Should the worker bootstrap not run (see `boot`), a test harness given these
    // arguments runs no test, and the parent reports that the child never ran its task.
    let args = [
        argv0,
        CString::new("--exact").expect("no NUL"),
        CString::new("__flotilla_worker__").expect("no NUL"),
    ];
    let mut env: Vec<CString> = std::env::vars_os()
        .filter(|(k, _)| !extra_env.iter().any(|(name, _)| k.as_os_str() == *name))
        .filter_map(|(k, v)| {
            let mut kv: OsString = k;
            kv.push("=");
            kv.push(v);
            CString::new(kv.into_vec()).ok()
        })
        .collect();
    for (k, v) in extra_env {
        env.push(
            CString::new(format!("{k}={v}"))
                .map_err(|_| Error::Unsupported("NUL in an environment value".into()))?,
        );
    }
    // dup2 onto the same number would keep close-on-exec set, so move the descriptor
    // out of the way first when it already sits at `child_fd`.
    let moved;
    let source = if fd.as_raw_fd() == child_fd {
        moved = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(child_fd + 1))
            .map_err(|e| Error::os("fcntl(F_DUPFD_CLOEXEC)", e))?;
        // SAFETY: fcntl just returned this new descriptor; we own it.
        let owned = unsafe { OwnedFd::from_raw_fd(moved) };
        Some(owned)
    } else {
        None
    };
    let source_fd = source.as_ref().map_or(fd.as_raw_fd(), AsRawFd::as_raw_fd);

    let spawn = || -> nix::Result<Pid> {
        let mut attr = PosixSpawnAttr::init()?;
        attr.set_sigmask(&SigSet::empty())?;
        attr.set_flags(PosixSpawnFlags::POSIX_SPAWN_SETSIGMASK)?;
        let mut actions = PosixSpawnFileActions::init()?;
        actions.add_dup2(source_fd, child_fd)?;
        nix::spawn::posix_spawn(path.as_c_str(), &actions, &attr, &args, &env)
    };
    let result = spawn().map_err(|e| Error::os("posix_spawn", e));
    drop(source);
    result.map(Pid::as_raw)
}

/// The name of signal `signal`, such as `SIGTERM`.
pub(crate) fn signal_name(signal: i32) -> &'static str {
    nix::sys::signal::Signal::try_from(signal).map_or("unknown signal", |s| s.as_str())
}

/// One page of memory shared between a parent and the child it forks, for the child's
/// report when it is small: see `child`'s module doc.
///
/// Layout: a `u64` length word, then the report's bytes. The child copies the bytes in
/// first and stores their length last (release); the parent reads the length (acquire)
/// only once the child has ended. A fresh page is zero, and a child killed before the
/// length store leaves it zero: no report.
#[derive(Debug)]
pub(crate) struct ReportPage {
    base: std::ptr::NonNull<u8>,
}

// SAFETY: the page is plain memory owned by this value; every access goes through the
// atomic length word, which orders the byte copies (see `write` and `read`).
unsafe impl Send for ReportPage {}
// SAFETY: as for Send; `read` only reads.
unsafe impl Sync for ReportPage {}

impl ReportPage {
    const SIZE: usize = 4096;
    const HEADER: usize = std::mem::size_of::<u64>();
    /// The largest report that fits.
    pub(crate) const CAPACITY: usize = Self::SIZE - Self::HEADER;

    /// A fresh zeroed page, shared with the children forked after this call.
    pub(crate) fn new() -> Result<ReportPage, Error> {
        // SAFETY: an anonymous mapping at an address of the kernel's choosing touches no
        // existing memory; the result is checked before use.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                Self::SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(Error::Os {
                op: "mmap of a report page",
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(ReportPage {
            base: std::ptr::NonNull::new(base.cast()).expect("mmap never maps address zero"),
        })
    }

    fn len_word(&self) -> &std::sync::atomic::AtomicU64 {
        // SAFETY: the page is page-aligned, at least 8 bytes long, and lives as long as
        // `self`; the word is only ever accessed atomically.
        unsafe { std::sync::atomic::AtomicU64::from_ptr(self.base.as_ptr().cast()) }
    }

    /// In the child: stores `bytes` as the report. False, storing nothing, when they do
    /// not fit.
    pub(crate) fn write(&self, bytes: &[u8]) -> bool {
        if bytes.len() > Self::CAPACITY {
            return false;
        }
        // SAFETY: the destination is this page's data area, `CAPACITY` bytes long
        // (checked above), and nobody reads it before the length store below.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.base.as_ptr().add(Self::HEADER),
                bytes.len(),
            );
        }
        // One more than the length, so an empty report is still a report.
        self.len_word()
            .store(bytes.len() as u64 + 1, std::sync::atomic::Ordering::Release);
        true
    }

    /// In the parent, once the child has ended: the report it stored, if any.
    pub(crate) fn read(&self) -> Option<Vec<u8>> {
        let stored = self.len_word().load(std::sync::atomic::Ordering::Acquire);
        let len = usize::try_from(stored.checked_sub(1)?).ok()?;
        if len > Self::CAPACITY {
            return None; // not written by `write`
        }
        // SAFETY: `len` bytes of the data area were written before the length word's
        // release store, which the acquire load above saw.
        Some(unsafe {
            std::slice::from_raw_parts(self.base.as_ptr().add(Self::HEADER), len).to_vec()
        })
    }
}

impl Drop for ReportPage {
    fn drop(&mut self) {
        // SAFETY: the mapping was made by `new` with this size and is not used after.
        unsafe { libc::munmap(self.base.as_ptr().cast(), Self::SIZE) };
    }
}
