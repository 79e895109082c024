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

/// Task `i` of a run: spins for `micros`, then leaves marker `i` in `dir`.
fn mark(dir: PathBuf, i: usize, micros: u64) -> usize {
    let until = Instant::now() + Duration::from_micros(micros);
    while Instant::now() < until {
        std::hint::spin_loop();
    }
    std::fs::write(dir.join(i.to_string()), b"ran").unwrap();
    i
}

/// The claim race, many times over: cancels from another thread race the workers'
/// starts of tasks waiting in their pipelines (short ones, and now and then a long one,
/// so that tasks are also taken back for an idle worker). Whatever the interleaving,
/// a cancel that returns true means the task never ran, and one that returns false
/// means it ran to its result, exactly once.
#[test]
fn a_cancel_that_succeeds_means_the_task_never_ran() {
    let dir = marker("claims");
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.clone();
    within(
        Duration::from_secs(120),
        "cancel racing claims",
        move || {
            let pool = ProcessPoolExecutor::builder()
                .max_workers(2)
                .build()
                .unwrap();
            let mut all = Vec::new();
            for round in 0..4 {
                let n = 1500;
                let futs: Vec<_> = (0..n)
                    .map(|i| {
                        let micros = if i % 97 == 0 {
                            3000
                        } else {
                            (i % 7) as u64 * 20
                        };
                        pool.submit(mark, (d.clone(), round * n + i, micros))
                            .unwrap()
                    })
                    .collect();
                let futs = std::sync::Arc::new(futs);
                let canceller = {
                    let futs = std::sync::Arc::clone(&futs);
                    std::thread::spawn(move || {
                        let mut outcomes = Vec::new();
                        for (i, fut) in futs.iter().enumerate() {
                            if i % 3 != 0 {
                                continue;
                            }
                            // Now and then let the pool catch up, so the cancels meet tasks
                            // in every stage: queued, in a pipeline, starting, running.
                            if i % 60 == 0 {
                                std::thread::sleep(Duration::from_micros(500));
                            }
                            outcomes.push((i, fut.cancel()));
                        }
                        outcomes
                    })
                };
                let outcomes = canceller.join().unwrap();
                for &(i, cancelled) in &outcomes {
                    match futs[i].result_timeout(LONG) {
                        Err(TaskError::Cancelled) => {
                            assert!(cancelled, "task {i}: cancelled, but cancel said no");
                        }
                        Ok(got) => {
                            assert!(!cancelled, "task {i}: cancel said yes, yet it ran");
                            assert_eq!(got, round * n + i);
                        }
                        other => panic!("task {i}: unexpected {other:?}"),
                    }
                }
                for (i, fut) in futs.iter().enumerate() {
                    if i % 3 != 0 {
                        assert_eq!(fut.result_timeout(LONG).unwrap(), round * n + i);
                    }
                }
                all.extend(outcomes.into_iter().map(|(i, c)| (round * n + i, c)));
            }
            // Once the pool is gone, no copy of a task is left anywhere to run: the markers
            // are final.
            drop(pool);
            let mut cancels = 0;
            for (i, cancelled) in all {
                let ran = d.join(i.to_string()).exists();
                assert_eq!(
                    ran, !cancelled,
                    "task {i}: ran {ran}, cancelled {cancelled}"
                );
                cancels += usize::from(cancelled);
            }
            // The race was run: some cancels won (and, with 6,000 tasks, some lost).
            assert!(cancels > 0);
        },
    );
    let _ = std::fs::remove_dir_all(&dir);
}
