//! multiprocessing.Pool: apply, async results and callbacks, map and friends, close,
//! join, terminate, initializers and recycled workers.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use flotilla_core::TaskError;
use flotilla_process::{Pool, StartMethod, get_context};
use proptest::prelude::*;

use common::wait_until_dead;

const LONG: Duration = Duration::from_secs(60);

fn double(x: i64) -> i64 {
    2 * x
}

fn add((a, b): (i64, i64)) -> i64 {
    a + b
}

fn pid(_: u32) -> i32 {
    std::process::id() as i32
}

fn odd_fails(x: i64) -> i64 {
    assert!(x % 2 == 0, "{x} is odd");
    x
}

#[test]
fn apply_map_starmap_and_async_results() {
    let pool = Pool::new(2).unwrap();
    assert_eq!(pool.apply(double, 21).unwrap(), 42);
    let pending = pool.apply_async(double, 5).unwrap();
    assert!(pending.wait_timeout(LONG));
    assert!(pending.ready());
    assert_eq!(pending.successful(), Some(true));
    assert_eq!(pending.get().unwrap(), 10);
    assert_eq!(
        pool.map(double, 0..10, None).unwrap(),
        (0..10).map(double).collect::<Vec<_>>()
    );
    assert_eq!(
        pool.starmap(add, [(1, 2), (3, 4)], Some(1)).unwrap(),
        [3, 7]
    );
    let all = pool.map_async(double, 0..100, Some(7)).unwrap();
    assert_eq!(all.get_timeout(LONG).unwrap().len(), 100);
    assert!(matches!(
        pool.map(odd_fails, [2, 4, 5, 6], Some(1)),
        Err(TaskError::Panicked { .. })
    ));
}

#[test]
fn imap_is_ordered_and_imap_unordered_yields_each_once() {
    let pool = Pool::new(2).unwrap();
    let ordered: Vec<i64> = pool
        .imap(double, 0..50, 3)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(ordered, (0..50).map(double).collect::<Vec<_>>());
    let mut unordered: Vec<i64> = pool
        .imap_unordered(double, 0..50, 3)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    unordered.sort_unstable();
    assert_eq!(unordered, ordered);
}

#[test]
fn callbacks_and_error_callbacks() {
    let pool = Pool::new(2).unwrap();
    let (tx, rx) = mpsc::channel();
    for x in [2, 4, 6, 7, 9] {
        let (ok, err) = (tx.clone(), tx.clone());
        pool.apply_async_with(
            odd_fails,
            x,
            move |v| ok.send(format!("ok {v}")).unwrap(),
            move |e| err.send(format!("error {e}")).unwrap(),
        )
        .unwrap();
    }
    drop(tx);
    pool.close();
    pool.join().unwrap();
    let mut got: Vec<String> = rx.iter().collect();
    got.sort();
    assert_eq!(got.len(), 5);
    assert_eq!(got.iter().filter(|m| m.starts_with("ok")).count(), 3);
    assert!(got.iter().any(|m| m.contains("7 is odd")), "{got:?}");
}

#[test]
fn join_before_close_is_an_error_and_close_refuses_new_work() {
    let pool = Pool::new(1).unwrap();
    assert!(pool.join().is_err());
    pool.close();
    assert!(matches!(pool.apply(double, 1), Err(TaskError::ShutDown)));
    pool.join().unwrap();
}

fn sleep_long(_: u32) {
    std::thread::sleep(Duration::from_secs(300));
}

#[test]
fn terminate_stops_workers_at_once_and_fails_pending_work() {
    let pool = Pool::new(2).unwrap();
    let pids: HashSet<i32> = (0..20).map(|i| pool.apply(pid, i).unwrap()).collect();
    let pending: Vec<_> = (0..4)
        .map(|i| pool.apply_async(sleep_long, i).unwrap())
        .collect();
    let started = Instant::now();
    pool.terminate();
    assert!(started.elapsed() < LONG);
    for p in &pending {
        assert!(
            matches!(
                p.get_timeout(LONG),
                Err(TaskError::ShutDown | TaskError::WorkerDied { .. })
            ),
            "{:?}",
            p.get_timeout(LONG)
        );
    }
    pool.join().unwrap();
    wait_until_dead(&pids, LONG, "workers outlived terminate");
}

#[test]
fn maxtasksperchild_recycles_workers() {
    let pool = Pool::builder()
        .processes(1)
        .maxtasksperchild(3)
        .build()
        .unwrap();
    let pids: Vec<i32> = (0..9).map(|i| pool.apply(pid, i).unwrap()).collect();
    assert_eq!(pids.iter().collect::<HashSet<_>>().len(), 3, "{pids:?}");
}

static INITIALIZED: AtomicUsize = AtomicUsize::new(0);

fn init(count: usize) {
    INITIALIZED.fetch_add(count, Ordering::SeqCst);
}

fn initialized(_: u32) -> (i32, usize) {
    (
        std::process::id() as i32,
        INITIALIZED.load(Ordering::SeqCst),
    )
}

