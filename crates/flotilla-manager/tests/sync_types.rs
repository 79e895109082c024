//! The synchronization types of a manager: RLock, Semaphore, BoundedSemaphore,
//! Condition, Event, Barrier, Value, Array, JoinableQueue — their blocking calls parked on
//! the server, and what a killed client held given back.

mod common;

use std::collections::BTreeSet;
use std::thread;
use std::time::Duration;

use common::{LONG, with_deadline};
use flotilla_ipc::{Connection, pipe};
use flotilla_manager::{
    BarrierProxy, ConditionProxy, EventProxy, JoinableQueueProxy, Manager, RLockProxy,
    RemoteErrorKind, SemaphoreProxy,
};
use flotilla_process::Process;

const SHORT: Duration = Duration::from_millis(50);

#[test]
fn an_rlock_is_reentrant_for_its_thread_only() {
    with_deadline(LONG, "rlock", || {
        let manager = Manager::start().unwrap();
        let lock = manager.rlock().unwrap();
        lock.acquire().unwrap();
        lock.acquire().unwrap();
        let other = lock.clone();
        // Another thread of the same process (and connection) is another owner.
        let t = thread::spawn(move || {
            let refused = !other.acquire_timeout(SHORT).unwrap();
            let release = other.release().unwrap_err();
            let got = other.acquire_timeout(LONG).unwrap();
            other.release().unwrap();
            (refused, release.remote_kind(), got)
        });
        thread::sleep(SHORT * 4);
        lock.release().unwrap();
        lock.release().unwrap();
        let (refused, release, got) = t.join().unwrap();
        assert!(refused && got);
        assert_eq!(release, Some(RemoteErrorKind::RuntimeError));
        let _g = lock.guard().unwrap();
    });
}

#[test]
fn semaphores_count_and_a_bounded_one_refuses_extra_releases() {
    with_deadline(LONG, "semaphore", || {
        let manager = Manager::start().unwrap();
        let sem = manager.semaphore(1).unwrap();
        sem.acquire().unwrap();
        assert!(!sem.acquire_timeout(SHORT).unwrap());
        let other = sem.clone();
        let t = thread::spawn(move || other.acquire_timeout(LONG).unwrap());
        thread::sleep(SHORT);
        sem.release(1).unwrap();
        assert!(t.join().unwrap(), "the parked acquire got the permit");
        assert_eq!(sem.value().unwrap(), 0);
        sem.release(3).unwrap(); // an unbounded one takes it
        assert_eq!(sem.value().unwrap(), 3);

        let bounded = manager.bounded_semaphore(2).unwrap();
        assert!(bounded.try_acquire().unwrap());
        bounded.release(1).unwrap();
        let err = bounded.release(1).unwrap_err();
        assert_eq!(err.remote_kind(), Some(RemoteErrorKind::ValueError));
        {
            let _permit = bounded.guard().unwrap();
            assert_eq!(bounded.value().unwrap(), 1);
        }
        assert_eq!(bounded.value().unwrap(), 2);
    });
}

#[test]
fn a_condition_wait_releases_its_lock_and_takes_it_back() {
    with_deadline(LONG, "condition", || {
        let manager = Manager::start().unwrap();
        let cond = manager.condition().unwrap();
        let items = manager.list::<u32>().unwrap();
        // Without the lock: RuntimeError, as in Python.
        assert_eq!(
            cond.notify(1).unwrap_err().remote_kind(),
            Some(RemoteErrorKind::RuntimeError)
        );
        assert_eq!(
            cond.wait_timeout(SHORT).unwrap_err().remote_kind(),
            Some(RemoteErrorKind::RuntimeError)
        );
        let consumers: Vec<_> = (0..3)
            .map(|_| {
                let (cond, items) = (cond.clone(), items.clone());
                thread::spawn(move || {
                    let _held = cond.guard().unwrap();
                    cond.acquire().unwrap(); // reentrant: depth 2
                    let ok = cond
                        .wait_for_timeout(|| !items.is_empty().unwrap(), LONG)
                        .unwrap();
                    let got = items.pop(None).unwrap();
                    cond.release().unwrap(); // back to depth 1: the wait kept it
                    assert!(ok);
                    got
                })
            })
            .collect();
        for n in 0..3 {
            thread::sleep(SHORT);
            let _held = cond.guard().unwrap();
            items.append(&n).unwrap();
            cond.notify(1).unwrap();
        }
        let got: BTreeSet<u32> = consumers.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(got, BTreeSet::from([0, 1, 2]));
        // A wait that times out answers false, holding the lock again.
        let _held = cond.guard().unwrap();
        assert!(!cond.wait_timeout(SHORT).unwrap());
        cond.notify_all().unwrap();
    });
}

fn wait_for_event((event, report): (EventProxy, Connection)) -> bool {
    report.send(&"waiting").unwrap();
    event.wait_timeout(LONG).unwrap()
}

#[test]
fn an_event_set_wakes_a_waiting_process() {
    with_deadline(LONG, "event", || {
        let manager = Manager::start().unwrap();
        let event = manager.event().unwrap();
        let (ours, theirs) = pipe(false).unwrap();
        let child = Process::new(wait_for_event, (event.clone(), theirs))
            .start()
            .unwrap();
        assert_eq!(ours.recv_timeout::<String>(LONG).unwrap(), "waiting");
        thread::sleep(SHORT);
        event.set().unwrap();
        assert!(child.join_timeout(LONG).unwrap());
        event.clear().unwrap();
        assert!(!event.is_set().unwrap());
        assert!(!event.wait_timeout(SHORT).unwrap());
    });
}

