//! The system calls this crate makes, the nix way: every `-1` becomes a `Result` at once,
//! and every descriptor is an `OwnedFd` from the moment it exists.

use std::io::IoSlice;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType};

use flotilla_core::spin::POLL_FOR;

use crate::error::{OsError, PollError, RecvError, SendError};

/// The most descriptors one message carries (the kernel's `SCM_MAX_FD`).
pub(crate) const MAX_FDS_PER_MESSAGE: usize = 253;

pub(crate) fn socketpair() -> Result<(OwnedFd, OwnedFd), OsError> {
    nix::sys::socket::socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| OsError::new("socketpair", e))
}

/// A pipe: (read end, write end).
pub(crate) fn pipe() -> Result<(OwnedFd, OwnedFd), OsError> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| OsError::new("pipe2", e))
}

/// Up to this many bytes without descriptors go to a socket as one contiguous buffer,
/// copied on the stack, with `send` ([`write_some`]'s choice for one buffer without
/// descriptors): `sendmsg` of the header and payload as two pieces
/// costs more than the copy. Measured with a socket pair on this project's 2-CPU
/// machine: 64 B payloads 57 against 66 MB/s, 1 KiB ones 860 against 950; at 4 KiB the
/// two ways are level, and beyond, the copy costs more than it saves.
pub(crate) const CONTIGUOUS_SEND: usize = 4096 + 16;

/// Writes all of `bufs`, retrying on partial writes and EINTR. When `fds` is not empty it
/// travels with the first byte (on a socket).
pub(crate) fn write_all(
    fd: BorrowedFd<'_>,
    socket: bool,
    bufs: &[&[u8]],
    fds: &[RawFd],
) -> Result<(), SendError> {
    let total: usize = bufs.iter().map(|b| b.len()).sum();
    // Not zeroed: only the `total` bytes written into it are ever read.
    let mut joined = std::mem::MaybeUninit::<[u8; CONTIGUOUS_SEND]>::uninit();
    let joined_slice;
    let bufs = if socket && fds.is_empty() && total <= CONTIGUOUS_SEND && bufs.len() > 1 {
        let base = joined.as_mut_ptr().cast::<u8>();
        let mut at = 0;
        for b in bufs {
            // SAFETY: `at + b.len() <= total <= CONTIGUOUS_SEND`, inside `joined`, a
            // local that no `b` can overlap.
            unsafe { flotilla_core::copy::copy_raw(b.as_ptr(), base.add(at), b.len()) };
            at += b.len();
        }
        // SAFETY: the first `total` bytes of `joined` were all written just above.
        joined_slice = [unsafe { std::slice::from_raw_parts(base, total) }];
        &joined_slice[..]
    } else {
        bufs
    };
    let mut written = 0;
    let mut fds = fds;
    assert!(bufs.len() <= 4, "write_all writes at most four buffers");
    while written < total {
        // Rebuild the slices past what is written (rarely more than one round), on the
        // stack: a send allocates nothing.
        let mut skip = written;
        let mut iov = [IoSlice::new(&[]); 4];
        let mut count = 0;
        for b in bufs {
            if skip >= b.len() {
                skip -= b.len();
                continue;
            }
            iov[count] = IoSlice::new(&b[skip..]);
            count += 1;
            skip = 0;
        }
        match write_some(fd, socket, &iov[..count], fds)? {
            Some(n) => {
                written += n;
                fds = &[];
            }
            // Only a descriptor in non-blocking mode says "not now": an error here.
            None => return Err(SendError::os("send", Errno::EAGAIN)),
        }
    }
    Ok(())
}

/// Where descriptors received with data go, with the control-message buffer `recvmsg`
/// needs, kept between calls so receiving allocates nothing.
#[derive(Debug, Default)]
pub(crate) struct FdSink {
    pub(crate) fds: Vec<OwnedFd>,
    /// Room for one message's `SCM_RIGHTS`, in `u64`s so that it is aligned for the
    /// `cmsghdr` the kernel writes at its start.
    space: Vec<u64>,
}

