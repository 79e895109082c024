//! shared-value: `Value('d', 3.14)` and `Array('i', range(10))` given to two children,
//! each writing one element, and the parent sees both writes. Then five processes add 1
//! to a shared integer 1000 times each: without the lock updates are lost; with
//! `get_lock()` the total is 5000; with an atomic `fetch_add` it is 5000 with no lock at
//! all. How long each took is printed.

use std::time::{Duration, Instant};

use anyhow::ensure;
use flotilla::multiprocessing::{Array, Process, Value};

use super::Clock;

const LONG: Duration = Duration::from_secs(60);

fn write_one((value, array, who): (Value<f64>, Array<i32>, usize)) {
    if who == 0 {
        value.set(2.71).unwrap();
    } else {
        array.set(who, -1).unwrap();
    }
}

/// Spins until the parent says go, so that the five children really run at once.
fn wait_for_go(go: &Value<i32>) {
    while go.load() == 0 {
        std::hint::spin_loop();
    }
}

fn add_unlocked((counter, go): (Value<i64>, Value<i32>)) {
    wait_for_go(&go);
    for _ in 0..1000 {
        // Read, then write: another process may write in between, and its update is lost.
        let v = counter.load();
        std::hint::black_box(());
        counter.store(v + 1);
    }
}

fn add_locked((counter, go): (Value<i64>, Value<i32>)) {
    wait_for_go(&go);
    for _ in 0..1000 {
        let guard = counter.lock().unwrap();
        guard.set(guard.get() + 1);
    }
}

fn add_atomic((counter, go): (Value<i64>, Value<i32>)) {
    wait_for_go(&go);
    for _ in 0..1000 {
        counter.fetch_add(1);
    }
}

/// `worker` is a fn item (a zero-sized type), as process targets must be: a `fn`
/// pointer would not name a function the child can find.
fn race<F>(clock: &Clock, what: &str, worker: F) -> anyhow::Result<i64>
where
    F: Fn((Value<i64>, Value<i32>)) + Copy + 'static,
{
    let counter = Value::new(0i64)?;
    let go = Value::raw(0i32)?;
    let children = (0..5)
        .map(|_| Process::new(worker, (counter.clone(), go.clone())).start())
        .collect::<Result<Vec<_>, _>>()?;
    let started = Instant::now();
    go.store(1);
    for child in children {
        child.join_timeout(LONG)?;
    }
    let total = counter.get()?;
    clock.say(format!(
        "{what:<22} total {total:>4} in {:>6.2} ms",
        started.elapsed().as_secs_f64() * 1e3
    ));
    Ok(total)
}

pub(crate) fn run(clock: &Clock) -> anyhow::Result<()> {
    // The classic example stores 3.14: an approximate value, which is the point.
    #[allow(clippy::approx_constant, reason = "the scenario's own number")]
    let value = Value::new(3.14f64)?;
    let array = Array::from_slice(&(0..10).collect::<Vec<i32>>())?;
    for who in [0, 1] {
        Process::new(write_one, (value.clone(), array.clone(), who))
            .start()?
            .join_timeout(LONG)?;
    }
    clock.say(format!(
        "value {} (was 3.14), array {:?}",
        value.get()?,
        array.to_vec()?
    ));
    ensure!(
        value.get()? == 2.71 && array.get(1)? == -1,
        "the children's writes are visible"
    );

    let unlocked = race(clock, "no lock (lost updates)", add_unlocked)?;
    ensure!(
        (1000..=5000).contains(&unlocked),
        "impossible total {unlocked}"
    );
    ensure!(
        race(clock, "with get_lock()", add_locked)? == 5000,
        "the lock lost an update"
    );
    ensure!(
        race(clock, "atomic fetch_add", add_atomic)? == 5000,
        "fetch_add lost an update"
    );
    Ok(())
}
