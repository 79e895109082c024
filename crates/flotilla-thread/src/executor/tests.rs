//! Internals of the pool: thread accounting.

use std::sync::atomic::Ordering;
use std::time::Duration;

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
