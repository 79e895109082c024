//! Every start method runs a real child: its pid, its name, its value, its exit code.

use std::time::Duration;

use flotilla_process::{Error, Process, StartMethod, get_context};

const LONG: Duration = Duration::from_secs(60);

fn describe(tag: String) -> (String, i32, i32, String) {
    let me = flotilla_process::current_process();
    let parent = flotilla_process::parent_process().expect("a flotilla child has a parent");
    (tag, me.pid, parent.pid, me.name)
}

#[test]
fn a_function_with_arguments_runs_under_every_method() {
    for method in StartMethod::ALL {
        let ctx = get_context(Some(method));
        let builder = ctx.process(describe, format!("via {method}"));
        // SAFETY: under fork the child only formats a few strings and reads flotilla's
        // process state (replaced, not locked, in a forked child); it takes no lock that
        // another test thread could hold. The test harness always runs other threads,
        // so the checked `start` would refuse (tested below).
        let child =
            unsafe { builder.start_unchecked() }.unwrap_or_else(|e| panic!("{method}: {e}"));
        let (tag, pid, ppid, name) = child.join_timeout(LONG).unwrap();
        assert_eq!(tag, format!("via {method}"));
        assert_eq!(pid, child.pid());
        assert_ne!(pid, std::process::id() as i32);
        assert_eq!(name, child.name());
        assert!(name.starts_with("Process-"), "{name}");
        assert_eq!(
            ppid,
            std::process::id() as i32,
            "{method}: the child reports its parent"
        );
        assert_eq!(child.exitcode(), Some(0));
        assert!(!child.is_alive());
    }
}

fn boom(_: ()) -> u8 {
    panic!("the child exploded")
}

#[test]
fn a_panic_in_the_child_is_exit_code_1_with_its_message() {
    for method in [StartMethod::Spawn, StartMethod::ForkServer] {
        let child = get_context(Some(method)).process(boom, ()).start().unwrap();
        match child.join_timeout(LONG) {
            Err(Error::Panicked { message }) => assert_eq!(message, "the child exploded"),
            other => panic!("{method}: unexpected {other:?}"),
        }
        assert_eq!(child.exitcode(), Some(1));
        assert!(
            matches!(child.join_timeout(LONG), Err(Error::Panicked { .. })),
            "failures repeat"
        );
    }
}

fn sleep_long(seconds: u64) {
    std::thread::sleep(Duration::from_secs(seconds));
}

#[test]
fn terminate_and_kill_give_negative_signal_codes() {
    for method in [StartMethod::Spawn, StartMethod::ForkServer] {
        let ctx = get_context(Some(method));
        let a = ctx.process(sleep_long, 300).start().unwrap();
        let b = ctx.process(sleep_long, 300).start().unwrap();
        assert!(matches!(
            a.join_timeout(Duration::from_millis(50)),
            Err(Error::Timeout(_))
        ));
        assert!(a.is_alive());
        a.terminate().unwrap();
        b.kill().unwrap();
        match a.join_timeout(LONG) {
            Err(Error::Signaled { signal: 15, name }) => assert_eq!(name, "SIGTERM"),
            other => panic!("{method}: unexpected {other:?}"),
        }
        assert!(matches!(
            b.join_timeout(LONG),
            Err(Error::Signaled { signal: 9, .. })
        ));
        assert_eq!((a.exitcode(), b.exitcode()), (Some(-15), Some(-9)));
        a.terminate().unwrap(); // after the end: nothing to do, no error
    }
}

fn exit_with(code: i32) {
    std::process::exit(code)
}

#[test]
fn an_exit_without_a_value_is_reported_with_its_code() {
    let child = get_context(Some(StartMethod::Spawn))
        .process(exit_with, 3)
        .start()
        .unwrap();
    assert!(matches!(
        child.join_timeout(LONG),
        Err(Error::Exited { code: 3 })
    ));
    assert_eq!(child.exitcode(), Some(3));
}

fn add((a, b): (u64, u64)) -> u64 {
    a + b
}

#[test]
fn the_value_goes_to_the_first_join() {
    let child = Process::new(add, (2, 40)).name("adder").start().unwrap();
    assert_eq!(child.name(), "adder");
    assert_eq!(child.join_timeout(LONG).unwrap(), 42);
    assert!(matches!(
        child.join_timeout(LONG),
        Err(Error::AlreadyJoined)
    ));
}

