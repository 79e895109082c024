//! The primitives' internals with threads of one process: counting, wake-ups,
//! timeouts, and segments checked on receipt. (Across processes: `tests/sync_*.rs`.)

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::{Kind, Segment};
use crate::{
    Barrier, BarrierError, BoundedSemaphore, Condition, CreateError, Error, Event, Lock,
    ReleaseError, Semaphore, SharedMemory, Value, handle,
};

const LONG: Duration = Duration::from_secs(60);
const SHORT: Duration = Duration::from_millis(20);

#[test]
fn a_semaphore_counts_and_wakes_a_sleeper() {
    let sem = Semaphore::new(0).unwrap();
    std::thread::scope(|s| {
        let waiter = s.spawn(|| sem.acquire_timeout(LONG));
        std::thread::sleep(SHORT);
        sem.release(1).unwrap();
        assert!(waiter.join().unwrap());
    });
    assert_eq!(sem.value(), 0);
    assert!(!sem.acquire_timeout(SHORT));
    assert!(!sem.acquire_timeout(Duration::ZERO));
    sem.release(3).unwrap();
    assert_eq!(sem.value(), 3);
    assert!(matches!(
        sem.release(u32::MAX as usize),
        Err(ReleaseError::OverReleased { .. })
    ));
    assert_eq!(sem.value(), 3, "a refused release changes nothing");
}

#[test]
fn a_semaphore_never_admits_more_than_its_value() {
    let sem = BoundedSemaphore::new(2).unwrap();
    let inside = AtomicUsize::new(0);
    let most = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..200 {
                    let _permit = sem.acquire_permit_timeout(LONG).unwrap();
                    let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    std::thread::yield_now();
                    inside.fetch_sub(1, Ordering::SeqCst);
                }
            });
        }
    });
    assert!(most.load(Ordering::SeqCst) <= 2);
    assert_eq!(sem.value(), 2);
}

#[test]
fn values_beyond_32_bits_are_refused() {
    assert!(matches!(
        Semaphore::new(1 << 40),
        Err(CreateError::InvalidArgument(_))
    ));
    assert!(matches!(
        Barrier::new(1 << 40),
        Err(CreateError::InvalidArgument(_))
    ));
    let sem = BoundedSemaphore::new(1).unwrap();
    assert!(matches!(
        sem.release(1 << 40),
        Err(ReleaseError::OverReleased { bound: 1 })
    ));
}

#[test]
fn an_event_set_then_cleared_still_wakes_who_was_waiting() {
    let event = Event::new().unwrap();
    std::thread::scope(|s| {
        let waiter = s.spawn(|| event.wait_timeout(LONG));
        std::thread::sleep(SHORT);
        event.set();
        event.clear();
        assert!(waiter.join().unwrap(), "the set happened while it waited");
    });
    assert!(!event.is_set());
    assert!(!event.wait_timeout(SHORT));
    event.set();
    event.set();
    assert!(event.wait_timeout(Duration::ZERO));
}

#[test]
fn notify_wakes_at_most_n_waiters_and_notify_all_the_rest() {
    let cond = Condition::new().unwrap();
    let woken = AtomicUsize::new(0);
    std::thread::scope(|s| {
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                s.spawn(|| {
                    let mut guard = cond.acquire_timeout(LONG).unwrap();
                    let notified = guard.wait_timeout(LONG).unwrap();
                    woken.fetch_add(1, Ordering::SeqCst);
                    notified
                })
            })
            .collect();
        while cond.acquire().unwrap().waiting() < 3 {
            std::thread::sleep(Duration::from_millis(1));
        }
        cond.acquire().unwrap().notify(1);
        while woken.load(Ordering::SeqCst) < 1 {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(SHORT);
        assert_eq!(woken.load(Ordering::SeqCst), 1, "notify(1) woke one waiter");
        assert_eq!(cond.acquire().unwrap().waiting(), 2);
        cond.acquire().unwrap().notify_all();
        for waiter in waiters {
            assert!(waiter.join().unwrap());
        }
    });
    assert_eq!(cond.acquire().unwrap().waiting(), 0);
}

#[test]
fn a_wait_on_an_rlock_releases_every_level_and_restores_them() {
    let cond = Condition::new().unwrap();
    let flag = Value::raw(0u32).unwrap();
    let mut outer = cond.acquire().unwrap();
    let inner = cond.acquire().unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            // Only possible if the waiter released both of its levels.
            let mut guard = cond.acquire_timeout(LONG).unwrap();
            flag.store(1);
            guard.notify(1);
        });
        assert!(outer.wait_for_timeout(|| flag.load() == 1, LONG).unwrap());
    });
    drop(inner);
    std::thread::scope(|s| {
        s.spawn(|| assert!(cond.try_acquire().is_err(), "one level is still held"));
    });
    drop(outer);
    std::thread::scope(|s| {
        s.spawn(|| assert!(cond.try_acquire().is_ok()));
    });
}