/// One `recvmsg` (a socket) or `readv` (a pipe) into `iov`, never blocking on a socket
/// (`MSG_DONTWAIT`); on a socket with `sink`, the descriptors that come with the bytes
/// are kept in it. A message whose descriptors did not all fit is reported as
/// `EMSGSIZE` (the ones that did are kept, and closed with the sink's next clear).
///
/// # Safety
///
/// Every `iovec` in `iov` must describe memory this thread may write for the whole
/// call (it may be uninitialised: only the kernel writes it).
unsafe fn read_once(
    fd: BorrowedFd<'_>,
    socket: bool,
    iov: &mut [libc::iovec],
    sink: Option<&mut FdSink>,
) -> nix::Result<usize> {
    if !socket {
        // SAFETY: the caller vouches for the buffers; `iov` is valid for its length.
        let n = unsafe { libc::readv(fd.as_raw_fd(), iov.as_ptr(), iov.len() as libc::c_int) };
        return Errno::result(n).map(|n| n as usize);
    }
    // SAFETY: `msghdr` is plain old data, for which all zeroes is "no name, no control".
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = iov.len() as _;
    let mut sink = sink;
    if let Some(sink) = sink.as_deref_mut() {
        if sink.space.is_empty() {
            let fds = (MAX_FDS_PER_MESSAGE * std::mem::size_of::<libc::c_int>()) as u32;
            // SAFETY: CMSG_SPACE is arithmetic on its argument.
            let bytes = unsafe { libc::CMSG_SPACE(fds) } as usize;
            sink.space = vec![0; bytes.div_ceil(8)];
        }
        msg.msg_control = sink.space.as_mut_ptr().cast();
        msg.msg_controllen = (sink.space.len() * 8) as _;
    }
    let flags = libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC;
    // SAFETY: `msg` points at `iov` (the caller vouches for its buffers) and at the
    // sink's control buffer of `msg_controllen` bytes, all alive for the call.
    let n = Errno::result(unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, flags) })?;
    if let Some(sink) = sink {
        // SAFETY: the kernel has filled `msg`'s control buffer with `msg_controllen`
        // bytes of well-formed control messages; the CMSG_ macros walk exactly those.
        let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
        while !cmsg.is_null() {
            // SAFETY: a non-null header from CMSG_FIRSTHDR/NXTHDR lies within the buffer.
            let header = unsafe { &*cmsg };
            if header.cmsg_level == libc::SOL_SOCKET && header.cmsg_type == libc::SCM_RIGHTS {
                // SAFETY: as above; CMSG_LEN(0) is the header's own length.
                let (data, empty) = unsafe { (libc::CMSG_DATA(cmsg), libc::CMSG_LEN(0)) };
                let count = (header.cmsg_len as usize).saturating_sub(empty as usize)
                    / std::mem::size_of::<libc::c_int>();
                for i in 0..count {
                    // SAFETY: the data holds `count` descriptors, maybe unaligned.
                    let raw = unsafe { data.cast::<libc::c_int>().add(i).read_unaligned() };
                    // SAFETY: the kernel has just installed `raw` in this process for this
                    // message; nothing else owns it, so it becomes owned exactly once here.
                    let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                    sink.fds.push(owned);
                }
            }
            // SAFETY: `cmsg` is a header of `msg`'s control buffer.
            cmsg = unsafe { libc::CMSG_NXTHDR(&msg, cmsg) };
        }
        if msg.msg_flags & libc::MSG_CTRUNC != 0 {
            return Err(Errno::EMSGSIZE);
        }
    }
    Ok(n as usize)
}

/// A failed `poll` inside a receive, as the receive reports it.
fn recv_poll(e: PollError) -> RecvError {
    match e {
        PollError::Os { op, source } => RecvError::Os { op, source },
        PollError::WrongDirection(d) => RecvError::WrongDirection(d),
    }
}

/// What [`read_once`]'s `EMSGSIZE` means to the receiver.
fn too_many_fds() -> RecvError {
    RecvError::Malformed(format!(
        "more than {MAX_FDS_PER_MESSAGE} descriptors arrived with one message"
    ))
}

