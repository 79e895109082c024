//! A pool under Ctrl+C, and IPC handles as pool task arguments.

mod common;

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use flotilla_ipc::{Connection, pipe};
use flotilla_process::{Pool, ProcessPoolExecutor};

use common::{wait_for_exit, wait_until_dead};

const HELPER: &str = "FLOTILLA_POOL_SIGINT_HELPER";
const LONG: Duration = Duration::from_secs(60);

fn slow(x: u32) -> u32 {
    std::thread::sleep(Duration::from_secs(300));
    x
}

fn whoami(_: u32) -> i32 {
    std::process::id() as i32
}

/// The helper: a program in the middle of a pool map. A no-op in a normal test run.
#[test]
fn helper() {
    if std::env::var_os(HELPER).is_none() {
        return;
    }
    let pool = Pool::new(2).unwrap();
    for pid in pool.map(whoami, 0..8, Some(1)).unwrap() {
        println!("WORKER {pid}");
    }
    println!("READY");
    let _ = pool.map(slow, 0..8, Some(1));
}

#[test]
fn ctrl_c_ends_a_program_mid_map_and_leaves_no_worker() {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "helper", "--nocapture", "--test-threads=1"])
        .env(HELPER, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0) // its own group, as a terminal's foreground job
        .spawn()
        .unwrap();
    let mut workers = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(pid) = line.split("WORKER ").nth(1) {
            workers.push(pid.trim().parse::<i32>().unwrap());
        }
        if line.ends_with("READY") {
            break;
        }
    }
    assert!(!workers.is_empty());
    std::thread::sleep(Duration::from_millis(100)); // the slow map is under way
    // Ctrl+C: SIGINT to the whole process group.
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = wait_for_exit(&mut child, LONG, "the program ignored Ctrl+C");
    assert!(!status.success());
    wait_until_dead(&workers, LONG, "workers outlived Ctrl+C");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!stderr.contains("panicked"), "no flood of panics: {stderr}");
}

fn reply_on(conn: Connection) -> String {
    let question: String = conn.recv().unwrap();
    conn.send(&format!("answer to {question}")).unwrap();
    question
}

#[test]
fn a_connection_end_is_a_pool_task_argument() {
    let pool = ProcessPoolExecutor::builder()
        .max_workers(1)
        .build()
        .unwrap();
    let (ours, theirs) = pipe(true).unwrap();
    let fut = pool.submit(reply_on, theirs).unwrap();
    ours.send(&"life").unwrap();
    assert_eq!(ours.recv_timeout::<String>(LONG).unwrap(), "answer to life");
    assert_eq!(fut.result_timeout(LONG).unwrap(), "life");
}
