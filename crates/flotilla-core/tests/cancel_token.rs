//! CancelToken: cancel, deadlines, children, blocking waits.

use std::time::{Duration, Instant};

use flotilla_core::{CancelToken, TaskError};

const LONG: Duration = Duration::from_secs(30);

#[test]
fn cancel_is_seen_by_clones_and_is_idempotent() {
    let token = CancelToken::new();
    let clone = token.clone();
    assert!(!clone.is_cancelled());
    assert!(clone.check().is_ok());
    token.cancel();
    token.cancel();
    assert!(clone.is_cancelled());
    assert!(matches!(clone.check(), Err(TaskError::Cancelled)));
}

#[test]
fn deadline_cancels_by_itself() {
    let token = CancelToken::with_timeout(Duration::from_millis(30));
    assert!(token.deadline().is_some());
    assert!(token.wait_timeout(LONG), "the deadline ends the wait");
    assert!(token.is_cancelled());
    assert!(!CancelToken::with_deadline(Instant::now() + LONG).is_cancelled());
}

#[test]
fn children_follow_their_parent_not_the_other_way() {
    let parent = CancelToken::new();
    let child = parent.child();
    let grandchild = child.child();
    child.cancel();
    assert!(grandchild.is_cancelled());
    assert!(!parent.is_cancelled());
    let second = parent.child();
    parent.cancel();
    assert!(second.is_cancelled());
    assert!(
        parent.child().is_cancelled(),
        "a child of a cancelled token starts cancelled"
    );
}

#[test]
fn wait_wakes_on_cancel_from_another_thread_and_times_out_otherwise() {
    let token = CancelToken::new();
    assert!(!token.wait_timeout(Duration::from_millis(20)));
    let remote = token.clone();
    let t = std::thread::spawn(move || remote.wait_timeout(LONG));
    std::thread::sleep(Duration::from_millis(20));
    token.cancel();
    assert!(t.join().unwrap());
}

#[test]
fn a_running_task_stops_cooperatively() {
    let token = CancelToken::new();
    let task = {
        let token = token.clone();
        std::thread::spawn(move || -> Result<u64, TaskError> {
            let mut n = 0u64;
            loop {
                token.check()?;
                n = std::hint::black_box(n + 1);
                std::thread::yield_now();
            }
        })
    };
    std::thread::sleep(Duration::from_millis(20));
    token.cancel();
    assert!(matches!(task.join().unwrap(), Err(TaskError::Cancelled)));
}
