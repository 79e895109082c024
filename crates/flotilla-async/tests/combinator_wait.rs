//! wait and as_completed over tasks and flotilla futures.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{LONG, bounded, thread_pool};
use flotilla_async::{
    Task, as_completed, as_completed_timeout, run_in_executor, to_thread, wait, wait_timeout,
};
use flotilla_core::{CancelToken, Completer, Future, ReturnWhen, TaskError};
use flotilla_thread::ThreadPoolExecutor;

fn gated(pool: &ThreadPoolExecutor, gate: &CancelToken, value: u32) -> Task<u32> {
    let gate = gate.clone();
    run_in_executor(pool, move || {
        gate.wait_timeout(LONG);
        value
    })
}

#[tokio::test]
async fn wait_with_a_timeout_returns_done_and_pending_then_the_pending_can_be_cancelled() {
    let pool = thread_pool(2);
    let gate = CancelToken::new();
    let tasks = vec![
        to_thread(|| 1),
        gated(&pool, &gate, 2),
        gated(&pool, &gate, 3),
        gated(&pool, &gate, 4), // queued behind the two on the pool's two threads
    ];
    let (done, pending) = bounded(wait_timeout(
        tasks,
        ReturnWhen::AllCompleted,
        Duration::from_millis(50),
    ))
    .await;
    assert_eq!((done.len(), pending.len()), (1, 3));
    let queued = pending[2].future().clone();
    drop(pending); // cancels what has not started
    assert!(queued.cancelled());
    gate.cancel();
    assert_eq!(bounded(done.into_iter().next().unwrap()).await.unwrap(), 1);
}

#[tokio::test]
async fn first_completed_and_first_exception() {
    let pool = thread_pool(3);
    let gate = CancelToken::new();
    let slow = gated(&pool, &gate, 1);
    let quick = to_thread(|| 2);
    let (done, pending) = bounded(wait_timeout(
        [&slow, &quick],
        ReturnWhen::FirstCompleted,
        LONG,
    ))
    .await;
    assert_eq!((done.len(), pending.len()), (1, 1));

    let failing = run_in_executor(&pool, || -> u32 { panic!("first exception") });
    let (done, pending) = bounded(wait_timeout(
        [&slow, &failing],
        ReturnWhen::FirstException,
        LONG,
    ))
    .await;
    assert_eq!((done.len(), pending.len()), (1, 1));
    assert!(matches!(
        done[0].future().error(),
        Ok(Some(TaskError::Panicked { .. }))
    ));
    gate.cancel();
    let (done, _) = bounded(wait([&slow], ReturnWhen::AllCompleted)).await;
    assert_eq!(done.len(), 1);
}

#[tokio::test]
async fn wait_works_on_plain_flotilla_futures_and_leaves_their_values_in_place() {
    let (completer, fut) = Completer::<String>::new();
    let futures: Vec<Future<String>> = vec![Future::ready("ready".into()), fut];
    std::thread::spawn(move || completer.set_result("later".into()));
    let (done, pending) = bounded(wait(&futures, ReturnWhen::AllCompleted)).await;
    assert_eq!((done.len(), pending.len()), (2, 0));
    assert_eq!(futures[1].result().unwrap(), "later");
}

#[tokio::test]
async fn as_completed_yields_each_once_in_completion_order() {
    let pool = thread_pool(4);
    let tasks: Vec<_> = (0..20u64)
        .map(|i| {
            run_in_executor(&pool, move || {
                std::thread::sleep(Duration::from_millis(i % 5));
                i
            })
        })
        .collect();
    let mut seen = HashSet::new();
    let mut completed = as_completed_timeout(tasks, LONG);
    while let Some(task) = bounded(completed.next()).await {
        let task = task.expect("all complete before the timeout");
        assert!(task.done());
        assert!(seen.insert(bounded(task).await.unwrap()), "yielded twice");
    }
    assert_eq!(seen, (0..20).collect());
    assert!(completed.next().await.is_none());
}

#[tokio::test]
async fn as_completed_reports_the_unfinished_on_timeout_and_ends() {
    let pool = thread_pool(1);
    let gate = CancelToken::new();
    let (completer, fut) = Completer::<u32>::new();
    let tasks = vec![gated(&pool, &gate, 1).detach(), Future::ready(2), fut];
    let mut completed = as_completed_timeout(&tasks, Duration::from_millis(30));
    let first = bounded(completed.next()).await.unwrap().unwrap();
    assert_eq!(first.result().unwrap(), 2, "the done one comes first");
    match bounded(completed.next()).await {
        Some(Err(TaskError::Unfinished { unfinished, total })) => {
            assert_eq!((unfinished, total), (2, 3));
        }
        other => panic!("expected the timeout's error, got {other:?}"),
    }
    assert!(completed.next().await.is_none());
    gate.cancel();
    completer.set_result(3);
}

#[tokio::test]
async fn as_completed_is_a_stream() {
    use futures_core::Stream;
    fn is_stream<S: Stream>(_: &S) {}
    let completed = as_completed(vec![Future::ready(1)]);
    is_stream(&completed);
    assert_eq!(completed.size_hint(), (1, Some(2)));
}

/// A future given several times is one future, as in Python's sets; and a wait on no
/// futures is over at once.
#[tokio::test]
async fn a_future_given_twice_is_one_future_and_none_is_no_wait() {
    let (c, f) = Completer::<u8>::new();
    let input = vec![f.clone(), f.clone(), Future::ready(9), f.clone()];
    c.set_result(1);
    let mut yielded = Vec::new();
    let mut completed = as_completed_timeout(input.clone(), LONG);
    while let Some(f) = bounded(completed.next()).await {
        yielded.push(f.unwrap().result().unwrap());
    }
    assert_eq!(yielded, [1, 9]);
    let (done, pending) = bounded(wait_timeout(input, ReturnWhen::AllCompleted, LONG)).await;
    assert_eq!((done.len(), pending.len()), (2, 0));

    for when in [
        ReturnWhen::FirstCompleted,
        ReturnWhen::FirstException,
        ReturnWhen::AllCompleted,
    ] {
        let (done, pending) = bounded(wait(Vec::<Future<u8>>::new(), when)).await;
        assert!(done.is_empty() && pending.is_empty());
    }
}
