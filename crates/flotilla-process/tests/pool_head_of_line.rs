//! A task never waits behind a running one while another worker is idle: Python's pools
//! hand the next task to whichever worker is free, and so does flotilla's, although it
//! sends tasks ahead into each worker's pipeline. A task held in a busy worker's pipeline
//! is taken back and run by the worker that goes idle.

mod pool_support;

use std::time::Duration;

use flotilla_ipc::Event;
use flotilla_process::{Pool, ProcessPoolExecutor};

use pool_support::within;

const LONG: Duration = Duration::from_secs(60);

/// Blocks its worker until the test sets `release`.
fn blocked(release: Event) -> u32 {
    release.wait_timeout(LONG);
    0
}

fn quick(x: u32) -> u32 {
    x + 1
}

/// Says it started, then blocks as [`blocked`] does (a `Pool`'s result cannot say it
/// runs).
fn blocked_after_saying((started, release): (Event, Event)) -> u32 {
    started.set();
    blocked(release)
}

/// Checks that quick task `i` answered `i + 1` within 30 s, so it did not wait behind
/// the blocked task (which is released only after this).
fn each_quick_one_answers(answers: impl IntoIterator<Item = Result<u32, String>>) {
    for (i, answer) in answers.into_iter().enumerate() {
        assert_eq!(
            answer,
            Ok(i as u32 + 1),
            "task {i} waited behind the blocked task while a worker was idle"
        );
    }
}

/// A quick task's answer, waited for at most 30 s.
fn answer(f: &flotilla_core::Future<u32>) -> Result<u32, String> {
    f.result_timeout(Duration::from_secs(30))
        .map_err(|e| e.to_string())
}

#[test]
fn executor_tasks_do_not_wait_behind_a_blocked_task_while_a_worker_is_idle() {
    within(LONG * 2, "executor head of line", || {
        let pool = ProcessPoolExecutor::builder()
            .max_workers(2)
            .build()
            .unwrap();
        let release = Event::new().unwrap();
        let stuck = pool.submit(blocked, release.clone()).unwrap();
        while !stuck.running() {
            std::thread::sleep(Duration::from_millis(1));
        }
        // Every one of these can run on the idle worker; none may wait for `release`.
        let quick: Vec<_> = (0..6).map(|i| pool.submit(quick, i).unwrap()).collect();
        each_quick_one_answers(quick.iter().map(answer));
        assert!(!stuck.done());
        release.set();
        assert_eq!(stuck.result_timeout(LONG).unwrap(), 0);
    });
}

#[test]
fn pool_tasks_do_not_wait_behind_a_blocked_task_while_a_worker_is_idle() {
    within(LONG * 2, "pool head of line", || {
        let pool = Pool::new(2).unwrap();
        let release = Event::new().unwrap();
        let started = Event::new().unwrap();
        let stuck = pool
            .apply_async(blocked_after_saying, (started.clone(), release.clone()))
            .unwrap();
        // The quick ones go only once the blocked one runs.
        assert!(started.wait_timeout(LONG), "the blocked task never started");
        let quick: Vec<_> = (0..6)
            .map(|i| pool.apply_async(quick, i).unwrap())
            .collect();
        each_quick_one_answers(quick.iter().map(|r| {
            r.get_timeout(Duration::from_secs(30))
                .map_err(|e| e.to_string())
        }));
        assert!(!stuck.ready());
        release.set();
        assert_eq!(stuck.get_timeout(LONG).unwrap(), 0);
    });
}

fn until_running<T>(f: &flotilla_core::Future<T>) {
    while !f.running() {
        assert!(!f.done(), "ended before it was seen running");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The blocked task was itself held in a pipeline (and let go when the task before it
/// ended); the quick task behind it is still taken back once the other worker is idle.
#[test]
fn a_task_behind_a_blocked_task_that_was_itself_held_is_taken_back() {
    within(LONG * 2, "held head of line", || {
        let pool = ProcessPoolExecutor::builder()
            .max_workers(2)
            .build()
            .unwrap();
        let gates: Vec<Event> = (0..3).map(|_| Event::new().unwrap()).collect();
        let first = pool.submit(blocked, gates[0].clone()).unwrap();
        until_running(&first);
        let second = pool.submit(blocked, gates[1].clone()).unwrap();
        until_running(&second);
        // Both workers busy: these wait in pipelines (or in the queue) until released.
        let long = pool.submit(blocked, gates[2].clone()).unwrap();
        let quick: Vec<_> = (0..4).map(|i| pool.submit(quick, i).unwrap()).collect();
        gates[0].set();
        until_running(&long);
        gates[1].set();
        each_quick_one_answers(quick.iter().map(answer));
        assert!(!long.done());
        gates[2].set();
        for f in [first, second, long] {
            assert_eq!(f.result_timeout(LONG).unwrap(), 0);
        }
    });
}
