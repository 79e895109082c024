//! flotilla's own descriptors, and how a forked child gets rid of them.
//!
//! Every descriptor flotilla-process opens for its own bookkeeping — the forkserver's
//! control socket, each child's result channel, status channel and pidfd, the bootstrap
//! socket a task arrived on, the shared-memory tracker's socket — is close-on-exec, so
//! no `exec` (spawn, the forkserver, a user's `Command`) ever inherits it. A `fork`
//! does not honour close-on-exec, so these descriptors are also entered in a
//! process-wide registry, and a child made by `Process::fork` (or a pool's fork) drops
//! every registered one right after the fork, before any user code runs
//! ([`scrub_after_fork`]). The descriptors the *user* holds — a `Connection` end the
//! closure captured — are not registered and stay open in the child, as documented on
//! `Process::fork`.
//!
//! Why a registry rather than "close everything but what the child needs": a fork
//! child's closure may capture any descriptor of the user's, and only the user knows
//! which ones it needs.
//!
//! The registry is a bitmap of atomics indexed by descriptor number, so a forked child
//! reads it without taking a lock that a vanished thread might hold. A registered
//! descriptor is unregistered *before* it is closed ([`Internal`]'s drop), so a number
//! reused by the user is never scrubbed. Scrubbing does not close: it points the number
//! at `/dev/null` (`dup3`, close-on-exec), so the Rust value still owning it in the
//! child's copy of memory closes a harmless descriptor if it is ever dropped, never
//! someone else's. Descriptors numbered beyond the bitmap (over a million) are not
//! tracked. Between a descriptor's creation and its registration a concurrent fork in
//! another thread may still copy it: a window of a few instructions, which only the
//! fork start method's `start_unchecked` can hit.

use std::ops::Deref;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

const WORDS: usize = 1 << 14;
/// Descriptors up to this number are tracked.
const LIMIT: usize = WORDS * 64;

static REGISTRY: [AtomicU64; WORDS] = [const { AtomicU64::new(0) }; WORDS];

/// How many words of [`REGISTRY`] were ever used: one past the highest registered
/// descriptor's word. A forked child scrubs only these, so it touches (and copies on
/// write) one page of the registry, not all 32 of them, in the usual process whose
/// descriptors are numbered below 4096.
static USED: AtomicUsize = AtomicUsize::new(0);

/// Enters `fd` in the registry of flotilla-internal descriptors.
pub(crate) fn register(fd: RawFd) {
    if let Ok(n) = usize::try_from(fd)
        && n < LIMIT
    {
        // The bound first: a fork between the two still finds the word in it.
        USED.fetch_max(n / 64 + 1, Ordering::SeqCst);
        REGISTRY[n / 64].fetch_or(1 << (n % 64), Ordering::SeqCst);
    }
}

/// Removes `fd` from the registry: call it before closing the descriptor.
pub(crate) fn unregister(fd: RawFd) {
    if let Ok(n) = usize::try_from(fd)
        && n < LIMIT
    {
        REGISTRY[n / 64].fetch_and(!(1 << (n % 64)), Ordering::SeqCst);
    }
}

/// In a child just forked: points every registered descriptor except `keep` at
/// `/dev/null` and empties the registry. Takes no lock and allocates nothing.
pub(crate) fn scrub_after_fork(keep: &[RawFd]) {
    // Opened at the first descriptor to scrub: a child with none makes no system call.
    let mut null = None;
    let used = USED.load(Ordering::SeqCst).min(WORDS);
    for (w, word) in REGISTRY[..used].iter().enumerate() {
        // Written only when it holds something: a write to a page copies it.
        if word.load(Ordering::SeqCst) == 0 {
            continue;
        }
        let mut bits = word.swap(0, Ordering::SeqCst);
        while bits != 0 {
            let bit = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            let fd = (w * 64 + bit) as RawFd;
            if keep.contains(&fd) {
                continue;
            }
            let null = *null.get_or_insert_with(|| {
                // SAFETY: open with a constant, NUL-terminated path; the result is
                // checked below.
                unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) }
            });
            if fd == null {
                continue;
            }
            if null >= 0 {
                // SAFETY: dup3 only replaces descriptor `fd` (ours, registered) with a
                // copy of `null`; no memory is touched.
                unsafe { libc::dup3(null, fd, libc::O_CLOEXEC) };
            } else {
                // No /dev/null: closing is the fallback (the owning value is never
                // dropped in a fork child that scrubbed, as the process state is
                // replaced, so a double close is unlikely).
                // SAFETY: closes a registered descriptor of ours.
                unsafe { libc::close(fd) };
            }
        }
    }
    if let Some(null) = null.filter(|&null| null >= 0) {
        // SAFETY: `null` was opened above and is closed once.
        unsafe { libc::close(null) };
    }
    for fd in keep {
        register(*fd);
    }
}

