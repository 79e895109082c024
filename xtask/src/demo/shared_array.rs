//! shared-array: `Array('i', range(10))` and `Value('d', 3.14)` given to two children
//! that run at the same time, one started by spawn and one by forkserver. A `Barrier`
//! lines them up with the parent; each child writes its own element of the array and
//! doubles the value under the value's lock; a second barrier round tells the parent
//! both writes are in, and a third that the parent has looked. Then the children move
//! units between the array's slots under the array's lock while the parent watches the
//! sum, which never changes; an `Event` tells them when to stop.

use std::time::Duration;

use anyhow::ensure;
use flotilla::multiprocessing::{
    AcquireError, Array, Barrier, Event, StartMethod, Value, get_context,
};

use super::Clock;

const LONG: Duration = Duration::from_secs(60);

type Shared = (Array<i32>, Value<f64>, Barrier, Event, usize);

/// Child `who` (1 or 2): writes `array[who]`, doubles the value, then shuffles units
/// around the array until told to stop; returns how many moves it made.
fn child((array, value, barrier, stop, who): Shared) -> u64 {
    barrier.wait_timeout(LONG).expect("everyone arrives");
    array.set(who, -(who as i32)).unwrap();
    {
        let v = value
            .lock_timeout(LONG)
            .or_else(AcquireError::recover)
            .unwrap();
        v.set(v.get() * 2.0);
    }
    barrier.wait_timeout(LONG).expect("both writes are in");
    barrier.wait_timeout(LONG).expect("the parent has looked");

    let mut moves = 0u64;
    let len = array.len();
    while !stop.is_set() {
        // One unit from one slot to another: two writes that must look like one.
        let (from, to) = (
            (moves as usize * who) % len,
            (moves as usize * 7 + who) % len,
        );
        let section = array
            .lock_timeout(LONG)
            .or_else(AcquireError::recover)
            .unwrap();
        section.set(from, section.get(from).unwrap() - 1).unwrap();
        section.set(to, section.get(to).unwrap() + 1).unwrap();
        drop(section);
        moves += 1;
    }
    moves
}

pub(crate) fn run(clock: &Clock) -> anyhow::Result<()> {
    let array = Array::from_slice(&(0..10).collect::<Vec<i32>>())?;
    // The classic example stores 3.14: an approximate value, which is the point.
    #[allow(clippy::approx_constant, reason = "the scenario's own number")]
    let start = 3.14f64;
    let value = Value::new(start)?;
    let barrier = Barrier::new(3)?;
    let stop = Event::new()?;
    let children = [(1, StartMethod::Spawn), (2, StartMethod::ForkServer)]
        .into_iter()
        .map(|(who, method)| {
            let shared = (
                array.clone(),
                value.clone(),
                barrier.clone(),
                stop.clone(),
                who,
            );
            clock.say(format!("child {who} starts by {method}"));
            // Daemons: should this demo fail before it sets `stop`, its exit ends them
            // rather than waiting for ever.
            get_context(Some(method))
                .process(child, shared)
                .daemon(true)
                .start()
        })
        .collect::<Result<Vec<_>, _>>()?;

    let index = barrier.wait_timeout(LONG)?;
    clock.say(format!(
        "all three at the barrier (the parent arrived {index}th of 0..3)"
    ));
    barrier.wait_timeout(LONG)?;
    let seen = array.to_vec()?;
    clock.say(format!(
        "the parent sees array {seen:?} and value {}",
        value.get()?
    ));
    ensure!(
        seen[1] == -1 && seen[2] == -2,
        "both children's writes are visible"
    );
    ensure!(
        value.get()? == start * 4.0,
        "both doublings happened, one after the other"
    );
    barrier.wait_timeout(LONG)?;

    let sum: i32 = seen.iter().sum();
    for _ in 0..5 {
        clock.sleep(0.02);
        let now = array
            .lock_timeout(LONG)
            .or_else(AcquireError::recover)?
            .to_vec();
        clock.say(format!("array {now:?}, sum {}", now.iter().sum::<i32>()));
        ensure!(now.iter().sum::<i32>() == sum, "a move was seen half-done");
    }
    stop.set();
    let mut moves = 0;
    for child in children {
        moves += child.join_timeout(LONG)?;
    }
    let end = array.to_vec()?;
    clock.say(format!(
        "stopped after {moves} moves; the sum is still {}",
        end.iter().sum::<i32>()
    ));
    ensure!(end.iter().sum::<i32>() == sum, "the sum changed");
    Ok(())
}
