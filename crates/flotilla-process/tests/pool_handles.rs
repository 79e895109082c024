//! flotilla IPC objects as arguments of pool tasks — what Python refuses with "objects
//! should only be shared between processes through inheritance": a Queue, a
//! JoinableQueue, a Value, an Array and a Lock given to tasks of running workers, by
//! submit, apply and map.

use std::time::Duration;

use flotilla_ipc::{Array, JoinableQueue, Lock, Queue, Value};
use flotilla_process::{Pool, ProcessPoolExecutor, StartMethod, get_context};

const LONG: Duration = Duration::from_secs(60);

/// Adds 1 to each counter `n` times: to the first with the atomic, to the second under
/// its lock. (Not both to one: a locked read-modify-write does not exclude another
/// process's lock-free atomic, and would lose its increments.)
fn bump((atomic, locked, n): (Value<u64>, Value<u64>, u64)) -> u32 {
    for _ in 0..n {
        atomic.fetch_add(1);
        let held = locked.lock_timeout(LONG).expect("the value's lock");
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
        let atomic = Value::raw(0u64).unwrap();
        let locked = Value::new(0u64).unwrap();
        let futures: Vec<_> = (0..8)
            .map(|_| {
                pool.submit(bump, (atomic.clone(), locked.clone(), 50))
                    .unwrap()
            })
            .collect();
        for f in &futures {
            assert_ne!(
                f.result_timeout(LONG).unwrap(),
                std::process::id(),
                "{method}"
            );
        }
        // 8 tasks × 50 rounds each.
        assert_eq!(atomic.load(), 400, "{method}");
        assert_eq!(locked.get().unwrap(), 400, "{method}");
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
    let held = lock.acquire_timeout(LONG).unwrap();
    assert!(
        !pool.apply(try_lock, lock.clone()).unwrap(),
        "held here: busy there"
    );
    drop(held);
}

/// Puts `n` items on the queue.
fn produce((queue, from, n): (Queue<u64>, u64, u64)) {
    for i in from..from + n {
        queue.put(i).expect("the queue takes it");
    }
}

/// Takes items until the queue closes, marking each done; returns their sum.
fn consume(queue: JoinableQueue<u64>) -> u64 {
    let mut sum = 0;
    while let Ok(item) = queue.get() {
        sum += item;
        queue.task_done().expect("one task_done per get");
    }
    sum
}

#[test]
fn queues_passed_to_pool_tasks_carry_items_both_ways() {
    let pool = ProcessPoolExecutor::builder()
        .max_workers(2)
        .build()
        .unwrap();
    // Workers produce, this process consumes.
    let queue = Queue::<u64>::new().unwrap();
    let producers: Vec<_> = (0..4)
        .map(|p| pool.submit(produce, (queue.clone(), p * 100, 100)).unwrap())
        .collect();
    for p in &producers {
        p.result_timeout(LONG).unwrap();
    }
    let mut got: Vec<u64> = (0..400).map(|_| queue.get_timeout(LONG).unwrap()).collect();
    got.sort_unstable();
    assert_eq!(got, (0..400).collect::<Vec<_>>());

    // This process produces, a worker consumes, join waits for its task_done calls.
    let jobs = JoinableQueue::<u64>::new().unwrap();
    let consumer = pool.submit(consume, jobs.clone()).unwrap();
    for i in 1..=100 {
        jobs.put(i).unwrap();
    }
    assert!(jobs.join_timeout(LONG).unwrap(), "every item marked done");
    jobs.close();
    assert_eq!(consumer.result_timeout(LONG).unwrap(), 5050);
}

fn double(x: u64) -> u64 {
    2 * x
}

/// Writes `value` at `index` of the array and returns it.
fn write_back((array, index, value): (Array<i32>, usize, i32)) -> i32 {
    array.set(index, value).expect("in bounds");
    value
}

/// Small tasks travel several to a frame, and a task with descriptors alone beside them:
/// interleaved on deep pipelines, each reaches its worker with its own handles, once.
#[test]
fn tasks_with_handles_interleaved_with_batched_small_ones_each_run_once() {
    let pool = ProcessPoolExecutor::builder()
        .max_workers(2)
        .build()
        .unwrap();
    // Short tasks first, so that the workers' pipelines are deep.
    let warm: Vec<_> = (0..200).map(|i| pool.submit(double, i).unwrap()).collect();
    for (i, f) in (0..).zip(&warm) {
        assert_eq!(f.result_timeout(LONG).unwrap(), 2 * i);
    }
    let array = Array::<i32>::new(100).unwrap();
    let mut small = Vec::new();
    let mut handled = Vec::new();
    for i in 0..100u64 {
        for j in 0..3 {
            small.push((3 * i + j, pool.submit(double, 3 * i + j).unwrap()));
        }
        let index = i as usize;
        handled.push(
            pool.submit(write_back, (array.clone(), index, index as i32 + 1))
                .unwrap(),
        );
    }
    for (x, f) in &small {
        assert_eq!(f.result_timeout(LONG).unwrap(), 2 * x);
    }
    for (i, f) in (1..).zip(&handled) {
        assert_eq!(f.result_timeout(LONG).unwrap(), i);
    }
    let expected: Vec<i32> = (1..=100).collect();
    assert_eq!(array.to_vec().unwrap(), expected);
}
