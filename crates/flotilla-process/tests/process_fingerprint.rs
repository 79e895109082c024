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
    match child.unwrap().join_timeout(Duration::from_secs(60)) {
        Err(Error::Refused(reason)) => assert!(reason.contains("different build"), "{reason}"),
        other => panic!("unexpected {other:?}"),
    }
}

const TOUCH_HELPER: &str = "FLOTILLA_FINGERPRINT_TOUCH_HELPER";

/// Run from a copy of this test binary: spawns, sets the running binary's modification
/// time, and spawns again. A no-op in a normal test run.
#[test]
fn touch_helper() {
    if std::env::var_os(TOUCH_HELPER).is_none() {
        return;
    }
    let ctx = get_context(Some(StartMethod::Spawn));
    let first = ctx.process(add, (1, 2)).start().unwrap();
    assert_eq!(first.join_timeout(Duration::from_secs(60)).unwrap(), 3);
    let exe = std::env::current_exe().unwrap();
    let file = std::fs::File::open(&exe).unwrap();
    file.set_modified(std::time::SystemTime::now() + Duration::from_secs(3600))
        .unwrap();
    drop(file);
    let second = ctx.process(add, (2, 2)).start().unwrap();
    match second.join_timeout(Duration::from_secs(60)) {
        Ok(4) => println!("TOUCH OK"),
        other => println!("TOUCH FAILED {other:?}"),
    }
}

#[test]
fn touching_the_running_binary_does_not_make_it_another_build() {
    let dir = std::env::temp_dir().join(format!("flotilla-touch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("process_fingerprint_copy");
    std::fs::copy(std::env::current_exe().unwrap(), &copy).unwrap();
    let mut child = std::process::Command::new(&copy)
        .args(["--exact", "touch_helper", "--nocapture", "--test-threads=1"])
        .env(TOUCH_HELPER, "1")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the helper never finished");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(status.success(), "{out}");
    assert!(out.contains("TOUCH OK"), "{out}");
}
