//! Internals that behaviour tests cannot see: registrations are cleaned up.

use std::time::Duration;

use crate::{Completer, ReturnWhen, as_completed, wait};

fn watchers<T>(fut: &crate::Future<T>) -> usize {
    fut.watcher_count()
}

#[test]
fn a_timed_out_wait_leaves_no_watcher_behind() {
    let (_c, fut) = Completer::<u8>::new();
    for _ in 0..100 {
        let _ = wait(
            [&fut],
            Some(Duration::from_millis(1)),
            ReturnWhen::AllCompleted,
        );
    }
    assert_eq!(watchers(&fut), 0);
}

#[test]
fn a_dropped_as_completed_leaves_no_watcher_behind() {
    let (_c, fut) = Completer::<u8>::new();
    let mut it = as_completed([&fut], Some(Duration::from_millis(1)));
    assert_eq!(watchers(&fut), 1);
    assert!(it.next().unwrap().is_err());
    drop(it);
    assert_eq!(watchers(&fut), 0);
}
