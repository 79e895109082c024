//! The asyncio-bridge figures' contenders: flotilla's `run_in_executor` on a
//! `ThreadPoolExecutor`, and tokio's `spawn_blocking`, both awaited from async code on
//! the same current-thread runtime (CPython's `loop.run_in_executor` is in
//! `bench/python/asyncio_bridge.py`).
//!
//! Two kinds of work, each task returning its index `i` (a `u64`, `0..n`): *one by one*
//! (n tasks, each started and awaited before the next; the latency figure is n = 1) and
//! *gathered* (n tasks started together, then every result awaited; results in input
//! order).
//!
//! The runtime is current-thread on purpose: asyncio runs its loop and every coroutine
//! on one thread, and so does a current-thread runtime, so the awaiting side is one
//! thread for every contender and the wake-up each figure measures is the same hop: a
//! pool thread finishes the task and wakes the thread parked in the runtime. (A
//! multi-thread runtime would add scheduler threads contending for this machine's cores
//! without doing any of the work.)

use anyhow::Context;
use flotilla::asyncio::{gather, run_in_executor};
use flotilla::futures::ThreadPoolExecutor;

use crate::figures::{Batch, batch};

/// The conditions of `async-run-in-executor-latency`, for `docs/benchmarks.md`.
pub(crate) const LATENCY_CONDITIONS: &str = "\
Each timed call, made from async code, starts one trivial task on a pool of 2 threads \
(it returns its argument, a `u64`) and awaits its result; the next call starts at once, \
so this is the latency of back-to-back awaits. A round is a fresh process that makes \
2,000 untimed calls, then 20,000 timed ones (5,000 with `--quick`), and keeps their \
median.

- **flotilla**: a current-thread tokio runtime (`Builder::new_current_thread()` with \
`enable_all()`, as `#[tokio::main(flavor = \"current_thread\")]` builds it) and \
`ThreadPoolExecutor::builder().max_workers(2)`; each call is \
`runtime.block_on(async { run_in_executor(&pool, move || i).await })`, the awaited \
`Task` registering its waker with the executor's future and the worker's completion \
waking it.
- **cpython**: `ThreadPoolExecutor(max_workers=2)`, and one coroutine on the loop of \
`asyncio.run` that times each `await loop.run_in_executor(ex, identity, i)` itself: \
every call is one await inside the running loop, without the cost of entering the loop \
(`run_until_complete`), which would add 10 to 20 µs per call on this machine. The completion reaches \
the loop through `call_soon_threadsafe`, which writes to the loop's self-pipe.
- **tokio**: the same current-thread runtime built with `max_blocking_threads(2)`; each \
call is `runtime.block_on(async { spawn_blocking(move || i).await })`.

Both Rust contenders enter the runtime with `block_on` on every call (about 0.2 µs on \
this machine, measured with a future that is ready at once) and park in its I/O driver \
(epoll) while they wait. flotilla's workers spin briefly on their channel before they \
park, so back-to-back calls often find the worker still awake; tokio's blocking threads \
wait on a condition variable.";

/// The conditions of `async-run-in-executor-gather`, for `docs/benchmarks.md`.
pub(crate) const GATHER_CONDITIONS: &str = "\
Each timed call, made from async code, starts n trivial tasks together on a pool of 2 \
threads (each returns its index `i`, a `u64`, `0..n`) and awaits them all, results in \
input order; the value is n divided by the call's time (starting and awaiting \
together), in tasks per second. n differs per contender, so that a call takes about a \
second or less: **flotilla and tokio 100,000; cpython 10,000**; the value is a rate, so \
the columns compare. Each round is a fresh process that makes one untimed call of n/10 \
tasks, then times 3 calls (1 with `--quick`) and keeps their median; after each call, \
untimed, the results must be exactly `0..n`, in order. The runtimes and pools are those \
of `async-run-in-executor-latency`.

- **flotilla**: `runtime.block_on(gather((0..n).map(|i| run_in_executor(&pool, move || \
i))))`: every task is submitted as the iterator is collected, then one `Gather` polls \
only the tasks whose wakers fired.
- **cpython**: `await asyncio.gather(*[loop.run_in_executor(ex, identity, i) for i in \
range(n)])`, inside one coroutine as in the latency figure.
- **tokio**: `spawn_blocking(move || i)` for each `i` into a `Vec<JoinHandle<u64>>`, \
then each handle awaited in order, all inside one `block_on` (what `join_all` over the \
handles does, without its dependency).";

/// The runtime every Rust contender awaits from: current-thread, with its drivers, and
/// a blocking pool of `threads` threads (which only tokio's contender uses).
fn runtime(threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(threads)
        .build()
        .context("cannot build the tokio runtime")
}

/// flotilla's pool and the runtime to await it from.
fn flotilla_pool(threads: usize) -> anyhow::Result<(tokio::runtime::Runtime, ThreadPoolExecutor)> {
    let pool = ThreadPoolExecutor::builder().max_workers(threads).build()?;
    Ok((runtime(threads)?, pool))
}

/// flotilla: `run_in_executor` each task and await it before starting the next.
pub(crate) fn flotilla_one_by_one(threads: usize) -> anyhow::Result<Batch> {
    let (runtime, pool) = flotilla_pool(threads)?;
    Ok(batch(move |n| {
        runtime.block_on(async {
            let mut results = Vec::with_capacity(n);
            for i in 0..n as u64 {
                results.push(run_in_executor(&pool, move || i).await?);
            }
            Ok(results)
        })
    }))
}

/// flotilla: `run_in_executor` every task, then `gather` them.
pub(crate) fn flotilla_gather(threads: usize) -> anyhow::Result<Batch> {
    let (runtime, pool) = flotilla_pool(threads)?;
    Ok(batch(move |n| {
        runtime.block_on(async {
            let tasks = (0..n as u64).map(|i| run_in_executor(&pool, move || i));
            Ok(gather(tasks).await?)
        })
    }))
}

/// tokio: `spawn_blocking` each task and await it before starting the next.
pub(crate) fn tokio_one_by_one(threads: usize) -> anyhow::Result<Batch> {
    let runtime = runtime(threads)?;
    Ok(batch(move |n| {
        runtime.block_on(async {
            let mut results = Vec::with_capacity(n);
            for i in 0..n as u64 {
                results.push(tokio::task::spawn_blocking(move || i).await?);
            }
            Ok(results)
        })
    }))
}

/// tokio: `spawn_blocking` every task, then await each handle in order.
pub(crate) fn tokio_gather(threads: usize) -> anyhow::Result<Batch> {
    let runtime = runtime(threads)?;
    Ok(batch(move |n| {
        runtime.block_on(async {
            let handles: Vec<_> = (0..n as u64)
                .map(|i| tokio::task::spawn_blocking(move || i))
                .collect();
            let mut results = Vec::with_capacity(n);
            for handle in handles {
                results.push(handle.await?);
            }
            Ok(results)
        })
    }))
}

/// Whether `results` are exactly `0..n`, in order.
pub(crate) fn check(n: usize, results: &[u64]) -> bool {
    results.len() == n && results.iter().zip(0..).all(|(&got, want)| got == want)
}
