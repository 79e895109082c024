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
            std::thread::spawn(move || barrier.wait(timeout))
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
                    .map(|_| barrier.wait(Some(LONG)))
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
        barrier.wait(Some(LONG)),
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
        barrier.wait(Some(Duration::from_millis(20))),
        Err(Error::BrokenBarrier)
    ));
    for w in patient {
        assert!(matches!(w.join().unwrap(), Err(Error::BrokenBarrier)));
    }
    assert!(barrier.broken());
    assert!(matches!(barrier.wait(None), Err(Error::BrokenBarrier)));
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
    assert_eq!(barrier.wait(Some(Duration::ZERO)).unwrap(), 0);
    assert_eq!(barrier.wait(None).unwrap(), 0);
}
