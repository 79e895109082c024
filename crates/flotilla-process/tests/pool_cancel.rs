//! A task is running only once a worker starts it (issue 12 bug 2): one waiting in a
//! worker's pipeline behind another is still pending, so `cancel()` and
//! `shutdown(cancel_futures = true)` cancel it, and the worker never runs it.

mod pool_support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use flotilla_core::{State, TaskError};
use flotilla_process::ProcessPoolExecutor;

use pool_support::within;

const LONG: Duration = Duration::from_secs(60);

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// Leaves a marker: proof that the task ran.
fn touch(path: PathBuf) -> bool {
    std::fs::write(&path, b"ran").unwrap();
    true
}

fn until_running<T>(fut: &flotilla_core::Future<T>) {
    let deadline = Instant::now() + LONG;
    while fut.state() == State::Pending {
        assert!(Instant::now() < deadline, "never started");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn marker(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("flotilla-{name}-{}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

fn one_worker() -> ProcessPoolExecutor {
    ProcessPoolExecutor::builder()
        .max_workers(1)
        .build()
        .unwrap()
}

fn ran(path: &Path) -> bool {
    path.exists()
}

#[test]
fn a_task_waiting_behind_another_is_pending_and_cancellable() {
    let path = marker("cancel-second");
    let p = path.clone();
    within(LONG, "cancelling a queued task", move || {
        let pool = one_worker();
        let first = pool.submit(sleep_ms, 1500).unwrap();
        until_running(&first);
        let second = pool.submit(touch, p.clone()).unwrap();
        // Long enough for the pool to hand it to the busy worker's pipeline.
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            !second.running(),
            "the worker is still busy with the first task"
        );
        assert_eq!(second.state(), State::Pending);
        assert!(
            second.cancel(),
            "a task that has not started can be cancelled"
        );
        assert!(matches!(
            second.result_timeout(LONG),
            Err(TaskError::Cancelled)
        ));
        assert_eq!(first.result_timeout(LONG).unwrap(), 1500);
        // The worker goes on with the next task, having skipped the cancelled one.
        assert_eq!(
            pool.submit(sleep_ms, 1)
                .unwrap()
                .result_timeout(LONG)
                .unwrap(),
            1
        );
        assert!(!ran(&p), "the cancelled task ran");
    });
    let _ = std::fs::remove_file(&path);
}

#[test]
fn a_task_that_starts_is_running_and_no_longer_cancellable() {
    within(LONG, "a started task", || {
        let pool = one_worker();
        let first = pool.submit(sleep_ms, 200).unwrap();
        let second = pool.submit(sleep_ms, 1000).unwrap();
        until_running(&second);
        assert!(first.done(), "the second starts after the first ends");
        assert!(!second.cancel());
        assert_eq!(second.result_timeout(LONG).unwrap(), 1000);
    });
}

#[test]
fn shutdown_with_cancel_futures_cancels_a_task_waiting_in_a_pipeline() {
    let path = marker("shutdown-second");
    let p = path.clone();
    within(LONG, "shutdown(cancel_futures)", move || {
        let pool = one_worker();
        let first = pool.submit(sleep_ms, 1500).unwrap();
        until_running(&first);
        let second = pool.submit(touch, p.clone()).unwrap();
        let third = pool.submit(touch, p.clone()).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        pool.shutdown(false, true);
        assert!(second.cancelled(), "{:?}", second.state());
        assert!(third.cancelled(), "{:?}", third.state());
        drop(pool); // waits for the first task
        assert_eq!(first.result_timeout(LONG).unwrap(), 1500);
        assert!(!ran(&p), "a cancelled task ran");
    });
    let _ = std::fs::remove_file(&path);
}

#[test]
fn many_cancellations_race_starts_without_losing_a_task() {
    within(LONG, "cancel racing start", || {
        let pool = ProcessPoolExecutor::builder()
            .max_workers(2)
            .build()
            .unwrap();
        let futs: Vec<_> = (0..200)
            .map(|_| pool.submit(sleep_ms, 1).unwrap())
            .collect();
        let mut cancelled = 0;
        for f in futs.iter().step_by(2) {
            if f.cancel() {
                cancelled += 1;
            }
        }
        for f in &futs {
            match f.result_timeout(LONG) {
                Ok(1) => {}
                Err(TaskError::Cancelled) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        let seen = futs.iter().filter(|f| f.cancelled()).count();
        assert_eq!(seen, cancelled);
    });
}
