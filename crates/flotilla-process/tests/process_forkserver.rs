//! A forkserver child's value and exit reach `join` even when the forkserver dies
//! first. In a file of its own: it kills this process's forkserver.

use std::time::Duration;

use flotilla_process::{StartMethod, get_context};

fn slow_add((a, b, ms): (u64, u64, u64)) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    a + b
}

#[test]
fn join_survives_the_death_of_the_forkserver() {
    let ctx = get_context(Some(StartMethod::ForkServer));
    let child = ctx.process(slow_add, (2, 3, 1500)).start().unwrap();
    let server = flotilla_process::testing::forkserver_pid().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server),
        nix::sys::signal::SIGKILL,
    )
    .unwrap();
    assert_eq!(child.join_timeout(Duration::from_secs(60)).unwrap(), 5);
    assert_eq!(child.exitcode(), Some(0));
    assert!(!child.is_alive());
    // A new server is started for the next child.
    let next = ctx.process(slow_add, (1, 1, 0)).start().unwrap();
    assert_eq!(next.join_timeout(Duration::from_secs(60)).unwrap(), 2);
}
