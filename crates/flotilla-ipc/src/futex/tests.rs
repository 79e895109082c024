//! The futex module against real sleeps: threads of this process, and a forked child
//! through a shared segment.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::{Wake, wait, wake, wake_all};
use crate::SharedMemory;

const LONG: Duration = Duration::from_secs(60);

fn word(shm: &SharedMemory) -> &AtomicU32 {
    // SAFETY: the mapping is page-aligned, at least 4 bytes, and lives as long as `shm`.
    unsafe { &*shm.as_ptr().cast::<AtomicU32>() }
}

#[test]
fn a_changed_word_returns_at_once() {
    let w = AtomicU32::new(1);
    assert_eq!(wait(&w, 0, None), Ok(Wake::Woken));
}

#[test]
fn a_past_deadline_times_out_without_sleeping() {
    let w = AtomicU32::new(0);
    assert_eq!(wait(&w, 0, Some(Instant::now())), Ok(Wake::TimedOut));
}

#[test]
fn a_short_deadline_times_out() {
    let w = AtomicU32::new(0);
    let deadline = Instant::now() + Duration::from_millis(20);
    let mut outcome = Wake::Woken;
    // Spurious wake-ups are allowed: loop as every caller must.
    while outcome == Wake::Woken {
        outcome = wait(&w, 0, Some(deadline)).unwrap();
    }
    assert!(Instant::now() >= deadline);
}

#[test]
fn waking_nobody_wakes_nobody() {
    let w = AtomicU32::new(0);
    assert_eq!(wake(&w, 1), Ok(0));
    assert_eq!(wake_all(&w), Ok(0));
}

#[test]
fn a_thread_wakes_another() {
    let shm = SharedMemory::new(4).unwrap();
    let w = word(&shm);
    std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            let deadline = Instant::now() + LONG;
            while w.load(Ordering::Acquire) == 0 {
                assert_eq!(
                    wait(w, 0, Some(deadline)).unwrap(),
                    Wake::Woken,
                    "timed out"
                );
            }
        });
        std::thread::sleep(Duration::from_millis(10));
        w.store(1, Ordering::Release);
        wake_all(w).unwrap();
        waiter.join().unwrap();
    });
}

#[test]
fn a_forked_child_wakes_its_parent_through_shared_memory() {
    let shm = SharedMemory::new(4).unwrap();
    let w = word(&shm);
    // SAFETY: between fork and _exit the child only stores to an atomic and makes the
    // futex and _exit system calls, all async-signal-safe, so the other threads of the
    // test harness do not matter.
    let child = match unsafe { nix::unistd::fork() }.unwrap() {
        nix::unistd::ForkResult::Child => {
            std::thread::sleep(Duration::from_millis(10));
            w.store(1, Ordering::Release);
            let _ = wake_all(w);
            // SAFETY: `_exit` ends the child at once, running nothing of the parent's.
            unsafe { libc::_exit(0) }
        }
        nix::unistd::ForkResult::Parent { child } => child,
    };
    let deadline = Instant::now() + LONG;
    while w.load(Ordering::Acquire) == 0 {
        assert_eq!(
            wait(w, 0, Some(deadline)).unwrap(),
            Wake::Woken,
            "timed out"
        );
    }
    let status = nix::sys::wait::waitpid(child, None).unwrap();
    assert_eq!(status, nix::sys::wait::WaitStatus::Exited(child, 0));
}
