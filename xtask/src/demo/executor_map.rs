//! executor-map: `map` over four tasks on three workers.
//!
//! Three tasks start at once; func4 starts when func2 frees a worker (t=2). The results
//! come in input order: func1's (at t=4), func2's, then func3's failure, which ends the
//! iteration; func4's result is never seen. Leaving the executor's scope still waits
//! for func4, until t=7.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::ensure;
use flotilla::futures::ThreadPoolExecutor;

use super::Clock;
use super::tasks::FOUR;

pub(crate) fn run(clock: &Clock) -> anyhow::Result<()> {
    let clock = *clock;
    let func4_done = Arc::new(AtomicBool::new(false));
    let mut seen = Vec::new();
    {
        let executor = ThreadPoolExecutor::builder().max_workers(3).build()?;
        let done = Arc::clone(&func4_done);
        let results = executor.try_map(
            move |task| {
                let outcome = task.run(clock);
                if task.name == "func4" {
                    done.store(true, Ordering::SeqCst);
                }
                outcome
            },
            FOUR,
        );
        for result in results {
            match &result {
                Ok(value) => clock.say(format!("main got {value:?}")),
                Err(e) => clock.say(format!("main got an error, iteration stops: {e}")),
            }
            seen.push(result.is_ok());
        }
        clock.say("leaving the executor's scope: it waits for the running func4");
    }
    clock.say("the executor is gone");
    ensure!(
        seen == [true, true, false],
        "expected func1, func2, then func3's error; got {seen:?}"
    );
    ensure!(
        func4_done.load(Ordering::SeqCst),
        "dropping the executor must wait for func4"
    );
    Ok(())
}