#[test]
fn a_timed_out_wait_uncounts_itself() {
    let cond = Condition::with_lock(Lock::new().unwrap()).unwrap();
    let mut guard = cond.acquire().unwrap();
    assert!(!guard.wait_timeout(SHORT).unwrap());
    assert!(!guard.wait_timeout(Duration::ZERO).unwrap());
    assert_eq!(guard.waiting(), 0);
    guard.notify(5); // nobody to notify: no signal is left over for a later waiter
    assert!(!guard.wait_timeout(SHORT).unwrap());
}

#[test]
fn a_barrier_serves_round_after_round() {
    let barrier = Barrier::new(3).unwrap();
    std::thread::scope(|s| {
        let threads: Vec<_> = (0..3)
            .map(|_| {
                s.spawn(|| {
                    (0..50)
                        .map(|_| barrier.wait_timeout(LONG).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let rounds: Vec<Vec<usize>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        for round in 0..50 {
            let mut indices: Vec<usize> = rounds.iter().map(|r| r[round]).collect();
            indices.sort_unstable();
            assert_eq!(indices, [0, 1, 2], "round {round}");
        }
    });
    assert_eq!(barrier.n_waiting(), 0);
}

#[test]
fn abort_and_reset_break_the_waiters() {
    let barrier = Barrier::new(2).unwrap();
    std::thread::scope(|s| {
        let waiter = s.spawn(|| barrier.wait_timeout(LONG));
        while barrier.n_waiting() < 1 {
            std::thread::sleep(Duration::from_millis(1));
        }
        barrier.reset().unwrap();
        assert!(matches!(waiter.join().unwrap(), Err(BarrierError::Broken)));
    });
    assert!(!barrier.broken(), "reset leaves it usable");
    barrier.abort().unwrap();
    assert!(matches!(
        barrier.wait_timeout(LONG),
        Err(BarrierError::Broken)
    ));
    assert_eq!(barrier.n_waiting(), 0);
    barrier.reset().unwrap();
    std::thread::scope(|s| {
        let other = s.spawn(|| barrier.wait_timeout(LONG));
        let mine = barrier.wait_timeout(LONG).unwrap();
        assert_eq!(mine + other.join().unwrap().unwrap(), 1);
    });
}

#[test]
fn a_received_segment_must_hold_the_primitive_asked_for() {
    let sem = Semaphore::new(1).unwrap();
    let (bytes, fds) = handle::encode(&sem).unwrap();
    let as_event: Result<Event, _> = handle::decode(&bytes, fds);
    assert!(as_event.is_err(), "{as_event:?}");

    let (bytes, fds) = handle::encode(&sem).unwrap();
    let bounded: Result<BoundedSemaphore, _> = handle::decode(&bytes, fds);
    assert!(bounded.is_err(), "a Semaphore is not a BoundedSemaphore");

    let blank = SharedMemory::new(Segment::SIZE).unwrap();
    assert!(matches!(
        Segment::received(blank, Kind::Barrier),
        Err(Error::InvalidSegment(_))
    ));
    let small = SharedMemory::new(8).unwrap();
    assert!(matches!(
        Segment::received(small, Kind::Event),
        Err(Error::InvalidSegment(_))
    ));

    let (bytes, fds) = handle::encode(&sem).unwrap();
    let again: Semaphore = handle::decode(&bytes, fds).unwrap();
    assert!(again.try_acquire());
    assert_eq!(sem.value(), 0, "the same semaphore");
}

#[test]
fn a_holder_dying_inside_the_barriers_bookkeeping_breaks_it() {
    let barrier = Barrier::new(2).unwrap();
    std::thread::scope(|s| {
        // A thread that ends holding the mutex: the robust mutex reports it, as it
        // would a process killed there.
        s.spawn(|| std::mem::forget(barrier.bookkeeping().unwrap()));
    });
    assert!(!barrier.broken(), "nobody has looked yet");
    assert!(matches!(
        barrier.wait_timeout(LONG),
        Err(BarrierError::Broken)
    ));
    assert!(barrier.broken());
    barrier.reset().unwrap();
    assert!(!barrier.broken());
}

#[test]
fn the_primitives_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Semaphore>();
    send_sync::<BoundedSemaphore>();
    send_sync::<Event>();
    send_sync::<Condition>();
    send_sync::<Barrier>();
}
