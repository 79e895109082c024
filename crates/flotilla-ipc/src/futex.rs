//! Futex wait and wake on a 32-bit word in shared memory: the kernel primitive that the
//! process-shared semaphores, events and queues sleep on.
//!
//! The futexes are *shared* (no `FUTEX_PRIVATE_FLAG`): the kernel keys a shared futex
//! by the page that backs it, so a waiter in one process is woken by a waker in another
//! that maps the same segment, at whatever address. Errors become `Result`s at once, the
//! nix way; the outcomes a caller must loop on anyway (woken, the word already changed,
//! interrupted by a signal) are one answer, [`Wake::Woken`], because a futex wake-up is
//! only ever a hint to look at the word again.

use std::ptr;
use std::sync::atomic::AtomicU32;
use std::time::{Duration, Instant};

use flotilla_core::Deadline;
use nix::errno::Errno;

use crate::sys;

/// Why [`wait`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wake {
    /// Woken, or the word did not hold the expected value, or a signal interrupted the
    /// wait, or (rarely) for no reason at all: look at the word again.
    Woken,
    /// The deadline passed.
    TimedOut,
}

/// Sleeps while `word` holds `expected`, until woken by [`wake`] or until `deadline`
/// (`None`: no deadline). Returns at once with [`Wake::Woken`] if the word holds
/// something else: the kernel compares and sleeps atomically, so a wake between the
/// caller's load and this call is never lost.
pub(crate) fn wait(
    word: &AtomicU32,
    expected: u32,
    deadline: Option<Instant>,
) -> Result<Wake, Errno> {
    let left = match time_left(deadline) {
        Ok(left) => left,
        Err(timed_out) => return Ok(timed_out),
    };
    // FUTEX_WAIT takes a relative timeout.
    let timeout = left.map(|left| libc::timespec {
        tv_sec: libc::time_t::try_from(left.as_secs()).unwrap_or(libc::time_t::MAX),
        // Below one billion, so it fits in every `c_long`, 32-bit ones too.
        tv_nsec: left.subsec_nanos() as libc::c_long,
    });
    let timeout_ptr = timeout.as_ref().map_or(ptr::null(), ptr::from_ref);
    // SAFETY: `word` is a live, aligned `AtomicU32`, which the kernel reads atomically;
    // `timeout_ptr` is null or points to `timeout`, alive for the whole call (FUTEX_WAIT
    // takes a relative timeout); the last two arguments are unused by FUTEX_WAIT.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            timeout_ptr,
            ptr::null::<u32>(),
            0u32,
        )
    };
    outcome(rc)
}

/// The time left until `deadline` (`None`: no deadline), or `Err(Wake::TimedOut)` once it
/// has passed: the waits then return without a system call.
fn time_left(deadline: Option<Instant>) -> Result<Option<Duration>, Wake> {
    match deadline.map(|d| d.saturating_duration_since(Instant::now())) {
        Some(left) if left.is_zero() => Err(Wake::TimedOut),
        left => Ok(left),
    }
}

/// What a futex wait's return means (see [`Wake`]).
fn outcome(rc: libc::c_long) -> Result<Wake, Errno> {
    match Errno::result(rc) {
        Ok(_) | Err(Errno::EAGAIN | Errno::EINTR) => Ok(Wake::Woken),
        Err(Errno::ETIMEDOUT) => Ok(Wake::TimedOut),
        Err(e) => Err(e),
    }
}

/// Wakes up to `count` waiters sleeping on `word`, in any process; returns how many
/// were woken. Change the word *before* waking, or a waiter may sleep again.
pub(crate) fn wake(word: &AtomicU32, count: u32) -> Result<usize, Errno> {
    let count = i32::try_from(count).unwrap_or(i32::MAX);
    // SAFETY: `word` is a live, aligned `AtomicU32`; FUTEX_WAKE only uses it as the key
    // and reads none of the last three arguments.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            count,
            ptr::null::<libc::timespec>(),
            ptr::null::<u32>(),
            0u32,
        )
    };
    Errno::result(rc).map(|woken| usize::try_from(woken).unwrap_or(0))
}

/// Wakes every waiter sleeping on `word`.
pub(crate) fn wake_all(word: &AtomicU32) -> Result<usize, Errno> {
    wake(word, u32::MAX)
}

/// How long [`spin`] looks before a waiter sleeps: long enough to catch a partner on
/// another CPU that answers within a few microseconds (a futex wake-up across CPUs costs
/// tens of them on a virtual machine), short enough not to be a slow mode of its own
/// when the scheduler runs the partner on the waiter's CPU, where it runs only once the
/// waiter stops spinning.
pub(crate) const SPIN_FOR: Duration = Duration::from_micros(10);