/// Whether `fd` is registered (for tests).
#[cfg(test)]
pub(crate) fn is_registered(fd: RawFd) -> bool {
    let n = fd as usize;
    n < LIMIT && REGISTRY[n / 64].load(Ordering::SeqCst) & (1 << (n % 64)) != 0
}

/// A descriptor-owning value entered in the registry for its whole life: registered
/// when wrapped, unregistered just before it is dropped (and its descriptor closed).
#[derive(Debug)]
pub(crate) struct Internal<T: AsFd> {
    inner: Option<T>,
}

impl<T: AsFd> Internal<T> {
    pub(crate) fn new(inner: T) -> Self {
        register(inner.as_fd().as_raw_fd());
        Internal { inner: Some(inner) }
    }
}

impl<T: AsFd> Deref for Internal<T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.inner.as_ref().expect("present until drop")
    }
}

impl<T: AsFd> AsFd for Internal<T> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        (**self).as_fd()
    }
}

impl<T: AsFd> Drop for Internal<T> {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            unregister(inner.as_fd().as_raw_fd());
            drop(inner);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::FromRawFd;

    use super::*;

    #[test]
    fn an_internal_value_is_registered_for_its_life() {
        let (a, _b) = flotilla_ipc::pipe(true).unwrap();
        let fd = a.as_fd().as_raw_fd();
        let a = Internal::new(a);
        assert!(is_registered(fd));
        drop(a);
        assert!(!is_registered(fd));
    }

    fn is_socket(fd: RawFd) -> bool {
        let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: fstat fills the buffer it is given; it is read only on success.
        let rc = unsafe { libc::fstat(fd, stat.as_mut_ptr()) };
        // SAFETY: fstat succeeded.
        rc == 0 && (unsafe { stat.assume_init() }.st_mode & libc::S_IFMT) == libc::S_IFSOCK
    }

    #[test]
    fn a_fork_child_keeps_the_user_descriptors_and_loses_ours() {
        let (ours, _peer) = flotilla_ipc::pipe(true).unwrap();
        let ours = Internal::new(ours);
        let (user, _user_peer) = flotilla_ipc::pipe(true).unwrap();
        let (kept, _kept_peer) = flotilla_ipc::pipe(true).unwrap();
        register(kept.as_fd().as_raw_fd());
        let fds = [
            ours.as_fd().as_raw_fd(),
            user.as_fd().as_raw_fd(),
            kept.as_fd().as_raw_fd(),
        ];
        // SAFETY: the child only makes syscalls and reads atomics before `_exit`.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                scrub_after_fork(&[fds[2]]);
                let ok = !is_socket(fds[0]) && is_socket(fds[1]) && is_socket(fds[2]);
                // SAFETY: ends the child at once.
                unsafe { libc::_exit(if ok { 0 } else { 1 }) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                let status = nix::sys::wait::waitpid(child, None).unwrap();
                assert_eq!(status, nix::sys::wait::WaitStatus::Exited(child, 0));
            }
        }
        unregister(fds[2]);
    }

    #[test]
    fn a_fork_child_scrubs_ours_numbered_far_up_the_registry() {
        let (sock, _peer) = flotilla_ipc::pipe(true).unwrap();
        let high =
            nix::fcntl::fcntl(sock.as_fd(), nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(3000)).unwrap();
        // SAFETY: fcntl just made this descriptor; it is owned here alone.
        let high = unsafe { std::os::fd::OwnedFd::from_raw_fd(high) };
        let fd = high.as_raw_fd();
        register(fd);
        assert!(
            USED.load(Ordering::SeqCst) > fd as usize / 64,
            "the scrub reaches it"
        );
        // SAFETY: the child only makes syscalls and reads atomics before `_exit`.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                scrub_after_fork(&[]);
                // SAFETY: ends the child at once.
                unsafe { libc::_exit(if is_socket(fd) { 1 } else { 0 }) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                let status = nix::sys::wait::waitpid(child, None).unwrap();
                assert_eq!(status, nix::sys::wait::WaitStatus::Exited(child, 0));
            }
        }
        unregister(fd);
    }
}
