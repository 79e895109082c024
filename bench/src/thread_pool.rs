//! The thread-pool figures' contenders: flotilla's `ThreadPoolExecutor`, `threadpool`,
//! rayon, tokio's blocking pool and the bare crossbeam pool, each doing a figure's work
//! in the way its users would write it.
//!
//! Two kinds of work: *submit* (n tasks that return their index, every result collected,
//! in any order) and *map* (`x + 1` over `0..n`, results in input order). The round-trip
//! figure is submit with n = 1.

use std::sync::mpsc;

use anyhow::{Context, ensure};
use flotilla::futures::ThreadPoolExecutor;
use rayon::iter::{IntoParallelIterator, ParallelIterator};

use crate::crossbeam_pool::CrossbeamPool;
use crate::figures::{Batch, batch};

/// The conditions of `thread-pool-submit`, for `docs/benchmarks.md`.
pub(crate) const SUBMIT_CONDITIONS: &str = "\
Each timed call submits n = 100,000 tasks, each returning its index (a `u64`), from the
calling thread, then collects all n results; the value is n divided by the call's time
(submission and collection together). Every contender has 2 worker threads. Pools are
built before timing and warmed up by one call of 10,000 tasks; each round is a fresh
process that times 3 calls (1 with `--quick`) and keeps their median.

- **flotilla**: `ThreadPoolExecutor::builder().max_workers(2)`; `submit` each task into a
  `Vec<Future<u64>>`, then `into_result()` on each, in submission order.
- **cpython**: `ThreadPoolExecutor(max_workers=2)`; `[ex.submit(identity, i) for i in
  range(n)]`, then `[f.result() for f in futures]`.
- **threadpool**: `ThreadPool::new(2)`; each task is `execute`d and sends its value on
  one shared `std::sync::mpsc` channel, from which the caller receives n values, in
  completion order. There is no per-task future: this is threadpool's documented idiom.
- **rayon**: `ThreadPoolBuilder::new().num_threads(2)`; `ThreadPool::spawn` per task,
  sending on one shared `std::sync::mpsc` channel, as for threadpool.
- **tokio**: a multi-thread runtime with `worker_threads(1)` and
  `max_blocking_threads(2)`; `spawn_blocking` per task into a `Vec<JoinHandle<u64>>`,
  then `block_on` awaiting each handle in order. The one async worker stays idle, since
  `block_on` runs on the calling thread.
- **crossbeam**: the bare pool of `bench/src/crossbeam_pool.rs` (2 threads taking boxed
  closures from one unbounded crossbeam channel); each task sends its value on one
  shared crossbeam channel, as for threadpool.";

