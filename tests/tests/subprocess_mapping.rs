//! The `subprocess` rows of docs/python-mapping.md, each run for real: Python's
//! `subprocess` names map onto `std::process::Command` and, for a timed wait, the
//! `wait-timeout` crate.

use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wait_timeout::ChildExt;

#[test]
fn run_and_check() {
    // subprocess.run(["true"]) and run(["false"], check=True) → CalledProcessError.
    let status = Command::new("true").status().unwrap();
    assert!(status.success());
    let status = Command::new("false").status().unwrap();
    assert_eq!(status.code(), Some(1));
    let checked: Result<(), String> = if status.success() {
        Ok(())
    } else {
        Err(format!("false exited with {status}"))
    };
    assert!(checked.is_err());
}

#[test]
fn capture_output_and_input() {
    // run(["sh", "-c", ...], capture_output=True, text=True)
    let out = Command::new("sh")
        .args(["-c", "echo out; echo err >&2; exit 3"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "out\n");
    assert_eq!(String::from_utf8(out.stderr).unwrap(), "err\n");

    // run(["tr", "a-z", "A-Z"], input=b"hello", capture_output=True)
    let mut child = Command::new("tr")
        .args(["a-z", "A-Z"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(b"hello"));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert_eq!(out.stdout, b"HELLO");
}

#[test]
fn run_with_a_timeout_kills_the_child() {
    // run(["sleep", "60"], timeout=0.2) → TimeoutExpired, and the child is killed.
    let mut child = Command::new("sleep").arg("60").spawn().unwrap();
    let started = Instant::now();
    let waited = child.wait_timeout(Duration::from_millis(200)).unwrap();
    assert!(waited.is_none(), "sleep 60 ended early: {waited:?}");
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(libc_sigkill()));
    assert!(started.elapsed() < Duration::from_secs(30));

    // And a child that ends in time gives its status.
    let mut child = Command::new("true").spawn().unwrap();
    let status = child.wait_timeout(Duration::from_secs(60)).unwrap();
    assert!(status.unwrap().success());
}

fn libc_sigkill() -> i32 {
    nix::sys::signal::Signal::SIGKILL as i32
}

#[test]
fn popen_communicate_terminate_and_a_pipeline() {
    // Popen(["sh", "-c", ...], stdout=PIPE).communicate()
    let child = Command::new("sh")
        .args(["-c", "printf 'a\\nb\\nc\\n'"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.stdout, b"a\nb\nc\n");

    // Popen(...).terminate(), then wait() → -SIGTERM.
    let mut child = Command::new("sleep").arg("60").spawn().unwrap();
    assert!(child.try_wait().unwrap().is_none()); // poll()
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        status.signal(),
        Some(nix::sys::signal::Signal::SIGTERM as i32)
    );

    // p1 = Popen(["printf", ...], stdout=PIPE); p2 = Popen(["wc", "-l"], stdin=p1.stdout)
    let mut p1 = Command::new("printf")
        .arg("1\\n2\\n3\\n")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut p2 = Command::new("wc")
        .arg("-l")
        .stdin(Stdio::from(p1.stdout.take().unwrap()))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut counted = String::new();
    p2.stdout
        .take()
        .unwrap()
        .read_to_string(&mut counted)
        .unwrap();
    assert!(p1.wait().unwrap().success() && p2.wait().unwrap().success());
    assert_eq!(counted.trim(), "3");
}
