//! A notification goes to a thread that was waiting when it was sent, never to a later
//! `wait` — not even to the notifier's own wait right after it.

use std::sync::{Arc, mpsc};
use std::time::Duration;

use flotilla_thread::Condition;

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

#[test]
fn a_notifier_that_waits_next_does_not_take_its_own_notification() {
    within_deadline(|| {
        for run in 0..20 {
            let cond = Arc::new(Condition::new(()));
            let waiter = {
                let cond = Arc::clone(&cond);
                std::thread::spawn(move || cond.lock().wait_timeout(Duration::from_secs(10)))
            };
            while cond.lock().waiting() < 1 {
                std::thread::sleep(Duration::from_millis(1));
            }
            let mut guard = cond.lock();
            guard.notify(1);
            let woke_itself = guard.wait_timeout(Duration::from_millis(500));
            drop(guard);
            assert!(
                !woke_itself,
                "run {run}: the notifier took its own notification"
            );
            assert!(
                waiter.join().unwrap(),
                "run {run}: the waiter lost the notification"
            );
            assert_eq!(cond.lock().waiting(), 0);
        }
    });
}

/// A one-slot buffer over one condition: the producer waits for the slot to be empty,
/// the consumer for it to be full, each notifying the other after its change.
#[test]
fn a_predicate_driven_producer_and_consumer_never_hang() {
    within_deadline(|| {
        for run in 0..30 {
            let cond = Arc::new(Condition::new(0u32));
            const ITEMS: u32 = 200;
            let consumer = {
                let cond = Arc::clone(&cond);
                std::thread::spawn(move || {
                    let mut sum = 0u64;
                    for _ in 0..ITEMS {
                        let mut slot = cond.lock();
                        let full = slot.wait_for_timeout(|s| *s != 0, Duration::from_secs(10));
                        assert!(full, "the consumer waited in vain");
                        sum += u64::from(std::mem::take(&mut *slot));
                        slot.notify(1);
                    }
                    sum
                })
            };
            for item in 1..=ITEMS {
                let mut slot = cond.lock();
                let empty = slot.wait_for_timeout(|s| *s == 0, Duration::from_secs(10));
                assert!(
                    empty,
                    "run {run}: the producer waited in vain at item {item}"
                );
                *slot = item;
                slot.notify(1);
            }
            let expected = u64::from(ITEMS) * u64::from(ITEMS + 1) / 2;
            assert_eq!(consumer.join().unwrap(), expected, "run {run}");
        }
    });
}
