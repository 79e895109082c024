//! The forkserver forks each child ahead of the request for it (a spare): the next
//! start takes the spare, a spare killed while it waits is replaced and costs no start,
//! and a spare ends with its server. In a file of its own: it kills this process's
//! forkserver.

use std::time::{Duration, Instant};

use flotilla_process::{StartMethod, get_context};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const LONG: Duration = Duration::from_secs(60);

fn add((a, b): (u64, u64)) -> u64 {
    a + b
}

/// The server's children that have not ended (`/proc`'s list, without zombies).
fn live_children(server: i32) -> Vec<i32> {
    let list = std::fs::read_to_string(format!("/proc/{server}/task/{server}/children"))
        .unwrap_or_default();
    list.split_whitespace()
        .filter_map(|pid| pid.parse().ok())
        .filter(|&pid| !ended(pid))
        .collect()
}

/// Gone, or a zombie.
fn ended(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the name, which is in parentheses and may hold anything.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => true,
    }
}

/// Waits until `f` holds, failing the test after `LONG`.
fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = f() {
            return value;
        }
        assert!(
            start.elapsed() < LONG,
            "{what} did not happen within {LONG:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The one spare of an idle server.
fn the_spare(server: i32) -> i32 {
    eventually("a single idle spare", || match live_children(server)[..] {
        [spare] => Some(spare),
        _ => None,
    })
}

#[test]
fn starts_take_the_spare_and_a_killed_spare_is_replaced() {
    let ctx = get_context(Some(StartMethod::ForkServer));
    let start = |a, daemon| {
        let child = ctx.process(add, (a, 1)).daemon(daemon).start().unwrap();
        let pid = child.pid();
        assert_eq!(child.join_timeout(LONG).unwrap(), a + 1);
        assert_eq!(child.exitcode(), Some(0));
        pid
    };
    start(0, false); // the first start forks; the spare comes after it
    let server = flotilla_process::testing::forkserver_pid().unwrap();
    let spare = the_spare(server);
    let comm = std::fs::read_to_string(format!("/proc/{spare}/comm")).unwrap_or_default();
    assert_eq!(
        comm.trim_end(),
        "ForkServerSpare",
        "what ps shows of a spare"
    );
    for i in 1..20 {
        let spare = the_spare(server);
        assert_eq!(
            start(i, i % 2 == 0),
            spare,
            "start {i} did not take the spare"
        );
    }

    // A spare killed while it waits: the server reaps it, and the next start forks.
    let spare = the_spare(server);
    kill(Pid::from_raw(spare), Signal::SIGKILL).unwrap();
    eventually("the killed spare reaped", || {
        (!live_children(server).contains(&spare)
            && !std::path::Path::new(&format!("/proc/{spare}")).exists())
        .then_some(())
    });
    assert_ne!(start(100, false), spare);
    let spare = the_spare(server);
    assert_eq!(start(101, true), spare);

    // The server's end is the spare's: it does not outlive it.
    let spare = the_spare(server);
    kill(Pid::from_raw(server), Signal::SIGKILL).unwrap();
    eventually("the spare ended with its server", || {
        ended(spare).then_some(())
    });
    // A new server serves the next start.
    start(200, false);
    assert_ne!(flotilla_process::testing::forkserver_pid(), Some(server));
}
