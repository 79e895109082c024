//! A notification goes to a waiter that was waiting when it was sent, never to a later
//! `wait` — not even to the notifier's own wait right after it.

use std::sync::mpsc;
use std::time::Duration;

use flotilla_ipc::{Condition, Value};

const LONG: Duration = Duration::from_secs(60);

/// Runs `f` on a thread and fails the test if it has not finished within `LONG`.
fn within_deadline<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(LONG)
        .expect("the scenario did not finish within its deadline")
}

fn waiting(cond: &Condition) -> usize {
    cond.acquire_timeout(LONG).unwrap().waiting()
}

#[test]
fn a_notifier_that_waits_next_does_not_take_its_own_notification() {
    within_deadline(|| {
        for run in 0..20 {
            let cond = Condition::new().unwrap();
            let waiter = {
                let cond = cond.clone();
                std::thread::spawn(move || {
                    let mut guard = cond.acquire_timeout(LONG).unwrap();
                    guard.wait_timeout(Duration::from_secs(10)).unwrap()
                })
            };
            while waiting(&cond) < 1 {
                std::thread::sleep(Duration::from_millis(1));
            }
            let mut guard = cond.acquire_timeout(LONG).unwrap();
            guard.notify(1);
            let woke_itself = guard.wait_timeout(Duration::from_millis(500)).unwrap();
            drop(guard);
            assert!(
                !woke_itself,
                "run {run}: the notifier took its own notification"
            );
            assert!(
                waiter.join().unwrap(),
                "run {run}: the waiter lost the notification"
            );
            assert_eq!(waiting(&cond), 0);
        }
    });
}

#[test]
fn a_waiter_that_times_out_leaves_the_notification_to_an_earlier_one() {
    within_deadline(|| {
        for run in 0..10 {
            let cond = Condition::new().unwrap();
            let early = {
                let cond = cond.clone();
                std::thread::spawn(move || {
                    let mut guard = cond.acquire_timeout(LONG).unwrap();
                    guard.wait_timeout(Duration::from_secs(10)).unwrap()
                })
            };
            while waiting(&cond) < 1 {
                std::thread::sleep(Duration::from_millis(1));
            }
            let mut guard = cond.acquire_timeout(LONG).unwrap();
            guard.notify(1);
            drop(guard);
            // A later waiter: the notification was sent before it began.
            let mut guard = cond.acquire_timeout(LONG).unwrap();
            assert!(
                !guard.wait_timeout(Duration::from_millis(100)).unwrap(),
                "run {run}"
            );
            drop(guard);
            assert!(early.join().unwrap(), "run {run}");
        }
    });
}

/// A one-slot buffer over one condition: the producer waits for the slot to be empty,
/// the consumer for it to be full, each notifying the other after its change.
#[test]
fn a_predicate_driven_producer_and_consumer_never_hang() {
    within_deadline(|| {
        for run in 0..30 {
            let cond = Condition::new().unwrap();
            let slot = Value::raw(0u32).unwrap();
            const ITEMS: u32 = 200;
            let consumer = {
                let (cond, slot) = (cond.clone(), slot.clone());
                std::thread::spawn(move || {
                    let mut sum = 0u64;
                    for _ in 0..ITEMS {
                        let mut guard = cond.acquire_timeout(LONG).unwrap();
                        let full = guard
                            .wait_for_timeout(|| slot.load() != 0, Duration::from_secs(10))
                            .unwrap();
                        assert!(full, "the consumer waited in vain");
                        sum += u64::from(slot.swap(0));
                        guard.notify(1);
                    }
                    sum
                })
            };
            for item in 1..=ITEMS {
                let mut guard = cond.acquire_timeout(LONG).unwrap();
                let empty = guard
                    .wait_for_timeout(|| slot.load() == 0, Duration::from_secs(10))
                    .unwrap();
                assert!(
                    empty,
                    "run {run}: the producer waited in vain at item {item}"
                );
                slot.store(item);
                guard.notify(1);
            }
            let expected = u64::from(ITEMS) * u64::from(ITEMS + 1) / 2;
            assert_eq!(consumer.join().unwrap(), expected, "run {run}");
        }
    });
}
