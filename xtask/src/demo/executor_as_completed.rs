//! executor-as-completed: the four tasks submitted, results taken with `as_completed`.
//!
//! Results arrive in completion order: func2 (t=2), func3's error (t=3), func1 (t=4),
//! func4 (t=7). With the error handled inside the loop, the loop sees all four; with it
//! propagated out of the loop (`?`), the loop ends at the error.

use anyhow::ensure;
use flotilla::futures::{TaskError, ThreadPoolExecutor, as_completed};

use super::Clock;
use super::tasks::FOUR;

pub(crate) fn run(clock: &Clock) -> anyhow::Result<()> {
    let clock = *clock;
    let executor = ThreadPoolExecutor::builder().max_workers(3).build()?;

    clock.say("-- the error handled inside the loop");
    let futures = FOUR
        .iter()
        .map(|&task| executor.try_submit(move || task.run(clock)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut seen = Vec::new();
    for fut in as_completed(futures) {
        match fut?.result() {
            Ok(value) => {
                clock.say(format!("main got {value:?}"));
                seen.push(value);
            }
            Err(e) => {
                clock.say(format!("main caught: {e}"));
                seen.push("error".into());
            }
        }
    }
    seen.sort();
    ensure!(
        seen == ["error", "func1 result", "func2 result", "func4 result"],
        "every future is yielded once: {seen:?}"
    );

    clock.say("-- the error propagated out of the loop");
    let futures = FOUR
        .iter()
        .map(|&task| executor.try_submit(move || task.run(clock)))
        .collect::<Result<Vec<_>, _>>()?;
    let collect = || -> Result<Vec<String>, TaskError> {
        let mut got = Vec::new();
        for fut in as_completed(futures) {
            let value = fut?.result()?;
            clock.say(format!("main got {value:?}"));
            got.push(value);
        }
        Ok(got)
    };
    match collect() {
        Ok(all) => anyhow::bail!("expected the loop to end at func3's error, got {all:?}"),
        Err(e) => clock.say(format!("the loop ended at: {e}")),
    }
    clock.say("leaving the executor's scope waits for what still runs");
    Ok(())
}