/// One read of at most the room in `bufs`, filled in order: `Ok(Some(n))` with what
/// arrived (`Some(0)` at end of file), or `Ok(None)` when `deadline` passed with nothing
/// to read. The first `n` bytes of the room are then written; the rest are as they were.
///
/// The room may be uninitialised (a `Vec`'s spare capacity): only the kernel writes it.
/// At most two buffers (a header and what follows it).
///
/// Without a deadline it waits as long as it takes (also on a descriptor in
/// non-blocking mode, by polling). With one, it never waits past it: a socket is read
/// with `MSG_DONTWAIT`, a pipe only once `poll` says the read will not block. Whatever
/// the mode of the descriptor, a read that would block waits in `poll`, bounded by the
/// deadline. On a socket, with `sink`, descriptors arriving with the data are kept in it.
pub(crate) fn read_chunk(
    fd: BorrowedFd<'_>,
    socket: bool,
    bufs: &mut [&mut [MaybeUninit<u8>]],
    mut sink: Option<&mut FdSink>,
    deadline: Option<Instant>,
) -> Result<Option<usize>, RecvError> {
    let empty = libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    };
    let mut iov = [empty; 2];
    assert!(
        bufs.len() <= iov.len(),
        "read_chunk reads into at most two buffers"
    );
    for (iov, buf) in iov.iter_mut().zip(bufs.iter_mut()) {
        iov.iov_base = buf.as_mut_ptr().cast();
        iov.iov_len = buf.len();
    }
    let iov = &mut iov[..bufs.len()];
    // What a read's result means here: `None` for "nothing yet".
    let outcome = |n: nix::Result<usize>| match n {
        Ok(n) => Some(Ok(Some(n))),
        Err(Errno::EINTR | Errno::EAGAIN) => None,
        Err(Errno::ECONNRESET) => Some(Ok(Some(0))),
        Err(Errno::EMSGSIZE) => Some(Err(too_many_fds())),
        Err(e) => Some(Err(RecvError::os("read", e))),
    };
    let mut polled = false;
    // A `poll` of this wait has just found the pipe readable: no need to ask again.
    let mut seen_readable = false;
    loop {
        // The read never waits. A pipe has no per-call "don't wait": ask first (a pipe
        // read by two processes at once carries no frames anyway, so nobody takes the
        // bytes in between).
        let ready = socket
            || std::mem::take(&mut seen_readable)
            || poll_now(&mut readable(fd)).map_err(recv_poll)?;
        if ready {
            // SAFETY: every `iovec` is one of `bufs`, borrowed mutably for this call.
            let n = unsafe { read_once(fd, socket, iov, sink.as_deref_mut()) };
            if let Some(result) = outcome(n) {
                return result;
            }
        }
        // Nothing to read yet: wait for readability, within the deadline.
        let left = match deadline {
            None => None,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(None);
                }
                Some(left)
            }
        };
        // First, once, look again for a while before blocking, by flotilla's policy
        // (see `poll_many`). On a socket each look is the read itself, so the look that
        // finds the bytes takes them: a read, a yield and a read per message that comes
        // during the looks, where a `poll` per look took five calls.
        if !polled {
            polled = true;
            let limit = left.map_or(POLL_FOR, |left| left.min(POLL_FOR));
            if socket {
                let mut found = None;
                flotilla_core::spin::poll_for(limit, || {
                    // SAFETY: as above.
                    let n = unsafe { read_once(fd, socket, iov, sink.as_deref_mut()) };
                    found = outcome(n);
                    found.is_some()
                });
                if let Some(result) = found {
                    return result;
                }
                count_blocked_wait();
            } else if spin_poll(&mut readable(fd), limit).map_err(recv_poll)? {
                seen_readable = true;
                continue;
            }
        }
        // Blocks, with no looks of its own (they were made above), allocating nothing.
        seen_readable = block_in_poll(&mut readable(fd), deadline).map_err(recv_poll)?;
        if !seen_readable && left.is_some() {
            return Ok(None);
        }
    }
}