#[test]
fn fork_refuses_when_other_threads_run() {
    let _other = std::thread::spawn(|| std::thread::sleep(Duration::from_secs(2)));
    match Process::fork(|| 1).start() {
        Err(Error::Unsupported(msg)) => assert!(msg.contains("threads"), "{msg}"),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn a_capturing_closure_runs_under_fork() {
    let captured = [String::from("captured"), String::from("anything")];
    // SAFETY: the child only joins strings and returns; it takes no lock that another
    // test thread could be holding.
    let child = unsafe { Process::fork(move || captured.join(" ")).start_unchecked() }.unwrap();
    assert_eq!(child.join_timeout(LONG).unwrap(), "captured anything");
}

#[test]
fn a_child_forked_while_another_thread_holds_stdout_still_ends() {
    use std::io::Write;
    use std::sync::mpsc;
    let (locked, holding) = mpsc::channel();
    let (release, released) = mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let mut out = std::io::stdout().lock();
        locked.send(()).unwrap();
        let _ = released.recv_timeout(LONG);
        let _ = out.flush();
    });
    holding.recv_timeout(LONG).unwrap();
    // SAFETY: the child only adds and returns; its bootstrap must not take stdout's
    // lock, which the other thread holds at the fork and nobody in the child releases.
    // (A daemon, so that if it did hang, exit handling would terminate it.)
    let child = unsafe { Process::fork(|| 40 + 2).daemon(true).start_unchecked() }.unwrap();
    let value = child.join_timeout(LONG);
    let _ = release.send(());
    holder.join().unwrap();
    assert_eq!(value.unwrap(), 42, "the child ended and reported");
}

#[test]
fn sentinels_and_active_children() {
    let child = get_context(Some(StartMethod::ForkServer))
        .process(sleep_long, 300)
        .start()
        .unwrap();
    assert!(
        flotilla_process::active_children()
            .iter()
            .any(|c| c.pid == child.pid())
    );
    let sentinel = [child.sentinel()];
    assert!(
        flotilla_ipc::wait_timeout(&sentinel, Duration::from_millis(20))
            .unwrap()
            .is_empty()
    );
    child.kill().unwrap();
    assert_eq!(
        flotilla_ipc::wait_timeout(&sentinel, LONG).unwrap().len(),
        1
    );
    let _ = child.join_timeout(LONG);
    assert!(
        !flotilla_process::active_children()
            .iter()
            .any(|c| c.pid == child.pid())
    );
}

#[test]
fn a_worker_marker_without_a_bootstrap_socket_is_a_clear_error_not_a_run() {
    // Pretend to be a flotilla worker with no bootstrap socket: the bootstrap must refuse
    // before the test harness (this binary's main) runs any test.
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .env("FLOTILLA_WORKER", "task")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(70));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no bootstrap socket"), "{stderr}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("running"),
        "the harness never ran"
    );
}

fn comm(_: ()) -> String {
    std::fs::read_to_string("/proc/self/comm")
        .unwrap()
        .trim_end()
        .to_owned()
}

#[test]
fn a_child_shows_its_process_name_to_ps() {
    // (fork names its child by the same code; this multi-threaded harness cannot fork.)
    for method in [StartMethod::Spawn, StartMethod::ForkServer] {
        let child = get_context(Some(method))
            .process(comm, ())
            .name("cruncher")
            .start()
            .unwrap();
        assert_eq!(child.join_timeout(LONG).unwrap(), "cruncher", "{method}");
        // Longer than the kernel's 15 bytes: cut at a char boundary.
        let child = get_context(Some(method))
            .process(comm, ())
            .name("a-rather-long-näme")
            .start()
            .unwrap();
        assert_eq!(
            child.join_timeout(LONG).unwrap(),
            "a-rather-long-n",
            "{method}"
        );
    }
    let pool = flotilla_process::ProcessPoolExecutor::builder()
        .max_workers(1)
        .build()
        .unwrap();
    let name = pool.submit(comm, ()).unwrap().result_timeout(LONG).unwrap();
    assert!(name.starts_with("PoolWorker-"), "{name}");
}

fn who_am_i(
    _: (),
) -> (
    flotilla_process::ProcessInfo,
    Option<flotilla_process::ProcessInfo>,
) {
    (
        flotilla_process::current_process(),
        flotilla_process::parent_process(),
    )
}

/// `ProcessInfo` is serde data: a child sends its own and its parent's back.
#[test]
fn a_child_sends_its_process_info_back() {
    let child = get_context(Some(StartMethod::Spawn))
        .process(who_am_i, ())
        .name("Reporter")
        .start()
        .unwrap();
    let (me, parent) = child.join_timeout(LONG).unwrap();
    assert_eq!(me.name, "Reporter");
    assert_eq!(me.pid, child.pid());
    assert_eq!(parent, Some(flotilla_process::current_process()));
}

/// What [`fork_battery`] saw: each fork start's outcome, in a process whose thread count
/// the fork start reads from glibc (never a second thread) or from procfs (once one ran).
#[derive(Debug, serde::Serialize, serde::Deserialize, PartialEq)]
struct ForkBattery {
    value: Result<u64, String>,
    comm: Result<String, String>,
    panic: String,
    big: Result<usize, String>,
    killed: (String, Option<i32>),
    with_a_thread: String,
    after_the_thread: Result<u64, String>,
}

