//! Helpers shared by the primitives' tests.

use std::time::{Duration, Instant};

/// Long enough that a healthy test never meets it.
pub(crate) const LONG: Duration = Duration::from_secs(10);

/// Polls `cond` until it holds, failing the test after [`LONG`].
pub(crate) fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + LONG;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}
