//! ProcessPoolExecutor::stop (a running task's worker is killed and replaced, the pool
//! goes on) and try_submit (a task's `Err` comes back as that very error, for tasks of
//! one argument and of several).

use std::time::Duration;

use flotilla_core::{State, TaskError};
use flotilla_process::{ProcessPoolExecutor, StartMethod, WorkerDeath, get_context};
use serde::{Deserialize, Serialize};

const LONG: Duration = Duration::from_secs(60);

fn forever(_: ()) {
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn pid(_: ()) -> i32 {
    std::process::id() as i32
}

fn square(x: u64) -> u64 {
    x * x
}

/// Waits (generously) until `fut` runs on a worker.
fn until_running<T>(fut: &flotilla_core::Future<T>) {
    let deadline = std::time::Instant::now() + LONG;
    while fut.state() == State::Pending {
        assert!(std::time::Instant::now() < deadline, "never started");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn stopping_a_running_task_kills_its_worker_and_the_pool_goes_on() {
    for policy in [WorkerDeath::FailTask, WorkerDeath::BreakPool] {
        let pool = ProcessPoolExecutor::builder()
            .max_workers(1)
            .on_worker_death(policy)
            .build()
            .unwrap();
        let before = pool.submit(pid, ()).unwrap().result_timeout(LONG).unwrap();
        let stuck = pool.submit(forever, ()).unwrap();
        // Queued behind it on the one worker: must survive the stop and run afterwards.
        let behind: Vec<_> = (0..4).map(|i| pool.submit(square, i).unwrap()).collect();
        until_running(&stuck);
        assert!(pool.stop(&stuck));
        assert!(matches!(
            stuck.result_timeout(LONG),
            Err(TaskError::Cancelled)
        ));
        assert!(stuck.cancelled());
        for (i, f) in behind.iter().enumerate() {
            assert_eq!(
                f.result_timeout(LONG).unwrap(),
                (i * i) as u64,
                "{policy:?}"
            );
        }
        let after = pool.submit(pid, ()).unwrap().result_timeout(LONG).unwrap();
        assert_ne!(before, after, "a replacement worker runs the next tasks");
        assert!(!pool.stop(&stuck), "already finished");
        assert_eq!(pool.workers_started(), 2);
    }
}

#[test]
fn stopping_a_task_waiting_in_a_workers_pipeline_cancels_it() {
    let pool = ProcessPoolExecutor::builder()
        .max_workers(1)
        .build()
        .unwrap();
    let first = pool.submit(forever, ()).unwrap();
    let second = pool.submit(forever, ()).unwrap();
    until_running(&first);
    // Sent to the worker beside the first, but not started: still pending (a task is
    // running only once its worker starts it), so stopping it cancels it.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(second.state(), State::Pending);
    assert!(pool.stop(&second));
    assert_eq!(second.state(), State::Cancelled);
    assert!(pool.stop(&first));
    assert!(matches!(
        first.result_timeout(LONG),
        Err(TaskError::Cancelled)
    ));
    assert!(matches!(
        second.result_timeout(LONG),
        Err(TaskError::Cancelled)
    ));
    assert_eq!(
        pool.submit(square, 9)
            .unwrap()
            .result_timeout(LONG)
            .unwrap(),
        81
    );
    assert_eq!(pool.workers_started(), 2, "the skipped task never ran");
}

#[test]
fn stopping_a_pending_task_cancels_it_and_a_finished_one_is_left_alone() {
    let pool = ProcessPoolExecutor::builder()
        .max_workers(1)
        .context(get_context(Some(StartMethod::Spawn)))
        .build()
        .unwrap();
    let busy: Vec<_> = (0..flotilla_process::PIPELINE)
        .map(|_| pool.submit(forever, ()).unwrap())
        .collect();
    let pending = pool.submit(square, 3).unwrap();
    assert!(pool.stop(&pending));
    assert_eq!(pending.state(), State::Cancelled);
    for f in &busy {
        until_running(f);
        assert!(pool.stop(f));
    }
    let done = pool.submit(square, 4).unwrap();
    assert_eq!(done.result_timeout(LONG).unwrap(), 16);
    assert!(!pool.stop(&done));
    assert_eq!(done.result().unwrap(), 16);
}

#[derive(Debug, Serialize, Deserialize, PartialEq, thiserror::Error)]
#[error("{0:?} is not a number")]
struct NotANumber(String);

fn parse(s: String) -> Result<u32, NotANumber> {
    s.parse().map_err(|_| NotANumber(s))
}

#[test]
fn try_submit_returns_the_tasks_own_error() {
    let pool = ProcessPoolExecutor::builder()
        .max_workers(1)
        .build()
        .unwrap();
    assert_eq!(
        pool.try_submit(parse, "12".into())
            .unwrap()
            .result_timeout(LONG)
            .unwrap(),
        12
    );
    let err = pool
        .try_submit(parse, "twelve".into())
        .unwrap()
        .result_timeout(LONG)
        .unwrap_err();
    assert!(err.is_task_failure());
    assert_eq!(
        err.downcast_ref::<NotANumber>(),
        Some(&NotANumber("twelve".into()))
    );
}

/// Parses `s` in base `radix`: a `try_submit` task of two arguments.
fn parse_radix(s: String, radix: u32) -> Result<u32, NotANumber> {
    u32::from_str_radix(&s, radix).map_err(|_| NotANumber(s))
}

#[test]
fn try_submit_spreads_several_arguments() {
    let pool = ProcessPoolExecutor::builder()
        .max_workers(1)
        .build()
        .unwrap();
    assert_eq!(
        pool.try_submit(parse_radix, ("ff".into(), 16))
            .unwrap()
            .result_timeout(LONG)
            .unwrap(),
        255
    );
    let err = pool
        .try_submit(parse_radix, ("12".into(), 2))
        .unwrap()
        .result_timeout(LONG)
        .unwrap_err();
    assert_eq!(
        err.downcast_ref::<NotANumber>(),
        Some(&NotANumber("12".into()))
    );
    // A closure of three arguments, its types written out.
    let sum = pool
        .try_submit(
            |a: u32, b: u32, c: u32| a.checked_add(b + c).ok_or(NotANumber("overflow".into())),
            (1, 2, 3),
        )
        .unwrap();
    assert_eq!(sum.result_timeout(LONG).unwrap(), 6);
}
