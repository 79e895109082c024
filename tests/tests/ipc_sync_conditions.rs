//! Process-shared conditions: `notify(1)` wakes one waiting process and `notify_all`
//! the rest; waits in other processes time out; `wait_for` sees a predicate over
//! shared data; a lock holder killed mid-way is reported to the waiter that takes the
//! lock next, and the condition keeps working.

use std::time::Duration;

use flotilla_ipc::{AcquireError, Condition, Connection, Lock, LockError, Value, WaitError, pipe};
use flotilla_process::{StartMethod, get_context};

const LONG: Duration = Duration::from_secs(120);

fn wait_once(args: (Condition, Value<u32>)) -> bool {
    let (cond, woken) = args;
    let mut guard = cond.acquire_timeout(LONG).unwrap();
    let notified = guard.wait_timeout(LONG).unwrap();
    woken.fetch_add(1);
    notified
}

fn waiting(cond: &Condition) -> usize {
    cond.acquire_timeout(LONG).unwrap().waiting()
}

#[test]
fn notify_wakes_one_waiting_process_and_notify_all_the_rest() {
    for method in [StartMethod::Spawn, StartMethod::ForkServer] {
        let cond = Condition::new().unwrap();
        let woken = Value::raw(0u32).unwrap();
        let ctx = get_context(Some(method));
        let children: Vec<_> = (0..3)
            .map(|_| {
                ctx.process(wait_once, (cond.clone(), woken.clone()))
                    .start()
                    .unwrap()
            })
            .collect();
        while waiting(&cond) < 3 {
            std::thread::sleep(Duration::from_millis(5));
        }
        cond.acquire_timeout(LONG).unwrap().notify(1);
        while woken.load() < 1 {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(waiting(&cond), 2, "{method}: notify(1) took one waiter");
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(woken.load(), 1, "{method}: and woke only that one");
        cond.acquire_timeout(LONG).unwrap().notify_all();
        for child in children {
            assert!(child.join_timeout(LONG).unwrap(), "{method}: notified");
        }
        assert_eq!(waiting(&cond), 0);
    }
}

fn wait_with_timeout(cond: Condition) -> (bool, usize) {
    let mut guard = cond.acquire_timeout(LONG).unwrap();
    let notified = guard.wait_timeout(Duration::from_millis(50)).unwrap();
    (notified, guard.waiting())
}

#[test]
fn a_wait_in_another_process_times_out_and_uncounts_itself() {
    let cond = Condition::with_lock(Lock::new().unwrap()).unwrap();
    let child = get_context(Some(StartMethod::ForkServer))
        .process(wait_with_timeout, cond.clone())
        .start()
        .unwrap();
    assert_eq!(child.join_timeout(LONG).unwrap(), (false, 0));
    // Nobody waits, so this notification is for nobody, and not kept for later.
    cond.acquire().unwrap().notify(1);
    let mut guard = cond.acquire().unwrap();
    assert!(!guard.wait_timeout(Duration::from_millis(20)).unwrap());
}

fn produce(args: (Condition, Value<i64>)) {
    let (cond, items) = args;
    for _ in 0..10 {
        let mut guard = cond.acquire_timeout(LONG).unwrap();
        items.fetch_add(1);
        guard.notify_all();
    }
}

#[test]
fn wait_for_sees_a_predicate_over_shared_data_come_true() {
    for method in StartMethod::ALL {
        let cond = Condition::new().unwrap();
        let items = Value::raw(0i64).unwrap();
        let mut guard = cond.acquire().unwrap();
        let builder = get_context(Some(method)).process(produce, (cond.clone(), items.clone()));
        // SAFETY: under fork the child only uses the condition's robust mutex (held by
        // this thread, which the child does not need: it waits for it like any
        // process) and an atomic value; it takes no lock another thread could hold.
        let child = unsafe { builder.start_unchecked() }.unwrap();
        let done = guard.wait_for_timeout(|| items.load() == 10, LONG).unwrap();
        assert!(done, "{method}");
        assert!(
            !guard
                .wait_for_timeout(|| items.load() == 11, Duration::from_millis(20))
                .unwrap()
        );
        drop(guard);
        child.join_timeout(LONG).unwrap();
    }
}

fn notify_then_die_holding(args: (Condition, Connection)) {
    let (cond, conn) = args;
    let mut guard = cond.acquire_timeout(LONG).unwrap();
    guard.notify_all();
    conn.send(&"notified, holding").unwrap();
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn a_waiter_taking_the_lock_back_from_a_killed_holder_is_told() {
    for method in [StartMethod::Spawn, StartMethod::ForkServer] {
        let cond = Condition::new().unwrap();
        let (ours, theirs) = pipe(true).unwrap();
        let mut guard = cond.acquire().unwrap();
        let child = get_context(Some(method))
            .process(notify_then_die_holding, (cond.clone(), theirs))
            .start()
            .unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                assert_eq!(
                    ours.recv_timeout::<String>(LONG).unwrap(),
                    "notified, holding"
                );
                child.kill().unwrap();
            });
            // Notified, then the lock is re-taken from a dead holder.
            assert!(
                matches!(guard.wait_timeout(LONG), Err(WaitError::OwnerDied)),
                "{method}"
            );
        });
        // The guard holds the lock again, and the condition works as before.
        assert_eq!(guard.waiting(), 0);
        assert!(!guard.wait_timeout(Duration::from_millis(10)).unwrap());
        drop(guard);
        drop(cond.try_acquire().unwrap());
        assert_eq!(child.exitcode(), Some(-9));
    }
}

