//! ThreadPoolExecutor::map: ordered, lazy, stops at the first failure, cancels on drop.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use flotilla_core::TaskError;
use flotilla_thread::ThreadPoolExecutor;
use proptest::prelude::*;

const LONG: Duration = Duration::from_secs(30);

fn pool(workers: usize) -> ThreadPoolExecutor {
    ThreadPoolExecutor::builder()
        .max_workers(workers)
        .build()
        .unwrap()
}

#[derive(Debug, thiserror::Error)]
#[error("item {0} is bad")]
struct Bad(usize);

#[test]
fn the_input_is_consumed_lazily() {
    let pool = pool(2);
    let pulled = Arc::new(AtomicUsize::new(0));
    let counting = {
        let pulled = Arc::clone(&pulled);
        (0..1_000_000u64).inspect(move |_| {
            pulled.fetch_add(1, Ordering::SeqCst);
        })
    };
    let mut results = pool.map(|x| x * 2, counting).buffer_size(4);
    assert_eq!(
        pulled.load(Ordering::SeqCst),
        0,
        "nothing before the first next"
    );
    let first: Vec<u64> = results.by_ref().take(10).map(Result::unwrap).collect();
    assert_eq!(first, (0..10).map(|x| x * 2).collect::<Vec<_>>());
    // Ten consumed, at most a window ahead.
    assert!(pulled.load(Ordering::SeqCst) <= 10 + 4);
}

#[test]
fn dropping_the_iterator_cancels_what_has_not_started() {
    let pool = pool(1);
    let ran = Arc::new(AtomicUsize::new(0));
    let (open, gate) = mpsc::channel::<()>();
    let gate = Arc::new(Mutex::new(gate));
    let (started_tx, started) = mpsc::channel();
    let started_tx = Mutex::new(started_tx);
    let mut results = {
        let ran = Arc::clone(&ran);
        pool.map(
            move |i: usize| {
                if i == 1 {
                    started_tx.lock().unwrap().send(()).unwrap();
                    let _ = gate.lock().unwrap().recv_timeout(LONG);
                }
                ran.fetch_add(1, Ordering::SeqCst);
            },
            0..10,
        )
        .buffer_size(10)
    };
    // The first `next` submits the window of ten and yields task 0's result.
    results.next().unwrap().unwrap();
    started.recv_timeout(LONG).unwrap();
    drop(results);
    open.send(()).unwrap();
    pool.shutdown(true, false);
    assert_eq!(
        ran.load(Ordering::SeqCst),
        2,
        "only the finished and the running task ran"
    );
}

#[test]
fn timeout_counts_from_the_call_and_cancels_the_rest() {
    let pool = pool(1);
    let ran = Arc::new(AtomicUsize::new(0));
    let (open, gate) = mpsc::channel::<()>();
    let gate = Mutex::new(gate);
    let results: Vec<_> = {
        let ran = Arc::clone(&ran);
        pool.map(
            move |i: u64| {
                if i == 1 {
                    // Blocks until the test opens the gate, long after the timeout.
                    let _ = gate.lock().unwrap().recv_timeout(LONG);
                }
                ran.fetch_add(1, Ordering::SeqCst);
                i
            },
            0..5,
        )
        .timeout(Duration::from_millis(100))
        .collect()
    };
    // However slow the machine, item 1 cannot finish in time: the iteration ends with
    // the timeout, after at most item 0, and yields nothing after it.
    ends_with_the_timeout(&results, 2);
    open.send(()).unwrap();
    pool.shutdown(true, false);
    assert!(
        ran.load(Ordering::SeqCst) <= 2,
        "items after the blocked one were cancelled"
    );
}

#[test]
fn a_timeout_inside_a_chunk_ends_the_iteration_and_stops_the_rest() {
    let pool = pool(1);
    let ran = Arc::new(Mutex::new(Vec::new()));
    let (open, gate) = mpsc::channel::<()>();
    let gate = Mutex::new(gate);
    let results: Vec<_> = {
        let ran = Arc::clone(&ran);
        pool.map(
            move |i: u64| {
                if i == 3 {
                    // Blocks until the test opens the gate, long after the timeout.
                    let _ = gate.lock().unwrap().recv_timeout(LONG);
                }
                ran.lock().unwrap().push(i);
                i
            },
            0..8,
        )
        .chunksize(2)
        .timeout(Duration::from_millis(100))
        .collect()
    };
    // Chunk [2, 3] cannot finish in time: at most items 0 and 1 come first.
    ends_with_the_timeout(&results, 3);
    open.send(()).unwrap();
    pool.shutdown(true, false);
    assert_eq!(
        *ran.lock().unwrap(),
        [0, 1, 2, 3],
        "the running chunk ended with its item, the later chunks never ran"
    );
}

#[test]
fn map_after_shutdown_yields_shut_down() {
    let pool = pool(1);
    pool.shutdown(true, false);
    let mut results = pool.map(|x: u8| x, [1, 2]);
    assert!(matches!(results.next(), Some(Err(TaskError::ShutDown))));
    assert!(results.next().is_none());
}

#[test]
fn a_panic_stops_map_like_an_err() {
    let pool = pool(3);
    let results: Vec<_> = pool
        .map(|i: u32| if i == 2 { panic!("item {i}") } else { i }, 0..6)
        .collect();
    assert_eq!(results.len(), 3);
    assert!(matches!(&results[2], Err(TaskError::Panicked { message }) if message == "item 2"));
}

