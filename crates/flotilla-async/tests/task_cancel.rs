//! Tasks from run_in_executor / to_thread / wrap_future: values, refused submissions,
//! and cancellation reaching the work when the awaiting side goes away.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{LONG, bounded, thread_pool};
use flotilla_async::{Cancellable, Task, run_in_executor, to_thread, wrap_future};
use flotilla_core::{CancelToken, Completer, State, TaskError};
use flotilla_thread::ThreadPoolExecutor;

/// A thread-pool task that blocks until `gate` is cancelled (or LONG passes).
fn blocker(pool: &ThreadPoolExecutor, gate: &CancelToken) -> Task<bool> {
    let gate = gate.clone();
    run_in_executor(pool, move || gate.wait_timeout(LONG))
}

#[tokio::test]
async fn run_in_executor_and_to_thread_return_values() {
    let pool = thread_pool(2);
    assert_eq!(bounded(run_in_executor(&pool, || 6 * 7)).await.unwrap(), 42);
    assert_eq!(
        bounded(to_thread(|| "on a thread")).await.unwrap(),
        "on a thread"
    );
    let failed = bounded(to_thread(|| -> u8 { panic!("in the job") })).await;
    assert!(matches!(failed, Err(TaskError::Panicked { message }) if message == "in the job"));
}

#[tokio::test]
async fn a_refused_submission_is_a_failed_task_not_a_panic() {
    let pool = thread_pool(1);
    pool.shutdown(true, false);
    let task = run_in_executor(&pool, || 1);
    assert!(task.done());
    assert!(matches!(bounded(task).await, Err(TaskError::ShutDown)));
}

#[tokio::test]
async fn dropping_the_awaiting_side_cancels_a_pending_task() {
    let pool = thread_pool(1);
    let gate = CancelToken::new();
    let running = blocker(&pool, &gate);
    let ran = Arc::new(AtomicBool::new(false));
    let queued = {
        let ran = Arc::clone(&ran);
        run_in_executor(&pool, move || ran.store(true, Ordering::SeqCst))
    };
    let queued_future = queued.future().clone();
    // The await gives up (as a select! or a timeout would), dropping the task.
    assert!(
        tokio::time::timeout(Duration::from_millis(10), queued)
            .await
            .is_err()
    );
    assert!(queued_future.cancelled());
    gate.cancel();
    assert!(bounded(running).await.unwrap());
    // The worker has moved past the cancelled task without running it.
    bounded(run_in_executor(&pool, || ())).await.unwrap();
    assert!(!ran.load(Ordering::SeqCst));
}

#[tokio::test]
async fn aborting_the_awaiting_tokio_task_cancels_a_running_tasks_token() {
    let pool = thread_pool(1);
    let (started_tx, started) = std::sync::mpsc::channel();
    let task = run_in_executor(
        &pool,
        Cancellable(move |token: &CancelToken| {
            started_tx.send(()).unwrap();
            if token.wait_timeout(LONG) {
                token.check()?;
            }
            Ok("ran to the end")
        }),
    );
    let token = task.cancel_token().unwrap().clone();
    let fut = task.future().clone();
    let awaiting = tokio::spawn(task);
    tokio::task::spawn_blocking(move || started.recv_timeout(LONG).unwrap())
        .await
        .unwrap();
    assert_eq!(fut.state(), State::Running);
    awaiting.abort();
    assert!(awaiting.await.unwrap_err().is_cancelled());
    assert!(token.is_cancelled());
    assert!(matches!(bounded(&fut).await, Err(TaskError::Cancelled)));
}

#[tokio::test]
async fn cancel_asks_a_running_task_to_stop_and_a_finished_one_is_left_alone() {
    let task = to_thread(Cancellable(
        |token: &CancelToken| -> Result<(), TaskError> {
            loop {
                token.check()?;
                std::thread::sleep(Duration::from_millis(1));
            }
        },
    ));
    while task.future().state() == State::Pending {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(task.cancel());
    assert!(matches!(bounded(task).await, Err(TaskError::Cancelled)));

    let finished = to_thread(|| 1);
    let fut = finished.future().clone();
    assert_eq!(bounded(&fut).await.unwrap(), 1);
    assert!(!finished.cancel());
    assert_eq!(bounded(finished).await.unwrap(), 1);
}

#[tokio::test]
async fn a_detached_task_runs_on_and_its_future_keeps_the_value() {
    let pool = thread_pool(1);
    let gate = CancelToken::new();
    let running = blocker(&pool, &gate);
    let queued = run_in_executor(&pool, || "still wanted").detach();
    drop(running.detach());
    gate.cancel();
    assert_eq!(bounded(queued).await.unwrap(), "still wanted");
}

#[tokio::test]
async fn wrap_future_awaits_any_flotilla_future_and_cancels_it_when_dropped() {
    let (completer, fut) = Completer::<u32>::new();
    let waiter = tokio::spawn(wrap_future(fut.clone()));
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(5));
        if completer.set_running_or_notify_cancel() {
            completer.set_result(9);
        }
    });
    assert_eq!(bounded(waiter).await.unwrap().unwrap(), 9);

    let (completer, fut) = Completer::<u32>::new();
    drop(wrap_future(fut.clone()));
    assert!(fut.cancelled());
    assert!(!completer.set_running_or_notify_cancel());

    let token = CancelToken::new();
    let (completer, fut) = Completer::<u32>::new();
    assert!(completer.set_running_or_notify_cancel());
    drop(wrap_future(fut).with_token(token.clone()));
    assert!(
        token.is_cancelled(),
        "a running future's token is cancelled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_awaited_again_after_completion_reports_the_value_taken() {
    let mut task = to_thread(|| 5);
    assert_eq!(bounded(&mut task).await.unwrap(), 5);
    assert!(matches!(
        bounded(&mut task).await,
        Err(TaskError::ResultTaken)
    ));
}
