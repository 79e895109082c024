//! Behaviour of `Condition`: notify wakes exactly as many waiters as asked, in order,
//! `wait` and `wait_for` time out, and a bounded buffer built on it loses nothing.

mod common;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use flotilla_thread::Condition;

use common::{LONG, eventually};

#[test]
fn wait_without_notify_times_out() {
    let cond = Condition::new(());
    let mut guard = cond.lock();
    assert!(!guard.wait_timeout(Duration::from_millis(20)));
    assert!(!guard.wait_timeout(Duration::ZERO));
    assert_eq!(guard.waiting(), 0, "a timed-out waiter stayed queued");
}

#[test]
fn notify_wakes_as_many_waiters_as_asked_oldest_first() {
    let cond = Arc::new(Condition::new(Vec::new()));
    let spawn_waiter = |id: u32| {
        let cond = Arc::clone(&cond);
        std::thread::spawn(move || {
            let mut guard = cond.lock();
            let notified = guard.wait_timeout(LONG);
            guard.push(id);
            notified
        })
    };
    let first = spawn_waiter(1);
    eventually("the first waiter waits", || cond.lock().waiting() == 1);
    let second = spawn_waiter(2);
    eventually("both waiters wait", || cond.lock().waiting() == 2);

    cond.lock().notify(1);
    assert!(
        first.join().unwrap(),
        "the oldest waiter was not the one woken"
    );
    {
        let guard = cond.lock();
        assert_eq!(*guard, [1]);
        assert_eq!(guard.waiting(), 1);
    }
    cond.lock().notify_all();
    assert!(second.join().unwrap());
    assert_eq!(*cond.lock(), [1, 2]);
}

#[test]
fn wait_for_returns_false_when_the_predicate_stays_false() {
    let cond = Condition::new(0);
    let mut guard = cond.lock();
    let mut calls = 0;
    let result = guard.wait_for_timeout(
        |_| {
            calls += 1;
            false
        },
        Duration::from_millis(30),
    );
    assert!(!result);
    assert!(calls >= 1);
}

#[test]
fn wait_for_returns_true_at_once_when_the_predicate_holds() {
    let cond = Condition::new(5);
    let mut guard = cond.lock();
    assert!(guard.wait_for_timeout(|n| *n == 5, Duration::ZERO));
}

#[test]
fn wait_for_sees_the_update_that_makes_the_predicate_true() {
    let cond = Arc::new(Condition::new(0));
    let setter = {
        let cond = Arc::clone(&cond);
        std::thread::spawn(move || {
            for _ in 0..5 {
                let mut n = cond.lock();
                *n += 1;
                n.notify_all();
            }
        })
    };
    let mut n = cond.lock();
    assert!(n.wait_for_timeout(|n| *n == 5, LONG));
    drop(n);
    setter.join().unwrap();
}

#[test]
fn a_bounded_buffer_loses_and_duplicates_nothing() {
    const CAPACITY: usize = 5;
    const PRODUCERS: u32 = 4;
    const PER_PRODUCER: u32 = 200;
    let buffer = Arc::new(Condition::new(VecDeque::new()));
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let buffer = Arc::clone(&buffer);
            std::thread::spawn(move || {
                for i in 0..PER_PRODUCER {
                    let mut queue = buffer.lock();
                    assert!(
                        queue.wait_for_timeout(|q| q.len() < CAPACITY, LONG),
                        "producer stuck"
                    );
                    queue.push_back(p * PER_PRODUCER + i);
                    queue.notify_all();
                }
            })
        })
        .collect();
    let mut seen = Vec::new();
    while seen.len() < (PRODUCERS * PER_PRODUCER) as usize {
        let mut queue = buffer.lock();
        assert!(
            queue.wait_for_timeout(|q| !q.is_empty(), LONG),
            "consumer stuck"
        );
        assert!(queue.len() <= CAPACITY);
        seen.extend(queue.drain(..));
        queue.notify_all();
    }
    for p in producers {
        p.join().unwrap();
    }
    seen.sort_unstable();
    assert_eq!(seen, (0..PRODUCERS * PER_PRODUCER).collect::<Vec<_>>());
}

#[test]
fn try_lock_and_timed_acquire_respect_the_holder() {
    let cond = Arc::new(Condition::new(()));
    let held = cond.lock();
    let other = {
        let cond = Arc::clone(&cond);
        std::thread::spawn(move || {
            (
                cond.try_lock().is_none(),
                cond.acquire_timeout(Duration::from_millis(20)).is_none(),
            )
        })
    };
    assert_eq!(other.join().unwrap(), (true, true));
    drop(held);
    assert!(cond.acquire_timeout(LONG).is_some());
}
