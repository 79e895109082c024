//! start-methods: the same trivial child under fork, spawn and forkserver, with each
//! one's start-to-join time: spawn is the slowest; forkserver pays for its server once,
//! then starts children nearly as fast as fork.

use std::time::{Duration, Instant};

use anyhow::ensure;
use flotilla::multiprocessing::{StartMethod, get_context};

use super::Clock;

const LONG: Duration = Duration::from_secs(60);

fn trivial(x: u32) -> u32 {
    x + 1
}

pub(crate) fn run(clock: &Clock) -> anyhow::Result<()> {
    for method in StartMethod::ALL {
        let ctx = get_context(Some(method));
        let mut times = Vec::new();
        for i in 0..5 {
            let started = Instant::now();
            let value = ctx.process(trivial, i).start()?.join_timeout(LONG)?;
            times.push(started.elapsed());
            ensure!(value == i + 1, "{method}: got {value}");
        }
        let first = times[0];
        times.sort();
        clock.say(format!(
            "{method:<10} first start+join {:>7.2} ms, median of 5 {:>7.2} ms",
            first.as_secs_f64() * 1e3,
            times[2].as_secs_f64() * 1e3
        ));
    }
    Ok(())
}
