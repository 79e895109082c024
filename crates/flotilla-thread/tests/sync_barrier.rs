//! Behaviour of `Barrier`: arrival indices, reuse across rounds, and breaking by abort,
//! timeout and reset.

mod common;

use std::sync::Arc;
use std::time::Duration;

use flotilla_thread::{Barrier, Error};

use common::{LONG, eventually};

fn spawn_waiters(
    barrier: &Arc<Barrier>,
    n: usize,
    timeout: Option<Duration>,
) -> Vec<std::thread::JoinHandle<Result<usize, Error>>> {
    (0..n)
        .map(|_| {
            let barrier = Arc::clone(barrier);
            std::thread::spawn(move || match timeout {
                Some(t) => barrier.wait_timeout(t),
                None => barrier.wait(),
            })
        })
        .collect()
}

#[test]
fn every_round_hands_out_each_index_once() {
    const PARTIES: usize = 3;
    const ROUNDS: usize = 20;
    let barrier = Arc::new(Barrier::new(PARTIES));
    let threads: Vec<_> = (0..PARTIES)
        .map(|_| {
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                (0..ROUNDS)
                    .map(|_| barrier.wait_timeout(LONG))
                    .collect::<Result<Vec<_>, _>>()
            })
        })
        .collect();
    let per_thread: Vec<Vec<usize>> = threads
        .into_iter()
        .map(|t| t.join().unwrap().unwrap())
        .collect();
    for round in 0..ROUNDS {
        let mut indices: Vec<usize> = per_thread.iter().map(|t| t[round]).collect();
        indices.sort_unstable();
        assert_eq!(indices, [0, 1, 2], "round {round}");
    }
    assert!(!barrier.broken());
    assert_eq!(barrier.n_waiting(), 0);
}

#[test]
fn abort_breaks_current_and_later_waiters_until_reset() {
    let barrier = Arc::new(Barrier::new(3));
    let waiters = spawn_waiters(&barrier, 2, Some(LONG));
    eventually("two threads wait", || barrier.n_waiting() == 2);
    barrier.abort();
    for w in waiters {
        assert!(matches!(w.join().unwrap(), Err(Error::BrokenBarrier)));
    }
    assert!(barrier.broken());
    assert_eq!(barrier.n_waiting(), 0);
    assert!(matches!(
        barrier.wait_timeout(LONG),
        Err(Error::BrokenBarrier)
    ));

    barrier.reset();
    assert!(!barrier.broken());
    let waiters = spawn_waiters(&barrier, 3, Some(LONG));
    for w in waiters {
        assert!(
            w.join().unwrap().is_ok(),
            "the barrier stayed broken after reset"
        );
    }
}

#[test]
fn a_timed_out_wait_breaks_the_barrier_for_everyone() {
    let barrier = Arc::new(Barrier::new(3));
    let patient = spawn_waiters(&barrier, 1, Some(LONG));
    eventually("one thread waits", || barrier.n_waiting() == 1);
    assert!(matches!(
        barrier.wait_timeout(Duration::from_millis(20)),
        Err(Error::BrokenBarrier)
    ));
    for w in patient {
        assert!(matches!(w.join().unwrap(), Err(Error::BrokenBarrier)));
    }
    assert!(barrier.broken());
    assert!(matches!(barrier.wait(), Err(Error::BrokenBarrier)));
}

#[test]
fn reset_breaks_the_waiters_and_leaves_the_barrier_usable() {
    let barrier = Arc::new(Barrier::new(2));
    let waiters = spawn_waiters(&barrier, 1, Some(LONG));
    eventually("one thread waits", || barrier.n_waiting() == 1);
    barrier.reset();
    for w in waiters {
        assert!(matches!(w.join().unwrap(), Err(Error::BrokenBarrier)));
    }
    assert!(!barrier.broken());
    assert_eq!(barrier.n_waiting(), 0);
    let waiters = spawn_waiters(&barrier, 2, Some(LONG));
    let mut indices: Vec<usize> = waiters
        .into_iter()
        .map(|w| w.join().unwrap().unwrap())
        .collect();
    indices.sort_unstable();
    assert_eq!(indices, [0, 1]);
}

