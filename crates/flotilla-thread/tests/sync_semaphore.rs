//! Behaviour of `Semaphore` and `BoundedSemaphore`: blocking, timeouts, release(n),
//! permits, and the bounded kind's over-release error.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use flotilla_thread::{BoundedSemaphore, Error, Semaphore};

use common::{LONG, eventually};

#[test]
fn acquire_times_out_when_no_permit_is_free() {
    let sem = Semaphore::new(0);
    assert!(!sem.acquire_timeout(Duration::from_millis(20)));
    assert!(!sem.try_acquire());
    assert!(sem.acquire_permit_timeout(Duration::ZERO).is_none());
}

#[test]
fn release_wakes_a_blocked_acquire() {
    let sem = Arc::new(Semaphore::new(0));
    let waiter = {
        let sem = Arc::clone(&sem);
        std::thread::spawn(move || sem.acquire_timeout(LONG))
    };
    sem.release(1);
    assert!(waiter.join().unwrap());
    assert_eq!(sem.value(), 0);
}

#[test]
fn release_n_wakes_n_waiters() {
    let sem = Arc::new(Semaphore::new(0));
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let sem = Arc::clone(&sem);
            std::thread::spawn(move || sem.acquire_timeout(LONG))
        })
        .collect();
    sem.release(3);
    for waiter in waiters {
        assert!(waiter.join().unwrap());
    }
    assert_eq!(sem.value(), 0);
}

#[test]
fn permits_bound_how_many_threads_are_inside() {
    const SLOTS: usize = 3;
    let sem = Arc::new(Semaphore::new(SLOTS));
    let inside = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (sem, inside, most) = (Arc::clone(&sem), Arc::clone(&inside), Arc::clone(&most));
            std::thread::spawn(move || {
                for _ in 0..50 {
                    let _permit = sem.acquire_permit_timeout(LONG).expect("permit in time");
                    let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    std::thread::yield_now();
                    inside.fetch_sub(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(most.load(Ordering::SeqCst) <= SLOTS);
    assert_eq!(sem.value(), SLOTS);
}

#[test]
fn dropping_a_permit_releases_it() {
    let sem = Semaphore::new(1);
    let permit = sem.try_acquire_permit().unwrap();
    assert_eq!(sem.value(), 0);
    drop(permit);
    assert_eq!(sem.value(), 1);
}

#[test]
fn unbounded_release_may_raise_the_value_and_saturates() {
    let sem = Semaphore::new(1);
    sem.release(2);
    assert_eq!(sem.value(), 3);
    sem.release(usize::MAX);
    assert_eq!(sem.value(), usize::MAX);
}

#[test]
fn bounded_release_past_the_bound_is_an_error_and_changes_nothing() {
    let sem = BoundedSemaphore::new(2);
    assert!(matches!(
        sem.release(1),
        Err(Error::SemaphoreOverReleased { bound: 2 })
    ));
    assert!(sem.try_acquire());
    assert!(matches!(
        sem.release(2),
        Err(Error::SemaphoreOverReleased { bound: 2 })
    ));
    assert!(sem.release(usize::MAX).is_err());
    assert_eq!(sem.value(), 1);
    sem.release(1).unwrap();
    assert_eq!(sem.value(), 2);
}

#[test]
fn bounded_release_wakes_a_waiter() {
    let sem = Arc::new(BoundedSemaphore::new(1));
    assert!(sem.try_acquire());
    let waiter = {
        let sem = Arc::clone(&sem);
        std::thread::spawn(move || sem.acquire_permit_timeout(LONG).is_some())
    };
    sem.release(1).unwrap();
    assert!(waiter.join().unwrap());
    eventually("the permit is back", || sem.value() == 1);
}

#[test]
fn over_release_error_says_what_happened() {
    let sem = BoundedSemaphore::new(1);
    let err = sem.release(1).unwrap_err();
    assert!(err.to_string().contains("may not exceed 1"), "{err}");
}
