//! Unit tests for the internals shared by the primitives: the poison-recovering `lock`
//! and the per-thread serial number `RLock` identifies owners by.

use std::sync::Mutex;

use super::lock;
use crate::thread::current_serial;

#[test]
fn serials_are_stable_per_thread_and_distinct_across_threads() {
    let here = current_serial();
    assert_ne!(here, 0);
    assert_eq!(current_serial(), here);
    let there = std::thread::spawn(current_serial).join().unwrap();
    assert_ne!(there, here);
    assert_ne!(there, 0);
}

#[test]
fn lock_recovers_a_poisoned_mutex() {
    let mutex = std::sync::Arc::new(Mutex::new(1));
    let poisoner = std::sync::Arc::clone(&mutex);
    let _ = std::thread::spawn(move || {
        let _guard = poisoner.lock().unwrap();
        panic!("poison the mutex");
    })
    .join();
    assert!(mutex.is_poisoned());
    assert_eq!(*lock(&mutex), 1);
}
