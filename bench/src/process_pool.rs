//! The process-pool figures' contenders: flotilla's `ProcessPoolExecutor` and
//! procspawn's `Pool` (CPython's two pools are in `bench/python/process_pool.py`), each
//! doing a figure's work the way its users would write it.
//!
//! Two kinds of work: *submit* (n tasks, one by one, each returning its argument `i`,
//! then every result collected in submission order; the round-trip figure is submit
//! with n = 1) and *map* (`x + 1` over `0..n` in chunks of [`CHUNKSIZE`], results in
//! input order). Every pool has [`THREADS`] workers, all started before timing.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::ensure;
use flotilla::futures::ProcessPoolExecutor;
use flotilla::multiprocessing::Pool;

use crate::figures::{Batch, THREADS, batch};

/// Items per message in the map figure, for every contender.
pub(crate) const CHUNKSIZE: usize = 1000;

/// How long a result may take before the contender is marked failed.
const RESULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Warm-up calls made until every worker has answered, before giving up.
const WARM_UP_TRIES: usize = 50;

/// Tasks per warm-up call: enough that every worker of a pool gets some.
const WARM_UP_TASKS: usize = 200;

/// The conditions of `process-pool-submit`, for `docs/benchmarks.md`.
pub(crate) const SUBMIT_CONDITIONS: &str = "\
Each timed call submits n trivial tasks one by one from the calling thread, each \
returning its argument `i` (a `u64`, `0..n`), then collects every result in submission \
order; the value is n divided by the call's time (submission and collection together), \
in tasks per second. Every pool has 2 worker processes, started before timing: the \
setup submits batches of tasks returning the worker's pid until both pids have come \
back. n differs per contender, so that a call takes about a second or less: \
**flotilla 50,000; cpython and cpython-pool 10,000; procspawn 2,000** (each of \
procspawn's pending tasks holds four descriptors, and 10,000 of them run out of this \
machine's limit of 20,000); the value is a rate, so the columns compare. Each round is \
a fresh process that makes one untimed call of n/10 tasks, then times 3 calls (1 with \
`--quick`) and keeps their median; after each call, untimed, the results must be \
exactly `0..n`, in order.

- **flotilla**: `ProcessPoolExecutor::builder().max_workers(2)` (forkserver workers, \
the default); `submit(identity, i)` each into a `Vec<Future<u64>>`, then \
`into_result_timeout(60 s)` on each in order. The pool keeps up to 2 tasks in flight per \
worker (`PIPELINE`), and up to 16 small ones on a worker whose tasks prove short (about \
1 ms of work), sent several to a write.
- **cpython**: `ProcessPoolExecutor(max_workers=2)`; `[ex.submit(identity, i) for i in \
range(n)]`, then `[f.result() for f in futures]`.
- **cpython-pool**: `multiprocessing.Pool(2)`; `[pool.apply_async(identity, (i,)) for i \
in range(n)]`, then `[r.get() for r in results]`.
- **procspawn**: `procspawn::Pool::new(2)` (its workers are fresh execs of this binary); \
`pool.spawn(i, identity)` each into a `Vec<JoinHandle<u64>>`, then `join_timeout(60 s)` \
on each in order. procspawn makes two ipc-channel channels per task, and its pool hands \
a result over by rendezvous (a zero-capacity channel), so a worker's thread in the \
parent waits for the caller to join one task before it takes the next.

Both CPython pools use the default start method, fork on Linux before 3.14, not \
flotilla's forkserver: once the workers run, the start method should not matter, but \
CPython's `Pool` measured 4 to 10 times slower on forkserver workers than on fork or \
spawn ones on this machine (its `ProcessPoolExecutor` did not), so the default is both \
what a Python user gets and the stronger baseline.";

/// The conditions of `process-pool-round-trip`, for `docs/benchmarks.md`.
pub(crate) const ROUND_TRIP_CONDITIONS: &str = "\
Each timed call is `process-pool-submit`'s call with n = 1, by the same code for every \
contender: submit one task that returns its argument, and block until its result is \
back in the calling process. A round is a fresh process whose pool of 2 workers is \
started and warmed up as for `process-pool-submit`, then makes 200 untimed calls and \
2,000 timed ones (400 and 40 with `--quick`), back to back, and keeps their median. \
The contenders are those of `process-pool-submit`, with the same pools and calls: \
the task goes from the caller to the pool's machinery (flotilla's and CPython's \
executor manager thread, CPython `Pool`'s task-handler thread, procspawn's monitor \
thread), over a pipe or socket to a worker, and back the same way.";