/// Spins until `ready` returns `true`, for at most [`SPIN_FOR`]; returns whether it did.
///
/// The one spin of the crate's waiters (the queue's ring and the `sync` primitives). It
/// is bounded in time, not in spin-loop hints, since one `pause` takes from 35 to 190 ns
/// on a virtual machine; and it never yields the CPU: `sched_yield` on a CPU shared
/// with a busy process hands over the rest of a time slice (up to hundreds of
/// microseconds), while a sleeper that is woken runs at once.
pub(crate) fn spin(mut ready: impl FnMut() -> bool) -> bool {
    match try_spin(|| Ok::<bool, std::convert::Infallible>(ready())) {
        Ok(done) => done,
        Err(never) => match never {},
    }
}

/// [`spin`] with a look that may fail: the first error ends the spin and is returned.
pub(crate) fn try_spin<E>(mut ready: impl FnMut() -> Result<bool, E>) -> Result<bool, E> {
    if ready()? {
        return Ok(true);
    }
    let start = Instant::now();
    loop {
        for _ in 0..16 {
            std::hint::spin_loop();
        }
        if ready()? {
            return Ok(true);
        }
        if start.elapsed() >= SPIN_FOR {
            return Ok(false);
        }
    }
}

/// Sleeps while `word` holds `expected`, until woken or `deadline`; returns `false` if
/// the deadline passed. A futex failure (which only a kernel without futexes or a
/// corrupted mapping produce) is logged and degrades into a short sleep, so callers
/// poll rather than hang or panic.
pub(crate) fn sleep(word: &AtomicU32, expected: u32, deadline: Deadline) -> bool {
    match wait(word, expected, deadline.instant()) {
        Ok(Wake::Woken) => true,
        Ok(Wake::TimedOut) => false,
        Err(errno) => {
            flotilla_core::event!(flotilla_core::log::Level::ERROR, %errno, "futex wait failed; polling");
            std::thread::sleep(Duration::from_millis(1));
            !deadline.expired()
        }
    }
}

/// Wakes up to `count` sleepers on `word`, logging a failure (see [`sleep`]): for wakers
/// that have changed the word already and have nothing else to do about an error.
pub(crate) fn notify(word: &AtomicU32, count: u32) {
    if let Err(errno) = wake(word, count) {
        flotilla_core::event!(flotilla_core::log::Level::ERROR, %errno, "futex wake failed");
    }
}

/// Wakes every sleeper on `word`, as [`notify`].
pub(crate) fn notify_all(word: &AtomicU32) {
    notify(word, u32::MAX);
}

/// One word of a [`wait_any`]: sleep while `word` holds `expected`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WaitOn<'a> {
    pub(crate) word: &'a AtomicU32,
    pub(crate) expected: u32,
}

/// The most words one [`wait_any`] takes (the kernel's `FUTEX_WAITV_MAX`).
pub(crate) const WAIT_ANY_MAX: usize = 128;

/// `struct futex_waitv` of the kernel's uapi.
#[repr(C)]
struct FutexWaitv {
    val: u64,
    uaddr: u64,
    flags: u32,
    reserved: u32,
}

/// Sleeps until any of `words` (at most [`WAIT_ANY_MAX`]) is woken or does not hold its
/// expected value, or until `deadline`: `futex_waitv(2)`, Linux 5.16 and later.
/// [`Wake::Woken`] means: look at the words again.
pub(crate) fn wait_any(words: &[WaitOn<'_>], deadline: Option<Instant>) -> Result<Wake, Errno> {
    if words.is_empty() || words.len() > WAIT_ANY_MAX {
        return Err(Errno::EINVAL);
    }
    let waitv: Vec<FutexWaitv> = words
        .iter()
        .map(|w| FutexWaitv {
            val: u64::from(w.expected),
            uaddr: w.word.as_ptr().addr() as u64,
            // Shared, like the words `wake` wakes (a private futex is keyed differently).
            flags: libc::FUTEX2_SIZE_U32 as u32,
            reserved: 0,
        })
        .collect();
    let left = match time_left(deadline) {
        Ok(left) => left,
        Err(timed_out) => return Ok(timed_out),
    };
    // futex_waitv takes an absolute deadline on the clock it is given (none if that
    // deadline is beyond what a timespec holds).
    let timeout = match left {
        Some(left) => sys::monotonic_after(left)?,
        None => None,
    };
    let timeout_ptr = timeout.as_ref().map_or(ptr::null(), ptr::from_ref);
    // SAFETY: `waitv` holds `words.len()` initialised entries, each naming a live,
    // aligned `AtomicU32` (borrowed for this call) that the kernel reads atomically;
    // `timeout_ptr` is null or points to `timeout`, alive for the whole call; the flags
    // argument must be 0; the clock matches the absolute deadline's.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_futex_waitv,
            waitv.as_ptr(),
            waitv.len() as libc::c_uint,
            0u32,
            timeout_ptr,
            libc::CLOCK_MONOTONIC,
        )
    };
    outcome(rc)
}

#[cfg(test)]
mod tests;
