//! Targets of several arguments, spread from a tuple (Python's `args=(a, b)`): two,
//! three and eight arguments under every start method, fn pointers and closures of
//! several arguments, pool tasks (`submit`, `apply`, `apply_async`) and `starmap` over
//! `fn(a, b)`; and the one-argument form that takes a tuple still working as before.

use std::sync::mpsc;
use std::time::Duration;

use flotilla_process::{Pool, ProcessPoolExecutor, StartMethod, get_context};

const LONG: Duration = Duration::from_secs(60);

const METHODS: [StartMethod; 3] = [
    StartMethod::Spawn,
    StartMethod::ForkServer,
    StartMethod::Fork,
];

fn add(a: u32, b: u32) -> u32 {
    a + b
}

fn describe(name: String, times: u8, shout: bool) -> String {
    let word = if shout { name.to_uppercase() } else { name };
    vec![word; usize::from(times)].join(" ")
}

#[allow(
    clippy::too_many_arguments,
    reason = "the largest arity a target may have"
)]
fn eight(a: u8, b: u16, c: u32, d: u64, e: i8, f: i16, g: String, h: Vec<u8>) -> String {
    format!("{a} {b} {c} {d} {e} {f} {g} {h:?}")
}

/// The one-argument form whose argument is a tuple: Python-style `args` written the old
/// way.
fn add_pair((a, b): (u32, u32)) -> u32 {
    a + b
}

/// Starts `target(args)` under `method` and joins it.
macro_rules! run {
    ($method:expr, $target:expr, $args:expr) => {{
        let builder = get_context(Some($method)).process($target, $args);
        // SAFETY: a fork child only computes a value and reports it; it takes no lock
        // another test thread could hold.
        let child = unsafe { builder.start_unchecked() }.unwrap();
        child.join_timeout(LONG).unwrap()
    }};
}

#[test]
fn two_three_and_eight_arguments_under_every_start_method() {
    for method in METHODS {
        assert_eq!(run!(method, add, (2, 3)), 5, "{method}");
        assert_eq!(
            run!(method, describe, ("go".to_string(), 2, true)),
            "GO GO",
            "{method}"
        );
        assert_eq!(
            run!(method, eight, (1, 2, 3, 4, -5, -6, "g".into(), vec![8])),
            "1 2 3 4 -5 -6 g [8]",
            "{method}"
        );
    }
}

#[test]
fn fn_pointers_and_closures_of_several_arguments() {
    let table: [fn(u32, u32) -> u32; 2] = [add, |a, b| a * b];
    for method in METHODS {
        for target in table {
            assert_eq!(run!(method, target, (6, 7)), target(6, 7), "{method}");
        }
        assert_eq!(
            run!(method, |a: u64, b: u64, c: u64| a * b * c, (2, 3, 4)),
            24
        );
    }
}

#[test]
fn a_target_taking_one_tuple_keeps_working() {
    for method in METHODS {
        assert_eq!(run!(method, add_pair, (2, 3)), 5, "{method}");
    }
    let pool = Pool::new(1).unwrap();
    assert_eq!(pool.apply(add_pair, (4, 5)).unwrap(), 9);
    assert_eq!(pool.map(add_pair, [(1, 1), (2, 2)], None).unwrap(), [2, 4]);
    assert_eq!(
        pool.starmap(add_pair, [(1, 2), (3, 4)], None).unwrap(),
        [3, 7]
    );
}

#[test]
fn pool_tasks_of_several_arguments() {
    let executor = ProcessPoolExecutor::builder()
        .max_workers(2)
        .build()
        .unwrap();
    let fut = executor.submit(describe, ("ab".into(), 3, false)).unwrap();
    assert_eq!(fut.result_timeout(LONG).unwrap(), "ab ab ab");
    let fut = executor
        .submit(eight, (8, 7, 6, 5, 4, 3, "two".into(), vec![1]))
        .unwrap();
    assert_eq!(fut.result_timeout(LONG).unwrap(), "8 7 6 5 4 3 two [1]");

    let pool = Pool::new(2).unwrap();
    assert_eq!(pool.apply(add, (20, 22)).unwrap(), 42);
    let pending = pool.apply_async(add, (1, 2)).unwrap();
    assert_eq!(pending.get_timeout(LONG).unwrap(), 3);
    let (tx, rx) = mpsc::channel();
    let pending = pool
        .apply_async_with(add, (3, 4), move |v: &u32| tx.send(*v).unwrap(), |_| {})
        .unwrap();
    assert_eq!(pending.get_timeout(LONG).unwrap(), 7);
    assert_eq!(rx.recv_timeout(LONG).unwrap(), 7);
}

#[test]
fn starmap_spreads_each_tuple_over_a_function_of_several_arguments() {
    let pool = Pool::new(2).unwrap();
    let pairs: Vec<(u32, u32)> = (0..20).map(|i| (i, 2 * i)).collect();
    let expected: Vec<u32> = pairs.iter().map(|&(a, b)| add(a, b)).collect();
    assert_eq!(pool.starmap(add, pairs.clone(), 3).unwrap(), expected);
    let pending = pool.starmap_async(add, pairs.clone(), None).unwrap();
    assert_eq!(pending.get_timeout(LONG).unwrap(), expected);
    let (tx, rx) = mpsc::channel();
    let pending = pool
        .starmap_async_with(
            describe,
            [("a".to_string(), 1, false), ("b".to_string(), 2, true)],
            None,
            move |v: &Vec<String>| tx.send(v.clone()).unwrap(),
            |_| {},
        )
        .unwrap();
    assert_eq!(pending.get_timeout(LONG).unwrap(), ["a", "B B"]);
    assert_eq!(rx.recv_timeout(LONG).unwrap(), ["a", "B B"]);
}