#[test]
fn a_barrier_passes_its_parties_and_breaks_on_a_timeout() {
    with_deadline(LONG, "barrier", || {
        let manager = Manager::start().unwrap();
        let barrier = manager.barrier(3).unwrap();
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let b = barrier.clone();
                thread::spawn(move || b.wait_timeout(LONG).unwrap())
            })
            .collect();
        let indexes: BTreeSet<u64> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(indexes, BTreeSet::from([0, 1, 2]));

        // One waits for ever, one times out: both see it broken.
        let b = barrier.clone();
        let patient = thread::spawn(move || b.wait().unwrap_err().remote_kind());
        thread::sleep(SHORT);
        let err = barrier.wait_timeout(SHORT).unwrap_err();
        assert_eq!(err.remote_kind(), Some(RemoteErrorKind::BrokenBarrier));
        assert_eq!(
            patient.join().unwrap(),
            Some(RemoteErrorKind::BrokenBarrier)
        );
        assert!(barrier.broken().unwrap());
        barrier.reset().unwrap();
        assert!(!barrier.broken().unwrap());
        assert_eq!(barrier.n_waiting().unwrap(), 0);
    });
}

#[test]
fn value_and_array_updates_from_many_threads_lose_nothing() {
    with_deadline(LONG, "value", || {
        let manager = Manager::start().unwrap();
        let v = manager.value(&0u64).unwrap();
        let a = manager.array(&[0u64; 4]).unwrap();
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let (v, a) = (v.clone(), a.clone());
                thread::spawn(move || {
                    for _ in 0..50 {
                        v.update_with(|x| x + 1).unwrap();
                    }
                    a.set(i % 4, &(i as u64)).unwrap();
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(v.get().unwrap(), 400);
        assert_eq!(a.len().unwrap(), 4);
        assert_eq!(
            a.get(9).unwrap_err().remote_kind(),
            Some(RemoteErrorKind::IndexError)
        );
    });
}

fn work_through(q: JoinableQueueProxy<u32>) {
    while let Some(n) = q.get_timeout(Duration::from_secs(2)).unwrap() {
        let _ = n;
        q.task_done().unwrap();
    }
}

#[test]
fn a_joinable_queue_join_waits_for_a_worker_process() {
    with_deadline(LONG, "joinable queue", || {
        let manager = Manager::start().unwrap();
        let q = manager.joinable_queue::<u32>(0).unwrap();
        for n in 0..20 {
            q.put(&n).unwrap();
        }
        let worker = Process::new(work_through, q.clone()).start().unwrap();
        assert!(q.join_timeout(LONG).unwrap());
        assert_eq!(
            q.task_done().unwrap_err().remote_kind(),
            Some(RemoteErrorKind::ValueError)
        );
        worker.join_timeout(LONG).unwrap();
    });
}

type Held = (
    RLockProxy,
    SemaphoreProxy,
    ConditionProxy,
    BarrierProxy,
    Connection,
);

/// Takes an RLock, a permit and a Condition's lock, waits at a barrier, says so, and waits
/// to be killed.
fn hold_everything((rlock, sem, cond, barrier, report): Held) {
    assert!(rlock.acquire_timeout(LONG).unwrap());
    assert!(sem.acquire_timeout(LONG).unwrap());
    assert!(cond.acquire_timeout(LONG).unwrap());
    let waiting = thread::spawn(move || barrier.wait());
    thread::sleep(SHORT);
    report.send(&"held").unwrap();
    let _ = waiting.join();
    loop {
        thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn a_killed_client_gives_back_what_it_held() {
    with_deadline(Duration::from_secs(120), "killed holder", || {
        let manager = Manager::start().unwrap();
        let rlock = manager.rlock().unwrap();
        let sem = manager.semaphore(1).unwrap();
        let cond = manager.condition().unwrap();
        let barrier = manager.barrier(3).unwrap();
        let (ours, theirs) = pipe(false).unwrap();
        let child = Process::new(
            hold_everything,
            (
                rlock.clone(),
                sem.clone(),
                cond.clone(),
                barrier.clone(),
                theirs,
            ),
        )
        .start()
        .unwrap();
        assert_eq!(ours.recv_timeout::<String>(LONG).unwrap(), "held");
        assert!(!rlock.try_acquire().unwrap());
        assert!(!sem.try_acquire().unwrap());
        assert!(!cond.acquire_timeout(Duration::ZERO).unwrap());
        assert_eq!(barrier.n_waiting().unwrap(), 1);
        child.kill().unwrap();
        let _ = child.join_timeout(LONG);
        assert!(rlock.acquire_timeout(LONG).unwrap(), "the RLock came back");
        assert!(sem.acquire_timeout(LONG).unwrap(), "the permit came back");
        assert!(
            cond.acquire_timeout(LONG).unwrap(),
            "the Condition came back"
        );
        assert!(barrier.broken().unwrap(), "a dead party broke the barrier");
    });
}
