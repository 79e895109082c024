//! A forkserver child's join ends once its report is in and it has ended, without
//! waiting for the server to reap it and send its exit code. In a file of its own: it
//! stops this process's forkserver.

use std::time::Duration;

use flotilla_process::{Error, StartMethod, get_context};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

fn slow_add((a, b, ms): (u64, u64, u64)) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    a + b
}

fn slow_boom(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    panic!("boom after {ms} ms")
}

/// Stops the forkserver while it lives; lets it go on when dropped, even if the test
/// failed, so this process's exit handling is not held up.
struct Stopped(Pid);

impl Stopped {
    fn new(pid: i32) -> Stopped {
        let pid = Pid::from_raw(pid);
        kill(pid, Signal::SIGSTOP).unwrap();
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = kill(self.0, Signal::SIGCONT);
    }
}

#[test]
fn a_reported_child_joins_while_its_forkserver_cannot_answer() {
    let ctx = get_context(Some(StartMethod::ForkServer));
    let adder = ctx.process(slow_add, (2, 3, 300)).start().unwrap();
    let bomb = ctx.process(slow_boom, 300).start().unwrap();
    let server = flotilla_process::testing::forkserver_pid().unwrap();
    let stopped = Stopped::new(server);
    // The server, stopped, can neither reap the children nor send their codes.
    assert_eq!(adder.join_timeout(Duration::from_secs(30)).unwrap(), 5);
    assert_eq!(adder.exitcode(), Some(0));
    assert!(!adder.is_alive());
    match bomb.join_timeout(Duration::from_secs(30)) {
        Err(Error::Panicked { message }) => assert_eq!(message, "boom after 300 ms"),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(bomb.exitcode(), Some(1));
    drop(stopped);
    // A child killed before it could report still waits for the server's word.
    let sleeper = ctx.process(slow_add, (0, 0, 300_000)).start().unwrap();
    sleeper.kill().unwrap();
    assert!(matches!(
        sleeper.join_timeout(Duration::from_secs(30)),
        Err(Error::Signaled { signal: 9, .. })
    ));
    assert_eq!(sleeper.exitcode(), Some(-9));
}
