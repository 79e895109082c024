//! run_in_executor on a ProcessPoolExecutor: values, remote failures, arguments that
//! cannot be sent, and a dropped awaiting side cancelling a queued task.

mod common;

use std::time::Duration;

use common::bounded;
use flotilla_async::{gather, run_in_executor};
use flotilla_core::TaskError;
use flotilla_process::ProcessPoolExecutor;

fn sum_of_squares(n: u64) -> u64 {
    (0..n).map(|i| i * i).sum()
}

fn fails(word: String) -> u64 {
    panic!("{word} in a worker")
}

fn wait_for_release(release: flotilla_ipc::Connection) -> u64 {
    release.recv::<u64>().unwrap_or(0)
}

fn pid(_: ()) -> u32 {
    std::process::id()
}

fn pool(workers: usize) -> ProcessPoolExecutor {
    ProcessPoolExecutor::builder()
        .max_workers(workers)
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_process_task_returns_its_value_and_runs_in_another_process() {
    let procs = pool(2);
    assert_eq!(
        bounded(run_in_executor(&procs, (sum_of_squares, 1000)))
            .await
            .unwrap(),
        332_833_500
    );
    let worker = bounded(run_in_executor(&procs, (pid, ()))).await.unwrap();
    assert_ne!(worker, std::process::id());
    let values = bounded(gather(
        (1..=10).map(|n| run_in_executor(&procs, (sum_of_squares, n))),
    ))
    .await
    .unwrap();
    assert_eq!(values, (1..=10).map(sum_of_squares).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_panicking_process_task_fails_with_the_remote_message() {
    let procs = pool(1);
    let outcome = bounded(run_in_executor(&procs, (fails, "boom".to_owned()))).await;
    match outcome {
        Err(TaskError::Panicked { message }) => assert_eq!(message, "boom in a worker"),
        other => panic!("expected a remote failure, got {other:?}"),
    }
    // The pool goes on.
    assert_eq!(
        bounded(run_in_executor(&procs, (sum_of_squares, 3)))
            .await
            .unwrap(),
        5
    );
}

#[tokio::test]
async fn dropping_the_awaiting_side_cancels_a_queued_process_task() {
    let procs = pool(1);
    let (release_tx, release_rx) = flotilla_ipc::pipe(true).unwrap();
    let running = run_in_executor(&procs, (wait_for_release, release_rx));
    // One of these waits in the worker's pipeline, the rest in the pool's queue: none
    // has started, so dropping their tasks cancels every one (a task is running only
    // once a worker starts it).
    let queued: Vec<_> = (0..4)
        .map(|n| run_in_executor(&procs, (sum_of_squares, n)))
        .collect();
    let futures: Vec<_> = queued.iter().map(|t| t.future().clone()).collect();
    drop(queued);
    let states: Vec<_> = futures.iter().map(|f| f.state()).collect();
    assert!(
        futures.iter().all(|f| f.cancelled()),
        "every task that had not started is cancelled: {states:?}"
    );
    release_tx.send(&11u64).unwrap();
    assert_eq!(bounded(running).await.unwrap(), 11);
    assert_eq!(
        bounded(run_in_executor(&procs, (sum_of_squares, 2)))
            .await
            .unwrap(),
        1
    );
}

#[tokio::test]
async fn a_submission_to_a_shut_down_pool_is_a_failed_task() {
    let procs = pool(1);
    procs.shutdown(true, false);
    assert!(matches!(
        bounded(run_in_executor(&procs, (sum_of_squares, 1))).await,
        Err(TaskError::ShutDown)
    ));
}

fn forever(_: ()) -> u64 {
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[tokio::test]
async fn stopping_a_running_process_task_kills_its_worker_and_the_pool_goes_on() {
    let procs = pool(1);
    let stuck = run_in_executor(&procs, (forever, ()));
    while !stuck.future().running() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(procs.stop(stuck.future()));
    assert!(matches!(bounded(stuck).await, Err(TaskError::Cancelled)));
    assert_eq!(
        bounded(run_in_executor(&procs, (sum_of_squares, 3)))
            .await
            .unwrap(),
        5
    );
}
