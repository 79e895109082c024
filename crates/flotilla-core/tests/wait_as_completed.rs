//! wait() and as_completed() over futures completed by other threads.

use std::time::Duration;

use flotilla_core::{
    Completer, Future, ReturnWhen, TaskError, Waitable, as_completed, as_completed_timeout, wait,
    wait_timeout,
};
use proptest::prelude::*;

const LONG: Duration = Duration::from_secs(30);

/// `n` pending futures and their completers.
fn pending(n: usize) -> (Vec<Completer<usize>>, Vec<Future<usize>>) {
    (0..n).map(|_| Completer::new()).unzip()
}

/// Completes `completers` on another thread in `order`, failing the indices in `fail`,
/// sleeping `gap_us` before each; returns the order they actually completed in.
fn complete_in_order(
    completers: Vec<Completer<usize>>,
    order: Vec<usize>,
    fail: Vec<usize>,
    gap_us: u64,
) -> std::thread::JoinHandle<Vec<usize>> {
    std::thread::spawn(move || {
        let mut slots: Vec<Option<Completer<usize>>> = completers.into_iter().map(Some).collect();
        for &i in &order {
            std::thread::sleep(Duration::from_micros(gap_us));
            let c = slots[i].take().unwrap();
            if fail.contains(&i) {
                c.set_error(TaskError::Panicked {
                    message: format!("task {i}"),
                });
            } else {
                c.set_result(i);
            }
        }
        order
    })
}

#[test]
fn first_completed_returns_with_the_first_one() {
    let (mut completers, futures) = pending(3);
    let second = completers.remove(1);
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        second.set_result(1);
    });
    let (done, not_done) = wait_timeout(&futures, ReturnWhen::FirstCompleted, LONG);
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].result().unwrap(), 1);
    assert_eq!(not_done.len(), 2);
    t.join().unwrap();
}

#[test]
fn all_completed_times_out_with_pending_left() {
    let (completers, futures) = pending(2);
    // Keep the second completer alive: a dropped one would fail its future.
    let mut completers = completers.into_iter();
    completers.next().unwrap().set_result(0);
    let (done, not_done) =
        wait_timeout(futures, ReturnWhen::AllCompleted, Duration::from_millis(30));
    assert_eq!((done.len(), not_done.len()), (1, 1));
    // The pending one keeps no registration from the finished wait.
    let (done, not_done) = wait_timeout(not_done, ReturnWhen::AllCompleted, Duration::ZERO);
    assert_eq!((done.len(), not_done.len()), (0, 1));
}

#[test]
fn first_exception_returns_all_when_nothing_fails() {
    let (completers, futures) = pending(4);
    let t = complete_in_order(completers, vec![3, 1, 0, 2], vec![], 200);
    let (done, not_done) = wait_timeout(&futures, ReturnWhen::FirstException, LONG);
    assert_eq!((done.len(), not_done.len()), (4, 0));
    t.join().unwrap();
}

#[test]
fn cancelled_is_done_but_not_an_exception() {
    let (_completers, futures) = pending(2);
    assert!(futures[0].cancel());
    let (done, not_done) = wait_timeout(
        &futures,
        ReturnWhen::FirstException,
        Duration::from_millis(30),
    );
    assert_eq!((done.len(), not_done.len()), (1, 1));
}

#[test]
fn mixed_value_types_in_one_wait() {
    let (c, text) = Completer::<String>::new();
    let number = Future::ready(1u64);
    let mixed: Vec<Box<dyn Waitable + '_>> = vec![Box::new(&text), Box::new(&number)];
    let (done, not_done) = wait_timeout(mixed, ReturnWhen::AllCompleted, Duration::ZERO);
    assert_eq!((done.len(), not_done.len()), (1, 1));
    c.set_result("now".into());
    let (done, _) = wait_timeout([&text], ReturnWhen::AllCompleted, LONG);
    assert_eq!(done.len(), 1);
}

#[test]
fn as_completed_reports_how_many_were_unfinished() {
    let (completers, futures) = pending(3);
    let mut completers = completers.into_iter();
    completers.next().unwrap().set_result(0);
    let mut it = as_completed_timeout(futures, Duration::from_millis(30));
    assert_eq!(it.next().unwrap().unwrap().result().unwrap(), 0);
    match it.next() {
        Some(Err(TaskError::Unfinished {
            unfinished: 2,
            total: 3,
        })) => {}
        other => panic!("unexpected {other:?}"),
    }
    assert!(it.next().is_none(), "iteration ends after the timeout");
    let err = TaskError::Unfinished {
        unfinished: 2,
        total: 3,
    };
    assert_eq!(err.to_string(), "2 (of 3) futures unfinished");
}

