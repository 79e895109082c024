//! ThreadPoolExecutor::submit_with_token: a running task stops when its token is
//! cancelled; a task whose token is cancelled before it starts never runs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use flotilla_core::{CancelToken, TaskError};
use flotilla_thread::ThreadPoolExecutor;

const LONG: Duration = Duration::from_secs(60);

fn pool(workers: usize) -> ThreadPoolExecutor {
    ThreadPoolExecutor::builder()
        .max_workers(workers)
        .build()
        .unwrap()
}

#[test]
fn a_running_task_stops_when_its_token_is_cancelled() {
    let pool = pool(1);
    let token = CancelToken::new();
    let (started_tx, started) = mpsc::channel();
    let fut = pool
        .submit_with_token(token.clone(), move |token| {
            started_tx.send(()).unwrap();
            // Bounded: a token that never arrives fails the test instead of hanging it.
            if token.wait_timeout(LONG) {
                token.check()?;
            }
            Ok("ran to the end")
        })
        .unwrap();
    started.recv_timeout(LONG).unwrap();
    assert!(!fut.cancel(), "Future::cancel cannot stop a running task");
    token.cancel();
    assert!(matches!(
        fut.result_timeout(LONG),
        Err(TaskError::Cancelled)
    ));
    assert!(fut.cancelled());
}

#[test]
fn a_task_whose_token_is_cancelled_before_it_starts_never_runs() {
    let pool = pool(1);
    let (open, gate) = mpsc::channel::<()>();
    let blocker = pool
        .submit(move || gate.recv_timeout(LONG).is_ok())
        .unwrap();
    let ran = Arc::new(AtomicBool::new(false));
    let token = CancelToken::new();
    let queued = {
        let ran = Arc::clone(&ran);
        pool.submit_with_token(token.clone(), move |_| {
            ran.store(true, Ordering::SeqCst);
            Ok(())
        })
        .unwrap()
    };
    token.cancel();
    open.send(()).unwrap();
    assert!(blocker.result_timeout(LONG).unwrap());
    assert!(matches!(
        queued.result_timeout(LONG),
        Err(TaskError::Cancelled)
    ));
    assert!(!ran.load(Ordering::SeqCst));
}

#[test]
fn values_and_the_tasks_own_errors_pass_through() {
    let pool = pool(2);
    let finished = pool
        .submit_with_token(CancelToken::new(), |_| Ok(5))
        .unwrap();
    assert_eq!(finished.result_timeout(LONG).unwrap(), 5);
    let failing = pool
        .submit_with_token(CancelToken::new(), |_| -> Result<(), _> {
            Err(TaskError::Broken {
                reason: "the task's own".into(),
            })
        })
        .unwrap();
    assert!(matches!(
        failing.result_timeout(LONG),
        Err(TaskError::Broken { reason }) if reason == "the task's own"
    ));
}