#[test]
fn chunks_keep_the_input_lazy() {
    let pool = pool(2);
    let pulled = Arc::new(AtomicUsize::new(0));
    let counting = {
        let pulled = Arc::clone(&pulled);
        (0..1_000_000u64).inspect(move |_| {
            pulled.fetch_add(1, Ordering::SeqCst);
        })
    };
    let mut results = pool.map(|x| x * 2, counting).buffer_size(16).chunksize(8);
    let first: Vec<u64> = results.by_ref().take(10).map(Result::unwrap).collect();
    assert_eq!(first, (0..10).map(|x| x * 2).collect::<Vec<_>>());
    // Ten yielded, at most buffer_size items taken ahead of them.
    assert!(pulled.load(Ordering::SeqCst) <= 10 + 16);
}

#[test]
fn a_failure_inside_a_chunk_yields_the_values_before_it_and_skips_the_rest() {
    let pool = pool(1);
    let ran = Arc::new(Mutex::new(Vec::new()));
    let results: Vec<_> = {
        let ran = Arc::clone(&ran);
        pool.try_map(
            move |i: usize| {
                ran.lock().unwrap().push(i);
                if i == 5 { Err(Bad(i)) } else { Ok(i) }
            },
            0..40,
        )
        .chunksize(8)
        .timeout(LONG)
        .collect()
    };
    assert_eq!(results.len(), 6, "{results:?}");
    assert!(
        results[..5]
            .iter()
            .enumerate()
            .all(|(i, r)| r.as_ref().ok() == Some(&i))
    );
    assert_eq!(
        results[5]
            .as_ref()
            .unwrap_err()
            .downcast_ref::<Bad>()
            .map(|b| b.0),
        Some(5)
    );
    pool.shutdown(true, false);
    let ran = ran.lock().unwrap();
    assert!(
        !ran.contains(&6) && !ran.contains(&7),
        "the failing chunk stopped at its failure: {ran:?}"
    );
}

#[test]
fn a_panic_inside_a_chunk_keeps_the_values_before_it() {
    let pool = pool(2);
    let results: Vec<_> = pool
        .map(
            |i: u32| if i == 10 { panic!("item {i}") } else { i },
            0..100,
        )
        .chunksize(4)
        .collect();
    assert_eq!(results.len(), 11);
    assert!(
        results[..10]
            .iter()
            .zip(0..)
            .all(|(r, i)| r.as_ref().ok() == Some(&i))
    );
    assert!(matches!(&results[10], Err(TaskError::Panicked { message }) if message == "item 10"));
}

#[test]
fn dropping_the_iterator_stops_a_running_chunk_between_items() {
    let pool = pool(1);
    let ran = Arc::new(Mutex::new(Vec::new()));
    let (open, gate) = mpsc::channel::<()>();
    let gate = Arc::new(Mutex::new(gate));
    let (started_tx, started) = mpsc::channel();
    let started_tx = Mutex::new(started_tx);
    let mut results = {
        let ran = Arc::clone(&ran);
        pool.map(
            move |i: usize| {
                if i == 2 {
                    started_tx.lock().unwrap().send(()).unwrap();
                    let _ = gate.lock().unwrap().recv_timeout(LONG);
                }
                ran.lock().unwrap().push(i);
            },
            0..10,
        )
        .buffer_size(10)
        .chunksize(2)
    };
    // The first `next` submits the chunks and yields item 0 from chunk [0, 1].
    results.next().unwrap().unwrap();
    started.recv_timeout(LONG).unwrap();
    drop(results);
    open.send(()).unwrap();
    pool.shutdown(true, false);
    assert_eq!(
        *ran.lock().unwrap(),
        [0, 1, 2],
        "the running chunk [2, 3] stopped after item 2; the later chunks were cancelled"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Results come in input order, up to and including the first failure, and nothing
    /// after it.
    #[test]
    fn map_is_ordered_up_to_the_first_failure(
        delays in proptest::collection::vec(0u64..300, 0..40),
        failing in proptest::collection::btree_set(0usize..40, 0..3),
        workers in 1usize..5,
        buffer in 1usize..10,
        chunk in 1usize..6,
    ) {
        let pool = pool(workers);
        let n = delays.len();
        let fail = failing.clone();
        let results: Vec<_> = pool
            .try_map(
                move |(i, us): (usize, u64)| {
                    std::thread::sleep(Duration::from_micros(us));
                    if fail.contains(&i) { Err(Bad(i)) } else { Ok(i) }
                },
                delays.into_iter().enumerate(),
            )
            .buffer_size(buffer)
            .chunksize(chunk)
            .timeout(LONG)
            .collect();
        let first_failure = failing.iter().copied().find(|&i| i < n);
        let expected_len = first_failure.map_or(n, |i| i + 1);
        prop_assert_eq!(results.len(), expected_len);
        for (i, r) in results.iter().enumerate() {
            if Some(i) == first_failure {
                let err = r.as_ref().unwrap_err();
                prop_assert_eq!(err.downcast_ref::<Bad>().map(|b| b.0), Some(i));
            } else {
                prop_assert_eq!(r.as_ref().ok(), Some(&i));
            }
        }
    }
}

/// Checks that `results` (at most `most` of them) are values up to a last
/// `TaskError::TimedOut`.
fn ends_with_the_timeout<T: std::fmt::Debug>(results: &[Result<T, TaskError>], most: usize) {
    assert!(results.len() <= most, "{results:?}");
    assert!(
        matches!(results.last(), Some(Err(TaskError::TimedOut))),
        "{results:?}"
    );
    assert!(results[..results.len() - 1].iter().all(Result::is_ok));
}