#[test]
fn dropping_as_completed_unregisters() {
    let (completers, futures) = pending(2);
    drop(as_completed(&futures));
    // Completing after the iterator is gone fires nothing and hangs nothing.
    for (i, c) in completers.into_iter().enumerate() {
        c.set_result(i);
    }
    let all: Vec<_> = as_completed_timeout(&futures, LONG)
        .map(Result::unwrap)
        .collect();
    assert_eq!(all.len(), 2);
}

fn permutation(n: usize) -> impl Strategy<Value = Vec<usize>> {
    Just((0..n).collect::<Vec<_>>()).prop_shuffle()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Every future is yielded exactly once, in the order it completed.
    #[test]
    fn as_completed_yields_each_once_in_completion_order(
        (n, order, already) in (1usize..12).prop_flat_map(|n| (Just(n), permutation(n), 0..=n))
    ) {
        let (completers, futures) = pending(n);
        // The first `already` of `order` complete before the call, the rest after.
        let mut slots: Vec<Option<Completer<usize>>> = completers.into_iter().map(Some).collect();
        for &i in &order[..already] {
            slots[i].take().unwrap().set_result(i);
        }
        let rest: Vec<Completer<usize>> = order[already..].iter().map(|&i| slots[i].take().unwrap()).collect();
        let rest_order: Vec<usize> = order[already..].to_vec();
        let it = as_completed_timeout(futures, LONG);
        let t = std::thread::spawn(move || {
            for (c, i) in rest.into_iter().zip(rest_order) {
                std::thread::sleep(Duration::from_micros(50));
                c.set_result(i);
            }
        });
        let yielded: Vec<usize> = it.map(|f| f.unwrap().result().unwrap()).collect();
        t.join().unwrap();
        let mut early: Vec<usize> = order[..already].to_vec();
        early.sort_unstable(); // already-done ones come first, in input order
        prop_assert_eq!(&yielded[..already], &early[..]);
        prop_assert_eq!(&yielded[already..], &order[already..]);
    }

    /// wait(FirstException) returns once a failure is done, and not before.
    #[test]
    fn first_exception_waits_for_the_first_failure(
        (n, order, failing) in (2usize..10).prop_flat_map(|n| (Just(n), permutation(n), 0..n))
    ) {
        let (completers, futures) = pending(n);
        let t = complete_in_order(completers, order.clone(), vec![failing], 100);
        let (done, not_done) = wait_timeout(&futures, ReturnWhen::FirstException, LONG);
        prop_assert!(futures[failing].done(), "returned before the failure");
        prop_assert!(done.iter().any(|f| f.result().is_err()));
        let position = order.iter().position(|&i| i == failing).unwrap();
        // At least everything completed before the failure is done.
        prop_assert!(done.len() > position);
        prop_assert_eq!(done.len() + not_done.len(), n);
        t.join().unwrap();
    }
}

/// A wait on no futures is over at once, whatever it waits for (Python returns two
/// empty sets); run on a thread so that a hang fails the test instead of stalling it.
#[test]
fn wait_on_no_futures_returns_at_once_for_every_return_when() {
    let waiter = std::thread::spawn(|| {
        for when in [
            ReturnWhen::FirstCompleted,
            ReturnWhen::FirstException,
            ReturnWhen::AllCompleted,
        ] {
            for timeout in [None, Some(LONG), Some(Duration::ZERO)] {
                let none = Vec::<Future<u8>>::new();
                let (done, not_done) = match timeout {
                    Some(t) => wait_timeout(none, when, t),
                    None => wait(none, when),
                };
                assert!(done.is_empty() && not_done.is_empty());
            }
        }
        assert_eq!(as_completed(Vec::<Future<u8>>::new()).count(), 0);
    });
    let deadline = std::time::Instant::now() + LONG;
    while !waiter.is_finished() {
        assert!(
            std::time::Instant::now() < deadline,
            "wait on no futures hung"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    waiter.join().unwrap();
}

/// A future given several times (itself or its clones) is one future: `as_completed`
/// yields it once and `wait` counts and returns it once, in its first place.
#[test]
fn a_future_given_twice_is_one_future() {
    let (c, f) = Completer::<u8>::new();
    let other = Future::ready(9u8);
    let input = vec![
        f.clone(),
        other.clone(),
        f.clone(),
        f.clone(),
        other.clone(),
    ];

    let (done, not_done) = wait_timeout(&input, ReturnWhen::AllCompleted, Duration::ZERO);
    assert_eq!((done.len(), not_done.len()), (1, 1));

    c.set_result(1);
    let yielded: Vec<u8> = as_completed_timeout(input.clone(), LONG)
        .map(|f| f.unwrap().result().unwrap())
        .collect();
    assert_eq!(yielded, [1, 9]);

    let (done, not_done) = wait_timeout(input, ReturnWhen::AllCompleted, LONG);
    assert_eq!(
        done.iter().map(|f| f.id()).collect::<Vec<_>>(),
        [f.id(), other.id()]
    );
    assert!(not_done.is_empty());
}
