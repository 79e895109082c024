//! Stress tests of the lock-free Future state machine (see the module docs of
//! `future.rs`): many rounds of every kind of observer racing every kind of
//! completion, checking after each round that exactly one transition won and that every
//! observer saw its outcome exactly once.
//!
//! Each test runs its rounds in a thread and fails if they are not finished within
//! [`LONG`], so a lost wake-up fails the test instead of hanging it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, mpsc};
use std::task::{Context, Wake, Waker};
use std::thread;
use std::time::Duration;

use flotilla_core::{Completer, Future, Task, TaskError};

const LONG: Duration = Duration::from_secs(60);
const ROUNDS: usize = 5_000;

/// Runs `body` in a thread; fails if it panics or does not finish within [`LONG`].
fn bounded(name: &str, body: impl FnOnce() + Send + 'static) {
    let (done, finished) = mpsc::channel();
    let worker = thread::spawn(move || {
        body();
        let _ = done.send(());
    });
    match finished.recv_timeout(LONG) {
        Ok(()) => worker.join().expect("the stress body panicked"),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            if let Err(panic) = worker.join() {
                std::panic::resume_unwind(panic);
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("{name}: not finished after {LONG:?}: a lost wake-up or a livelock")
        }
    }
}

/// A waker that counts its wakes.
struct Counting(AtomicUsize);

impl Wake for Counting {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn cancel_racing_start_and_completion_has_one_winner_every_time() {
    bounded("cancel vs start", || {
        for round in 0..ROUNDS {
            let (completer, fut) = Completer::<usize>::new();
            let start = Arc::new(Barrier::new(2));
            let canceller = {
                let (fut, start) = (fut.clone(), Arc::clone(&start));
                thread::spawn(move || {
                    start.wait();
                    fut.cancel()
                })
            };
            start.wait();
            let ran = completer.set_running_or_notify_cancel();
            if ran {
                completer.set_result(round);
            } else {
                drop(completer);
            }
            let cancelled = canceller.join().unwrap();
            assert_ne!(
                ran, cancelled,
                "round {round}: exactly one of start and cancel wins"
            );
            match fut.into_result_timeout(LONG) {
                Ok(value) => assert!(ran && value == round),
                Err(TaskError::Cancelled) => assert!(cancelled),
                Err(e) => panic!("round {round}: unexpected outcome {e}"),
            }
        }
    });
}

#[test]
fn every_kind_of_waiter_sees_a_racing_completion_exactly_once() {
    bounded("waiters vs completion", || {
        for round in 0..ROUNDS {
            let (task, fut) = Task::new(move || Ok::<_, TaskError>(vec![round]));
            let callbacks = Arc::new(AtomicUsize::new(0));
            let wakes = Arc::new(Counting(AtomicUsize::new(0)));
            let start = Arc::new(Barrier::new(5));
            let mut observers = Vec::new();

            // A sleeper that clones the value.
            observers.push({
                let (fut, start) = (fut.clone(), Arc::clone(&start));
                thread::spawn(move || {
                    start.wait();
                    match fut.result_timeout(LONG) {
                        Ok(v) => assert_eq!(v, [round]),
                        Err(TaskError::ResultTaken) => {}
                        Err(e) => panic!("result: {e}"),
                    }
                    0
                })
            });
            // A taker.
            observers.push({
                let (fut, start) = (fut.clone(), Arc::clone(&start));
                thread::spawn(move || {
                    start.wait();
                    match fut.into_result_timeout(LONG) {
                        Ok(v) => {
                            assert_eq!(v, [round]);
                            1
                        }
                        Err(TaskError::ResultTaken) => 0,
                        Err(e) => panic!("into_result: {e}"),
                    }
                })
            });
            // A callback and a polled waker, registered while the task may complete.
            observers.push({
                let (fut, start) = (fut.clone(), Arc::clone(&start));
                let (callbacks, wakes) = (Arc::clone(&callbacks), Arc::clone(&wakes));
                thread::spawn(move || {
                    start.wait();
                    fut.add_done_callback(move |f| {
                        assert!(f.done());
                        callbacks.fetch_add(1, Ordering::SeqCst);
                    });
                    let waker = Waker::from(wakes);
                    let mut completion = std::pin::pin!(fut.completion());
                    let mut cx = Context::from_waker(&waker);
                    if completion.as_mut().poll(&mut cx).is_pending() {
                        assert!(fut.wait_timeout(LONG), "the completion never came");
                    }
                    0
                })
            });
            // The worker.
            observers.push({
                let start = Arc::clone(&start);
                thread::spawn(move || {
                    start.wait();
                    task.run(&|| {});
                    0
                })
            });
            start.wait();
            let takers: usize = observers.into_iter().map(|t| t.join().unwrap()).sum();
            // The main thread is a second taker.
            let mine = match fut.into_result_timeout(LONG) {
                Ok(v) => {
                    assert_eq!(v, [round]);
                    1
                }
                Err(TaskError::ResultTaken) => 0,
                Err(e) => panic!("round {round}: {e}"),
            };
            assert_eq!(
                takers + mine,
                1,
                "round {round}: exactly one taker gets the value"
            );
            assert_eq!(
                callbacks.load(Ordering::SeqCst),
                1,
                "round {round}: one callback"
            );
            assert!(
                wakes.0.load(Ordering::SeqCst) <= 1,
                "round {round}: woken once at most"
            );
        }
    });
}

#[test]
fn a_task_racing_cancel_runs_or_is_cancelled_never_both() {
    bounded("task vs cancel", || {
        for round in 0..ROUNDS {
            let ran = Arc::new(AtomicUsize::new(0));
            let (task, fut) = {
                let ran = Arc::clone(&ran);
                Task::new(move || {
                    ran.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, TaskError>(round)
                })
            };
            let start = Arc::new(Barrier::new(2));
            let worker = {
                let start = Arc::clone(&start);
                thread::spawn(move || {
                    start.wait();
                    task.run(&|| {});
                })
            };
            start.wait();
            let cancelled = fut.cancel();
            worker.join().unwrap();
            let ran = ran.load(Ordering::SeqCst);
            assert_eq!(ran + usize::from(cancelled), 1, "round {round}");
            assert_eq!(fut.cancelled(), cancelled);
            let outcome = fut.result_timeout(LONG);
            assert_eq!(outcome.is_ok(), ran == 1, "round {round}: {outcome:?}");
        }
    });
}

#[test]
fn a_dropped_task_breaks_its_future_and_drops_its_closure() {
    let dropped = Arc::new(AtomicUsize::new(0));
    struct Guard(Arc<AtomicUsize>);
    impl Drop for Guard {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let guard = Guard(Arc::clone(&dropped));
    let (task, fut): (Task, Future<u8>) = Task::new(move || {
        let _guard = &guard;
        Ok(1)
    });
    drop(task);
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        1,
        "the closure is dropped with the task"
    );
    assert!(matches!(
        fut.result_timeout(LONG),
        Err(TaskError::Broken { .. })
    ));
}

#[test]
fn handles_stay_send_sync_and_unwind_safe() {
    fn check<X: Send + Sync + std::panic::UnwindSafe + std::panic::RefUnwindSafe>() {}
    check::<Future<std::cell::Cell<u8>>>();
    check::<Completer<std::cell::Cell<u8>>>();
    fn send<X: Send>() {}
    send::<Task>();
}
