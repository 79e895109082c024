//! Hooks for flotilla's own tests, to reach failure paths a correct program cannot.
//! Not part of the API: hidden from the docs, and may change at any time.

use std::sync::atomic::{AtomicU64, Ordering};

static FORCED: AtomicU64 = AtomicU64::new(0);

/// Makes this process send `fingerprint` with its tasks instead of its own, as a task
/// from a different build would (`None` restores the real one).
pub fn force_fingerprint(fingerprint: Option<u64>) {
    FORCED.store(fingerprint.unwrap_or(0), Ordering::SeqCst);
}

pub(crate) fn forced_fingerprint() -> Option<u64> {
    match FORCED.load(Ordering::SeqCst) {
        0 => None,
        f => Some(f),
    }
}

/// The pid of this process's forkserver, if it runs one.
pub fn forkserver_pid() -> Option<i32> {
    crate::state::lock().forkserver.as_ref().map(|s| s.pid())
}
