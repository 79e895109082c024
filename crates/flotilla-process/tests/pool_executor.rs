//! ProcessPoolExecutor: results, map, failures, dead workers, initializers, recycling.

use std::collections::HashSet;
use std::time::Duration;

use flotilla_core::{ReturnWhen, TaskError, as_completed_timeout, wait_timeout};
use flotilla_process::{ProcessPoolExecutor, StartMethod, WorkerDeath, get_context};
use proptest::prelude::*;

const LONG: Duration = Duration::from_secs(60);

fn square(x: u64) -> u64 {
    x * x
}

fn pid(_: ()) -> i32 {
    std::process::id() as i32
}

fn boom(x: u32) -> u32 {
    if x == 3 {
        panic!("item {x} is cursed");
    }
    x
}

fn pool(workers: usize) -> ProcessPoolExecutor {
    ProcessPoolExecutor::builder()
        .max_workers(workers)
        .build()
        .unwrap()
}

#[test]
fn submit_returns_values_under_spawn_and_forkserver() {
    for method in [StartMethod::Spawn, StartMethod::ForkServer] {
        let pool = ProcessPoolExecutor::builder()
            .max_workers(2)
            .context(get_context(Some(method)))
            .build()
            .unwrap();
        let futures: Vec<_> = (0..20).map(|i| pool.submit(square, i).unwrap()).collect();
        let (done, not_done) = wait_timeout(&futures, ReturnWhen::AllCompleted, LONG);
        assert_eq!((done.len(), not_done.len()), (20, 0));
        for (i, f) in futures.iter().enumerate() {
            assert_eq!(f.result().unwrap(), (i * i) as u64, "{method}");
        }
        let pids: HashSet<i32> = (0..10)
            .map(|_| pool.submit(pid, ()).unwrap().result_timeout(LONG).unwrap())
            .collect();
        assert!(!pids.contains(&(std::process::id() as i32)));
        assert!(pool.workers_started() <= 2);
    }
}

#[test]
fn fork_is_refused_for_pools() {
    let err = ProcessPoolExecutor::builder()
        .context(get_context(Some(StartMethod::Fork)))
        .build();
    assert!(err.is_err());
}

