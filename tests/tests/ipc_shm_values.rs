//! Value and Array seen and written by children under every start method, and counters
//! that five processes increment at once: with the lock and with the atomic, exactly.

use std::time::Duration;

use flotilla_ipc::{
    AcquireError, Array, CopyError, IndexError, IndexOutOfRange, LengthMismatch, LockError, Value,
    pipe,
};
use flotilla_process::{StartMethod, get_context};

const LONG: Duration = Duration::from_secs(120);
const PROCESSES: usize = 5;
const INCREMENTS: i64 = 1000;

fn double_and_shift(args: (Value<i64>, Array<f64>, Array<bool>)) -> (i64, Vec<f64>) {
    let (v, a, flags) = args;
    let seen = (v.get().unwrap(), a.to_vec().unwrap());
    v.set(seen.0 * 2).unwrap();
    let section = a.lock_timeout(LONG).or_else(AcquireError::recover).unwrap();
    for i in 0..section.len() {
        section.set(i, section.get(i).unwrap() + 0.5).unwrap();
    }
    drop(section);
    flags.set(1, true).unwrap();
    seen
}

#[test]
fn values_and_arrays_are_seen_and_written_by_children_under_every_method() {
    for method in StartMethod::ALL {
        let v = Value::new(21i64).unwrap();
        let a = Array::from_slice(&[1.0f64, 2.0, 3.0]).unwrap();
        let flags = Array::<bool>::raw(2).unwrap();
        let builder = get_context(Some(method))
            .process(double_and_shift, (v.clone(), a.clone(), flags.clone()));
        // SAFETY: under fork the child only uses the shared value and arrays (atomics and
        // process-shared mutexes nobody holds) and allocates (glibc's malloc is
        // fork-safe); it takes no lock another thread of the harness could hold.
        let child = unsafe { builder.start_unchecked() }.unwrap();
        let (seen_v, seen_a) = child.join_timeout(LONG).unwrap();
        assert_eq!(seen_v, 21, "{method}");
        assert_eq!(seen_a, [1.0, 2.0, 3.0], "{method}");
        assert_eq!(v.get().unwrap(), 42, "{method}");
        assert_eq!(a.to_vec().unwrap(), [1.5, 2.5, 3.5], "{method}");
        assert_eq!(flags.to_vec().unwrap(), [false, true], "{method}");
    }
}

fn add_with_the_lock(v: Value<i64>) {
    for _ in 0..INCREMENTS {
        let held = v.lock_timeout(LONG).or_else(AcquireError::recover).unwrap();
        held.set(held.get() + 1);
    }
}

fn add_with_get_lock(v: Value<i64>) {
    for _ in 0..INCREMENTS {
        let _held = v.get_lock().unwrap().acquire_timeout(LONG).unwrap();
        v.set(v.get().unwrap() + 1).unwrap();
    }
}

fn add_atomically(v: Value<i64>) {
    for _ in 0..INCREMENTS {
        v.fetch_add(1);
    }
}

fn add_without_the_lock(v: Value<i64>) {
    for _ in 0..INCREMENTS {
        v.set(v.get().unwrap() + 1).unwrap();
    }
}

fn five_children<F: Fn(Value<i64>) + Copy + 'static>(
    method: StartMethod,
    target: F,
    v: &Value<i64>,
) {
    let ctx = get_context(Some(method));
    let children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            let builder = ctx.process(target, v.clone());
            // SAFETY: under fork the children only use the shared value; they take no
            // lock another thread of the harness could hold.
            unsafe { builder.start_unchecked() }.unwrap()
        })
        .collect();
    for child in children {
        child.join_timeout(LONG).unwrap();
    }
}

#[test]
fn five_processes_count_exactly_with_the_lock() {
    for method in [StartMethod::ForkServer, StartMethod::Spawn] {
        let v = Value::new(0i64).unwrap();
        five_children(method, add_with_the_lock, &v);
        assert_eq!(v.get().unwrap(), 5000, "{method}");
        five_children(method, add_with_get_lock, &v);
        assert_eq!(v.get().unwrap(), 10000, "{method}");
    }
}

#[test]
fn five_processes_count_exactly_with_fetch_add() {
    for method in [StartMethod::ForkServer, StartMethod::Fork] {
        let v = Value::raw(0i64).unwrap();
        five_children(method, add_atomically, &v);
        assert_eq!(v.load(), 5000, "{method}");
    }
}