/// What `poll` is asked of `fd` by a receive: readability (end of file and errors too).
fn readable(fd: BorrowedFd<'_>) -> [PollFd<'_>; 1] {
    [PollFd::new(fd, PollFlags::POLLIN)]
}

/// One write of as much of `iov` as fits without blocking (retried on EINTR); `fds`
/// travel with its first byte (on a socket). `Ok(None)` when nothing could be written
/// yet.
pub(crate) fn write_some(
    fd: BorrowedFd<'_>,
    socket: bool,
    iov: &[IoSlice<'_>],
    fds: &[RawFd],
) -> Result<Option<usize>, SendError> {
    loop {
        let result = if socket && fds.is_empty() && iov.len() == 1 {
            // One buffer and nothing beside it: `send` costs less than `sendmsg` (see
            // `CONTIGUOUS_SEND`).
            nix::sys::socket::send(fd.as_raw_fd(), &iov[0], MsgFlags::MSG_NOSIGNAL)
        } else if socket {
            let rights = [ControlMessage::ScmRights(fds)];
            let cmsgs: &[ControlMessage<'_>] = if fds.is_empty() { &[] } else { &rights };
            nix::sys::socket::sendmsg::<()>(
                fd.as_raw_fd(),
                iov,
                cmsgs,
                MsgFlags::MSG_NOSIGNAL,
                None,
            )
        } else {
            nix::sys::uio::writev(fd, iov)
        };
        return match result {
            Ok(n) => Ok(Some(n)),
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => Ok(None),
            Err(e) => Err(SendError::os("send", e)),
        };
    }
}

/// The `CLOCK_MONOTONIC` time `after` from now, as the absolute `timespec` that the calls
/// taking deadlines on that clock want (`futex_waitv`, `pthread_mutex_clocklock`);
/// `Ok(None)` when it lies beyond what a `timespec` holds, which is as good as never.
pub(crate) fn monotonic_after(after: Duration) -> nix::Result<Option<libc::timespec>> {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)?;
    let sum = || {
        let mut sec = now
            .tv_sec()
            .checked_add(libc::time_t::try_from(after.as_secs()).ok()?)?;
        // Both below one billion, so the sum fits in every `c_long`, 32-bit ones too.
        let mut nsec = now.tv_nsec() + after.subsec_nanos() as libc::c_long;
        if nsec >= 1_000_000_000 {
            nsec -= 1_000_000_000;
            sec = sec.checked_add(1)?;
        }
        Some(libc::timespec {
            tv_sec: sec,
            tv_nsec: nsec,
        })
    };
    Ok(sum())
}

/// Puts `fd`'s open file description in (or out of) non-blocking mode, with one system
/// call (`FIONBIO`), where reading its flags and writing them back takes two (a fork
/// start makes this call for every child).
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>, nonblocking: bool) -> Result<(), OsError> {
    let on = libc::c_int::from(nonblocking);
    // SAFETY: FIONBIO reads one int from the pointer, which points at `on`.
    let result = unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONBIO, &on) };
    Errno::result(result).map_err(|e| OsError::new("ioctl(FIONBIO)", e))?;
    Ok(())
}

/// Waits until `fd` is readable (or at end of file / error) or `timeout` passes.
pub(crate) fn poll_readable(
    fd: BorrowedFd<'_>,
    timeout: Option<Duration>,
) -> Result<bool, PollError> {
    let ready = poll_many(&[fd], timeout)?;
    Ok(!ready.is_empty())
}

