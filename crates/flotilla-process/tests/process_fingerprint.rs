//! A task from a different build is refused. In a file of its own: it changes the
//! fingerprint this process sends, which is process-wide.

use std::time::Duration;

use flotilla_process::{Error, StartMethod, get_context};

fn add((a, b): (u64, u64)) -> u64 {
    a + b
}

#[test]
fn a_task_from_another_build_is_refused() {
    // Pretend this process is a different build of the program.
    flotilla_process::testing::force_fingerprint(Some(0x0bad_b11d));
    let child = get_context(Some(StartMethod::Spawn))
        .process(add, (1, 1))
        .start();
    flotilla_process::testing::force_fingerprint(None);
    match child.unwrap().join(Some(Duration::from_secs(60))) {
        Err(Error::Refused(reason)) => assert!(reason.contains("different build"), "{reason}"),
        other => panic!("unexpected {other:?}"),
    }
}
