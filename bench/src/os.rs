//! The bare OS mechanisms under the process and connection figures, for their `os-limit`
//! columns: `fork` + `waitpid`, `posix_spawn` of this binary + `waitpid`, and plain
//! `read`/`write` loops on an `AF_UNIX` `SOCK_STREAM` socket pair. Nothing here frames,
//! encodes or allocates per message: it is the floor under flotilla's code.

use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;

use anyhow::{Context, bail, ensure};

/// The first argument that makes this binary exit at once, with [`EXIT_NOW_CODE`]: the
/// child of the `posix_spawn` limit.
pub(crate) const EXIT_NOW: &str = "exit-now";

/// The exit code of an [`EXIT_NOW`] child, and of the forked limit child.
pub(crate) const EXIT_NOW_CODE: i32 = 42;

unsafe extern "C" {
    /// The process's environment, as `posix_spawn` wants it.
    static environ: *const *mut libc::c_char;
}

/// `-1` (or, for the `posix_spawn` family, a non-zero return) as an error naming `op`.
fn check(rc: libc::c_int, op: &str) -> anyhow::Result<libc::c_int> {
    if rc == -1 {
        return Err(io::Error::last_os_error()).with_context(|| op.to_owned());
    }
    Ok(rc)
}

/// Waits for child `pid` and returns its exit code; an error when a signal killed it.
pub(crate) fn wait_exit_code(pid: libc::pid_t) -> anyhow::Result<i32> {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid place for waitpid to write the child's status.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc == -1 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        check(rc, "waitpid")?;
        break;
    }
    ensure!(
        libc::WIFEXITED(status),
        "child {pid} ended by signal (status {status:#x})"
    );
    Ok(libc::WEXITSTATUS(status))
}

/// Forks a child that calls `_exit(EXIT_NOW_CODE)` at once, waits for it, and returns
/// its exit code.
///
/// The caller must be single-threaded (the measuring child is): the child only calls
/// `_exit`, which is async-signal-safe, so even that is more than it needs.
pub(crate) fn fork_and_wait() -> anyhow::Result<i32> {
    // SAFETY: the child calls only `_exit`, which is async-signal-safe, so it touches no
    // lock another thread could have held at the fork.
    let pid = check(unsafe { libc::fork() }, "fork")?;
    if pid == 0 {
        // SAFETY: ends the child at once, running nothing of the parent's.
        unsafe { libc::_exit(EXIT_NOW_CODE) };
    }
    wait_exit_code(pid)
}

/// `posix_spawn` of this very binary with [`EXIT_NOW`] (what it takes to start a fresh
/// copy of this program and see it end), ready to be called many times.
pub(crate) struct SpawnSelf {
    path: CString,
    argv: [CString; 2],
}

impl SpawnSelf {
    /// Resolves `/proc/self/exe` once, as flotilla's spawn does.
    pub(crate) fn new() -> anyhow::Result<SpawnSelf> {
        let argv0: OsString = std::env::args_os().next().unwrap_or_default();
        Ok(SpawnSelf {
            path: CString::new("/proc/self/exe")?,
            argv: [CString::new(argv0.into_vec())?, CString::new(EXIT_NOW)?],
        })
    }

    /// Spawns the child, waits for it, and returns its exit code.
    pub(crate) fn spawn_and_wait(&self) -> anyhow::Result<i32> {
        let argv = [
            self.argv[0].as_ptr().cast_mut(),
            self.argv[1].as_ptr().cast_mut(),
            std::ptr::null_mut(),
        ];
        let mut pid: libc::pid_t = 0;
        // SAFETY: `path` and `argv` are NUL-terminated strings in a null-terminated array
        // that outlive the call; `environ` is the process's environment, which nothing
        // changes while this single-threaded process spawns; null file actions and
        // attributes mean "inherit everything", as allowed.
        let rc = unsafe {
            libc::posix_spawn(
                &mut pid,
                self.path.as_ptr(),
                std::ptr::null(),
                std::ptr::null(),
                argv.as_ptr(),
                environ.cast(),
            )
        };
        if rc != 0 {
            bail!("posix_spawn: {}", io::Error::from_raw_os_error(rc));
        }
        wait_exit_code(pid)
    }
}

/// A connected `AF_UNIX` `SOCK_STREAM` pair, close-on-exec.
pub(crate) fn socketpair() -> anyhow::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    let flags = libc::SOCK_STREAM | libc::SOCK_CLOEXEC;
    // SAFETY: `fds` has room for the two descriptors socketpair writes.
    let rc = unsafe { libc::socketpair(libc::AF_UNIX, flags, 0, fds.as_mut_ptr()) };
    check(rc, "socketpair")?;
    // SAFETY: socketpair succeeded, so both descriptors are open and ours alone.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Writes all of `buf`. Async-signal-safe (no allocation on success), so a forked child
/// may use it.
pub(crate) fn write_all(fd: &OwnedFd, mut buf: &[u8]) -> Result<(), i32> {
    while !buf.is_empty() {
        // SAFETY: `buf` is valid for reads of `buf.len()` bytes.
        let n = unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            let errno = io::Error::last_os_error().raw_os_error().unwrap_or(0);
            if errno == libc::EINTR {
                continue;
            }
            return Err(errno);
        }
        buf = &buf[n as usize..];
    }
    Ok(())
}

/// Reads up to `buf.len()` bytes; `Ok(0)` at end of file. Async-signal-safe.
pub(crate) fn read_some(fd: &OwnedFd, buf: &mut [u8]) -> Result<usize, i32> {
    loop {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let errno = io::Error::last_os_error().raw_os_error().unwrap_or(0);
        if errno != libc::EINTR {
            return Err(errno);
        }
    }
}

/// Fills `buf`; `Ok(false)` when end of file came first. Async-signal-safe.
pub(crate) fn read_exact(fd: &OwnedFd, mut buf: &mut [u8]) -> Result<bool, i32> {
    while !buf.is_empty() {
        match read_some(fd, buf)? {
            0 => return Ok(false),
            n => buf = &mut buf[n..],
        }
    }
    Ok(true)
}

/// Forks a child that runs `body` on `fd` and then `_exit`s with the code it returns.
///
/// # Safety
///
/// The calling process must be single-threaded (the measuring child is), so that `body`
/// may allocate: no other thread can have held the allocator's lock at the fork.
pub(crate) unsafe fn fork_with(
    fd: OwnedFd,
    close_in_child: &OwnedFd,
    body: fn(&OwnedFd) -> i32,
) -> anyhow::Result<libc::pid_t> {
    // SAFETY: this process is single-threaded (this function's contract), so
    // no lock is held by a thread missing from the child; the child runs `body` and
    // `_exit`s, never returning into the caller.
    let pid = check(unsafe { libc::fork() }, "fork")?;
    if pid == 0 {
        // SAFETY: closing the parent's end in the child, so the parent's close reaches
        // us as end of file; the descriptor is valid, and the parent's `OwnedFd` lives in
        // the parent's copy of memory.
        unsafe { libc::close(close_in_child.as_raw_fd()) };
        let code = body(&fd);
        // SAFETY: ends the child without running the parent's destructors or handlers.
        unsafe { libc::_exit(code) };
    }
    drop(fd);
    Ok(pid)
}
