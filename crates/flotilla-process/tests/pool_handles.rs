//! flotilla IPC objects as arguments of pool tasks — what Python refuses with "objects
//! should only be shared between processes through inheritance": a Value, an Array and
//! a Lock given to tasks of running workers, by submit, apply and map.

use std::time::Duration;

use flotilla_ipc::{Array, Lock, Value};
use flotilla_process::{Pool, ProcessPoolExecutor, StartMethod, get_context};

const LONG: Duration = Duration::from_secs(60);

/// Adds 1 to the counter `n` times: with the atomic, and under the value's lock.
fn bump((counter, n): (Value<u64>, u64)) -> u32 {
    for _ in 0..n {
        counter.fetch_add(1);
        let held = counter.lock(Some(LONG)).expect("the value's lock");
        let now = held.get();
        held.set(now + 1);
    }
    std::process::id()
}

/// Writes `value` at `index` of the array.
fn write((array, index, value): (Array<i32>, usize, i32)) {
    array.set(index, value).expect("in bounds");
}

/// Takes the lock, and reports whether it was free.
fn try_lock(lock: Lock) -> bool {
    lock.try_acquire().is_ok()
}

#[test]
fn a_value_passed_to_executor_tasks_is_shared_with_the_caller() {
    for method in [StartMethod::Spawn, StartMethod::ForkServer] {
        let pool = ProcessPoolExecutor::builder()
            .max_workers(2)
            .context(get_context(Some(method)))
            .build()
            .unwrap();
        let counter = Value::new(0u64).unwrap();
        let futures: Vec<_> = (0..8)
            .map(|_| pool.submit(bump, (counter.clone(), 50)).unwrap())
            .collect();
        for f in &futures {
            assert_ne!(
                f.result(Some(LONG)).unwrap(),
                std::process::id(),
                "{method}"
            );
        }
        // 8 tasks × 50 rounds × (one atomic add + one locked add).
        assert_eq!(counter.get().unwrap(), 800, "{method}");
    }
}

#[test]
fn arrays_and_locks_cross_to_pool_workers_by_apply_and_map() {
    let pool = Pool::new(2).unwrap();
    let array = Array::<i32>::new(6).unwrap();
    let jobs: Vec<_> = (0..6).map(|i| (array.clone(), i, 10 * i as i32)).collect();
    pool.map(write, jobs, Some(2)).unwrap();
    assert_eq!(array.to_vec().unwrap(), [0, 10, 20, 30, 40, 50]);

    let lock = Lock::new().unwrap();
    assert!(
        pool.apply(try_lock, lock.clone()).unwrap(),
        "free: the task takes it"
    );
    let held = lock.acquire(Some(LONG)).unwrap();
    assert!(
        !pool.apply(try_lock, lock.clone()).unwrap(),
        "held here: busy there"
    );
    drop(held);
}
