//! Internals of the pool: thread accounting.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use flotilla_core::testing::pin_to_cpu;

use super::ThreadPoolExecutor;

#[test]
fn an_idle_worker_is_reused_before_a_new_thread_starts() {
    let pool = ThreadPoolExecutor::builder()
        .max_workers(8)
        .build()
        .unwrap();
    assert_eq!(pool.num_threads(), 0, "threads start lazily");
    for i in 0..200 {
        let fut = pool.submit(move || i).unwrap();
        assert_eq!(fut.result_timeout(Duration::from_secs(30)).unwrap(), i);
    }
    // The worker marks itself idle before publishing each result, so every next
    // submission finds it.
    assert_eq!(pool.num_threads(), 1);
    assert_eq!(*pool.pool.lock_alive(), 1);
    assert!(pool.pool.idle.load(Ordering::SeqCst) <= 1);
}

#[test]
fn map_batches_a_long_input_by_default_and_not_a_short_or_unknown_one() {
    let pool = ThreadPoolExecutor::builder()
        .max_workers(2)
        .build()
        .unwrap();
    fn chunk<I: Iterator<Item = u64>>(mut map: super::Map<I, u64>) -> usize
    where
        I::Item: Send + 'static,
    {
        map.chunk()
    }
    // 16 chunks per worker at least, at most 64 items each.
    assert_eq!(chunk(pool.map(|x: u64| x, 0..100_000)), 64);
    assert_eq!(chunk(pool.map(|x: u64| x, 0..320)), 10);
    assert_eq!(chunk(pool.map(|x: u64| x, 0..10)), 1);
    // A quarter of the look-ahead at most.
    assert_eq!(chunk(pool.map(|x: u64| x, 0..100_000).buffer_size(8)), 2);
    // An input of unknown length is not batched unless asked.
    let unknown = (0..100_000u64).filter(|x| x % 2 == 0);
    assert_eq!(chunk(pool.map(|x: u64| x, unknown.clone())), 1);
    assert_eq!(chunk(pool.map(|x: u64| x, unknown).chunksize(50)), 50);
}

/// Issue 15's idle slow mode: a worker that blocked between back-to-back tasks had to be
/// woken for each, at 50-120 µs a wake-up on a VM. A worker that finds the queue empty
/// polls it before it blocks, so a caller that submits again soon after its result is
/// back finds the worker still polling. Here the caller waits 15 µs between tasks,
/// longer than crossbeam's receive spins before it blocks, well inside the worker's
/// poll. The caller and the worker are pinned to two CPUs: on one, the worker runs only
/// when the caller stops, and never reaches its receive between tasks at all. The rounds
/// are retried (a round may be preempted on a loaded machine): the test passes once 20
/// rounds in a row took their task without the worker blocking, and fails if that never
/// happens in 2,000 rounds, as when every idle worker went straight to the blocking
/// receive.
#[test]
fn a_worker_polls_the_empty_queue_before_it_blocks() {
    let wait = Duration::from_secs(30);
    std::thread::spawn(move || {
        pin_to_cpu(0);
        let pool = ThreadPoolExecutor::builder()
            .max_workers(1)
            .initializer(|| pin_to_cpu(1))
            .build()
            .unwrap();
        pool.submit(|| ()).unwrap().result_timeout(wait).unwrap();
        let mut in_a_row = 0;
        for _ in 0..2_000 {
            let before = pool.pool.blocked.load(Ordering::SeqCst);
            pool.submit(|| ()).unwrap().result_timeout(wait).unwrap();
            let pause = Instant::now();
            while pause.elapsed() < Duration::from_micros(15) {
                std::hint::spin_loop();
            }
            pool.submit(|| ()).unwrap().result_timeout(wait).unwrap();
            if pool.pool.blocked.load(Ordering::SeqCst) == before {
                in_a_row += 1;
                if in_a_row == 20 {
                    return;
                }
            } else {
                in_a_row = 0;
            }
        }
        panic!("the worker blocked between tasks 15 µs apart in every round");
    })
    .join()
    .unwrap();
}

/// An idle pool leaves half the CPUs (at least one) to its callers: the workers beyond
/// that block at once instead of polling.
#[test]
fn at_most_half_the_cpus_of_workers_poll_an_empty_queue() {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let max = (cpus / 2).max(1);
    let workers = 2 * max + 2;
    let pool = ThreadPoolExecutor::builder()
        .max_workers(workers)
        .build()
        .unwrap();
    assert_eq!(pool.pool.max_spinning, max);
    // Every worker busy at once, then all of them idle together.
    let barrier = Arc::new(Barrier::new(workers + 1));
    let futures: Vec<_> = (0..workers)
        .map(|_| {
            let barrier = Arc::clone(&barrier);
            pool.submit(move || {
                barrier.wait();
            })
            .unwrap()
        })
        .collect();
    barrier.wait();
    for fut in futures {
        fut.result_timeout(Duration::from_secs(30)).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while pool.pool.spinning.load(Ordering::SeqCst) > 0
        || pool.pool.blocked.load(Ordering::SeqCst) < workers
    {
        assert!(
            Instant::now() < deadline,
            "the idle workers did not all block"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let most = pool.pool.most_spinning.load(Ordering::SeqCst);
    assert!(
        most <= max,
        "{most} workers polled at once, more than {max}"
    );
}
