//! queue-bounded: a queue of maxsize 3 takes a list, a dict and a set; a fourth `put`
//! with a 2-second timeout fails with Full, and so does `put_nowait`; then a child
//! process drains it while the parent prints `qsize` going down, and `close` ends the
//! child's loop.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::ensure;
use flotilla::multiprocessing::{Process, Queue};

use super::Clock;

const LONG: Duration = Duration::from_secs(60);

/// The three kinds of Python objects the classic example puts.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
enum Item {
    List(Vec<i32>),
    Dict(BTreeMap<String, i32>),
    Set(BTreeSet<char>),
}

fn drain((clock, q): (Clock, Queue<Item>)) -> usize {
    let mut n = 0;
    for item in &q {
        clock.say(format!("  child got {:?}", item.unwrap()));
        n += 1;
        clock.sleep(1.0);
    }
    n
}

pub(crate) fn run(clock: &Clock) -> anyhow::Result<()> {
    let clock = *clock;
    let q = Queue::bounded(3)?;
    q.put(Item::List(vec![1, 2, 3]))?;
    q.put(Item::Dict(BTreeMap::from([
        ("a".into(), 1),
        ("b".into(), 2),
    ])))?;
    q.put(Item::Set(BTreeSet::from(['x', 'y'])))?;
    clock.say(format!(
        "put a list, a dict and a set: qsize {}, full {}",
        q.len(),
        q.is_full()
    ));

    let err = q
        .put_timeout(Item::List(vec![4]), clock.units(2.0))
        .expect_err("the queue is full");
    clock.say(format!(
        "put with a 2 s timeout: {err} (the item is handed back)"
    ));
    ensure!(err.is_timeout(), "expected Full, got {err:?}");
    let err = q.try_put(Item::List(vec![5])).expect_err("still full");
    clock.say(format!("put_nowait: {err}"));
    ensure!(err.is_full(), "expected Full, got {err:?}");

    let child = Process::new(drain, (clock, q.clone())).start()?;
    let mut last = q.len();
    while last > 0 {
        std::thread::sleep(Duration::from_millis(1));
        let now = q.len();
        if now != last {
            clock.say(format!("parent sees qsize {now}"));
            last = now;
        }
    }
    // Drained: closing ends the child's loop.
    q.close();
    let drained = child.join_timeout(LONG)?;
    ensure!(drained == 3 && q.is_empty(), "drained {drained}");
    Ok(())
}