#[test]
fn zero_parties_behaves_as_one() {
    let barrier = Barrier::new(0);
    assert_eq!(barrier.parties(), 1);
    assert_eq!(barrier.wait_timeout(Duration::ZERO).unwrap(), 0);
    assert_eq!(barrier.wait().unwrap(), 0);
}

/// Python's `Barrier(parties, action)`: the action runs once per round, in one of the
/// arriving threads, before any of them is released; it may use the barrier itself.
#[test]
fn the_action_runs_once_per_round_before_the_release() {
    use std::sync::atomic::{AtomicUsize, Ordering};

    const PARTIES: usize = 3;
    const ROUNDS: usize = 10;
    let actions = Arc::new(AtomicUsize::new(0));
    let slot = Arc::new(std::sync::OnceLock::<Arc<Barrier>>::new());
    let barrier = {
        let (actions, slot) = (Arc::clone(&actions), Arc::clone(&slot));
        Arc::new(
            Barrier::builder(PARTIES)
                .action(move || {
                    // The barrier's own methods work from inside the action.
                    let barrier = slot.get().expect("set before any wait");
                    assert_eq!(barrier.n_waiting(), PARTIES - 1);
                    assert!(!barrier.broken());
                    actions.fetch_add(1, Ordering::SeqCst);
                })
                .build(),
        )
    };
    slot.set(Arc::clone(&barrier)).unwrap();
    let threads: Vec<_> = (0..PARTIES)
        .map(|_| {
            let (barrier, actions) = (Arc::clone(&barrier), Arc::clone(&actions));
            std::thread::spawn(move || {
                for round in 1..=ROUNDS {
                    barrier.wait_timeout(LONG).unwrap();
                    // Released only after this round's action ran (and not the next's).
                    let seen = actions.load(Ordering::SeqCst);
                    assert!(seen == round || seen == round + 1, "round {round}: {seen}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(actions.load(Ordering::SeqCst), ROUNDS);
}

/// An action that panics breaks the barrier for the round's waiters, and the panic goes
/// on in the thread that ran it, as Python's exception does.
#[test]
fn a_panicking_action_breaks_the_round_and_panics_its_thread() {
    let barrier = Arc::new(
        Barrier::builder(2)
            .action(|| panic!("the action failed"))
            .build(),
    );
    let waiter = spawn_waiters(&barrier, 1, Some(LONG)).pop().unwrap();
    eventually("the first party waits", || barrier.n_waiting() == 1);
    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| barrier.wait_timeout(LONG)));
    let panic = ran.expect_err("the action's panic reaches its thread");
    assert_eq!(panic.downcast_ref::<&str>(), Some(&"the action failed"));
    assert!(matches!(waiter.join().unwrap(), Err(Error::BrokenBarrier)));
    assert!(barrier.broken());
    barrier.reset();
    assert!(!barrier.broken());
}

/// Python's `Barrier(parties, timeout=...)`: a `wait(None)` uses the barrier's default
/// timeout, and its expiry breaks the barrier.
#[test]
fn wait_none_uses_the_default_timeout() {
    let barrier = Barrier::builder(2)
        .timeout(Duration::from_millis(50))
        .build();
    let waited = std::thread::scope(|s| s.spawn(|| barrier.wait()).join().unwrap());
    assert!(matches!(waited, Err(Error::BrokenBarrier)));
    assert!(barrier.broken());
}

/// A thread arriving while the action runs belongs to the next round: it does not pass
/// with the round that is being released.
#[test]
fn an_arrival_during_the_action_waits_for_the_next_round() {
    let gate = Arc::new(flotilla_thread::Event::new());
    let barrier = {
        let gate = Arc::clone(&gate);
        Arc::new(
            Barrier::builder(1)
                .action(move || {
                    gate.wait_timeout(LONG);
                })
                .build(),
        )
    };
    // The first arrival runs the action, which holds until the gate opens.
    let first = spawn_waiters(&barrier, 1, Some(LONG)).pop().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    // A second arrival meanwhile cannot pass with that round.
    let second = spawn_waiters(&barrier, 1, Some(LONG)).pop().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert!(!first.is_finished() && !second.is_finished());
    gate.set();
    assert_eq!(first.join().unwrap().unwrap(), 0);
    assert_eq!(second.join().unwrap().unwrap(), 0);
}
