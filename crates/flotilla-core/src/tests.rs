//! Internals that behaviour tests cannot see: registrations are cleaned up.

use std::time::Duration;

use crate::{Completer, ReturnWhen, as_completed_timeout, wait_timeout};

fn watchers<T>(fut: &crate::Future<T>) -> usize {
    fut.watcher_count()
}

#[test]
fn a_timed_out_wait_leaves_no_watcher_behind() {
    let (_c, fut) = Completer::<u8>::new();
    for _ in 0..100 {
        let _ = wait_timeout([&fut], ReturnWhen::AllCompleted, Duration::from_millis(1));
    }
    assert_eq!(watchers(&fut), 0);
}

#[test]
fn a_dropped_as_completed_leaves_no_watcher_behind() {
    let (_c, fut) = Completer::<u8>::new();
    let mut it = as_completed_timeout([&fut], Duration::from_millis(1));
    assert_eq!(watchers(&fut), 1);
    assert!(it.next().unwrap().is_err());
    drop(it);
    assert_eq!(watchers(&fut), 0);
}

/// Polls `f` once with a waker of its own (a distinct waker per call, as distinct tasks
/// would have).
fn poll_once<F: std::future::Future + Unpin>(f: &mut F) -> std::task::Poll<F::Output> {
    use std::sync::Arc;
    use std::task::{Context, Wake, Waker};

    struct Distinct;
    impl Wake for Distinct {
        fn wake(self: Arc<Self>) {}
    }
    let waker = Waker::from(Arc::new(Distinct));
    std::pin::Pin::new(f).poll(&mut Context::from_waker(&waker))
}

#[test]
fn a_dropped_await_leaves_no_waker_behind() {
    let (_c, fut) = Completer::<u8>::new();
    for _ in 0..100 {
        let mut by_value = std::future::IntoFuture::into_future(fut.clone());
        assert!(poll_once(&mut by_value).is_pending());
        let mut by_ref = std::future::IntoFuture::into_future(&fut);
        assert!(poll_once(&mut by_ref).is_pending());
        let mut completion = fut.completion();
        assert!(poll_once(&mut completion).is_pending());
        assert_eq!(fut.waker_count(), 3);
    }
    assert_eq!(fut.waker_count(), 0);
}

#[test]
fn an_await_polled_by_many_wakers_keeps_one_registration() {
    let (completer, fut) = Completer::<u8>::new();
    let mut awaiting = std::future::IntoFuture::into_future(fut.clone());
    for _ in 0..10 {
        assert!(poll_once(&mut awaiting).is_pending());
    }
    assert_eq!(fut.waker_count(), 1);
    completer.set_result(3);
    assert_eq!(fut.waker_count(), 0);
    assert!(matches!(
        poll_once(&mut awaiting),
        std::task::Poll::Ready(Ok(3))
    ));
}

#[test]
fn a_completion_leaves_the_value_in_place() {
    let (completer, fut) = Completer::<String>::new();
    let mut completion = fut.completion();
    assert!(poll_once(&mut completion).is_pending());
    completer.set_result("kept".to_owned());
    assert!(poll_once(&mut completion).is_ready());
    assert_eq!(fut.into_result().unwrap(), "kept");
}
