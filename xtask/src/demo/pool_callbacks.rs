//! pool-callbacks: `apply_async` with a `callback` for three tasks that succeed and an
//! `error_callback` for two that fail; `close` then `join`; the results arrive through
//! the callbacks. Then `get(timeout = 0.5)` on a task that cannot finish yet times out.
//!
//! Python's example sleeps in the task and trusts the clock; here the slow task waits
//! for the parent's word, so the timeout is certain however loaded the machine is.

use std::sync::mpsc;
use std::time::Duration;

use anyhow::ensure;
use flotilla::futures::TaskError;
use flotilla::multiprocessing::{Event, Pool};

use super::Clock;

fn task((clock, n): (Clock, u32)) -> u32 {
    clock.sleep(1.0);
    assert!(n < 3, "task {n} raises");
    n * 100
}

/// The slow task: it finishes only once the parent sets `release` (or after a minute,
/// so that a broken demo cannot hang).
fn held(release: Event) -> u32 {
    release.wait_timeout(Duration::from_secs(60));
    100
}

pub(crate) fn run(clock: &Clock) -> anyhow::Result<()> {
    let clock = *clock;
    let pool = Pool::new(5)?;
    let (tx, rx) = mpsc::channel();
    for n in 0..5 {
        let (ok, err) = (tx.clone(), tx.clone());
        pool.apply_async_with(
            task,
            (clock, n),
            move |v| {
                clock.say(format!("callback: task {n} returned {v}"));
                let _ = ok.send(true);
            },
            move |e| {
                clock.say(format!("error_callback: task {n} failed: {e}"));
                let _ = err.send(false);
            },
        )?;
    }
    drop(tx);
    pool.close();
    pool.join()?;
    clock.say("close + join returned: every callback has run");
    let outcomes: Vec<bool> = rx.try_iter().collect();
    ensure!(
        outcomes.iter().filter(|&&ok| ok).count() == 3,
        "three callbacks: {outcomes:?}"
    );
    ensure!(
        outcomes.iter().filter(|&&ok| !ok).count() == 2,
        "two error callbacks: {outcomes:?}"
    );

    let pool = Pool::new(1)?;
    let release = Event::new()?;
    let slow = pool.apply_async(held, release.clone())?;
    match slow.get_timeout(clock.units(0.5)) {
        Err(TaskError::TimedOut) => {
            clock.say("get(timeout=0.5) on a task still held: timed out, the task goes on")
        }
        other => anyhow::bail!("expected a timeout, got {other:?}"),
    }
    release.set();
    ensure!(
        slow.get_timeout(Duration::from_secs(60))? == 100,
        "the task still finished"
    );
    clock.say("a second get waits it out: 100");
    Ok(())
}