#[test]
fn five_processes_without_the_lock_lose_nothing_they_did_not_race_for() {
    // Without the lock, increments may be lost (or, by luck, not): only the bounds hold.
    let v = Value::raw(0i64).unwrap();
    five_children(StartMethod::ForkServer, add_without_the_lock, &v);
    let total = v.get().unwrap();
    assert!((INCREMENTS..=5000).contains(&total), "{total}");
}

#[test]
fn integer_values_have_atomic_operations() {
    let v = Value::new(10u8).unwrap();
    assert_eq!(v.fetch_add(250), 10);
    assert_eq!(v.load(), 4, "wraps like std's atomics");
    assert_eq!(v.fetch_sub(5), 4);
    assert_eq!(v.swap(7), 255);
    assert_eq!(v.compare_exchange(7, 8), Ok(7));
    assert_eq!(v.compare_exchange(7, 9), Err(8));
    v.store(1);
    assert_eq!(v.get().unwrap(), 1);
}

#[test]
fn array_indexes_and_lengths_are_checked_not_panics() {
    let a = Array::<u32>::new(3).unwrap();
    assert!(matches!(
        a.get(3),
        Err(IndexError::OutOfRange(IndexOutOfRange { index: 3, len: 3 }))
    ));
    assert!(matches!(
        a.set(usize::MAX, 1),
        Err(IndexError::OutOfRange(IndexOutOfRange {
            index: usize::MAX,
            len: 3
        }))
    ));
    assert!(matches!(
        a.copy_from_slice(&[1, 2]),
        Err(CopyError::LengthMismatch(LengthMismatch { got: 2, len: 3 }))
    ));
    let section = a.lock().unwrap();
    assert_eq!(section.get(3), Err(IndexOutOfRange { index: 3, len: 3 }));
    assert!(matches!(
        section.copy_from_slice(&[1; 4]),
        Err(LengthMismatch { got: 4, len: 3 })
    ));
    section.copy_from_slice(&[4, 5, 6]).unwrap();
    assert_eq!(section.to_vec(), [4, 5, 6]);
    assert_eq!(a.get(2).unwrap(), 6, "the lock is recursive");
    drop(section);
    assert_eq!(a.to_vec().unwrap(), [4, 5, 6]);
}

#[test]
fn raw_values_and_arrays_have_no_locked_section() {
    let v = Value::raw(1.0f32).unwrap();
    assert!(v.get_lock().is_none());
    assert!(matches!(
        v.lock(),
        Err(AcquireError::Failed(LockError::NoLock))
    ));
    let a = Array::<i16>::raw(2).unwrap();
    assert!(matches!(
        a.lock(),
        Err(AcquireError::Failed(LockError::NoLock))
    ));
    a.set(1, -2).unwrap();
    assert_eq!(a.to_vec().unwrap(), [0, -2]);
}

#[test]
fn a_values_lock_times_out_while_another_thread_holds_it() {
    let v = Value::new(0u64).unwrap();
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|s| {
        let v = &v;
        s.spawn(move || {
            let _held = v.lock().unwrap();
            held_tx.send(()).unwrap();
            done_rx.recv_timeout(LONG).unwrap();
        });
        held_rx.recv_timeout(LONG).unwrap();
        assert!(matches!(
            v.lock_timeout(Duration::from_millis(50)),
            Err(AcquireError::Failed(LockError::Timeout(_)))
        ));
        // The atomic operations do not wait for the lock.
        v.fetch_add(1);
        done_tx.send(()).unwrap();
    });
    assert_eq!(v.get().unwrap(), 1);
}

#[test]
fn values_and_arrays_keep_their_type_across_a_connection() {
    let (left, right) = pipe(true).unwrap();
    let v = Value::new(5u32).unwrap();
    left.send(&v).unwrap();
    let received: Value<u32> = right.recv_timeout(LONG).unwrap();
    received.fetch_add(1);
    assert_eq!(v.get().unwrap(), 6);
    assert!(received.get_lock().is_some());

    left.send(&v).unwrap();
    assert!(
        right.recv_timeout::<Value<f32>>(LONG).is_err(),
        "u32 is not f32"
    );
    left.send(&Array::<u32>::new(2).unwrap()).unwrap();
    assert!(
        right.recv_timeout::<Value<u32>>(LONG).is_err(),
        "an array is not a value"
    );

    let a = Array::raw_from_slice(&[1.5f64, 2.5]).unwrap();
    left.send(&a).unwrap();
    let received: Array<f64> = right.recv_timeout(LONG).unwrap();
    assert!(received.get_lock().is_none());
    received.set(0, 9.0).unwrap();
    assert_eq!(a.to_vec().unwrap(), [9.0, 2.5]);
}