/// The conditions of `thread-pool-round-trip`, for `docs/benchmarks.md`.
pub(crate) const ROUND_TRIP_CONDITIONS: &str = "\
Each timed call is `thread-pool-submit`'s call with n = 1, by the same code for every
contender: submit one task that returns a `u64`, and block until its result is back. A
round is a fresh process that makes 2,000 untimed calls, then 20,000 timed ones (the same
with `--quick`), and keeps their median. The calls follow each other at once, so this is
the latency of back-to-back requests: a pool whose threads spin a little before they
park (crossbeam-channel's receivers do) finds its worker and its caller still awake,
while one that parks at once pays a wake-up each way. On a machine whose idle CPUs halt
at once (see *Idle CPUs* under *The run*) a wake-up costs 50-120 µs, and a worker whose
short spin ran out while its caller was being woken is asleep for the next task too: a
pool can stay in that slow mode, two wake-ups per call, for the rest of the process.
flotilla's idle workers poll the queue for up to 50 µs before they block, which is
longer than a wake-up.";

/// The conditions of `executor-map`, for `docs/benchmarks.md`.
pub(crate) const MAP_CONDITIONS: &str = "\
Each timed call maps `x + 1` over the `u64`s `0..100,000` with 2 worker threads and
collects the results, in input order, into a `Vec` (a `list` in Python); the value is
items per second. Warm-up, rounds and calls as for `thread-pool-submit`.

- **flotilla**: `ThreadPoolExecutor::map(|x| x + 1, 0..n)` with its defaults, collected:
  the automatic `chunksize`, which for this input is 64 items per task (at most 64, at
  least 16 chunks per worker), and the default look-ahead, 4 chunks per worker = 512
  items ahead of the consumer.
- **cpython**: `list(ex.map(inc, range(n)))`, which submits every item before yielding
  the first result (3.14's `buffersize` is not used).
- **threadpool** and **crossbeam**: one task per item, sending `(index, value)` on one
  shared channel; the caller puts each value in its place.
- **rayon**: `pool.install(|| (0..n).into_par_iter().map(|x| x + 1).collect())`. rayon
  splits the range into a few chunks instead of making one task per item, so it is the
  bar for a map that batches, not a like-for-like peer.
- **tokio**: `spawn_blocking` per item into a `Vec<JoinHandle<u64>>`, then `block_on`
  awaiting the handles in order.";

/// Whether `results` are the values of `n` submit tasks (`0..n`, in any order).
pub(crate) fn check_submit(n: usize, results: &[u64]) -> bool {
    let n = n as u64;
    results.len() as u64 == n && results.iter().sum::<u64>() == n * n.saturating_sub(1) / 2
}

/// Whether `results` are `x + 1` for `x` in `0..n`, in order.
pub(crate) fn check_map(n: usize, results: &[u64]) -> bool {
    results.len() == n && results.iter().zip(1..).all(|(&got, want)| got == want)
}

/// Puts the `(index, value)` pairs a pool sent back in input order.
fn in_order(n: usize, pairs: impl Iterator<Item = (usize, u64)>) -> anyhow::Result<Vec<u64>> {
    let mut out = vec![0; n];
    let mut received = 0;
    for (index, value) in pairs.take(n) {
        out[index] = value;
        received += 1;
    }
    ensure!(received == n, "the pool returned {received} of {n} results");
    Ok(out)
}

/// flotilla: `submit` each task, then `into_result` each future.
pub(crate) fn flotilla_submit(threads: usize) -> anyhow::Result<Batch> {
    let pool = ThreadPoolExecutor::builder().max_workers(threads).build()?;
    Ok(batch(move |n| {
        let futures = (0..n as u64)
            .map(|i| pool.submit(move || i))
            .collect::<Result<Vec<_>, _>>()?;
        let results = futures
            .into_iter()
            .map(|fut| fut.into_result())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(results)
    }))
}

/// flotilla: `map`, with its default look-ahead.
pub(crate) fn flotilla_map(threads: usize) -> anyhow::Result<Batch> {
    let pool = ThreadPoolExecutor::builder().max_workers(threads).build()?;
    Ok(batch(move |n| {
        let results = pool
            .map(|x: u64| x + 1, 0..n as u64)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(results)
    }))
}

/// threadpool: `execute` each task; results on one shared channel.
pub(crate) fn threadpool_submit(threads: usize) -> anyhow::Result<Batch> {
    let pool = threadpool::ThreadPool::new(threads);
    let (tx, rx) = mpsc::channel();
    Ok(batch(move |n| {
        for i in 0..n as u64 {
            let tx = tx.clone();
            pool.execute(move || tx.send(i).expect("the caller waits for every result"));
        }
        Ok(rx.iter().take(n).collect())
    }))
}

/// threadpool: one task per item; `(index, value)` on one shared channel.
pub(crate) fn threadpool_map(threads: usize) -> anyhow::Result<Batch> {
    let pool = threadpool::ThreadPool::new(threads);
    let (tx, rx) = mpsc::channel();
    Ok(batch(move |n| {
        for i in 0..n {
            let tx = tx.clone();
            pool.execute(move || {
                tx.send((i, i as u64 + 1))
                    .expect("the caller waits for every result");
            });
        }
        in_order(n, rx.iter())
    }))
}

/// rayon: `ThreadPool::spawn` each task; results on one shared channel.
pub(crate) fn rayon_submit(threads: usize) -> anyhow::Result<Batch> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    let (tx, rx) = mpsc::channel();
    Ok(batch(move |n| {
        for i in 0..n as u64 {
            let tx = tx.clone();
            pool.spawn(move || tx.send(i).expect("the caller waits for every result"));
        }
        Ok(rx.iter().take(n).collect())
    }))
}

/// rayon: a parallel iterator over the range, collected in order.
pub(crate) fn rayon_map(threads: usize) -> anyhow::Result<Batch> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    Ok(batch(move |n| {
        Ok(pool.install(|| (0..n as u64).into_par_iter().map(|x| x + 1).collect()))
    }))
}

/// A multi-thread runtime whose blocking pool has `threads` threads.
fn tokio_runtime(threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(threads)
        .build()
        .context("cannot build the tokio runtime")
}

/// Awaits tokio's join handles in order.
fn tokio_join_all(
    runtime: &tokio::runtime::Runtime,
    handles: Vec<tokio::task::JoinHandle<u64>>,
) -> anyhow::Result<Vec<u64>> {
    runtime.block_on(async {
        let mut results = Vec::with_capacity(handles.len());
        for handle in handles {
            results.push(handle.await?);
        }
        Ok(results)
    })
}

/// tokio: `spawn_blocking` each task, then await every handle in order.
pub(crate) fn tokio_submit(threads: usize) -> anyhow::Result<Batch> {
    let runtime = tokio_runtime(threads)?;
    Ok(batch(move |n| {
        let handles = (0..n as u64)
            .map(|i| runtime.spawn_blocking(move || i))
            .collect();
        tokio_join_all(&runtime, handles)
    }))
}

/// tokio: `spawn_blocking` per item, then await every handle in order.
pub(crate) fn tokio_map(threads: usize) -> anyhow::Result<Batch> {
    let runtime = tokio_runtime(threads)?;
    Ok(batch(move |n| {
        let handles = (0..n as u64)
            .map(|x| runtime.spawn_blocking(move || x + 1))
            .collect();
        tokio_join_all(&runtime, handles)
    }))
}

/// The bare crossbeam pool: `execute` each task; results on one shared channel.
pub(crate) fn crossbeam_submit(threads: usize) -> anyhow::Result<Batch> {
    let pool = CrossbeamPool::new(threads)?;
    let (tx, rx) = crossbeam_channel::unbounded();
    Ok(batch(move |n| {
        for i in 0..n as u64 {
            let tx = tx.clone();
            pool.execute(move || tx.send(i).expect("the caller waits for every result"));
        }
        Ok(rx.iter().take(n).collect())
    }))
}

/// The bare crossbeam pool: one task per item; `(index, value)` on one shared channel.
pub(crate) fn crossbeam_map(threads: usize) -> anyhow::Result<Batch> {
    let pool = CrossbeamPool::new(threads)?;
    let (tx, rx) = crossbeam_channel::unbounded();
    Ok(batch(move |n| {
        for i in 0..n {
            let tx = tx.clone();
            pool.execute(move || {
                tx.send((i, i as u64 + 1))
                    .expect("the caller waits for every result");
            });
        }
        in_order(n, rx.iter())
    }))
}
