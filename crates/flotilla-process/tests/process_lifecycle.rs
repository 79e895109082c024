//! What happens to children when their parent ends: at a normal exit non-daemonic
//! children are waited for and daemonic ones terminated; when the parent is SIGKILLed,
//! daemonic children die too.
//!
//! Each test re-runs this test binary as a helper parent (the `helper` test, which does
//! nothing unless `FLOTILLA_LIFECYCLE_HELPER` is set), and watches what happens to the
//! helper's children.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use flotilla_process::{StartMethod, get_context};

use common::{dead, wait_for_exit, wait_until_dead};

const HELPER: &str = "FLOTILLA_LIFECYCLE_HELPER";
const LONG: Duration = Duration::from_secs(60);

fn sleep_then_mark((ms, path): (u64, String)) {
    std::thread::sleep(Duration::from_millis(ms));
    std::fs::write(path, "done").unwrap();
}

fn sleep_long(seconds: u64) {
    std::thread::sleep(Duration::from_secs(seconds));
}

/// The helper parent. A no-op in a normal test run.
#[test]
fn helper() {
    let Ok(mode) = std::env::var(HELPER) else {
        return;
    };
    let marker = std::env::var("FLOTILLA_LIFECYCLE_MARKER").unwrap_or_default();
    let mut daemons = Vec::new();
    for method in [StartMethod::Spawn, StartMethod::ForkServer] {
        let ctx = get_context(Some(method));
        daemons.push(ctx.process(sleep_long, 300).daemon(true).start().unwrap());
    }
    for d in &daemons {
        println!("DAEMON {}", d.pid());
    }
    match mode.as_str() {
        "exit" => {
            let worker = get_context(Some(StartMethod::ForkServer))
                .process(sleep_then_mark, (300, marker))
                .start()
                .unwrap();
            println!("WORKER {}", worker.pid());
            // Returning ends the helper normally: its exit handling must wait for the
            // worker (which writes the marker) and terminate the daemons.
            std::mem::forget(daemons);
            std::mem::forget(worker);
        }
        "killed" => {
            println!("READY");
            std::thread::sleep(Duration::from_secs(300));
        }
        other => panic!("unknown helper mode {other}"),
    }
}

/// Starts the helper in `mode` and returns it with its stdout lines as they come.
fn start_helper(
    mode: &str,
    marker: &str,
) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "helper", "--nocapture", "--test-threads=1"])
        .env(HELPER, mode)
        .env("FLOTILLA_LIFECYCLE_MARKER", marker)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (child, rx)
}

fn pids(lines: &[String], tag: &str) -> Vec<i32> {
    lines
        .iter()
        // The harness prints "test helper ... " with no newline before the first line.
        .filter_map(|l| l.split(tag).nth(1)?.trim().parse().ok())
        .collect()
}

#[test]
fn a_normal_exit_waits_for_workers_and_terminates_daemons() {
    let marker = std::env::temp_dir().join(format!("flotilla-lifecycle-{}", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    let (mut helper, lines) = start_helper("exit", marker.to_str().unwrap());
    let status = wait_for_exit(&mut helper, LONG, "the helper never exited");
    let lines: Vec<String> = lines.try_iter().collect();
    assert!(status.success(), "helper failed: {lines:?}");
    assert_eq!(
        std::fs::read_to_string(&marker).ok().as_deref(),
        Some("done"),
        "the exit waited for the non-daemonic worker"
    );
    let _ = std::fs::remove_file(&marker);
    let daemons = pids(&lines, "DAEMON ");
    assert_eq!(daemons.len(), 2, "{lines:?}");
    wait_until_dead(
        &daemons,
        LONG,
        "daemonic children outlived their parent's exit",
    );
}

#[test]
fn daemons_die_when_their_parent_is_sigkilled() {
    let (mut helper, lines) = start_helper("killed", "");
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l.ends_with("READY")) {
        seen.push(
            lines
                .recv_timeout(LONG)
                .expect("the helper never got ready"),
        );
    }
    let daemons = pids(&seen, "DAEMON ");
    assert_eq!(daemons.len(), 2, "{seen:?}");
    assert!(daemons.iter().all(|&p| !dead(p)));
    helper.kill().unwrap(); // SIGKILL: no exit handling runs
    helper.wait().unwrap();
    wait_until_dead(
        &daemons,
        LONG,
        "daemonic children outlived their SIGKILLed parent",
    );
}
