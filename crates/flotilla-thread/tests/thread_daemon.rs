//! Python's daemon semantics at process exit, checked in a child process: the exit
//! waits for non-daemon flotilla threads (and threads they start meanwhile) and not for
//! daemon ones.
//!
//! The child is this test binary itself, re-executed with `FLOTILLA_TEST_HELPER` set so
//! that `exit_helper` plays its `main`.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use flotilla_thread::ThreadBuilder;

const HELPER_ENV: &str = "FLOTILLA_TEST_HELPER";

/// The child's "main": starts the threads, then ends the process while they run, by
/// returning (mode `return`) or by `std::process::exit` (mode `exit`). Does nothing in
/// a normal test run.
#[test]
fn exit_helper() {
    let Ok(mode) = std::env::var(HELPER_ENV) else {
        return;
    };
    ThreadBuilder::new()
        .name("normal")
        .spawn(|| {
            std::thread::sleep(Duration::from_millis(300));
            println!("normal: end");
            // Started while the process is already exiting: must be waited for too.
            ThreadBuilder::new()
                .name("late")
                .spawn(|| {
                    std::thread::sleep(Duration::from_millis(100));
                    println!("late: end");
                })
                .unwrap();
        })
        .unwrap();
    ThreadBuilder::new()
        .name("daemon")
        .daemon(true)
        .spawn(|| {
            // Inherits the daemon flag: not waited for either.
            ThreadBuilder::new()
                .spawn(|| {
                    std::thread::sleep(Duration::from_secs(60));
                    println!("daemon child: end");
                })
                .unwrap();
            std::thread::sleep(Duration::from_secs(60));
            println!("daemon: end");
        })
        .unwrap();
    println!("main: exiting");
    if mode == "exit" {
        std::process::exit(0);
    }
}

/// Runs `exit_helper` in a child process in `mode` and returns its stdout, failing if
/// it does not end within a generous timeout (as it would if it waited for a daemon).
fn run_helper(mode: &str) -> String {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "exit_helper", "--nocapture", "--test-threads=1"])
        .env(HELPER_ENV, mode)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the helper process did not exit: it waited for a daemon thread?");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(status.success(), "helper failed: {status}\n{out}");
    out
}

fn check_exit_semantics(out: &str) {
    let exiting = out.find("main: exiting").expect("main ran");
    let normal = out
        .find("normal: end")
        .expect("the exit did not wait for a non-daemon thread");
    assert!(exiting < normal, "{out}");
    assert!(
        out.contains("late: end"),
        "a non-daemon thread started during exit was not waited for:\n{out}"
    );
    assert!(
        !out.contains("daemon: end"),
        "the exit waited for a daemon thread:\n{out}"
    );
    assert!(!out.contains("daemon child: end"), "{out}");
}

#[test]
fn returning_from_main_waits_for_non_daemon_threads_only() {
    check_exit_semantics(&run_helper("return"));
}

#[test]
fn process_exit_waits_for_non_daemon_threads_only() {
    check_exit_semantics(&run_helper("exit"));
}