/// Runs in a fresh spawn child, single-threaded (no test harness around it): fork
/// starts from a process that never had a second thread, then with one, then after it.
fn fork_battery(_: ()) -> ForkBattery {
    let show = |r: Result<u64, Error>| r.map_err(|e| e.to_string());
    let value = show(
        Process::fork(|| 6 * 7)
            .start()
            .and_then(|p| p.join_timeout(LONG)),
    );
    let comm = Process::fork(|| std::fs::read_to_string("/proc/self/comm").unwrap())
        .name("forked-näme-that-is-long")
        .start()
        .and_then(|p| p.join_timeout(LONG))
        .map(|c| c.trim_end().to_owned())
        .map_err(|e| e.to_string());
    let panic = match Process::fork(|| -> u64 { panic!("forked and exploded") })
        .start()
        .map(|p| p.join_timeout(LONG))
    {
        Ok(Err(Error::Panicked { message })) => message,
        other => format!("{other:?}"),
    };
    let big = Process::fork(|| vec![7u8; 100_000])
        .start()
        .and_then(|p| p.join_timeout(LONG))
        .map(|v| v.iter().filter(|&&b| b == 7).count())
        .map_err(|e| e.to_string());
    // Its report page is the one the starts above used: it must read as no report.
    let killed = match Process::fork(|| {
        std::thread::sleep(Duration::from_secs(300));
        5u64
    })
    .start()
    {
        Ok(p) => {
            let _ = p.kill();
            (format!("{:?}", p.join_timeout(LONG)), p.exitcode())
        }
        Err(e) => (e.to_string(), None),
    };
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let other = std::thread::spawn(move || {
        let _ = stopped.recv_timeout(LONG);
    });
    let with_a_thread = match Process::fork(|| 1).start() {
        Err(Error::Unsupported(msg)) => msg,
        other => format!("not refused: {other:?}"),
    };
    stop.send(()).unwrap();
    other.join().unwrap();
    let after_the_thread = show(
        Process::fork(|| 9)
            .start()
            .and_then(|p| p.join_timeout(LONG)),
    );
    ForkBattery {
        value,
        comm,
        panic,
        big,
        killed,
        with_a_thread,
        after_the_thread,
    }
}

#[test]
fn fork_starts_from_a_single_threaded_process_keep_every_guarantee() {
    let child = get_context(Some(StartMethod::Spawn))
        .process(fork_battery, ())
        .start()
        .unwrap();
    let seen = child.join_timeout(LONG).unwrap();
    assert_eq!(seen.value, Ok(42));
    assert_eq!(
        seen.comm,
        Ok("forked-näme-th".to_owned()),
        "cut at 15 bytes, on a char"
    );
    assert_eq!(seen.panic, "forked and exploded");
    assert_eq!(seen.big, Ok(100_000));
    assert!(seen.killed.0.contains("Signaled"), "{:?}", seen.killed);
    assert_eq!(seen.killed.1, Some(-9));
    assert!(
        seen.with_a_thread.contains("runs 2 threads"),
        "{}",
        seen.with_a_thread
    );
    assert_eq!(
        seen.after_the_thread,
        Ok(9),
        "a joined thread no longer counts"
    );
}

/// A process's names, as its state, its parent's state and its logs have them.
type Names = (String, String, String);

fn names() -> Names {
    (
        flotilla_process::current_process().name,
        flotilla_process::parent_process()
            .map(|p| p.name)
            .unwrap_or_default(),
        flotilla_core::log::process_name().to_owned(),
    )
}

/// A fork child forks one of its own: each gets its own name in its state and its logs,
/// though a fork child keeps both in static memory (it allocates nothing before its
/// target runs), which a fork child of a fork child inherits and overwrites.
fn fork_a_grandchild(_: ()) -> (Names, Names) {
    let grandchild = get_context(Some(StartMethod::Fork))
        .process(|(): ()| names(), ())
        .name("Grandchild")
        .start()
        .expect("a fork child has one thread, so a fork start is allowed")
        .join_timeout(LONG)
        .expect("the grandchild returns its names");
    (names(), grandchild)
}

#[test]
fn a_fork_child_and_its_own_fork_child_have_their_own_names() {
    let builder = get_context(Some(StartMethod::Fork))
        .process(fork_a_grandchild, ())
        .name("Child");
    // SAFETY: the child only reads flotilla's process state (replaced, not locked, in a
    // fork child) and forks in turn; it takes no lock another test thread could hold.
    let child = unsafe { builder.start_unchecked() }.unwrap();
    let (child_names, grandchild_names) = child.join_timeout(LONG).unwrap();
    let me = flotilla_process::current_process().name;
    assert_eq!(child_names, ("Child".into(), me, "Child".into()));
    assert_eq!(
        grandchild_names,
        ("Grandchild".into(), "Child".into(), "Grandchild".into())
    );
    // This process's names are its own still.
    assert_eq!(flotilla_core::log::process_name(), "MainProcess");
}
