//! Behaviour of `Event`: set wakes every waiter, timeouts, clear.

use std::sync::Arc;
use std::time::Duration;

use flotilla_thread::Event;

const LONG: Duration = Duration::from_secs(10);

#[test]
fn set_wakes_every_waiter() {
    let event = Arc::new(Event::new());
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let event = Arc::clone(&event);
            std::thread::spawn(move || event.wait_timeout(LONG))
        })
        .collect();
    event.set();
    for waiter in waiters {
        assert!(
            waiter.join().unwrap(),
            "a waiter timed out although the event was set"
        );
    }
}

#[test]
fn wait_times_out_while_not_set() {
    let event = Event::new();
    assert!(!event.wait_timeout(Duration::from_millis(20)));
    assert!(!event.wait_timeout(Duration::ZERO));
    assert!(!event.is_set());
}

#[test]
fn wait_on_a_set_event_returns_at_once() {
    let event = Event::new();
    event.set();
    assert!(event.wait_timeout(Duration::ZERO));
    event.wait();
}

#[test]
fn clear_makes_waiters_block_again() {
    let event = Event::new();
    event.set();
    event.clear();
    assert!(!event.is_set());
    assert!(!event.wait_timeout(Duration::from_millis(20)));
}

#[test]
fn a_huge_timeout_is_no_timeout() {
    let event = Arc::new(Event::new());
    let waiter = {
        let event = Arc::clone(&event);
        std::thread::spawn(move || event.wait_timeout(Duration::MAX))
    };
    event.set();
    assert!(waiter.join().unwrap());
}
