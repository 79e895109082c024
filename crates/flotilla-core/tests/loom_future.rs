//! A loom model of the future's state byte (module docs of `future.rs`): every
//! interleaving of a completion against a cancel, a blocking wait, a callback
//! registration, a reader and a taker, within loom's bounds.
//!
//! Built only with `--cfg loom`, which puts the future on loom's atomics, lock and
//! condition variable. Run it (in its own target dir, so the usual build is kept) with:
//!
//! ```text
//! RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 \
//!     cargo test -p flotilla-core --release --test loom_future --target-dir target/loom
//! ```
#![cfg(loom)]

use std::sync::Arc;

use flotilla_core::{Completer, StartClaim, Task, TaskError};
use loom::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use loom::thread;

/// A cancel racing the worker's start: exactly one wins, and the outcome says which.
#[test]
fn cancel_against_start_has_one_winner() {
    loom::model(|| {
        let (completer, fut) = Completer::<u32>::new();
        let ran = Arc::new(AtomicUsize::new(0));
        let worker = {
            let ran = Arc::clone(&ran);
            thread::spawn(move || {
                if completer.set_running_or_notify_cancel() {
                    ran.fetch_add(1, Ordering::SeqCst);
                    completer.set_result(7);
                }
            })
        };
        let cancelled = fut.cancel();
        worker.join().unwrap();
        assert!(fut.done());
        match fut.result() {
            Ok(7) => assert!(!cancelled && ran.load(Ordering::SeqCst) == 1),
            Err(TaskError::Cancelled) => {
                assert!(cancelled && fut.cancelled() && ran.load(Ordering::SeqCst) == 0)
            }
            other => panic!("unexpected outcome {other:?}"),
        }
    });
}

/// A blocking wait racing the completion is always woken (loom reports a sleeper that
/// nobody wakes as a deadlock).
#[test]
fn a_waiter_is_never_left_asleep() {
    loom::model(|| {
        let (completer, fut) = Completer::<u32>::new();
        let waiter = {
            let fut = fut.clone();
            thread::spawn(move || {
                fut.wait();
                fut.result().unwrap()
            })
        };
        completer.run(|| 3);
        assert_eq!(waiter.join().unwrap(), 3);
    });
}

/// A callback registered while the future completes runs exactly once, with the value.
#[test]
fn a_callback_runs_once_whoever_is_first() {
    loom::model(|| {
        let (task, fut) = Task::new(|| Ok::<_, TaskError>(5u32));
        let seen = Arc::new(AtomicUsize::new(0));
        let worker = thread::spawn(move || task.run(&|| {}));
        {
            let seen = Arc::clone(&seen);
            fut.add_done_callback(move |f| {
                assert_eq!(f.result().unwrap(), 5);
                seen.fetch_add(1, Ordering::SeqCst);
            });
        }
        worker.join().unwrap();
        assert_eq!(seen.load(Ordering::SeqCst), 1);
    });
}

/// A cancel racing a queued task's run and a callback: the callback sees the one
/// outcome, and the job ran only when the cancel lost.
#[test]
fn cancel_against_a_task_run_with_a_callback() {
    loom::model(|| {
        let ran = Arc::new(AtomicUsize::new(0));
        let (task, fut) = {
            let ran = Arc::clone(&ran);
            Task::new(move || {
                ran.fetch_add(1, Ordering::SeqCst);
                Ok::<_, TaskError>(1u8)
            })
        };
        let called = Arc::new(AtomicUsize::new(0));
        {
            let called = Arc::clone(&called);
            fut.add_done_callback(move |_| {
                called.fetch_add(1, Ordering::SeqCst);
            });
        }
        let worker = thread::spawn(move || task.run(&|| {}));
        let cancelled = fut.cancel();
        worker.join().unwrap();
        assert_eq!(called.load(Ordering::SeqCst), 1);
        assert_eq!(cancelled, fut.cancelled());
        assert_eq!(ran.load(Ordering::SeqCst), usize::from(!cancelled));
    });
}

/// A reader cloning the value racing a taker moving it out: the taker always gets it,
/// and the reader gets a clone or, once it is taken, `ResultTaken`.
#[test]
fn a_reader_and_a_taker_do_not_overlap() {
    loom::model(|| {
        let (completer, fut) = Completer::<String>::new();
        completer.set_result("v".to_owned());
        let reader = {
            let fut = fut.clone();
            thread::spawn(move || fut.result())
        };
        let keep = fut.clone();
        let taken = fut.into_result();
        assert_eq!(taken.unwrap(), "v");
        match reader.join().unwrap() {
            Ok(v) => assert_eq!(v, "v"),
            Err(TaskError::ResultTaken) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
        drop(keep);
    });
}

/// A claimed future (`Completer::claimed`): a cancel racing the executor's bind and the
/// worker's start through the claim word has exactly one winner, and the outcome and
/// whether the task ran agree with it.
#[test]
fn a_claimed_cancel_against_bind_and_start_has_one_winner() {
    /// The claim word: 0 not handed over, 1 queued, 2 started, 3 revoked.
    struct Word(AtomicU64);

    impl StartClaim for Word {
        fn revoke(&self, _token: u64) -> bool {
            matches!(
                self.0
                    .compare_exchange(1, 3, Ordering::AcqRel, Ordering::Acquire),
                Ok(_) | Err(3)
            )
        }
    }

    loom::model(|| {
        let word = Arc::new(Word(AtomicU64::new(0)));
        let (completer, fut) = Completer::<u32>::claimed(word.clone());
        let ran = Arc::new(AtomicUsize::new(0));
        let executor = {
            let ran = Arc::clone(&ran);
            thread::spawn(move || {
                // Hand the task over: its word first, then the binding.
                word.0.store(1, Ordering::Release);
                if !completer.bind(7) {
                    completer.cancel(); // cancelled before: never sent
                    return;
                }
                // The worker starts it, or finds it revoked and skips it.
                if word
                    .0
                    .compare_exchange(1, 2, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    ran.fetch_add(1, Ordering::SeqCst);
                    // The relay learns of the start with the answer.
                    assert!(completer.set_running_or_notify_cancel());
                    completer.set_result(7);
                } else {
                    completer.cancel();
                }
            })
        };
        let cancelled = fut.cancel();
        executor.join().unwrap();
        assert!(fut.done());
        match fut.result() {
            Ok(7) => assert!(!cancelled && ran.load(Ordering::SeqCst) == 1),
            Err(TaskError::Cancelled) => {
                assert!(cancelled && ran.load(Ordering::SeqCst) == 0)
            }
            other => panic!("unexpected outcome {other:?}"),
        }
    });
}