thread_local! {
    /// How many of this thread's waits went on to block after their poll (for the tests).
    #[cfg(test)]
    pub(crate) static BLOCKED_WAITS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Waits until at least one of `fds` is readable, or `timeout` passes; the indices of
/// the ready ones.
///
/// A wait that may block first polls for up to [`POLL_FOR`], by flotilla's policy for
/// waits on another process ([`flotilla_core::spin`]: yielding between polls, or
/// spinning briefly without yielding while a busy process holds this CPU), then blocks
/// in `poll`. Measured with two processes
/// exchanging 64 bytes on two CPUs of an idle VM: 62-80 µs per round trip with each side
/// blocking in turn (two vCPU halts), 3.7-3.9 µs with each side polling first; pinned to
/// one CPU, 4.7 µs blocking and 3.8 polling with yields (105 µs with a spin that did not
/// yield); with a busy process on each CPU, 4.6-7.1 µs blocking and 3.8-3.9 polling.
pub(crate) fn poll_many(
    fds: &[BorrowedFd<'_>],
    timeout: Option<Duration>,
) -> Result<Vec<usize>, PollError> {
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    let mut pollfds: Vec<PollFd<'_>> = fds
        .iter()
        .map(|fd| PollFd::new(*fd, PollFlags::POLLIN))
        .collect();
    if timeout != Some(Duration::ZERO) {
        let spin = timeout.map_or(POLL_FOR, |t| t.min(POLL_FOR));
        if spin_poll(&mut pollfds, spin)? {
            return Ok(ready_indices(&pollfds));
        }
    }
    if block_in_poll(&mut pollfds, deadline)? {
        Ok(ready_indices(&pollfds))
    } else {
        Ok(Vec::new())
    }
}

/// Blocks in `poll` until one of `pollfds` is ready (true) or `deadline` passes (false).
fn block_in_poll(pollfds: &mut [PollFd<'_>], deadline: Option<Instant>) -> Result<bool, PollError> {
    loop {
        let wait = match deadline {
            None => PollTimeout::NONE,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                // Round up so a sub-millisecond wait does not turn into a busy loop.
                let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
                PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
            }
        };
        match nix::poll::poll(pollfds, wait) {
            Ok(0) if deadline.is_some_and(|d| Instant::now() >= d) => return Ok(false),
            Ok(0) => continue,
            Ok(_) => return Ok(true),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(poll_error(e)),
        }
    }
}

/// Polls `pollfds` without blocking for up to `spin`, by flotilla's one policy
/// ([`flotilla_core::spin::poll_for`]); whether one is ready.
fn spin_poll(pollfds: &mut [PollFd<'_>], spin: Duration) -> Result<bool, PollError> {
    let mut failed = None;
    let ready = flotilla_core::spin::poll_for(spin, || match poll_now(pollfds) {
        Ok(ready) => ready,
        Err(e) => {
            failed = Some(e);
            true
        }
    });
    if let Some(e) = failed {
        return Err(e);
    }
    if !ready {
        count_blocked_wait();
    }
    Ok(ready)
}

/// Counts a wait that went on to block after its looks (for the tests).
fn count_blocked_wait() {
    #[cfg(test)]
    BLOCKED_WAITS.set(BLOCKED_WAITS.get() + 1);
}

/// Whether `fd` becomes readable within a brief poll, the one every wait of this crate
/// makes before it blocks (see [`poll_many`]): for a reader of its own (flotilla's
/// manager) to call before a blocking read. Never blocks for long; an error counts as
/// readable, so the read that follows reports it.
#[doc(hidden)]
pub fn poll_briefly(fd: BorrowedFd<'_>) -> bool {
    spin_poll(&mut readable(fd), POLL_FOR).unwrap_or(true)
}

/// One `poll` that does not wait: whether any of `pollfds` is ready.
fn poll_now(pollfds: &mut [PollFd<'_>]) -> Result<bool, PollError> {
    loop {
        match nix::poll::poll(pollfds, PollTimeout::ZERO) {
            Ok(n) => return Ok(n > 0),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(poll_error(e)),
        }
    }
}

/// The indices of the descriptors `poll` reported ready.
fn ready_indices(pollfds: &[PollFd<'_>]) -> Vec<usize> {
    pollfds
        .iter()
        .enumerate()
        .filter(|(_, p)| p.revents().is_some_and(|r| !r.is_empty()))
        .map(|(i, _)| i)
        .collect()
}

fn poll_error(e: Errno) -> PollError {
    PollError::Os {
        op: "poll",
        source: e.into(),
    }
}