#[test]
fn a_panicking_task_fails_only_itself() {
    let pool = pool(2);
    let futures: Vec<_> = (0..6).map(|i| pool.submit(boom, i).unwrap()).collect();
    for (i, f) in futures.iter().enumerate() {
        match f.result_timeout(LONG) {
            Err(TaskError::Panicked { message }) => {
                assert_eq!((i, message.as_str()), (3, "item 3 is cursed"))
            }
            Ok(v) => assert_eq!(v as usize, i),
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn map_is_ordered_and_stops_at_the_first_failure() {
    let pool = pool(2);
    let results: Vec<_> = pool.map(boom, 0..10u32, 2).collect();
    // As in Python, a chunk fails whole: 0 and 1 come back, then the failure of the
    // chunk [2, 3], and nothing after it.
    assert_eq!(results.len(), 3, "{results:?}");
    assert!(
        results[..2]
            .iter()
            .enumerate()
            .all(|(i, r)| r.as_ref().ok() == Some(&(i as u32)))
    );
    assert!(matches!(results[2], Err(TaskError::Panicked { .. })));
}

fn die_on(x: u32) -> u32 {
    if x == 5 {
        // Die the way the OOM killer kills: SIGKILL, mid-task.
        let _ = nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::Signal::SIGKILL);
        std::thread::sleep(Duration::from_secs(60));
    }
    x
}

#[test]
fn a_killed_worker_fails_its_task_and_the_rest_complete() {
    let pool = pool(2);
    let futures: Vec<_> = (0..12).map(|i| pool.submit(die_on, i).unwrap()).collect();
    let mut seen = 0;
    for fut in as_completed_timeout(futures, LONG) {
        let fut = fut.unwrap();
        match fut.result() {
            Ok(v) => assert_ne!(v, 5),
            Err(TaskError::WorkerDied {
                reason,
                pid,
                signal,
                exit_code,
            }) => {
                assert!(reason.contains("SIGKILL"), "{reason}");
                assert!(reason.contains(&format!("pid {pid}")), "{reason}");
                assert_eq!((signal, exit_code), (Some(9), None));
            }
            other => panic!("unexpected {other:?}"),
        }
        seen += 1;
    }
    assert_eq!(seen, 12);
    // Workers start on demand, so a replacement comes when work needs it.
    assert!(pool.workers_started() >= 2);
    assert_eq!(
        pool.submit(square, 4)
            .unwrap()
            .result_timeout(LONG)
            .unwrap(),
        16
    );
}

#[test]
fn break_pool_mode_is_pythons() {
    let pool = ProcessPoolExecutor::builder()
        .max_workers(1)
        .on_worker_death(WorkerDeath::BreakPool)
        .build()
        .unwrap();
    let dying = pool.submit(die_on, 5).unwrap();
    assert!(matches!(
        dying.result_timeout(LONG),
        Err(TaskError::WorkerDied { .. })
    ));
    // Once broken, new tasks are refused.
    let deadline = std::time::Instant::now() + LONG;
    loop {
        match pool.submit(square, 1) {
            Err(TaskError::Broken { .. }) => break,
            Ok(f) => assert!(matches!(
                f.result_timeout(LONG),
                Err(TaskError::Broken { .. }) | Ok(1)
            )),
            Err(e) => panic!("unexpected {e:?}"),
        }
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn failing_init(_: ()) {
    panic!("no database");
}

#[test]
fn a_failing_initializer_breaks_the_pool_once() {
    let pool = ProcessPoolExecutor::builder()
        .max_workers(2)
        .initializer(failing_init, ())
        .build()
        .unwrap();
    let fut = pool.submit(square, 2).unwrap();
    match fut.result_timeout(LONG) {
        Err(TaskError::Broken { reason }) => {
            assert!(reason.contains("no database"), "{reason}");
            assert!(!reason.contains('\0'), "no internal marker: {reason:?}");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(pool.workers_started() <= 2, "not retried in a loop");
}

#[test]
fn max_tasks_per_child_recycles_workers() {
    let pool = ProcessPoolExecutor::builder()
        .max_workers(1)
        .max_tasks_per_child(2)
        .build()
        .unwrap();
    let pids: Vec<i32> = (0..6)
        .map(|_| pool.submit(pid, ()).unwrap().result_timeout(LONG).unwrap())
        .collect();
    let distinct: HashSet<_> = pids.iter().collect();
    assert_eq!(distinct.len(), 3, "{pids:?}");
}

#[test]
fn shutdown_refuses_new_tasks_and_cancel_futures_cancels_queued_ones() {
    let pool = pool(1);
    let slow: Vec<_> = (0..8)
        .map(|_| pool.submit(sleep_ms, 200).unwrap())
        .collect();
    pool.shutdown(false, true);
    assert!(matches!(pool.submit(square, 1), Err(TaskError::ShutDown)));
    let cancelled = slow.iter().filter(|f| f.cancelled()).count();
    assert!(
        cancelled >= 8 - 1 - flotilla_process::PIPELINE,
        "{cancelled} cancelled"
    );
    drop(pool); // waits for what was already sent
    assert!(slow.iter().all(|f| f.done()));
}

fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]

    /// map equals a sequential run, for any input and chunk size, under either start
    /// method a pool may use.
    #[test]
    fn map_equals_a_sequential_run(
        items in proptest::collection::vec(0u64..1_000_000, 0..300),
        chunksize in 1usize..50,
        spawn in any::<bool>(),
    ) {
        let method = if spawn { StartMethod::Spawn } else { StartMethod::ForkServer };
        let pool = ProcessPoolExecutor::builder()
            .max_workers(2)
            .context(get_context(Some(method)))
            .build()
            .unwrap();
        let got: Vec<u64> = pool.map(square, items.clone(), chunksize).map(Result::unwrap).collect();
        let expected: Vec<u64> = items.into_iter().map(square).collect();
        prop_assert_eq!(got, expected);
    }
}

fn exit_with(code: i32) -> u8 {
    std::process::exit(code)
}

/// A worker that exits in the middle of a task fails it with its exit code, as data.
#[test]
fn a_worker_that_exits_mid_task_reports_its_exit_code() {
    let pool = pool(1);
    match pool.submit(exit_with, 3).unwrap().result_timeout(LONG) {
        Err(TaskError::WorkerDied {
            pid,
            signal,
            exit_code,
            reason,
        }) => {
            assert!(pid > 0, "{reason}");
            assert_eq!((signal, exit_code), (None, Some(3)), "{reason}");
        }
        other => panic!("unexpected {other:?}"),
    }
}
