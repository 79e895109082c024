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

use flotilla_process::{Process, ProcessPoolExecutor, StartMethod, get_context};

use common::{dead, wait_for_exit, wait_until_dead};

const HELPER: &str = "FLOTILLA_LIFECYCLE_HELPER";
const HELPER_MORE: &str = "FLOTILLA_LIFECYCLE_HELPER_MORE";
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

fn pid_of(_: ()) -> i32 {
    std::process::id() as i32
}

/// The helper parent of the "forked" and "thread" tests. A no-op in a normal test run.
#[test]
fn helper_more() {
    let Ok(mode) = std::env::var(HELPER_MORE) else {
        return;
    };
    let mut keep = Vec::new();
    match mode.as_str() {
        // Daemonic children under every method and two live pools, then a plain fork
        // child: the fork child must not keep any of them alive once this helper dies.
        "forked" => {
            for method in StartMethod::ALL {
                let builder = get_context(Some(method))
                    .process(sleep_long, 300)
                    .daemon(true);
                // SAFETY: the fork child only sleeps; the harness's other thread holds
                // nothing it needs.
                let d = unsafe { builder.start_unchecked() }.unwrap();
                println!("DAEMON {}", d.pid());
                keep.push(d);
            }
            let mut pools = Vec::new();
            for method in [StartMethod::Spawn, StartMethod::ForkServer] {
                let pool = ProcessPoolExecutor::builder()
                    .max_workers(2)
                    .context(get_context(Some(method)))
                    .build()
                    .unwrap();
                for _ in 0..4 {
                    let pid = pool
                        .submit(pid_of, ())
                        .unwrap()
                        .result_timeout(LONG)
                        .unwrap();
                    println!("WORKER {pid}");
                }
                pools.push(pool);
            }
            println!(
                "SERVER {}",
                flotilla_process::testing::forkserver_pid().unwrap()
            );
            // SAFETY: the fork child only sleeps.
            let plain = unsafe {
                Process::fork(|| std::thread::sleep(Duration::from_secs(300))).start_unchecked()
            }
            .unwrap();
            println!("PLAIN {}", plain.pid());
            println!("READY");
            std::mem::forget(pools);
            std::thread::sleep(Duration::from_secs(300));
        }
        // Daemonic children under every method, each started from a thread that ends.
        "thread" => {
            for method in StartMethod::ALL {
                let d = std::thread::spawn(move || {
                    let builder = get_context(Some(method))
                        .process(sleep_long, 300)
                        .daemon(true);
                    // SAFETY: the fork child only sleeps.
                    let d = unsafe { builder.start_unchecked() }.unwrap();
                    // Give the child time to be fully started (and to have armed any
                    // tie to this thread) before the thread ends.
                    std::thread::sleep(Duration::from_secs(1));
                    d
                })
                .join()
                .unwrap();
                println!("DAEMON {}", d.pid());
                keep.push(d);
            }
            // And live pools, made (and first used) on threads that then end: their
            // workers are daemonic children too.
            let mut pools = Vec::new();
            for method in [StartMethod::Spawn, StartMethod::ForkServer] {
                let (pool, pids) = std::thread::spawn(move || {
                    let pool = ProcessPoolExecutor::builder()
                        .max_workers(2)
                        .context(get_context(Some(method)))
                        .build()
                        .unwrap();
                    let pids: Vec<i32> = (0..4)
                        .map(|_| {
                            pool.submit(pid_of, ())
                                .unwrap()
                                .result_timeout(LONG)
                                .unwrap()
                        })
                        .collect();
                    std::thread::sleep(Duration::from_secs(1));
                    (pool, pids)
                })
                .join()
                .unwrap();
                for pid in pids {
                    println!("WORKER {pid}");
                }
                pools.push(pool);
            }
            println!("READY");
            std::mem::forget(pools);
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
    start_named_helper("helper", HELPER, mode, marker)
}

fn start_named_helper(
    test: &str,
    var: &str,
    mode: &str,
    marker: &str,
) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(var, mode)
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

/// Reads the helper's lines up to READY.
fn until_ready(lines: &std::sync::mpsc::Receiver<String>) -> Vec<String> {
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l.ends_with("READY")) {
        seen.push(
            lines
                .recv_timeout(LONG)
                .unwrap_or_else(|_| panic!("the helper never got ready: {seen:?}")),
        );
    }
    seen
}

fn sigkill(pid: i32) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
}

#[test]
fn a_fork_child_does_not_keep_daemons_server_or_pool_workers_alive() {
    let (mut helper, lines) = start_named_helper("helper_more", HELPER_MORE, "forked", "");
    let seen = until_ready(&lines);
    let daemons = pids(&seen, "DAEMON ");
    let workers = pids(&seen, "WORKER ");
    let server = pids(&seen, "SERVER ");
    let plain = pids(&seen, "PLAIN ");
    assert_eq!(daemons.len(), 3, "{seen:?}");
    assert!(
        !workers.is_empty() && server.len() == 1 && plain.len() == 1,
        "{seen:?}"
    );
    helper.kill().unwrap(); // SIGKILL: no exit handling runs
    helper.wait().unwrap();
    let all: Vec<i32> = daemons
        .iter()
        .chain(&workers)
        .chain(&server)
        .copied()
        .collect();
    let gone = std::panic::catch_unwind(|| {
        wait_until_dead(
            &all,
            LONG,
            "daemons, pool workers or the forkserver outlived their SIGKILLed parent",
        )
    });
    for pid in all.iter().chain(&plain) {
        sigkill(*pid);
    }
    if let Err(e) = gone {
        std::panic::resume_unwind(e);
    }
}

#[test]
fn a_daemon_started_from_an_ended_thread_lives_as_long_as_its_parent_process() {
    let (mut helper, lines) = start_named_helper("helper_more", HELPER_MORE, "thread", "");
    let seen = until_ready(&lines);
    let mut daemons = pids(&seen, "DAEMON ");
    assert_eq!(daemons.len(), 3, "{seen:?}");
    let workers = pids(&seen, "WORKER ");
    assert!(!workers.is_empty(), "{seen:?}");
    daemons.extend(&workers);
    std::thread::sleep(Duration::from_secs(1));
    let early: Vec<i32> = daemons.iter().copied().filter(|&p| dead(p)).collect();
    helper.kill().unwrap();
    helper.wait().unwrap();
    let gone = std::panic::catch_unwind(|| {
        wait_until_dead(
            &daemons,
            LONG,
            "daemonic children outlived their SIGKILLed parent",
        )
    });
    for pid in &daemons {
        sigkill(*pid);
    }
    assert!(
        early.is_empty(),
        "daemonic children {early:?} of {daemons:?} (fork, spawn, forkserver, pool workers) \
         died when the thread that started them ended"
    );
    if let Err(e) = gone {
        std::panic::resume_unwind(e);
    }
}