#[test]
fn the_initializer_runs_once_in_each_worker() {
    let pool = Pool::builder()
        .processes(2)
        .initializer(init, 1)
        .build()
        .unwrap();
    let seen = pool.map(initialized, 0..40, Some(1)).unwrap();
    assert!(seen.iter().all(|&(_, n)| n == 1), "{seen:?}");
    assert_eq!(
        INITIALIZED.load(Ordering::SeqCst),
        0,
        "the parent never ran it"
    );
}

static INIT_SUM: AtomicUsize = AtomicUsize::new(0);

/// An initializer of three arguments.
fn init3(a: usize, b: usize, tag: String) {
    assert_eq!(tag, "three");
    INIT_SUM.fetch_add(a * 10 + b, Ordering::SeqCst);
}

fn init_sum(_: u32) -> usize {
    INIT_SUM.load(Ordering::SeqCst)
}

#[test]
fn an_initializer_takes_several_arguments() {
    let pool = Pool::builder()
        .processes(2)
        .initializer(init3, (4, 2, "three".to_owned()))
        .build()
        .unwrap();
    let seen = pool.map(init_sum, 0..8, Some(1)).unwrap();
    assert!(seen.iter().all(|&n| n == 42), "{seen:?}");
    let executor = flotilla_process::ProcessPoolExecutor::builder()
        .max_workers(1)
        .initializer(init3, (1, 7, "three".to_owned()))
        .build()
        .unwrap();
    let fut = executor.submit(init_sum, 0).unwrap();
    assert_eq!(fut.result_timeout(LONG).unwrap(), 17);
}

fn die_on_7(x: u32) -> u32 {
    if x == 7 {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::Signal::SIGKILL);
    }
    x
}

#[test]
fn a_worker_killed_mid_map_fails_that_chunk_and_the_rest_complete() {
    let pool = Pool::new(2).unwrap();
    let results: Vec<_> = pool
        .imap_unordered(die_on_7, 0..20u32, 1)
        .unwrap()
        .collect();
    assert_eq!(results.len(), 20);
    let died: Vec<_> = results
        .iter()
        .filter(|r| matches!(r, Err(TaskError::WorkerDied { .. })))
        .collect();
    assert_eq!(died.len(), 1, "{results:?}");
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 19);
    assert_eq!(pool.apply(die_on_7, 1).unwrap(), 1, "the pool goes on");
}

fn die_on_150(x: u32) -> u32 {
    if x == 150 {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::Signal::SIGKILL);
    }
    x
}

/// A worker's pipeline is deep once its tasks prove short, and a map's chunks in it are
/// marked running as they are sent: when the worker dies, the ones behind the chunk it
/// was running go back to the queue and run elsewhere, each exactly once.
#[test]
fn a_worker_killed_deep_in_a_map_fails_one_chunk_and_requeues_those_behind_it() {
    let pool = Pool::new(2).unwrap();
    // Short tasks first, so that the workers' pipelines are deep.
    assert_eq!(pool.map(die_on_150, 0..100u32, Some(1)).unwrap().len(), 100);
    let results: Vec<_> = pool
        .imap_unordered(die_on_150, 0..400u32, 1)
        .unwrap()
        .collect();
    assert_eq!(results.len(), 400);
    let died: Vec<_> = results
        .iter()
        .filter(|r| matches!(r, Err(TaskError::WorkerDied { .. })))
        .collect();
    assert_eq!(died.len(), 1, "{died:?}");
    let mut values: Vec<u32> = results.into_iter().filter_map(Result::ok).collect();
    values.sort_unstable();
    let expected: Vec<u32> = (0..400).filter(|&x| x != 150).collect();
    assert_eq!(values, expected);
    assert_eq!(pool.apply(die_on_150, 1).unwrap(), 1, "the pool goes on");
}

#[test]
fn dropping_a_pool_terminates_it() {
    let pending;
    {
        let pool = Pool::new(1).unwrap();
        pending = pool.apply_async(sleep_long, 0).unwrap();
    }
    assert!(pending.get_timeout(LONG).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]

    /// map equals a sequential run for any input and chunk size, under either start
    /// method a pool may use.
    #[test]
    fn map_equals_a_sequential_run(
        items in proptest::collection::vec(-1000i64..1000, 0..200),
        chunksize in proptest::option::of(1usize..40),
        spawn in any::<bool>(),
    ) {
        let method = if spawn { StartMethod::Spawn } else { StartMethod::ForkServer };
        let pool = Pool::builder()
            .processes(2)
            .context(get_context(Some(method)))
            .build()
            .unwrap();
        let got = pool.map(double, items.clone(), chunksize).unwrap();
        prop_assert_eq!(got, items.into_iter().map(double).collect::<Vec<_>>());
    }
}

mod pool_support;

#[test]
fn imap_unordered_is_lazy_over_an_endless_input() {
    let got = pool_support::within(LONG, "imap_unordered over 0..", || {
        let pool = Pool::new(2).unwrap();
        let mut got: Vec<i64> = pool
            .imap_unordered(double, 0.., 1)
            .unwrap()
            .take(10)
            .map(Result::unwrap)
            .collect();
        got.sort_unstable();
        got
    });
    assert_eq!(got.len(), 10);
    assert!(got.iter().all(|x| x % 2 == 0));
}

