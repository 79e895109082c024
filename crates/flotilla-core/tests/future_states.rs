//! The Future state machine as users and executor authors see it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use flotilla_core::{Completer, Future, State, TaskError};

/// Every wait in these tests is bounded by this: long enough never to fire on a loaded
/// machine, short enough that a bug fails the test instead of hanging it.
const LONG: Duration = Duration::from_secs(30);

#[test]
fn pending_running_finished() {
    let (completer, fut) = Completer::new();
    assert_eq!(fut.state(), State::Pending);
    assert!(!fut.done() && !fut.running() && !fut.cancelled());
    assert!(completer.set_running_or_notify_cancel());
    assert_eq!(fut.state(), State::Running);
    assert!(fut.running());
    assert!(!fut.cancel(), "a running task cannot be cancelled");
    completer.set_result(5);
    assert_eq!(fut.state(), State::Finished);
    assert!(fut.done() && !fut.running());
    assert_eq!(fut.result_timeout(LONG).unwrap(), 5);
    assert_eq!(fut.result().unwrap(), 5, "result can be read again");
    assert!(!fut.cancel(), "a finished task cannot be cancelled");
}

#[test]
fn cancel_before_start() {
    let (completer, fut) = Completer::<i32>::new();
    assert!(fut.cancel());
    assert!(fut.cancel(), "cancelling twice still reports cancelled");
    assert!(fut.cancelled() && fut.done());
    assert!(!completer.set_running_or_notify_cancel());
    assert!(completer.is_cancelled());
    completer.set_result(1); // ignored: the future stays cancelled
    assert!(matches!(fut.result(), Err(TaskError::Cancelled)));
    assert!(matches!(fut.error(), Err(TaskError::Cancelled)));
}

#[test]
fn result_times_out_and_the_task_goes_on() {
    let (completer, fut) = Completer::new();
    assert!(completer.set_running_or_notify_cancel());
    assert!(matches!(
        fut.result_timeout(Duration::from_millis(20)),
        Err(TaskError::TimedOut)
    ));
    assert!(matches!(
        fut.error_timeout(Duration::ZERO),
        Err(TaskError::TimedOut)
    ));
    assert!(!fut.wait_timeout(Duration::ZERO));
    completer.set_result("late");
    assert_eq!(fut.result_timeout(LONG).unwrap(), "late");
}

#[test]
fn result_from_another_thread_wakes_the_waiter() {
    let (completer, fut) = Completer::new();
    let waiter = {
        let fut = fut.clone();
        std::thread::spawn(move || fut.result_timeout(LONG))
    };
    std::thread::sleep(Duration::from_millis(20));
    completer.set_result(String::from("hello"));
    assert_eq!(waiter.join().unwrap().unwrap(), "hello");
}

#[test]
fn into_result_moves_the_value_out() {
    struct NotClone(u8);
    let (completer, fut) = Completer::new();
    let other = fut.clone();
    completer.set_result(NotClone(9));
    assert_eq!(fut.into_result_timeout(LONG).unwrap().0, 9);
    assert!(other.done());
    assert!(matches!(other.into_result(), Err(TaskError::ResultTaken)));
}

#[test]
fn error_reports_the_failure_or_none() {
    let ok = Future::ready(1);
    assert!(ok.error().unwrap().is_none());
    let (completer, failed) = Completer::<u8>::new();
    completer.set_error(TaskError::failed(std::fmt::Error));
    let err = failed.error().unwrap().expect("a failure");
    assert!(err.downcast_ref::<std::fmt::Error>().is_some());
    assert!(err.is_task_failure());
    assert!(matches!(failed.result(), Err(TaskError::Failed(_))));
}

#[test]
fn run_catches_a_panic_with_its_message() {
    let (completer, fut) = Completer::<()>::new();
    completer.run(|| panic!("the disk is full: {}", 99));
    match fut.result() {
        Err(TaskError::Panicked { message }) => assert_eq!(message, "the disk is full: 99"),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn run_fallible_turns_err_into_failure() {
    let (completer, fut) = Completer::<i32>::new();
    completer.run_fallible(|| "nope".parse::<i32>());
    let err = fut.result().unwrap_err();
    assert!(err.downcast_ref::<std::num::ParseIntError>().is_some());
    assert!(err.to_string().contains("the task failed"));
}

#[test]
fn a_dropped_completer_breaks_the_future_instead_of_hanging_it() {
    let (completer, fut) = Completer::<i32>::new();
    drop(completer);
    assert!(matches!(
        fut.result_timeout(LONG),
        Err(TaskError::Broken { .. })
    ));
}

#[test]
fn callbacks_run_in_order_on_completion_and_at_once_when_done() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let (completer, fut) = Completer::new();
    for name in ["first", "second"] {
        let log = Arc::clone(&log);
        fut.add_done_callback(move |f: &Future<i32>| {
            log.lock()
                .unwrap()
                .push(format!("{name} saw {}", f.result().unwrap()));
        });
    }
    assert!(log.lock().unwrap().is_empty(), "not done yet, nothing runs");
    completer.set_result(42);
    {
        let log = Arc::clone(&log);
        fut.add_done_callback(move |_| log.lock().unwrap().push("late".into()));
    }
    assert_eq!(
        *log.lock().unwrap(),
        ["first saw 42", "second saw 42", "late"]
    );
}

#[test]
fn a_panicking_callback_poisons_nothing() {
    let ran = Arc::new(AtomicUsize::new(0));
    let (completer, fut) = Completer::new();
    fut.add_done_callback(|_| panic!("callback bug"));
    {
        let ran = Arc::clone(&ran);
        fut.add_done_callback(move |_| {
            ran.fetch_add(1, Ordering::SeqCst);
        });
    }
    completer.set_result(7);
    assert_eq!(ran.load(Ordering::SeqCst), 1, "later callbacks still run");
    assert_eq!(fut.result().unwrap(), 7, "the future keeps its value");
    fut.add_done_callback(|_| panic!("again"));
    assert_eq!(fut.result().unwrap(), 7);
}

#[test]
fn callbacks_run_on_cancel() {
    let (tx, rx) = mpsc::channel();
    let (_completer, fut) = Completer::<i32>::new();
    fut.add_done_callback(move |f| tx.send(f.cancelled()).unwrap());
    assert!(fut.cancel());
    assert!(rx.recv_timeout(LONG).unwrap());
}

#[test]
fn a_callback_may_use_the_future_without_deadlock() {
    let (completer, fut) = Completer::new();
    let (tx, rx) = mpsc::channel();
    fut.add_done_callback(move |f: &Future<u8>| {
        // Re-entering the future from its own callback must not deadlock.
        f.add_done_callback(|_| {});
        tx.send((f.done(), f.cancel(), f.result().unwrap()))
            .unwrap();
    });
    completer.set_result(3);
    assert_eq!(rx.recv_timeout(LONG).unwrap(), (true, false, 3));
}

/// A tiny executor for `.await`: parks the thread until the waker unparks it.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    use std::task::{Context, Poll, Wake, Waker};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    let deadline = std::time::Instant::now() + LONG;
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the future never woke us"
        );
        std::thread::park_timeout(Duration::from_millis(100));
    }
}

