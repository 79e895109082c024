//! manager-lock: five processes add 1 to `d["year"]` (from 2000) 100 times each through a
//! manager dict. Read-then-write without a lock loses updates (another process writes in
//! between); under the manager's `Lock` the total is exactly 2500; and the server-side
//! compound operation `d.add(key, 1)` gets 2500 with no lock and one round trip per add.

use std::time::{Duration, Instant};

use anyhow::ensure;
use flotilla::managers::{DictProxy, LockProxy, Manager};
use flotilla::multiprocessing::{Process, Value};

use super::Clock;

const LONG: Duration = Duration::from_secs(60);
const ROUNDS: i64 = 100;
const PROCESSES: i64 = 5;

type Args = (DictProxy<String, i64>, LockProxy, Value<i32>);

fn year() -> String {
    "year".to_owned()
}

/// Spins until the parent says go, so that the five children really run at once.
fn wait_for_go(go: &Value<i32>) {
    while go.load() == 0 {
        std::thread::yield_now();
    }
}

fn add_unlocked((d, _lock, go): Args) {
    wait_for_go(&go);
    for _ in 0..ROUNDS {
        // d["year"] += 1, Python's way: a read, then a write; another process may write in
        // between, and its update is lost.
        let y = d.get(&year()).expect("get").expect("the year is set");
        d.set(&year(), &(y + 1)).expect("set");
    }
}

fn add_locked((d, lock, go): Args) {
    wait_for_go(&go);
    for _ in 0..ROUNDS {
        let _held = lock.guard().expect("acquire");
        let y = d.get(&year()).expect("get").expect("the year is set");
        d.set(&year(), &(y + 1)).expect("set");
    }
}

fn add_on_server((d, _lock, go): Args) {
    wait_for_go(&go);
    for _ in 0..ROUNDS {
        d.add(&year(), 1).expect("add");
    }
}

/// `worker` is a fn item (a zero-sized type), as process targets must be.
fn race<F>(clock: &Clock, manager: &Manager, what: &str, worker: F) -> anyhow::Result<i64>
where
    F: Fn(Args) + Copy + 'static,
{
    let d = manager.dict::<String, i64>()?;
    d.set(&year(), &2000)?;
    let lock = manager.lock()?;
    let go = Value::raw(0i32)?;
    let children = (0..PROCESSES)
        .map(|_| Process::new(worker, (d.clone(), lock.clone(), go.clone())).start())
        .collect::<Result<Vec<_>, _>>()?;
    let started = Instant::now();
    go.store(1);
    for child in children {
        child.join_timeout(LONG)?;
    }
    let total = d.get(&year())?.unwrap_or_default();
    clock.say(format!(
        "{what:<34} d[\"year\"] = {total} in {:>7.1} ms",
        started.elapsed().as_secs_f64() * 1e3
    ));
    Ok(total)
}

pub(crate) fn run(clock: &Clock) -> anyhow::Result<()> {
    let manager = Manager::start()?;
    let expected = 2000 + PROCESSES * ROUNDS;
    let unlocked = race(clock, &manager, "get then set, no lock", add_unlocked)?;
    ensure!(
        (2000 + ROUNDS..=expected).contains(&unlocked),
        "impossible total {unlocked}"
    );
    if unlocked < expected {
        clock.say(format!("  {} updates lost", expected - unlocked));
    } else {
        clock.say("  (no update lost this time: the race is real, but not certain)");
    }
    ensure!(
        race(
            clock,
            &manager,
            "get then set under manager.lock()",
            add_locked
        )? == expected,
        "the lock lost an update"
    );
    ensure!(
        race(
            clock,
            &manager,
            "d.add(\"year\", 1) on the server",
            add_on_server
        )? == expected,
        "the server-side add lost an update"
    );
    Ok(())
}
