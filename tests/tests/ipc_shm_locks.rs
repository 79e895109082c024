//! Process-shared locks: a holder that dies — SIGKILLed, exiting, or a thread ending —
//! is reported to the next acquirer, and the lock works afterwards; timeouts, try,
//! recursion, and locks crossing by every route.

use std::time::Duration;

use flotilla_ipc::{AcquireError, Connection, Error, Lock, LockError, RLock, pipe};
use flotilla_process::{Process, StartMethod, get_context};

const LONG: Duration = Duration::from_secs(120);
const SHORT: Duration = Duration::from_millis(50);

fn hold_until_killed(args: (Lock, Connection)) {
    let (lock, conn) = args;
    let _held = lock.acquire_timeout(LONG).unwrap();
    conn.send(&"holding").unwrap();
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn a_holder_killed_while_holding_the_lock_is_reported_and_the_lock_recovers() {
    for method in [StartMethod::Spawn, StartMethod::ForkServer] {
        let lock = Lock::new().unwrap();
        let (ours, theirs) = pipe(true).unwrap();
        let child = get_context(Some(method))
            .process(hold_until_killed, (lock.clone(), theirs))
            .start()
            .unwrap();
        assert_eq!(ours.recv_timeout::<String>(LONG).unwrap(), "holding");
        assert!(matches!(
            lock.try_acquire(),
            Err(AcquireError::Failed(LockError::WouldBlock))
        ));
        assert!(matches!(
            lock.acquire_timeout(SHORT),
            Err(AcquireError::Failed(LockError::Timeout(_)))
        ));
        child.kill().unwrap();
        match lock.acquire_timeout(LONG) {
            Err(AcquireError::OwnerDied(guard)) => drop(guard),
            other => panic!("{method}: expected owner died, got {other:?}"),
        }
        // Reported once; the lock is consistent and works as before.
        drop(lock.acquire_timeout(LONG).unwrap());
        drop(lock.try_acquire().unwrap());
        assert!(child.join_timeout(LONG).is_err(), "killed");
        assert_eq!(child.exitcode(), Some(-9), "{method}");
    }
}

#[test]
fn a_waiter_blocked_on_the_lock_is_woken_by_the_holders_death() {
    let lock = Lock::new().unwrap();
    let (ours, theirs) = pipe(true).unwrap();
    let child = get_context(Some(StartMethod::Spawn))
        .process(hold_until_killed, (lock.clone(), theirs))
        .start()
        .unwrap();
    assert_eq!(ours.recv_timeout::<String>(LONG).unwrap(), "holding");
    std::thread::scope(|s| {
        let waiter = s.spawn(|| match lock.acquire_timeout(LONG) {
            Err(AcquireError::OwnerDied(_guard)) => "owner died",
            Ok(_) => "clean",
            Err(AcquireError::Failed(_)) => "failed",
        });
        // Kill it whether or not the waiter is asleep yet: either way it must be told.
        std::thread::sleep(SHORT);
        child.kill().unwrap();
        assert_eq!(waiter.join().unwrap(), "owner died");
    });
    let _ = child.join_timeout(LONG);
}

#[test]
fn a_recursive_holder_that_exits_holding_is_reported() {
    let lock = RLock::new().unwrap();
    let theirs = lock.clone();
    // SAFETY: the child only locks the process-shared mutex (which nobody holds) and
    // exits; it touches no lock another thread of the harness could hold.
    let child = unsafe {
        Process::fork(move || {
            std::mem::forget(theirs.acquire_timeout(LONG).unwrap());
            std::mem::forget(theirs.acquire_timeout(LONG).unwrap());
        })
        .start_unchecked()
    }
    .unwrap();
    child.join_timeout(LONG).unwrap();
    let guard = match lock.acquire_timeout(LONG) {
        Err(AcquireError::OwnerDied(guard)) => guard,
        other => panic!("expected owner died, got {other:?}"),
    };
    // The dead holder's two levels are gone: one release frees the lock.
    drop(guard);
    std::thread::scope(|s| {
        s.spawn(|| drop(lock.try_acquire().expect("free for another thread")));
    });
}

#[test]
fn a_thread_that_ends_holding_a_lock_is_reported_too() {
    let lock = Lock::new().unwrap();
    std::thread::scope(|s| {
        s.spawn(|| std::mem::forget(lock.acquire().unwrap()));
    });
    let guard = lock
        .acquire_timeout(LONG)
        .expect_err("the holder thread ended holding it");
    assert!(matches!(guard, AcquireError::OwnerDied(_)));
    assert!(matches!(Error::from(guard), Error::OwnerDied));
    drop(lock.acquire_timeout(LONG).unwrap());
}

/// `lock.acquire(t)?` in a function returning the boxed error most programs use: the
/// owner-died guard inside the error is `!Send`, so it is dropped (releasing the lock)
/// on the way into the box.
fn locked_work(lock: &Lock) -> Result<u32, Box<dyn std::error::Error + Send + Sync>> {
    let _guard = lock.acquire_timeout(LONG)?;
    Ok(7)
}

#[test]
fn acquire_errors_box_into_send_sync_errors_and_release_an_owner_died_lock() {
    let lock = Lock::new().unwrap();
    assert_eq!(locked_work(&lock).unwrap(), 7);
    std::thread::scope(|s| {
        s.spawn(|| std::mem::forget(lock.acquire().unwrap()));
    });
    let boxed = locked_work(&lock).expect_err("the holder thread ended holding it");
    // The box sends across threads, as a Send + Sync error must.
    let boxed = std::thread::spawn(move || boxed).join().unwrap();
    assert!(
        matches!(boxed.downcast_ref::<Error>(), Some(Error::OwnerDied)),
        "{boxed}"
    );
    // The guard was dropped on the way: the lock is free.
    drop(lock.try_acquire().expect("released by the conversion"));
    // A failure boxes too.
    let held = lock.acquire().unwrap();
    let other = lock.clone();
    let timed_out = std::thread::spawn(move || {
        let r: Result<(), Box<dyn std::error::Error + Send + Sync>> =
            other.acquire_timeout(SHORT).map(drop).map_err(Into::into);
        r.unwrap_err().to_string()
    })
    .join()
    .unwrap();
    assert!(timed_out.contains("timed out"), "{timed_out}");
    drop(held);
}

fn hold_for_a_while(args: (Lock, Connection)) {
    let (lock, conn) = args;
    let held = lock.acquire_timeout(LONG).unwrap();
    conn.send(&"holding").unwrap();
    let _: String = conn.recv().unwrap();
    drop(held);
    conn.send(&"released").unwrap();
}

#[test]
fn acquire_times_out_while_another_process_holds_the_lock() {
    for method in StartMethod::ALL {
        let lock = Lock::new().unwrap();
        let (ours, theirs) = pipe(true).unwrap();
        let builder = get_context(Some(method)).process(hold_for_a_while, (lock.clone(), theirs));
        // SAFETY: under fork the child only uses the process-shared mutex and its
        // connection end; it takes no lock another thread of the harness could hold.
        let child = unsafe { builder.start_unchecked() }.unwrap();
        assert_eq!(ours.recv_timeout::<String>(LONG).unwrap(), "holding");
        for timeout in [Duration::ZERO, SHORT] {
            match lock.acquire_timeout(timeout) {
                Err(AcquireError::Failed(LockError::Timeout(t))) => assert_eq!(t, timeout),
                other => panic!("{method}: expected a timeout, got {other:?}"),
            }
        }
        ours.send(&"release").unwrap();
        assert_eq!(ours.recv_timeout::<String>(LONG).unwrap(), "released");
        drop(lock.acquire_timeout(LONG).unwrap());
        child.join_timeout(LONG).unwrap();
    }
}

#[test]
fn acquire_times_out_while_another_thread_holds_the_lock() {
    let lock = RLock::new().unwrap();
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|s| {
        let lock = &lock;
        s.spawn(move || {
            let _held = lock.acquire().unwrap();
            held_tx.send(()).unwrap();
            done_rx.recv_timeout(LONG).unwrap();
        });
        held_rx.recv_timeout(LONG).unwrap();
        assert!(matches!(
            lock.acquire_timeout(SHORT),
            Err(AcquireError::Failed(LockError::Timeout(_)))
        ));
        assert!(matches!(
            lock.try_acquire(),
            Err(AcquireError::Failed(LockError::WouldBlock))
        ));
        done_tx.send(()).unwrap();
    });
    drop(lock.acquire_timeout(LONG).unwrap());
}

