//! Process-shared semaphores: they limit how many processes are inside at once, under
//! spawn and forkserver; a bounded one refuses a release past its bound whoever makes
//! it; and, for random acquire/release sequences in two processes, permits in use never
//! exceed the bound and all come back.

use std::time::Duration;

use flotilla_ipc::{BoundedSemaphore, ReleaseError, Semaphore, Value};
use flotilla_process::{StartMethod, get_context};
use proptest::prelude::*;

const LONG: Duration = Duration::from_secs(120);
const BOUND: usize = 2;
const CHILDREN: usize = 4;

/// Enters the section 20 times; returns the most processes it ever saw inside.
fn enter_repeatedly(args: (Semaphore, Value<i64>)) -> i64 {
    let (slots, inside) = args;
    let mut most = 0;
    for _ in 0..20 {
        let _permit = slots
            .acquire_permit_timeout(LONG)
            .expect("a permit within LONG");
        let now = inside.fetch_add(1) + 1;
        most = most.max(now);
        std::thread::sleep(Duration::from_millis(1));
        inside.fetch_sub(1);
    }
    most
}

#[test]
fn a_semaphore_limits_how_many_processes_are_inside() {
    for method in [StartMethod::Spawn, StartMethod::ForkServer] {
        let slots = Semaphore::new(BOUND).unwrap();
        let inside = Value::raw(0i64).unwrap();
        let ctx = get_context(Some(method));
        let children: Vec<_> = (0..CHILDREN)
            .map(|_| {
                ctx.process(enter_repeatedly, (slots.clone(), inside.clone()))
                    .start()
                    .unwrap()
            })
            .collect();
        for child in children {
            let most = child.join_timeout(LONG).unwrap();
            assert!(
                (1..=BOUND as i64).contains(&most),
                "{method}: {most} inside"
            );
        }
        assert_eq!(slots.value(), BOUND, "{method}: every permit came back");
        assert_eq!(inside.load(), 0);
    }
}

fn release_once(sem: BoundedSemaphore) -> Result<(), String> {
    sem.release(1).map_err(|e| e.to_string())
}

#[test]
fn a_bounded_semaphore_refuses_a_release_past_its_bound_in_any_process() {
    for method in [StartMethod::Spawn, StartMethod::ForkServer] {
        let sem = BoundedSemaphore::new(1).unwrap();
        let ctx = get_context(Some(method));
        let refused = ctx.process(release_once, sem.clone()).start().unwrap();
        let message = refused.join_timeout(LONG).unwrap().unwrap_err();
        assert!(message.contains("may not exceed 1"), "{method}: {message}");
        assert_eq!(sem.value(), 1, "{method}: unchanged");

        // No owner: a permit this process took may be given back by another one.
        assert!(sem.try_acquire());
        let allowed = ctx.process(release_once, sem.clone()).start().unwrap();
        allowed.join_timeout(LONG).unwrap().unwrap();
        assert_eq!(sem.value(), 1, "{method}");
        assert!(matches!(
            sem.release(1),
            Err(ReleaseError::OverReleased { bound: 1 })
        ));
    }
}

fn wait_for_a_permit(sem: Semaphore) -> bool {
    sem.acquire_timeout(LONG)
}

#[test]
fn a_release_wakes_a_process_asleep_in_acquire() {
    let sem = Semaphore::new(0).unwrap();
    let child = get_context(Some(StartMethod::ForkServer))
        .process(wait_for_a_permit, sem.clone())
        .start()
        .unwrap();
    // Whether or not the child sleeps yet, the release must reach it.
    std::thread::sleep(Duration::from_millis(50));
    sem.release(1).unwrap();
    assert!(child.join_timeout(LONG).unwrap());
    assert_eq!(sem.value(), 0);
}

fn nobody_releases(sem: Semaphore) -> bool {
    sem.acquire_timeout(Duration::from_millis(50))
}

#[test]
fn an_acquire_in_another_process_times_out() {
    let sem = Semaphore::new(0).unwrap();
    let child = get_context(Some(StartMethod::Spawn))
        .process(nobody_releases, sem.clone())
        .start()
        .unwrap();
    assert!(!child.join_timeout(LONG).unwrap());
    assert_eq!(sem.value(), 0);
}

#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
enum Op {
    /// `acquire` with this many milliseconds of timeout.
    Acquire(u8),
    TryAcquire,
    /// Release one permit, if this process holds any.
    Release,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..3).prop_map(Op::Acquire),
        Just(Op::TryAcquire),
        Just(Op::Release),
    ]
}

/// Runs `ops`, counting the permits held by everyone in `held`; fails if that count
/// or the value ever passes the bound. Releases what it still holds at the end.
fn run_ops(args: (BoundedSemaphore, Value<i64>, Vec<Op>)) -> Result<(), String> {
    let (sem, held, ops) = args;
    let bound = sem.bound() as i64;
    let mut mine = 0;
    let check = |what: &str| -> Result<(), String> {
        let (value, in_use) = (sem.value() as i64, held.load());
        if value > bound || in_use > bound {
            return Err(format!(
                "{what}: value {value}, {in_use} held, bound {bound}"
            ));
        }
        Ok(())
    };
    for op in ops {
        let acquired = match op {
            Op::Acquire(ms) => Some(sem.acquire_timeout(Duration::from_millis(ms.into()))),
            Op::TryAcquire => Some(sem.try_acquire()),
            Op::Release => None,
        };
        match acquired {
            Some(true) => {
                mine += 1;
                held.fetch_add(1);
            }
            Some(false) => {}
            None if mine > 0 => {
                mine -= 1;
                held.fetch_sub(1);
                sem.release(1).map_err(|e| e.to_string())?;
            }
            None => {}
        }
        check(&format!("after {op:?}"))?;
    }
    for _ in 0..mine {
        held.fetch_sub(1);
        sem.release(1).map_err(|e| e.to_string())?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn permits_in_use_never_exceed_the_bound_and_all_come_back(
        bound in 1usize..4,
        ops in proptest::collection::vec(proptest::collection::vec(op(), 0..60), 2),
        spawn in any::<bool>(),
    ) {
        let method = if spawn { StartMethod::Spawn } else { StartMethod::ForkServer };
        let sem = BoundedSemaphore::new(bound).unwrap();
        let held = Value::raw(0i64).unwrap();
        let ctx = get_context(Some(method));
        let children: Vec<_> = ops
            .into_iter()
            .map(|ops| ctx.process(run_ops, (sem.clone(), held.clone(), ops)).start().unwrap())
            .collect();
        for child in children {
            prop_assert_eq!(child.join_timeout(LONG).unwrap(), Ok(()));
        }
        prop_assert_eq!(sem.value(), bound);
        prop_assert_eq!(held.load(), 0);
        prop_assert!(sem.release(1).is_err());
    }
}