fn die_holding(args: (Condition, Connection)) {
    let (cond, conn) = args;
    let _guard = cond.acquire_timeout(LONG).unwrap();
    conn.send(&"holding").unwrap();
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn acquiring_after_a_killed_holder_reports_owner_died_with_the_guard() {
    let cond = Condition::new().unwrap();
    let (ours, theirs) = pipe(true).unwrap();
    let child = get_context(Some(StartMethod::ForkServer))
        .process(die_holding, (cond.clone(), theirs))
        .start()
        .unwrap();
    assert_eq!(ours.recv_timeout::<String>(LONG).unwrap(), "holding");
    assert!(matches!(
        cond.acquire_timeout(Duration::from_millis(20)),
        Err(AcquireError::Failed(LockError::Timeout(_)))
    ));
    child.kill().unwrap();
    let mut guard = match cond.acquire_timeout(LONG) {
        Err(AcquireError::OwnerDied(guard)) => guard,
        other => panic!("expected owner died, got {other:?}"),
    };
    guard.notify_all();
    drop(guard);
    drop(cond.acquire_timeout(LONG).unwrap());
    let _ = child.join_timeout(LONG);
}

fn wait_forever(args: (Condition, Connection)) {
    let (cond, conn) = args;
    let mut guard = cond.acquire_timeout(LONG).unwrap();
    conn.send(&"waiting").unwrap();
    let _ = guard.wait();
}

#[test]
fn a_waiter_killed_while_waiting_does_not_stop_notify_all_reaching_the_others() {
    let cond = Condition::new().unwrap();
    let woken = Value::raw(0u32).unwrap();
    let (ours, theirs) = pipe(true).unwrap();
    let ctx = get_context(Some(StartMethod::ForkServer));
    let doomed = ctx
        .process(wait_forever, (cond.clone(), theirs))
        .start()
        .unwrap();
    assert_eq!(ours.recv_timeout::<String>(LONG).unwrap(), "waiting");
    let live = ctx
        .process(wait_once, (cond.clone(), woken.clone()))
        .start()
        .unwrap();
    while waiting(&cond) < 2 {
        std::thread::sleep(Duration::from_millis(5));
    }
    doomed.kill().unwrap();
    let _ = doomed.join_timeout(LONG);
    // The dead waiter stays counted (documented); notify_all still wakes the live one.
    cond.acquire_timeout(LONG).unwrap().notify_all();
    assert!(live.join_timeout(LONG).unwrap());
}