#[test]
fn a_lock_is_not_recursive_and_an_rlock_is() {
    let lock = Lock::new().unwrap();
    let held = lock.acquire().unwrap();
    assert!(matches!(
        lock.acquire_timeout(LONG),
        Err(AcquireError::Failed(LockError::WouldDeadlock))
    ));
    assert!(matches!(
        lock.try_acquire(),
        Err(AcquireError::Failed(
            LockError::WouldBlock | LockError::WouldDeadlock
        ))
    ));
    drop(held);

    let rlock = RLock::new().unwrap();
    let a = rlock.acquire().unwrap();
    let b = rlock.try_acquire().unwrap();
    let c = rlock.acquire_timeout(SHORT).unwrap();
    drop(a);
    drop(c);
    std::thread::scope(|s| {
        s.spawn(|| {
            assert!(matches!(
                rlock.try_acquire(),
                Err(AcquireError::Failed(LockError::WouldBlock))
            ));
        });
    });
    drop(b);
    std::thread::scope(|s| {
        s.spawn(|| drop(rlock.try_acquire().unwrap()));
    });
}

#[test]
fn a_lock_sent_over_a_connection_is_the_same_lock_and_keeps_its_kind() {
    let (left, right) = pipe(true).unwrap();
    let lock = Lock::new().unwrap();
    left.send(&lock).unwrap();
    let received: Lock = right.recv_timeout(LONG).unwrap();
    let held = lock.acquire().unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            assert!(matches!(
                received.try_acquire(),
                Err(AcquireError::Failed(LockError::WouldBlock))
            ));
        });
    });
    drop(held);
    drop(received.try_acquire().unwrap());

    left.send(&lock).unwrap();
    assert!(
        right.recv_timeout::<RLock>(LONG).is_err(),
        "a Lock is not an RLock"
    );
}
