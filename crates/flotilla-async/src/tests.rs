//! Internals that behaviour tests cannot see: the ready set polls only woken children.

use std::task::{Context, Waker};

use crate::ready::ReadySet;

#[test]
fn every_child_starts_queued_and_a_wake_queues_it_once() {
    let set = ReadySet::new(3);
    let cx = Context::from_waker(Waker::noop());
    assert_eq!(set.drain(&cx), [0, 1, 2]);
    assert!(set.drain(&cx).is_empty());
    set.waker(2).wake_by_ref();
    set.waker(2).wake_by_ref();
    set.waker(0).wake_by_ref();
    assert!(set.any_queued());
    assert_eq!(set.drain(&cx), [2, 0]);
    assert!(!set.any_queued());
}

#[test]
fn a_wake_during_a_poll_is_not_lost() {
    let set = ReadySet::new(1);
    let cx = Context::from_waker(Waker::noop());
    assert_eq!(set.drain(&cx), [0]);
    // The child, while being polled, is woken (say by a completing thread).
    set.waker(0).wake_by_ref();
    assert_eq!(set.drain(&cx), [0]);
}
