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
