//! process-basics: a parent and its child, each printing its pid and its parent's pid;
//! names (`Process-N`), `is_alive`, `terminate` (exit code -15), and exit code 1 when
//! the target fails.

use std::time::Duration;

use anyhow::ensure;
use flotilla::multiprocessing::{Error, Process, current_process, parent_process};

use super::Clock;

/// Generous bound on every join: a demo fails rather than hangs.
const LONG: Duration = Duration::from_secs(60);

fn introduce(clock: Clock) -> i32 {
    let me = current_process();
    let parent = parent_process().map_or(0, |p| p.pid);
    clock.say(format!(
        "child  {}: pid {}, parent pid {parent}",
        me.name, me.pid
    ));
    me.pid
}

fn sleep_units((clock, units): (Clock, f64)) {
    clock.say(format!(
        "child  {}: sleeping {units} units",
        current_process().name
    ));
    clock.sleep(units);
}

fn fail(clock: Clock) {
    clock.say(format!("child  {}: about to fail", current_process().name));
    panic!("the target failed on purpose");
}

pub(crate) fn run(clock: &Clock) -> anyhow::Result<()> {
    let clock = *clock;
    let me = current_process();
    clock.say(format!(
        "parent {}: pid {}, parent pid {}",
        me.name,
        me.pid,
        std::os::unix::process::parent_id()
    ));

    let child = Process::new(introduce, clock).start()?;
    clock.say(format!(
        "parent started {} (pid {})",
        child.name(),
        child.pid()
    ));
    let reported = child.join_timeout(LONG)?;
    ensure!(reported == child.pid(), "the child reported pid {reported}");
    clock.say(format!(
        "{} joined: exit code {:?}",
        child.name(),
        child.exitcode()
    ));

    let sleeper = Process::new(sleep_units, (clock, 30.0))
        .name("sleeper")
        .start()?;
    ensure!(sleeper.is_alive(), "a sleeping child is alive");
    clock.say(format!(
        "{} is_alive: {}",
        sleeper.name(),
        sleeper.is_alive()
    ));
    clock.sleep(1.0);
    sleeper.terminate()?;
    let ended = sleeper.join_timeout(LONG);
    clock.say(format!(
        "terminated {}: {}, exit code {:?}",
        sleeper.name(),
        describe(&ended),
        sleeper.exitcode()
    ));
    ensure!(
        sleeper.exitcode() == Some(-15),
        "terminate gives exit code -15"
    );

    let failing = Process::new(fail, clock).start()?;
    let ended = failing.join_timeout(LONG);
    clock.say(format!(
        "{}: {}, exit code {:?}",
        failing.name(),
        describe(&ended),
        failing.exitcode()
    ));
    ensure!(
        failing.exitcode() == Some(1),
        "a failed target gives exit code 1"
    );
    Ok(())
}

fn describe<T>(outcome: &Result<T, Error>) -> String {
    match outcome {
        Ok(_) => "returned".into(),
        Err(e) => e.to_string(),
    }
}
