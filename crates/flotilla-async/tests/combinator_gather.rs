//! gather: values in input order, the first failure, failures as values, and children
//! that stay pinned where they are.

mod common;

use std::cell::Cell;
use std::marker::PhantomPinned;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use common::{LONG, bounded, thread_pool};
use flotilla_async::{gather, run_in_executor, to_thread};
use flotilla_core::{CancelToken, TaskError};

#[tokio::test]
async fn results_come_in_input_order_whatever_the_completion_order() {
    let pool = thread_pool(4);
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
    let pool = thread_pool(1);
    let gate = CancelToken::new();
    let blocked = {
        let gate = gate.clone();
        run_in_executor(&pool, move || gate.wait_timeout(LONG))
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
    let pool = thread_pool(2);
    let values = bounded(gather(
        (0..2000u32).map(|i| run_in_executor(&pool, move || i)),
    ))
    .await
    .unwrap();
    assert_eq!(values, (0..2000).collect::<Vec<_>>());
}

/// A `!Unpin` future, pending on its first poll (it wakes itself) and ready with its
/// value on the next, unless it is `endless`; it fails the test if it is polled at
/// another address than the first, and counts its drops.
struct StaysPut {
    value: u32,
    endless: bool,
    polled_at: Cell<Option<usize>>,
    drops: Arc<AtomicUsize>,
    _pinned: PhantomPinned,
}

impl StaysPut {
    fn new(value: u32, endless: bool, drops: &Arc<AtomicUsize>) -> Self {
        StaysPut {
            value,
            endless,
            polled_at: Cell::new(None),
            drops: Arc::clone(drops),
            _pinned: PhantomPinned,
        }
    }
}

impl Future for StaysPut {
    type Output = Result<u32, TaskError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.as_ref().get_ref();
        let here = std::ptr::from_ref(this) as usize;
        match this.polled_at.replace(Some(here)) {
            Some(first) => assert_eq!(first, here, "a pinned child was moved"),
            None => {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
        }
        if this.endless {
            Poll::Pending
        } else {
            Poll::Ready(Ok(this.value))
        }
    }
}

impl Drop for StaysPut {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn children_stay_where_they_were_pinned_and_are_dropped_once_done() {
    let drops = Arc::new(AtomicUsize::new(0));
    let mut cx = Context::from_waker(Waker::noop());
    let children = (0..4).map(|i| StaysPut::new(i, i == 3, &drops));
    let mut gathered = gather(children).return_exceptions();
    assert!(Pin::new(&mut gathered).poll(&mut cx).is_pending());

    // Moving the gather must not move its children, which are pinned.
    let mut moved = Box::new(gathered);
    assert!(Pin::new(&mut *moved).poll(&mut cx).is_pending());
    assert_eq!(
        drops.load(Ordering::SeqCst),
        3,
        "finished children dropped at once"
    );
    assert!(Pin::new(&mut *moved).poll(&mut cx).is_pending());
    drop(moved);
    assert_eq!(
        drops.load(Ordering::SeqCst),
        4,
        "the endless child dropped with the gather"
    );
}