/// The conditions of `process-pool-map`, for `docs/benchmarks.md`.
pub(crate) const MAP_CONDITIONS: &str = "\
Each timed call maps `x + 1` over the integers `0..100,000` on 2 worker processes, \
1,000 items per message (`chunksize`), and collects the results, in input order, into \
a `Vec` (a `list` in Python); the value is items per second. Pools are started and \
warmed up as for `process-pool-submit`. Each round is a fresh process that makes one \
untimed call of 10,000 items, then times 30 calls (10 with `--quick`) and keeps their \
median; after each call, untimed, the results must be exactly `1..=100,000`, in order.

- **flotilla**: `pool.map(inc, 0..n, 1000)` (`u64`s), collected into a \
`Result<Vec<u64>, _>`; its default look-ahead keeps up to 32 × `max_workers` = 64 \
chunks in flight ahead of the consumer.
- **cpython**: `list(ex.map(inc, range(n), chunksize=1000))` on the \
`ProcessPoolExecutor` of `process-pool-submit` (which submits every chunk before \
yielding the first result).
- **cpython-pool**: `pool.map(inc, range(n), chunksize=1000)` on the `Pool` of \
`process-pool-submit`.
- procspawn has no map: its pool runs one closure per `spawn`, so it is left out \
here (its per-task cost is `process-pool-submit`'s).";

/// The conditions of `process-pool-imap-unordered`, for `docs/benchmarks.md`.
pub(crate) const IMAP_UNORDERED_CONDITIONS: &str = "\
Each timed call streams `x + 1` over the integers `0..n` through 2 worker processes one \
item per message (chunksize 1, the default of Python's `imap_unordered`) and collects the \
results in completion order; the value is items per second. n is **flotilla 50,000; \
cpython and cpython-pool 10,000** (the value is a rate, so the columns compare). Pools are \
started and warmed up as for `process-pool-submit`. Each round is a fresh process that \
makes one untimed call of n/10 items, then times 3 calls (1 with `--quick`) and keeps \
their median; after each call, untimed, the results sorted must be exactly \
`1..=n`.

- **flotilla**: `Pool::new(2)`; `pool.imap_unordered(inc, 0..n, 1)` (`u64`s), collected \
into a `Result<Vec<u64>, _>`.
- **cpython-pool**: `multiprocessing.Pool(2)`; `list(pool.imap_unordered(inc, range(n)))`.
- **cpython**: its `ProcessPoolExecutor` has no `imap_unordered`; the idiom is \
`[f.result() for f in as_completed([ex.submit(inc, i) for i in range(n)])]`, on the \
executor of `process-pool-submit`.
- procspawn has no way to take results in completion order, so it is left out here.";

/// Items per message in the chunked imap_unordered figure, for every contender.
pub(crate) const UNORDERED_CHUNKSIZE: usize = 100;

/// The conditions of `process-pool-imap-unordered-chunked`, for `docs/benchmarks.md`.
pub(crate) const IMAP_UNORDERED_CHUNKED_CONDITIONS: &str = "\
`process-pool-imap-unordered` with 100 items per message (`chunksize=100`): the chunksize \
parameter's gain. n is **flotilla 1,000,000; cpython-pool 200,000** (the value is a \
rate, so the columns compare). Pools, rounds and checks as for \
`process-pool-imap-unordered`.

- **flotilla**: `Pool::new(2)`; `pool.imap_unordered(inc, 0..n, 100)` (`u64`s), collected \
into a `Result<Vec<u64>, _>`.
- **cpython-pool**: `multiprocessing.Pool(2)`; \
`list(pool.imap_unordered(inc, range(n), chunksize=100))`.";

/// A submit task: returns its argument.
fn identity(i: u64) -> u64 {
    i
}

/// A map task: `x + 1`.
fn inc(x: u64) -> u64 {
    x + 1
}

/// The warm-up task: which worker ran it.
fn worker_pid(_: ()) -> u32 {
    std::process::id()
}

/// Runs `call` (which runs `WARM_UP_TASKS` tasks returning the pid of the worker that ran
/// each) until `THREADS` different workers have answered.
fn warm_up(mut call: impl FnMut() -> anyhow::Result<Vec<u32>>) -> anyhow::Result<()> {
    let mut pids = HashSet::new();
    for _ in 0..WARM_UP_TRIES {
        pids.extend(call()?);
        if pids.len() >= THREADS {
            return Ok(());
        }
    }
    anyhow::bail!(
        "only {} of {THREADS} workers answered the warm-up",
        pids.len()
    )
}

/// flotilla's pool with `threads` workers, all of them started.
fn flotilla_pool(threads: usize) -> anyhow::Result<ProcessPoolExecutor> {
    ensure!(threads == THREADS, "the warm-up expects {THREADS} workers");
    let pool = ProcessPoolExecutor::builder()
        .max_workers(threads)
        .build()?;
    warm_up(|| submit_all(&pool, worker_pid, (0..WARM_UP_TASKS).map(|_| ())))?;
    Ok(pool)
}

/// Submits `task` on each argument, then takes every result, in submission order.
fn submit_all<F, A, R>(
    pool: &ProcessPoolExecutor,
    task: F,
    args: impl Iterator<Item = A>,
) -> anyhow::Result<Vec<R>>
where
    F: Fn(A) -> R + Copy + 'static,
    A: serde::Serialize + serde::de::DeserializeOwned + 'static,
    R: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
{
    let futures = args
        .map(|arg| pool.submit(task, arg))
        .collect::<Result<Vec<_>, _>>()?;
    let results = futures
        .into_iter()
        .map(|fut| fut.into_result_timeout(RESULT_TIMEOUT))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(results)
}

/// flotilla: `submit` each task, then `into_result` each future in order.
pub(crate) fn flotilla_submit(threads: usize) -> anyhow::Result<Batch> {
    let pool = flotilla_pool(threads)?;
    Ok(batch(move |n| submit_all(&pool, identity, 0..n as u64)))
}

/// flotilla: `map` with chunks of [`CHUNKSIZE`], collected.
pub(crate) fn flotilla_map(threads: usize) -> anyhow::Result<Batch> {
    let pool = flotilla_pool(threads)?;
    Ok(batch(move |n| {
        let results = pool
            .map(inc, 0..n as u64, CHUNKSIZE)
            .timeout(RESULT_TIMEOUT)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(results)
    }))
}

/// flotilla: `Pool::imap_unordered` with chunks of one item, collected.
pub(crate) fn flotilla_imap_unordered(threads: usize) -> anyhow::Result<Batch> {
    ensure!(threads == THREADS, "the warm-up expects {THREADS} workers");
    let pool = Pool::new(threads)?;
    warm_up(|| Ok(pool.map(worker_pid, vec![(); WARM_UP_TASKS], Some(1))?))?;
    Ok(batch(move |n| {
        let results = pool
            .imap_unordered(inc, 0..n as u64, 1)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(results)
    }))
}

/// flotilla: `Pool::imap_unordered` with chunks of [`UNORDERED_CHUNKSIZE`] items,
/// collected.
pub(crate) fn flotilla_imap_unordered_chunked(threads: usize) -> anyhow::Result<Batch> {
    ensure!(threads == THREADS, "the warm-up expects {THREADS} workers");
    let pool = Pool::new(threads)?;
    warm_up(|| Ok(pool.map(worker_pid, vec![(); WARM_UP_TASKS], Some(1))?))?;
    Ok(batch(move |n| {
        let results = pool
            .imap_unordered(inc, 0..n as u64, UNORDERED_CHUNKSIZE)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(results)
    }))
}

/// procspawn: `Pool::spawn` each task, then `join` each handle in order.
pub(crate) fn procspawn_submit(threads: usize) -> anyhow::Result<Batch> {
    ensure!(threads == THREADS, "the warm-up expects {THREADS} workers");
    let pool = procspawn::Pool::new(threads)?;
    warm_up(|| {
        let mut handles: Vec<_> = (0..WARM_UP_TASKS)
            .map(|_| pool.spawn((), worker_pid))
            .collect();
        let pids = handles
            .iter_mut()
            .map(|handle| handle.join_timeout(RESULT_TIMEOUT))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(pids)
    })?;
    Ok(batch(move |n| {
        let mut handles: Vec<_> = (0..n as u64).map(|i| pool.spawn(i, identity)).collect();
        let results = handles
            .iter_mut()
            .map(|handle| handle.join_timeout(RESULT_TIMEOUT))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(results)
    }))
}

/// Whether `results` are the submit tasks' values: `0..n`, in order.
pub(crate) fn check_submit(n: usize, results: &[u64]) -> bool {
    results.len() == n && results.iter().zip(0..).all(|(&got, want)| got == want)
}

/// Whether `results` are `x + 1` for `x` in `0..n`, in any order.
pub(crate) fn check_unordered(n: usize, results: &[u64]) -> bool {
    let mut sorted = results.to_vec();
    sorted.sort_unstable();
    check_map(n, &sorted)
}

/// Whether `results` are `x + 1` for `x` in `0..n`, in order.
pub(crate) fn check_map(n: usize, results: &[u64]) -> bool {
    results.len() == n && results.iter().zip(1..).all(|(&got, want)| got == want)
}
