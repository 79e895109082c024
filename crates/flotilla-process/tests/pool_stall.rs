//! The pool's manager never blocks on one worker (issue 11 bug 6): a worker stopped
//! (SIGSTOP) halfway through sending its result, or while the pool sends it a large
//! task, holds up only its own tasks; the other worker's tasks complete, and after
//! SIGCONT everything does. Nor does it wait for a worker whose connection ended to
//! exit.

mod pool_support;

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use flotilla_core::{Future, TaskError};
use flotilla_process::ProcessPoolExecutor;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use pool_support::within;

const LONG: Duration = Duration::from_secs(60);
const MIB: usize = 1024 * 1024;

fn pid(_: ()) -> i32 {
    std::process::id() as i32
}

fn pid_after(ms: u64) -> i32 {
    std::thread::sleep(Duration::from_millis(ms));
    std::process::id() as i32
}

fn len_of(v: Vec<u8>) -> usize {
    v.len()
}

/// Writes this worker's pid to `path`, then returns `len` bytes: a result that takes
/// many writes to send.
fn big_result((path, len): (PathBuf, usize)) -> Vec<u8> {
    std::fs::write(&path, std::process::id().to_string()).unwrap();
    vec![0xab; len]
}

/// Closes every descriptor of this worker (its connection to the pool among them), says
/// so by creating `path`, and exits with code 7 after `ms` milliseconds.
fn close_and_linger((path, ms): (PathBuf, u64)) {
    for fd in 3..4096 {
        // SAFETY: this worker does nothing more with its descriptors: it only creates a
        // file, sleeps and exits.
        unsafe { libc::close(fd) };
    }
    std::fs::write(&path, b"closed").unwrap();
    std::thread::sleep(Duration::from_millis(ms));
    std::process::exit(7);
}

/// Resumes a stopped worker on the way out, whatever happened.
struct Resume(i32);

impl Drop for Resume {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.0), Signal::SIGCONT);
    }
}

/// The system call `pid`'s main thread is in, if it is blocked in one.
fn syscall_of(pid: i32) -> Option<i64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/syscall")).ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// True for the system calls that write to a socket.
fn is_write(nr: i64) -> bool {
    [
        libc::SYS_write,
        libc::SYS_writev,
        libc::SYS_sendmsg,
        libc::SYS_sendto,
    ]
    .contains(&nr)
}

fn pool() -> ProcessPoolExecutor {
    ProcessPoolExecutor::builder()
        .max_workers(2)
        .build()
        .unwrap()
}

/// Waits for `futures`, each up to what is left of `limit`; the values that came.
fn collect_within(futures: &[Future<i32>], limit: Duration) -> Vec<i32> {
    let deadline = Instant::now() + limit;
    futures
        .iter()
        .filter_map(|f| {
            f.result_timeout(deadline.saturating_duration_since(Instant::now()))
                .ok()
        })
        .collect()
}

