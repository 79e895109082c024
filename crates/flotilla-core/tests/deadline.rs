//! Deadline: what never expires, what has expired, and which of two comes first.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use flotilla_core::Deadline;

#[test]
fn no_timeout_and_unrepresentable_timeouts_never_expire() {
    assert!(!Deadline::after(None).expired());
    assert!(!Deadline::after(Some(Duration::MAX)).expired());
    assert_eq!(Deadline::after(Some(Duration::MAX)), Deadline::NEVER);
    assert_eq!(Deadline::NEVER.remaining(), None);
}

#[test]
fn a_zero_timeout_has_expired_and_does_not_block() {
    let deadline = Deadline::after(Some(Duration::ZERO));
    assert!(deadline.expired());
    assert_eq!(deadline.remaining(), Some(Duration::ZERO));
    let (mutex, cv) = (Mutex::new(()), Condvar::new());
    // Returns at once: nobody will ever notify `cv`.
    drop(deadline.wait(&cv, mutex.lock().unwrap()));
}

#[test]
fn the_earlier_deadline_is_the_smaller_and_never_is_the_latest() {
    let now = Instant::now();
    let soon = Deadline::at(now);
    let later = Deadline::at(now + Duration::from_secs(1));
    assert_eq!(soon.min(later), soon);
    assert_eq!(later.min(Deadline::NEVER), later);
    assert_eq!(Deadline::NEVER.min(soon), soon);
    assert_eq!(Deadline::NEVER.max(later), Deadline::NEVER);
}
