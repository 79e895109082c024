//! ThreadPoolExecutor: submission, failures, initializers, shutdown, drop.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, mpsc};
use std::time::Duration;

use flotilla_core::{Executor, ReturnWhen, TaskError, as_completed_timeout, wait_timeout};
use flotilla_thread::{Error, ThreadPoolExecutor};

const LONG: Duration = Duration::from_secs(30);

fn pool(workers: usize) -> ThreadPoolExecutor {
    ThreadPoolExecutor::builder()
        .max_workers(workers)
        .build()
        .unwrap()
}

/// A gate tasks block on until the test opens it; bounded so a bug cannot hang a test.
fn gate() -> (mpsc::Sender<()>, Arc<std::sync::Mutex<mpsc::Receiver<()>>>) {
    let (tx, rx) = mpsc::channel();
    (tx, Arc::new(std::sync::Mutex::new(rx)))
}

#[test]
fn default_max_workers_is_pythons() {
    let cpus = std::thread::available_parallelism().unwrap().get();
    assert_eq!(ThreadPoolExecutor::new().max_workers(), (cpus + 4).min(32));
    assert!(matches!(
        ThreadPoolExecutor::builder().max_workers(0).build(),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn a_panicking_task_fails_only_itself() {
    let pool = pool(1);
    let bad = pool.submit(|| -> u8 { panic!("task exploded") }).unwrap();
    let good = pool
        .submit(|| std::thread::current().name().map(str::to_owned))
        .unwrap();
    match bad.result_timeout(LONG) {
        Err(TaskError::Panicked { message }) => assert_eq!(message, "task exploded"),
        other => panic!("unexpected {other:?}"),
    }
    assert!(
        good.result_timeout(LONG)
            .unwrap()
            .unwrap()
            .starts_with("ThreadPoolExecutor-")
    );
    assert_eq!(pool.num_threads(), 1, "the worker survived the panic");
}

#[test]
fn try_submit_turns_err_into_a_failure() {
    let pool = pool(2);
    let fut = pool
        .try_submit(|| std::fs::read("/nonexistent/flotilla"))
        .unwrap();
    let err = fut.result_timeout(LONG).unwrap_err();
    assert!(err.downcast_ref::<std::io::Error>().is_some());
    let (done, _) = wait_timeout([&fut], ReturnWhen::FirstException, LONG);
    assert_eq!(done.len(), 1);
}

#[test]
fn thread_name_prefix_names_the_workers() {
    let pool = ThreadPoolExecutor::builder()
        .max_workers(1)
        .thread_name_prefix("crawler")
        .build()
        .unwrap();
    let name = pool
        .submit(|| std::thread::current().name().map(str::to_owned))
        .unwrap();
    assert_eq!(
        name.result_timeout(LONG).unwrap().as_deref(),
        Some("crawler_0")
    );
}

#[test]
fn workers_never_exceed_max_workers() {
    let pool = pool(3);
    let barrier = Arc::new(Barrier::new(3));
    let futures: Vec<_> = (0..12)
        .map(|_| {
            let barrier = Arc::clone(&barrier);
            pool.submit(move || {
                barrier.wait();
            })
            .unwrap()
        })
        .collect();
    // 12 tasks in rounds of 3: completes only if exactly three run at once.
    let (_, not_done) = wait_timeout(&futures, ReturnWhen::AllCompleted, LONG);
    assert!(not_done.is_empty());
    assert_eq!(pool.num_threads(), 3);
}

#[test]
fn submit_after_shutdown_is_an_error_not_a_panic() {
    let pool = pool(2);
    pool.shutdown(true, false);
    assert!(matches!(pool.submit(|| 1), Err(TaskError::ShutDown)));
    assert!(matches!(
        Executor::try_submit(&pool, || Ok::<_, std::fmt::Error>(1)),
        Err(TaskError::ShutDown)
    ));
    pool.shutdown(true, false); // twice is harmless
}

#[test]
fn shutdown_without_cancel_still_runs_queued_tasks() {
    let pool = pool(1);
    let (open, gate) = gate();
    let blocker = {
        let gate = Arc::clone(&gate);
        pool.submit(move || gate.lock().unwrap().recv_timeout(LONG).is_ok())
            .unwrap()
    };
    let queued: Vec<_> = (0..3).map(|i| pool.submit(move || i).unwrap()).collect();
    pool.shutdown(false, false);
    open.send(()).unwrap();
    assert!(blocker.result_timeout(LONG).unwrap());
    for (i, f) in queued.iter().enumerate() {
        assert_eq!(f.result_timeout(LONG).unwrap(), i);
    }
}

#[test]
fn shutdown_with_cancel_futures_cancels_what_has_not_started() {
    let pool = pool(1);
    let (open, gate) = gate();
    let (started_tx, started) = mpsc::channel();
    let running = {
        let gate = Arc::clone(&gate);
        pool.submit(move || {
            started_tx.send(()).unwrap();
            gate.lock().unwrap().recv_timeout(LONG).is_ok()
        })
        .unwrap()
    };
    started.recv_timeout(LONG).unwrap();
    let queued: Vec<_> = (0..3).map(|i| pool.submit(move || i).unwrap()).collect();
    pool.shutdown(false, true);
    for f in &queued {
        assert!(f.cancelled());
    }
    assert!(!running.cancelled());
    open.send(()).unwrap();
    assert!(
        running.result_timeout(LONG).unwrap(),
        "the running task finishes"
    );
    assert!(pool.shutdown_timeout(LONG, false));
}

#[test]
fn dropping_the_executor_waits_for_every_task() {
    let done = Arc::new(AtomicUsize::new(0));
    {
        let pool = pool(2);
        for _ in 0..6 {
            let done = Arc::clone(&done);
            pool.submit(move || {
                std::thread::sleep(Duration::from_millis(10));
                done.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap();
        }
    } // like leaving Python's `with` block
    assert_eq!(done.load(Ordering::SeqCst), 6);
}

#[test]
fn shutdown_with_wait_from_inside_a_task_does_not_deadlock() {
    let pool = Arc::new(pool(2));
    let inner = Arc::clone(&pool);
    let fut = pool
        .submit(move || {
            inner.shutdown(true, false);
            "survived"
        })
        .unwrap();
    assert_eq!(fut.result_timeout(LONG).unwrap(), "survived");
    assert!(pool.shutdown_timeout(LONG, false));
}

#[test]
fn a_failing_initializer_breaks_the_pool() {
    let pool = ThreadPoolExecutor::builder()
        .max_workers(2)
        .initializer(|| panic!("no config file"))
        .build()
        .unwrap();
    let first = pool.submit(|| 1).unwrap();
    match first.result_timeout(LONG) {
        Err(TaskError::Broken { reason }) => {
            assert!(
                reason.contains("initializer") && reason.contains("no config file"),
                "{reason}"
            )
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(matches!(pool.submit(|| 2), Err(TaskError::Broken { .. })));
}

#[test]
fn an_initializer_runs_once_per_thread_before_tasks() {
    let inits = Arc::new(AtomicUsize::new(0));
    let pool = {
        let inits = Arc::clone(&inits);
        ThreadPoolExecutor::builder()
            .max_workers(2)
            .try_initializer(move || {
                inits.fetch_add(1, Ordering::SeqCst);
                Ok::<(), std::fmt::Error>(())
            })
            .build()
            .unwrap()
    };
    let barrier = Arc::new(Barrier::new(2));
    let futures: Vec<_> = (0..2)
        .map(|_| {
            let (barrier, inits) = (Arc::clone(&barrier), Arc::clone(&inits));
            pool.submit(move || {
                barrier.wait();
                inits.load(Ordering::SeqCst)
            })
            .unwrap()
        })
        .collect();
    for f in futures {
        assert!(f.result_timeout(LONG).unwrap() >= 1);
    }
    drop(pool);
    assert_eq!(inits.load(Ordering::SeqCst), 2);
}

#[test]
fn a_done_callback_may_submit_to_the_same_pool() {
    let pool = Arc::new(pool(1));
    let (tx, rx) = mpsc::channel();
    let first = pool.submit(|| 1).unwrap();
    let again = Arc::clone(&pool);
    first.add_done_callback(move |f| {
        let n = f.result().unwrap();
        let next = again.submit(move || n + 1).unwrap();
        next.add_done_callback(move |f| tx.send(f.result().unwrap()).unwrap());
    });
    assert_eq!(rx.recv_timeout(LONG).unwrap(), 2);
}

#[test]
fn as_completed_over_pool_futures_yields_each_once() {
    let pool = pool(4);
    let futures: Vec<_> = [40u64, 10, 30, 20]
        .into_iter()
        .map(|ms| {
            pool.submit(move || {
                std::thread::sleep(Duration::from_millis(ms * 5));
                ms
            })
            .unwrap()
        })
        .collect();
    let order: Vec<u64> = as_completed_timeout(futures, LONG)
        .map(|f| f.unwrap().result().unwrap())
        .collect();
    let mut sorted = order.clone();
    sorted.sort_unstable();
    assert_eq!(order.len(), 4);
    assert_eq!(sorted, [10, 20, 30, 40]);
}

#[test]
fn pool_futures_are_awaitable() {
    let pool = pool(1);
    let fut = pool.submit(|| "async").unwrap();
    let value = {
        use std::task::{Context, Poll, Wake, Waker};
        struct Unpark(std::thread::Thread);
        impl Wake for Unpark {
            fn wake(self: Arc<Self>) {
                self.0.unpark();
            }
        }
        let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        let mut f = std::pin::pin!(async { fut.await });
        let deadline = std::time::Instant::now() + LONG;
        loop {
            if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                break v;
            }
            assert!(std::time::Instant::now() < deadline);
            std::thread::park_timeout(Duration::from_millis(100));
        }
    };
    assert_eq!(value.unwrap(), "async");
}

#[test]
fn public_types_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<ThreadPoolExecutor>();
}
