//! Behaviour of `RLock`: reentrancy, one level released per guard, exclusion across
//! threads, timeouts.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use flotilla_thread::RLock;

const LONG: Duration = Duration::from_secs(10);

#[test]
fn the_holder_may_acquire_again() {
    let lock = RLock::new(());
    let a = lock.lock();
    let b = lock
        .acquire_timeout(Duration::ZERO)
        .expect("reentrant acquire");
    let c = lock.try_lock().expect("reentrant try_lock");
    assert_eq!(lock.depth(), 3);
    drop((a, b, c));
    assert_eq!(lock.depth(), 0);
    assert!(!lock.is_owned());
}

#[test]
fn other_threads_are_excluded_until_every_level_is_released() {
    let lock = Arc::new(RLock::new(()));
    let (held_tx, held_rx) = mpsc::channel();
    let (step_tx, step_rx) = mpsc::channel::<()>();
    let holder = {
        let lock = Arc::clone(&lock);
        std::thread::spawn(move || {
            let outer = lock.lock();
            let inner = lock.lock();
            held_tx.send(()).unwrap();
            step_rx.recv().unwrap();
            drop(inner); // one level left: still held
            held_tx.send(()).unwrap();
            step_rx.recv().unwrap();
            drop(outer);
        })
    };
    held_rx.recv_timeout(LONG).unwrap();
    assert!(lock.try_lock().is_none());
    assert!(lock.acquire_timeout(Duration::from_millis(20)).is_none());
    assert!(!lock.is_owned());

    step_tx.send(()).unwrap();
    held_rx.recv_timeout(LONG).unwrap();
    assert!(
        lock.try_lock().is_none(),
        "one release freed a lock held twice"
    );

    step_tx.send(()).unwrap();
    let guard = lock.acquire_timeout(LONG);
    assert!(
        guard.is_some(),
        "the lock was not freed by the last release"
    );
    drop(guard);
    holder.join().unwrap();
}

#[test]
fn a_blocked_acquire_gets_the_lock_when_released() {
    let lock = Arc::new(RLock::new(()));
    let guard = lock.lock();
    let waiter = {
        let lock = Arc::clone(&lock);
        std::thread::spawn(move || lock.acquire_timeout(LONG).map(|g| lock_depth(&g, &lock)))
    };
    drop(guard);
    assert_eq!(waiter.join().unwrap(), Some(1));
}

fn lock_depth(_guard: &flotilla_thread::RLockGuard<'_, ()>, lock: &RLock<()>) -> usize {
    lock.depth()
}

#[test]
fn it_serialises_nested_updates_across_threads() {
    let counter = Arc::new(RLock::new(RefCell::new(0_u64)));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let counter = Arc::clone(&counter);
            std::thread::spawn(move || {
                for _ in 0..500 {
                    let outer = counter.acquire_timeout(LONG).expect("lock in time");
                    let value = *outer.borrow();
                    // Re-enter, as a helper function called under the lock would.
                    let inner = counter.lock();
                    std::thread::yield_now();
                    *inner.borrow_mut() = value + 1;
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(*counter.lock().borrow(), 2000);
    let counter = Arc::try_unwrap(counter).unwrap();
    assert_eq!(counter.into_inner().into_inner(), 2000);
}

#[test]
fn debug_shows_the_value_or_that_it_is_locked() {
    let lock = Arc::new(RLock::new(7));
    assert!(format!("{lock:?}").contains('7'));
    let _guard = lock.lock();
    let seen = {
        let lock = Arc::clone(&lock);
        std::thread::spawn(move || format!("{lock:?}"))
            .join()
            .unwrap()
    };
    assert!(seen.contains("<locked>"), "{seen}");
}
