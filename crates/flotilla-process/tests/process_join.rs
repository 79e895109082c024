//! A timed join honours its timeout even while the child's result is half sent.

use std::time::{Duration, Instant};

use flotilla_process::{Error, Process, StartMethod, get_context};

const BIG: usize = 16 << 20;

fn big((len, marker): (usize, String)) -> Vec<u8> {
    std::fs::write(marker, "returning").unwrap();
    pattern(len)
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// The state letter of `pid` in /proc (`S` while it sleeps, blocked in a send).
fn state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')').next()?.trim_start().chars().next()
}

fn signal(pid: i32, signal: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).unwrap();
}

/// Starts a child under `method` that returns [`BIG`] bytes, and waits until it has
/// begun sending them: nobody reads yet, so it blocks (sleeps) in the send once the
/// socket buffer is full.
fn start_blocked_mid_send(method: StartMethod, tag: &str) -> Process<Vec<u8>> {
    let marker = std::env::temp_dir().join(format!(
        "flotilla-join-{tag}-{method}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&marker);
    let child = get_context(Some(method))
        .process(big, (BIG, marker.to_str().unwrap().to_owned()))
        .start()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut asleep = 0;
    while !marker.exists() || asleep < 20 {
        assert!(Instant::now() < deadline, "{method}: the child never sent");
        asleep = if marker.exists() && state(child.pid()) == Some('S') {
            asleep + 1
        } else {
            0
        };
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = std::fs::remove_file(&marker);
    child
}

#[test]
fn a_timed_join_of_a_child_stopped_mid_send_times_out() {
    for method in [StartMethod::Spawn, StartMethod::ForkServer] {
        let child = start_blocked_mid_send(method, "stop");
        let pid = child.pid();
        signal(pid, nix::sys::signal::SIGSTOP);
        // A safety net for a join that ignores its timeout: resume the child later, so
        // the test fails rather than hangs.
        let rescue = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(30));
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGCONT);
        });
        let start = Instant::now();
        let timed = child.join_timeout(Duration::from_secs(1));
        let took = start.elapsed();
        signal(pid, nix::sys::signal::SIGCONT);
        assert!(
            matches!(timed, Err(Error::Timeout(_))),
            "{method}: {timed:?}"
        );
        assert!(
            took < Duration::from_secs(10),
            "{method}: join(1 s) returned after {took:?}"
        );
        let value = child.join_timeout(Duration::from_secs(60)).unwrap();
        assert!(
            value == pattern(BIG),
            "{method}: the value came back changed"
        );
        drop(rescue);
    }
}

/// A child killed while its result is half sent ended without a value: its join says it
/// was killed (as for a child killed before sending), never an I/O error about a
/// truncated frame.
#[test]
fn a_child_killed_mid_send_joins_as_killed() {
    for method in [StartMethod::Spawn, StartMethod::ForkServer] {
        let child = start_blocked_mid_send(method, "kill");
        let pid = child.pid();
        // Part of the result is in the socket's buffer; the rest never comes.
        signal(pid, nix::sys::signal::SIGKILL);
        match child.join_timeout(Duration::from_secs(60)) {
            Err(Error::Signaled { signal: 9, .. }) => {}
            other => panic!("{method}: expected killed by signal 9, got {other:?}"),
        }
        assert_eq!(child.exitcode(), Some(-9), "{method}");
    }
}
