//! shield: cancelling the outer await leaves the inner work running and its result
//! awaitable; wait_for: a deadline that cancels what it gives up on.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{LONG, bounded, thread_pool};
use flotilla_async::{run_in_executor, shield, to_thread, wait_for};
use flotilla_core::{CancelToken, TaskError};

#[tokio::test]
async fn cancelling_the_outer_await_leaves_the_inner_work_running() {
    let gate = CancelToken::new();
    let finished = Arc::new(AtomicBool::new(false));
    let inner = shield({
        let (gate, finished) = (gate.clone(), Arc::clone(&finished));
        async move {
            // The inner work itself awaits a thread: it must not be cancelled either.
            let value = to_thread(move || gate.wait_timeout(LONG)).await.unwrap();
            finished.store(true, Ordering::SeqCst);
            value
        }
    });
    let outer = tokio::spawn({
        let inner = inner.clone();
        async move { inner.await }
    });
    tokio::time::sleep(Duration::from_millis(5)).await;
    outer.abort();
    assert!(bounded(outer).await.unwrap_err().is_cancelled());
    assert!(
        !inner.cancel(),
        "shielded work cannot be cancelled through its future"
    );
    gate.cancel();
    assert!(
        bounded(&inner).await.unwrap(),
        "the result is still there to await"
    );
    assert!(finished.load(Ordering::SeqCst));
    assert!(bounded(inner).await.unwrap(), "and again, by value");
}

#[tokio::test]
async fn a_panic_in_shielded_work_is_a_task_failure() {
    let inner = shield(async {
        tokio::task::yield_now().await;
        panic!("inside the shield")
    });
    let outcome: Result<(), _> = bounded(inner).await;
    assert!(
        matches!(outcome, Err(TaskError::Panicked { message }) if message == "inside the shield")
    );
}

#[tokio::test]
async fn a_detached_task_is_shielded_from_its_awaiter() {
    let pool = thread_pool(1);
    let gate = CancelToken::new();
    let shielded = {
        let gate = gate.clone();
        run_in_executor(&pool, move || gate.wait_timeout(LONG)).detach()
    };
    let outer = tokio::spawn(shielded.clone().into_future());
    outer.abort();
    assert!(bounded(outer).await.unwrap_err().is_cancelled());
    gate.cancel();
    assert!(bounded(shielded).await.unwrap());
}

#[tokio::test]
async fn wait_for_returns_the_value_or_times_out_and_cancels() {
    assert_eq!(wait_for(to_thread(|| 3), LONG).await.unwrap(), 3);

    let pool = thread_pool(1);
    let gate = CancelToken::new();
    let blocked = {
        let gate = gate.clone();
        run_in_executor(&pool, move || gate.wait_timeout(LONG))
    };
    let queued = run_in_executor(&pool, || ());
    let queued_future = queued.future().clone();
    let outcome = wait_for(queued, Duration::from_millis(10)).await;
    assert!(matches!(outcome, Err(TaskError::TimedOut)));
    assert!(
        queued_future.cancelled(),
        "what wait_for gave up on is cancelled"
    );
    gate.cancel();
    assert!(bounded(blocked).await.unwrap());
}
