//! pool-methods: a pool of 4 runs `hello(name)` (sleep 2, return "hello NAME, I am PID")
//! for four names with `map`, `map_async`, `imap_unordered`, `apply` (one at a time:
//! four times as long) and `apply_async`, timing each.

use anyhow::ensure;
use flotilla::multiprocessing::Pool;

use super::Clock;

const NAMES: [&str; 4] = ["ann", "bob", "cyd", "dee"];

fn hello((clock, name): (Clock, String)) -> String {
    clock.sleep(2.0);
    format!("hello {name}, I am {}", std::process::id())
}

fn args(clock: Clock) -> Vec<(Clock, String)> {
    NAMES.iter().map(|n| (clock, n.to_string())).collect()
}

pub(crate) fn run(clock: &Clock) -> anyhow::Result<()> {
    let clock = *clock;
    let pool = Pool::new(4)?;
    let timed =
        |what: &str, f: &mut dyn FnMut() -> anyhow::Result<Vec<String>>| -> anyhow::Result<f64> {
            let start = clock.now();
            let got = f()?;
            let took = clock.now() - start;
            clock.say(format!("{what:<15} took {took:>4.1} units: {got:?}"));
            ensure!(got.len() == 4, "{what}: {} results", got.len());
            Ok(took)
        };
    timed("map", &mut || Ok(pool.map(hello, args(clock), Some(1))?))?;
    timed("map_async", &mut || {
        Ok(pool.map_async(hello, args(clock), Some(1))?.get()?)
    })?;
    timed("imap_unordered", &mut || {
        Ok(pool
            .imap_unordered(hello, args(clock), 1)?
            .collect::<Result<_, _>>()?)
    })?;
    let serial = timed("apply", &mut || {
        args(clock)
            .into_iter()
            .map(|a| Ok(pool.apply(hello, a)?))
            .collect()
    })?;
    let parallel = timed("apply_async", &mut || {
        let pending = args(clock)
            .into_iter()
            .map(|a| pool.apply_async(hello, a))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(pending.iter().map(|p| p.get()).collect::<Result<_, _>>()?)
    })?;
    clock.say(format!(
        "apply runs one task at a time ({serial:.1} units); the async forms overlap ({parallel:.1})"
    ));
    pool.close();
    pool.join()?;
    Ok(())
}
