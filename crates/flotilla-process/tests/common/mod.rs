//! Helpers shared by the process tests.

// Each test file uses some of these, not all.
#![allow(dead_code)]

use std::fmt::Debug;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

/// True once `pid` no longer runs (gone, or a zombie waiting for its reaper).
pub(crate) fn dead(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

/// Waits until every one of `pids` is [`dead`], failing the test with `what` (and the
/// pids) when one still runs after `timeout`.
pub(crate) fn wait_until_dead<'a, P>(pids: P, timeout: Duration, what: &str)
where
    P: IntoIterator<Item = &'a i32> + Copy + Debug,
{
    let deadline = Instant::now() + timeout;
    while !pids.into_iter().all(|&p| dead(p)) {
        assert!(Instant::now() < deadline, "{what}: {pids:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for `child` to exit, failing the test with `what` when it still runs after
/// `timeout`; its exit status.
pub(crate) fn wait_for_exit(child: &mut Child, timeout: Duration, what: &str) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}
