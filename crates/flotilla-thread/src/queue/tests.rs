//! Unit tests for the queue's internals: the waiter counts that decide whether a put, get
//! or task_done notifies anyone, and the stores' orders.

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use super::{Fifo, Lifo, Priority, Queue, Store};

/// Long enough that a healthy test never meets it; short enough that a broken one fails.
const PATIENCE: Duration = Duration::from_secs(30);

fn waiters<S: Store>(q: &super::GenericQueue<S>) -> (usize, usize, usize) {
    let state = q.lock();
    (state.getters, state.putters, state.joiners)
}

/// Spins (with sleeps) until `cond` holds, failing after `PATIENCE`.
fn eventually(mut cond: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !cond() {
        assert!(start.elapsed() < PATIENCE, "condition never came true");
        thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn timed_out_waiters_uncount_themselves() {
    let q = Queue::bounded(1);
    assert!(q.get_timeout(Duration::from_millis(5)).is_err());
    q.put(1).unwrap();
    assert!(q.put_timeout(2, Duration::from_millis(5)).is_err());
    assert!(!q.join_timeout(Duration::from_millis(5)));
    assert_eq!(waiters(&q), (0, 0, 0));
}

#[test]
fn blocked_waiters_are_counted_and_uncounted() {
    let q = Queue::<u32>::bounded(1);
    let (done_tx, done_rx) = mpsc::channel();
    let getter = {
        let q = q.clone();
        thread::spawn(move || done_tx.send(q.get()).unwrap())
    };
    eventually(|| waiters(&q).0 == 1);
    q.put(7).unwrap();
    assert_eq!(done_rx.recv_timeout(PATIENCE).unwrap(), Ok(7));
    getter.join().unwrap();
    assert_eq!(waiters(&q), (0, 0, 0));

    q.put(1).unwrap();
    let (put_tx, put_rx) = mpsc::channel();
    let putter = {
        let q = q.clone();
        thread::spawn(move || put_tx.send(q.put(2).map_err(|e| e.into_inner())).unwrap())
    };
    eventually(|| waiters(&q).1 == 1);
    assert_eq!(q.get(), Ok(1));
    assert_eq!(put_rx.recv_timeout(PATIENCE).unwrap(), Ok(()));
    putter.join().unwrap();
    assert_eq!(waiters(&q), (0, 0, 0));
}

#[test]
fn a_woken_getter_takes_the_item_even_past_its_deadline() {
    // Zero timeout: the deadline has passed before the first check, yet an item that is
    // there is still taken.
    let q = Queue::new();
    q.put(1).unwrap();
    assert_eq!(q.get_timeout(Duration::ZERO), Ok(1));
    q.close();
    assert!(q.get_timeout(Duration::ZERO).unwrap_err().is_closed());
}

#[test]
fn huge_timeouts_do_not_overflow() {
    let q = Queue::new();
    q.put(1).unwrap();
    assert_eq!(q.get_timeout(Duration::MAX), Ok(1));
    q.put_timeout(2, Duration::MAX).unwrap();
    q.get().unwrap();
    q.task_done().unwrap();
    q.task_done().unwrap();
    assert!(q.join_timeout(Duration::MAX));
}

#[test]
fn stores_order_their_items() {
    fn drain<S: Store<Item = i32>>(mut s: S, items: &[i32]) -> Vec<i32> {
        for &i in items {
            s.push(i);
        }
        assert_eq!(s.len(), items.len());
        std::iter::from_fn(|| s.pop()).collect()
    }
    let items = [3, 1, 2, 1];
    assert_eq!(drain(Fifo::default(), &items), [3, 1, 2, 1]);
    assert_eq!(drain(Lifo::default(), &items), [1, 2, 1, 3]);
    assert_eq!(drain(Priority::default(), &items), [1, 1, 2, 3]);
}

#[test]
fn priority_ties_come_out_in_put_order() {
    /// Compares by `key` only, so equal keys are told apart by `tag`.
    #[derive(Debug)]
    struct Job {
        key: u8,
        tag: usize,
    }
    impl PartialEq for Job {
        fn eq(&self, other: &Self) -> bool {
            self.key == other.key
        }
    }
    impl Eq for Job {}
    impl PartialOrd for Job {
        fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
            Some(self.cmp(other))
        }
    }
    impl Ord for Job {
        fn cmp(&self, other: &Self) -> std::cmp::Ordering {
            self.key.cmp(&other.key)
        }
    }

    let mut s = Priority::default();
    let keys = [2, 1, 2, 1, 0, 2, 1];
    for (tag, key) in keys.into_iter().enumerate() {
        s.push(Job { key, tag });
    }
    let out: Vec<_> = std::iter::from_fn(|| s.pop())
        .map(|j| (j.key, j.tag))
        .collect();
    assert_eq!(
        out,
        [(0, 4), (1, 1), (1, 3), (1, 6), (2, 0), (2, 2), (2, 5)]
    );
}
