//! gather: values in input order, the first failure, and failures as values.

use std::time::Duration;

use flotilla_async::{gather, run_in_executor, to_thread};
use flotilla_core::{CancelToken, TaskError};
use flotilla_thread::ThreadPoolExecutor;

const LONG: Duration = Duration::from_secs(60);

async fn bounded<F: std::future::IntoFuture>(f: F) -> F::Output {
    tokio::time::timeout(LONG, f)
        .await
        .expect("timed out: the awaited work never completed")
}

#[tokio::test]
async fn results_come_in_input_order_whatever_the_completion_order() {
    let pool = ThreadPoolExecutor::builder()
        .max_workers(4)
        .build()
        .unwrap();
    let tasks = (0..8u64).map(|i| {
        run_in_executor(&pool, move || {
            // Later items finish first.
            std::thread::sleep(Duration::from_millis(2 * (8 - i)));
            i * 10
        })
    });
    let values = bounded(gather(tasks)).await.unwrap();
    assert_eq!(values, [0, 10, 20, 30, 40, 50, 60, 70]);
}

#[tokio::test]
async fn an_empty_gather_is_ready_at_once() {
    let none: Vec<flotilla_async::Task<u8>> = Vec::new();
    assert!(bounded(gather(none)).await.unwrap().is_empty());
}

#[tokio::test]
async fn the_first_failure_is_returned_and_the_rest_are_cancelled() {
    let pool = ThreadPoolExecutor::builder()
        .max_workers(1)
        .build()
        .unwrap();
    let gate = CancelToken::new();
    let blocked = {
        let gate = gate.clone();
        run_in_executor(&pool, move || gate.wait(Some(LONG)))
    };
    let queued = run_in_executor(&pool, || true); // behind `blocked` on the one worker
    let queued_future = queued.future().clone();
    let failing = to_thread(|| -> bool { panic!("this one fails") });
    let blocked_future = blocked.future().clone();
    let outcome = bounded(gather([blocked, failing, queued])).await;
    assert!(matches!(outcome, Err(TaskError::Panicked { message }) if message == "this one fails"));
    // The gather dropped the others: the queued one is cancelled and never runs; the
    // running one (it has no token) runs on until released.
    assert!(queued_future.cancelled());
    assert!(!blocked_future.done());
    gate.cancel();
    assert!(bounded(&blocked_future).await.unwrap());
}

#[tokio::test]
async fn return_exceptions_gives_every_outcome_and_waits_for_all() {
    let outcomes = bounded(
        gather([
            to_thread(|| 1),
            to_thread(|| -> i32 { panic!("second") }),
            to_thread(|| {
                std::thread::sleep(Duration::from_millis(20));
                3
            }),
        ])
        .return_exceptions(),
    )
    .await;
    assert_eq!(outcomes.len(), 3);
    assert_eq!(*outcomes[0].as_ref().unwrap(), 1);
    assert!(matches!(&outcomes[1], Err(TaskError::Panicked { message }) if message == "second"));
    assert_eq!(*outcomes[2].as_ref().unwrap(), 3);
}

#[tokio::test]
async fn gather_takes_any_futures_not_only_tasks() {
    let values = bounded(gather((0..3u8).map(|i| async move {
        tokio::time::sleep(Duration::from_millis(u64::from(3 - i))).await;
        Ok::<_, std::io::Error>(i)
    })))
    .await
    .unwrap();
    assert_eq!(values, [0, 1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_gathered_each_arrive_once() {
    let pool = ThreadPoolExecutor::builder()
        .max_workers(2)
        .build()
        .unwrap();
    let values = bounded(gather(
        (0..2000u32).map(|i| run_in_executor(&pool, move || i)),
    ))
    .await
    .unwrap();
    assert_eq!(values, (0..2000).collect::<Vec<_>>());
}