#[test]
fn awaitable_without_a_runtime() {
    let (completer, fut) = Completer::new();
    let by_ref = fut.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        completer.set_result(vec![1, 2]);
    });
    assert_eq!(block_on(async { (&by_ref).await }).unwrap(), [1, 2]);
    assert_eq!(block_on(async { fut.await }).unwrap(), [1, 2]);
    assert!(matches!(by_ref.result(), Err(TaskError::ResultTaken)));
}

#[test]
fn public_types_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Future<Vec<u8>>>();
    send_sync::<Completer<Vec<u8>>>();
    send_sync::<TaskError>();
    send_sync::<flotilla_core::CancelToken>();
    send_sync::<flotilla_core::ResultFuture<String>>();
}

#[test]
fn cancel_racing_set_running_has_exactly_one_winner() {
    for _ in 0..2000 {
        let (completer, fut) = Completer::<u8>::new();
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let canceller = {
            let (fut, barrier) = (fut.clone(), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                fut.cancel()
            })
        };
        barrier.wait();
        let started = completer.set_running_or_notify_cancel();
        let cancelled = canceller.join().unwrap();
        assert_ne!(started, cancelled, "exactly one of them wins");
        if started {
            completer.set_result(1);
            assert_eq!(fut.result_timeout(LONG).unwrap(), 1);
        } else {
            assert!(matches!(
                fut.result_timeout(LONG),
                Err(TaskError::Cancelled)
            ));
        }
    }
}

/// A claim whose word says whether the worker started the task, and which counts the
/// revokes it was asked for.
struct Word {
    started: std::sync::atomic::AtomicBool,
    revoked: AtomicUsize,
}

impl flotilla_core::StartClaim for Word {
    fn revoke(&self, token: u64) -> bool {
        assert_eq!(token, 42, "the token bound is the one revoked");
        if self.started.load(Ordering::SeqCst) {
            return false;
        }
        self.revoked.fetch_add(1, Ordering::SeqCst);
        true
    }
}

fn word() -> Arc<Word> {
    Arc::new(Word {
        started: false.into(),
        revoked: AtomicUsize::new(0),
    })
}

#[test]
fn a_claimed_future_cancels_through_its_claim_once_bound() {
    // Cancelled before it was bound: no revoke, and it can no longer be bound.
    let claim = word();
    let (completer, fut) = Completer::<u8>::claimed(claim.clone());
    assert!(fut.cancel());
    assert!(!completer.bind(42));
    assert_eq!(claim.revoked.load(Ordering::SeqCst), 0);
    assert!(matches!(fut.result(), Err(TaskError::Cancelled)));

    // Bound, not started: the cancel revokes the claim, and the executor then skips it.
    let claim = word();
    let (completer, fut) = Completer::<u8>::claimed(claim.clone());
    assert!(completer.bind(42));
    assert!(
        completer.bind(42),
        "binding again to the same token is no change"
    );
    assert!(!completer.bind(43), "a future is bound to one token");
    assert!(fut.cancel());
    assert_eq!(claim.revoked.load(Ordering::SeqCst), 1);
    assert!(fut.cancel(), "a second cancel finds it cancelled");
    assert_eq!(claim.revoked.load(Ordering::SeqCst), 1);
    assert!(!completer.set_running_or_notify_cancel());

    // Bound and started elsewhere: the cancel fails and the future is running.
    let claim = word();
    let (completer, fut) = Completer::<u8>::claimed(claim.clone());
    assert!(completer.bind(42));
    assert_eq!(fut.state(), State::Pending);
    claim.started.store(true, Ordering::SeqCst);
    assert!(!fut.cancel());
    assert_eq!(fut.state(), State::Running);
    assert!(
        completer.set_running_or_notify_cancel(),
        "the relay's start is no change"
    );
    completer.set_result(9);
    assert_eq!(fut.result_timeout(LONG).unwrap(), 9);
    assert!(!fut.cancel());
}

#[test]
fn a_future_without_a_claim_binds_unless_cancelled() {
    let (completer, fut) = Completer::<u8>::relayed();
    assert!(completer.bind(5));
    assert!(fut.cancel());
    assert!(!completer.bind(5));
}
