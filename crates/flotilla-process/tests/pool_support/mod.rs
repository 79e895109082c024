//! Helpers shared by the pool tests: a hard deadline around anything that could hang.

// Each test file uses some of these, not all.
#![allow(dead_code)]

use std::sync::mpsc;
use std::time::Duration;

/// Runs `scenario` on its own thread and returns its value, failing the test with
/// `what` when it has not finished within `limit` (a hang fails instead of hanging; the
/// stuck thread is left behind, and the test binary exits without it). A panic inside
/// the scenario fails the test with that panic.
pub(crate) fn within<T, F>(limit: Duration, what: &str, scenario: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::Builder::new()
        .name(format!("scenario: {what}"))
        .spawn(move || {
            let _ = tx.send(scenario());
        })
        .unwrap();
    match rx.recv_timeout(limit) {
        Ok(value) => {
            let _ = handle.join();
            value
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => match handle.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the scenario sends before it ends"),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what}: not finished after {limit:?} (hung)")
        }
    }
}
