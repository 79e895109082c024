//! Helpers shared by the flotilla-async tests: the bound on every await, a thread pool
//! of a given size, and a ticker that proves a runtime thread is not blocked.

#![allow(dead_code, reason = "each test file uses some of these helpers")]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use flotilla_thread::ThreadPoolExecutor;

/// How long a test waits for anything before it fails instead of hanging.
pub(crate) const LONG: Duration = Duration::from_secs(60);

/// Awaits `f` for at most [`LONG`]: a test that would hang fails instead.
pub(crate) async fn bounded<F: std::future::IntoFuture>(f: F) -> F::Output {
    tokio::time::timeout(LONG, f)
        .await
        .expect("timed out: what was awaited never completed")
}

/// A thread pool of `workers` threads.
pub(crate) fn thread_pool(workers: usize) -> ThreadPoolExecutor {
    ThreadPoolExecutor::builder()
        .max_workers(workers)
        .build()
        .unwrap()
}

/// A task on the current runtime counting a tick every `period`: it advances only while
/// nothing blocks the runtime's threads. Abort it when done.
pub(crate) fn ticker(period: Duration) -> (Arc<AtomicU32>, tokio::task::JoinHandle<()>) {
    let ticks = Arc::new(AtomicU32::new(0));
    let handle = tokio::spawn({
        let ticks = Arc::clone(&ticks);
        async move {
            loop {
                tokio::time::sleep(period).await;
                ticks.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    (ticks, handle)
}
