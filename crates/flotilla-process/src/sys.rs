//! The system calls behind processes, the nix way: results at once, owned descriptors
//! from the start. Linux-specific calls (pidfd, prctl) live here and nowhere else.

use std::ffi::{CString, OsString};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStringExt;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU8, Ordering};

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
#[inline]
pub(crate) fn forget_watcher() {
    // Written only when set: in a fork child, a write copies the page.
    if WATCHER.load(Ordering::Relaxed) {
        WATCHER.store(false, Ordering::SeqCst);
    }
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
    // On the stack, NUL-terminated: this runs in every fork child, where each heap page
    // written is a page copied.
    let mut cut = [0u8; 16];
    for (i, c) in name.char_indices() {
        if c == '\0' || i + c.len_utf8() > 15 {
            break;
        }
        cut[i..i + c.len_utf8()].copy_from_slice(&name.as_bytes()[i..i + c.len_utf8()]);
    }
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes from the
    // pointer: `cut` is 16 bytes, its last always zero.
    if unsafe { libc::prctl(libc::PR_SET_NAME, cut.as_ptr()) } != 0 {
        let errno = Errno::last();
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
/// First glibc's own word on it, `__libc_single_threaded`: true while this process has
/// never started a second thread (nor inherited one's absence wrongly: a fork child of a
/// process that had threads reads false). Reading it makes no system call, which matters
/// on every fork start and in every child's ending. When it is false, or unknown (no
/// glibc), one `stat` of `/proc/self/task`: procfs gives that directory a link count of
/// two plus the number of threads, so nothing is listed (listing it took five system
/// calls). A kernel that counted otherwise (a link count below three) gets the listing.
pub(crate) fn thread_count() -> Result<usize, Error> {
    if libc_says_single_threaded() {
        return Ok(1);
    }
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

/// Whether glibc's `__libc_single_threaded` (glibc 2.32+) says this process never had a
/// second thread. False when it does not say so, or when this is no such glibc: the
/// symbol is looked up once, at run time, so the program links with any C library.
fn libc_says_single_threaded() -> bool {
    /// The symbol's address; null before the lookup, [`ABSENT`] when there is none.
    static WORD: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());
    const ABSENT: *mut u8 = std::ptr::dangling_mut();
    let mut word = WORD.load(Ordering::Acquire);
    if word.is_null() {
        // SAFETY: dlsym with RTLD_DEFAULT and a constant NUL-terminated name only looks
        // the name up; the result is null or the variable's address.
        let found = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"__libc_single_threaded".as_ptr()) };
        word = if found.is_null() {
            ABSENT
        } else {
            found.cast()
        };
        WORD.store(word, Ordering::Release);
    }
    if word == ABSENT {
        return false;
    }
    // SAFETY: `word` is the address of glibc's `char __libc_single_threaded`, which
    // lives as long as the process; glibc writes it (only ever from nonzero to zero) as
    // a plain byte, read here as an atomic byte of the same size and alignment. While
    // it is nonzero this is the only thread, so no other can be writing it.
    unsafe { AtomicU8::from_ptr(word) }.load(Ordering::Acquire) != 0
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
///
/// A page whose report was read is kept as this process's one spare ([`recycle`]), its
/// length word zeroed, and the next fork start takes it: one `mmap` and one `munmap` less
/// per start, and the page stays mapped in the parent (no fault to read it back). Only a
/// page whose child has ended is recycled: no process writes it any more. (A child's
/// fork children map it too, but write only pages of their own.) A fork child inherits
/// the spare slot, holding a page shared with its parent: the slot records which process
/// put the page there, and a page put there by another process is unmapped, never used.
///
/// [`recycle`]: ReportPage::recycle
#[derive(Debug)]
pub(crate) struct ReportPage {
    base: std::ptr::NonNull<u8>,
    /// The process that mapped or took this page, which alone may reuse it.
    owner: i32,
}

/// The spare page: see [`ReportPage`]. Null when there is none.
static SPARE: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());
/// The pid of the process that put [`SPARE`]'s page there. Written after the page is
/// in place, so a spare read with an older pid is merely unmapped, never misused.
static SPARE_OWNER: AtomicI32 = AtomicI32::new(0);

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

    /// A zeroed page, shared with the children forked after this call, for process
    /// `owner` (the caller's pid): the spare page when this process has one, else a
    /// fresh one.
    pub(crate) fn new(owner: i32) -> Result<ReportPage, Error> {
        if let Some(base) =
            std::ptr::NonNull::new(SPARE.swap(std::ptr::null_mut(), Ordering::AcqRel))
        {
            if SPARE_OWNER.load(Ordering::Acquire) == owner {
                return Ok(ReportPage { base, owner });
            }
            // Inherited from the process that forked this one, which still uses it:
            // only this process's view of it goes.
            unmap(base);
        }
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
            owner,
        })
    }

    fn len_word(&self) -> &std::sync::atomic::AtomicU64 {
        // SAFETY: the page is page-aligned, at least 8 bytes long, and lives as long as
        // `self`; the word is only ever accessed atomically.
        unsafe { std::sync::atomic::AtomicU64::from_ptr(self.base.as_ptr().cast()) }
    }

    /// In the child: stores as the report what `fill` writes into the page's data area
    /// (`CAPACITY` bytes) and says the length of (`None`: it did not fit). False,
    /// storing nothing, when it did not fit.
    ///
    /// Writing straight into the page spares the child a buffer of its own: in a fork
    /// child, the first allocation copies the allocator's pages (three page faults, and
    /// two more for its code).
    pub(crate) fn write_with(&self, fill: impl FnOnce(&mut [u8]) -> Option<usize>) -> bool {
        // SAFETY: the page's data area, `CAPACITY` bytes after the header, which only
        // this child writes and nobody reads before the length store below; the slice
        // ends with this call.
        let area = unsafe {
            std::slice::from_raw_parts_mut(self.base.as_ptr().add(Self::HEADER), Self::CAPACITY)
        };
        let Some(len) = fill(area).filter(|&len| len <= Self::CAPACITY) else {
            return false;
        };
        // One more than the length, so an empty report is still a report.
        self.len_word()
            .store(len as u64 + 1, std::sync::atomic::Ordering::Release);
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

    /// In the parent, once the child that had this page has ended (so nothing writes it
    /// any more): keeps it as the spare for the next fork start, or unmaps it when there
    /// already is one.
    pub(crate) fn recycle(self) {
        let this = std::mem::ManuallyDrop::new(self);
        this.len_word().store(0, Ordering::Relaxed);
        match SPARE.compare_exchange(
            std::ptr::null_mut(),
            this.base.as_ptr(),
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => SPARE_OWNER.store(this.owner, Ordering::Release),
            Err(_) => unmap(this.base),
        }
    }
}

/// Unmaps a report page.
fn unmap(base: std::ptr::NonNull<u8>) {
    // SAFETY: every report page is a mapping of `ReportPage::SIZE` bytes made by
    // `ReportPage::new`, unmapped once, by its one owner, and not used after.
    unsafe { libc::munmap(base.as_ptr().cast(), ReportPage::SIZE) };
}

impl Drop for ReportPage {
    fn drop(&mut self) {
        unmap(self.base);
    }
}