#[test]
fn a_worker_stopped_mid_result_does_not_freeze_the_pool() {
    let dir = std::env::temp_dir().join(format!("flotilla-stall-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pool = pool();
    // Both workers up.
    let warm: Vec<_> = (0..2)
        .map(|_| pool.submit(pid_after, 200).unwrap())
        .collect();
    assert_eq!(collect_within(&warm, LONG).len(), 2);

    // Stop a worker while it is blocked writing a large result (the pool reading its
    // frame); try again with another task when the stop lands elsewhere.
    let mut caught = None;
    for attempt in 0..20 {
        let path = dir.join(format!("pid-{attempt}"));
        let _ = std::fs::remove_file(&path);
        let fut = pool.submit(big_result, (path.clone(), 64 * MIB)).unwrap();
        let deadline = Instant::now() + LONG;
        let worker = loop {
            if let Some(pid) = std::fs::read_to_string(&path)
                .ok()
                .and_then(|s| s.parse::<i32>().ok())
            {
                break pid;
            }
            assert!(Instant::now() < deadline, "the task never started");
            std::thread::sleep(Duration::from_micros(200));
        };
        while !fut.done() {
            if syscall_of(worker).is_some_and(is_write) {
                kill(Pid::from_raw(worker), Signal::SIGSTOP).unwrap();
                let resume = Resume(worker);
                // Let the stop land, then check it caught the worker in its write.
                std::thread::sleep(Duration::from_millis(50));
                if !fut.done() && syscall_of(worker).is_some_and(is_write) {
                    caught = Some((fut.clone(), resume, worker));
                    break;
                }
                drop(resume);
            }
            std::hint::spin_loop();
        }
        if caught.is_some() {
            break;
        }
        let _ = fut.result_timeout(LONG);
    }
    let (stuck, resume, stopped) = caught.expect("never caught a worker mid-result");

    // The other worker goes on. One task may wait in the stopped one's pipeline.
    let others: Vec<_> = (0..10).map(|_| pool.submit(pid, ()).unwrap()).collect();
    let done = collect_within(&others, Duration::from_secs(30));
    assert!(
        done.len() >= others.len() - 1,
        "only {} of {} tasks completed while one worker was stopped",
        done.len(),
        others.len()
    );
    assert!(!done.contains(&stopped));
    assert!(
        !stuck.done(),
        "the stopped worker's result cannot have arrived"
    );

    drop(resume); // SIGCONT
    assert_eq!(stuck.result_timeout(LONG).unwrap().len(), 64 * MIB);
    assert_eq!(collect_within(&others, LONG).len(), others.len());
    within(LONG, "shutting the pool down", move || drop(pool));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_large_task_for_a_stopped_worker_does_not_freeze_the_pool() {
    let pool = pool();
    // Both workers up, and their pids.
    let warm: Vec<_> = (0..2)
        .map(|_| pool.submit(pid_after, 300).unwrap())
        .collect();
    let pids: HashSet<i32> = collect_within(&warm, LONG).into_iter().collect();
    assert_eq!(pids.len(), 2, "two workers ran the two tasks");
    let stopped = *pids.iter().next().unwrap();
    kill(Pid::from_raw(stopped), Signal::SIGSTOP).unwrap();
    let resume = Resume(stopped);

    // Large arguments: a stopped worker's socket fills long before one is sent.
    let large: Vec<_> = (0..6)
        .map(|_| pool.submit(len_of, vec![1u8; 8 * MIB]).unwrap())
        .collect();
    let small: Vec<_> = (0..10).map(|_| pool.submit(pid, ()).unwrap()).collect();
    let done = collect_within(&small, Duration::from_secs(30));
    let large_done = large
        .iter()
        .filter(|f| f.result_timeout(Duration::from_secs(5)).is_ok())
        .count();
    // At most PIPELINE tasks wait on the stopped worker.
    assert!(
        done.len() + large_done >= small.len() + large.len() - flotilla_process::PIPELINE,
        "{} small and {large_done} large tasks completed while one worker was stopped",
        done.len()
    );
    assert!(!done.contains(&stopped));

    drop(resume); // SIGCONT
    for f in &large {
        assert_eq!(f.result_timeout(LONG).unwrap(), 8 * MIB);
    }
    assert_eq!(collect_within(&small, LONG).len(), small.len());
    within(LONG, "shutting the pool down", move || drop(pool));
}

/// A worker that closes its connection and lingers before it exits holds up nothing but
/// its own task: the manager learns how it ended from its exit, which it watches beside
/// the connections. (It used to join the worker on the manager thread, for up to 10 s:
/// no task was sent or answered meanwhile.)
#[test]
fn a_worker_that_closes_its_connection_and_lingers_holds_up_no_other_task() {
    within(
        LONG,
        "a worker lingering after closing its connection",
        || {
            let pool = pool();
            let warm: Vec<_> = (0..2)
                .map(|_| pool.submit(pid_after, 300).unwrap())
                .collect();
            assert_eq!(collect_within(&warm, LONG).len(), 2);
            let marker = std::env::temp_dir().join(format!(
                "flotilla-pool-linger-{}-{:?}",
                std::process::id(),
                Instant::now()
            ));
            let _ = std::fs::remove_file(&marker);
            let lingering = pool
                .submit(close_and_linger, (marker.clone(), 8_000))
                .unwrap();
            let deadline = Instant::now() + LONG;
            while !marker.exists() {
                assert!(
                    Instant::now() < deadline,
                    "the task never closed its connection"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            // The manager has seen the connection end by now.
            std::thread::sleep(Duration::from_millis(200));
            let quick = pool.submit(pid, ()).unwrap();
            quick.result_timeout(LONG).unwrap();
            assert!(
                !lingering.done(),
                "a task of another worker waited for the lingering worker to exit"
            );
            match lingering.result_timeout(LONG) {
                Err(TaskError::WorkerDied {
                    exit_code: Some(7),
                    reason,
                    ..
                }) => assert!(reason.contains("exited with code 7"), "{reason}"),
                other => panic!("the lingering worker's task: {other:?}"),
            }
            let _ = std::fs::remove_file(&marker);
            // The pool goes on.
            assert!(
                pool.submit(pid_after, 0)
                    .unwrap()
                    .result_timeout(LONG)
                    .unwrap()
                    > 0
            );
        },
    );
}
