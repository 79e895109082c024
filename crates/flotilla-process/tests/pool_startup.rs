//! Workers that keep failing at start-up (issue 11 bug 5): the pool backs off between
//! attempts and, after a few in a row, breaks with an error naming the failure, instead
//! of starting hundreds of processes a second for ever.

mod pool_support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use flotilla_core::TaskError;
use flotilla_process::{Pool, ProcessPoolExecutor};

use pool_support::within;

const LONG: Duration = Duration::from_secs(60);

/// The most worker processes a pool may start before it gives up: a few attempts, a
/// few workers at once.
const FEW: usize = 16;

fn square(x: u64) -> u64 {
    x * x
}

fn record(path: &Path) {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    writeln!(file, "{}", std::process::id()).unwrap();
}

/// An initializer that notes its start, then ends its worker before it is ready.
fn exiting_init((path, code): (PathBuf, i32)) {
    record(&path);
    std::process::exit(code);
}

/// An initializer that notes its start, then fails.
fn panicking_init(path: PathBuf) {
    record(&path);
    panic!("no database");
}

fn starts(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |s| s.lines().count())
}

fn scratch(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("flotilla-{name}-{}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

fn expect_broken(outcome: Result<u64, TaskError>, needle: &str) {
    match outcome {
        Err(TaskError::Broken { reason }) => {
            assert!(reason.contains(needle), "{reason}")
        }
        other => panic!("expected a broken pool, got {other:?}"),
    }
}

#[test]
fn an_executor_whose_workers_exit_at_start_breaks_after_a_few_tries() {
    let path = scratch("exec-exit");
    let p = path.clone();
    within(LONG, "executor with an exiting initializer", move || {
        let pool = ProcessPoolExecutor::builder()
            .max_workers(2)
            .initializer(exiting_init, (p.clone(), 3))
            .build()
            .unwrap();
        let futs: Vec<_> = (0..4).map(|i| pool.submit(square, i).unwrap()).collect();
        for f in futs {
            expect_broken(f.result_timeout(LONG), "exited with code 3");
        }
        expect_broken(
            pool.submit(square, 1).and_then(|f| f.result_timeout(LONG)),
            "exited with code 3",
        );
        std::thread::sleep(Duration::from_millis(500));
        assert!(
            pool.workers_started() <= FEW,
            "{} started",
            pool.workers_started()
        );
    });
    assert!(starts(&path) <= FEW, "{} workers started", starts(&path));
    let _ = std::fs::remove_file(&path);
}

#[test]
fn a_pool_whose_workers_exit_at_start_breaks_after_a_few_tries() {
    let path = scratch("pool-exit");
    let p = path.clone();
    within(LONG, "Pool with an exiting initializer", move || {
        let pool = Pool::builder()
            .processes(2)
            .initializer(exiting_init, (p.clone(), 4))
            .build()
            .unwrap();
        // No task at all: a pool used to restart its workers for ever here.
        std::thread::sleep(Duration::from_secs(2));
        assert!(starts(&p) <= FEW, "{} workers started in 2 s", starts(&p));
        expect_broken(
            pool.apply_async(square, 2)
                .and_then(|r| r.get_timeout(LONG)),
            "exited with code 4",
        );
    });
    assert!(starts(&path) <= FEW, "{} workers started", starts(&path));
    let _ = std::fs::remove_file(&path);
}

#[test]
fn failing_initializers_break_executors_and_pools_with_their_message() {
    let path = scratch("init-panic");
    let p = path.clone();
    within(LONG, "panicking initializers", move || {
        let pool = Pool::builder()
            .processes(2)
            .initializer(panicking_init, p.clone())
            .build()
            .unwrap();
        std::thread::sleep(Duration::from_millis(500));
        expect_broken(
            pool.apply_async(square, 2)
                .and_then(|r| r.get_timeout(LONG)),
            "no database",
        );
        drop(pool);
        let executor = ProcessPoolExecutor::builder()
            .max_workers(2)
            .initializer(panicking_init, p.clone())
            .build()
            .unwrap();
        expect_broken(
            executor
                .submit(square, 2)
                .and_then(|f| f.result_timeout(LONG)),
            "no database",
        );
        assert!(executor.workers_started() <= FEW);
    });
    assert!(
        starts(&path) <= 2 * FEW,
        "{} workers started",
        starts(&path)
    );
    let _ = std::fs::remove_file(&path);
}