/// A pool of no processes is refused with an error that speaks of processes, as
/// Python's `Pool(0)` does (not of the executor's `max_workers` underneath).
#[test]
fn a_pool_of_zero_processes_is_refused_in_its_own_words() {
    let err = Pool::new(0).unwrap_err().to_string();
    assert!(err.contains("at least 1 process"), "{err}");
    assert!(!err.contains("max_workers"), "{err}");
    let err = flotilla_process::ProcessPoolExecutor::builder()
        .max_workers(0)
        .build()
        .unwrap_err()
        .to_string();
    assert!(err.contains("at least 1 worker"), "{err}");
}

/// Python's `map_async(f, items, callback=..., error_callback=...)` and its `starmap`
/// twin: the callback gets the whole list, in order; a failure goes to the error
/// callback, which gets the first failure in input order; and `get` still works after.
#[test]
fn map_async_and_starmap_async_take_callbacks() {
    let pool = Pool::new(2).unwrap();
    let (tx, rx) = mpsc::channel::<Result<Vec<i64>, String>>();
    let (ok, err) = (tx.clone(), tx.clone());
    let result = pool
        .map_async_with(
            double,
            0..20i64,
            Some(3),
            move |values: &Vec<i64>| ok.send(Ok(values.clone())).unwrap(),
            move |e: &TaskError| err.send(Err(e.to_string())).unwrap(),
        )
        .unwrap();
    let expected: Vec<i64> = (0..20).map(double).collect();
    assert_eq!(rx.recv_timeout(LONG).unwrap(), Ok(expected.clone()));
    assert_eq!(result.get_timeout(LONG).unwrap(), expected);

    // Item 1 fails first in input order (3, 5, ... fail too).
    let (ok, err) = (tx.clone(), tx.clone());
    let failed = pool
        .map_async_with(
            odd_fails,
            0..10i64,
            Some(1),
            move |values: &Vec<i64>| ok.send(Ok(values.clone())).unwrap(),
            move |e: &TaskError| err.send(Err(e.to_string())).unwrap(),
        )
        .unwrap();
    let message = rx.recv_timeout(LONG).unwrap().unwrap_err();
    assert!(message.contains("1 is odd"), "{message}");
    assert!(failed.get_timeout(LONG).is_err());

    let (ok, err) = (tx.clone(), tx);
    let summed = pool
        .starmap_async_with(
            add,
            vec![(1, 2), (3, 4)],
            None,
            move |values: &Vec<i64>| ok.send(Ok(values.clone())).unwrap(),
            move |e: &TaskError| err.send(Err(e.to_string())).unwrap(),
        )
        .unwrap();
    assert_eq!(rx.recv_timeout(LONG).unwrap(), Ok(vec![3, 7]));
    assert_eq!(summed.get_timeout(LONG).unwrap(), [3, 7]);

    // No items: done at once, with nothing.
    assert!(
        pool.map_async(double, Vec::<i64>::new(), None)
            .unwrap()
            .get_timeout(LONG)
            .unwrap()
            .is_empty()
    );
}

/// Every map form takes its chunksize the same way: a number, or `None` for Python's
/// default (1 for the executor's map and the imaps, an even spread for `Pool::map`).
#[test]
fn every_map_takes_a_chunksize_or_none() {
    let pool = Pool::new(2).unwrap();
    let expected: Vec<i64> = (0..10).map(double).collect();
    for chunksize in [None, Some(3)] {
        assert_eq!(pool.map(double, 0..10i64, chunksize).unwrap(), expected);
        let ordered: Vec<i64> = pool
            .imap(double, 0..10i64, chunksize)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(ordered, expected);
        let mut unordered: Vec<i64> = pool
            .imap_unordered(double, 0..10i64, chunksize)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        unordered.sort();
        assert_eq!(unordered, expected);
    }
    let executor = flotilla_process::ProcessPoolExecutor::builder()
        .max_workers(1)
        .build()
        .unwrap();
    let plain: Vec<i64> = executor
        .map(double, 0..10i64, None)
        .map(Result::unwrap)
        .collect();
    let chunked: Vec<i64> = executor
        .map(double, 0..10i64, 4)
        .map(Result::unwrap)
        .collect();
    assert_eq!((plain, chunked), (expected.clone(), expected));
}

fn nap(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

/// `join` has a timed form: false while a task still runs, true once the workers are
/// gone; like `join`, it is an error before `close`.
#[test]
fn join_has_a_timed_form() {
    let pool = Pool::new(1).unwrap();
    let busy = pool.apply_async(nap, 1_500).unwrap();
    assert!(pool.join_timeout(LONG).is_err(), "not closed yet");
    pool.close();
    assert!(!pool.join_timeout(Duration::from_millis(10)).unwrap());
    assert!(pool.join_timeout(LONG).unwrap());
    assert!(busy.get_timeout(LONG).is_ok());
    assert!(pool.join_timeout(Duration::ZERO).unwrap(), "joined already");
}
