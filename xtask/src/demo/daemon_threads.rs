//! daemon-threads: a normal thread that sleeps 2 and a daemon thread that sleeps 4; the
//! program ends after the normal one, and the daemon's "end" line never prints. Then
//! `join` with a timeout returns while the thread is still alive.
//!
//! The first part needs a process that really ends, so it runs in a child: this binary
//! re-executed as `demo --child daemon-threads`, whose output is shown as it arrives.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Instant;

use anyhow::{Context, bail, ensure};
use flotilla::threading::{Event, ThreadBuilder};

use super::Clock;

pub(crate) fn run(clock: &Clock) -> anyhow::Result<()> {
    let lines = run_child(clock)?;
    let position = |what: &str| lines.iter().position(|l| l.contains(what));
    let returned = position("main: returns").context("the child's main did not run")?;
    let normal = position("normal: end").context("the exit did not wait for the normal thread")?;
    ensure!(
        returned < normal,
        "the normal thread ended before main returned"
    );
    ensure!(
        position("daemon: end").is_none(),
        "the exit waited for the daemon thread"
    );
    clock.say("the child exited after its normal thread; its daemon never printed \"end\"");

    join_with_timeout(clock)
}

/// The child's `main`: starts both threads and returns at once. Its exit then waits for
/// the normal thread only. Lines are printed plain; the parent stamps them on arrival.
pub(crate) fn child() -> anyhow::Result<()> {
    let (two, four) = {
        let clock = Clock::start();
        (clock.units(2.0), clock.units(4.0))
    };
    ThreadBuilder::new().name("normal").spawn(move || {
        println!("normal: start");
        std::thread::sleep(two);
        println!("normal: end");
    })?;
    ThreadBuilder::new()
        .name("daemon")
        .daemon(true)
        .spawn(move || {
            println!("daemon: start");
            std::thread::sleep(four);
            println!("daemon: end");
        })?;
    println!("main: returns");
    Ok(())
}

/// Runs the child, echoing its lines with this clock's time; returns the lines.
fn run_child(clock: &Clock) -> anyhow::Result<Vec<String>> {
    let exe = std::env::current_exe().context("finding the xtask binary")?;
    let mut child = Command::new(exe)
        .args(["demo", "--child", "daemon-threads"])
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the child process")?;
    clock.say(format_args!("started child process {}", child.id()));
    let stdout = child.stdout.take().context("the child's stdout")?;
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    // Generous: the child needs 2 units; a hang (waiting for the daemon forever, or
    // worse) fails the demo instead of stalling it.
    let give_up = Instant::now() + clock.units(40.0).max(std::time::Duration::from_secs(60));
    let mut lines = Vec::new();
    loop {
        let left = give_up.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                clock.say(format_args!("  child | {line}"));
                lines.push(line);
            }
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("the child process did not exit");
            }
        }
    }
    let status = child.wait().context("waiting for the child")?;
    let _ = reader.join();
    clock.say(format_args!("child exited: {status}"));
    ensure!(status.success(), "the child failed: {status}");
    Ok(lines)
}

/// `join(timeout)` gives up while the thread runs on; a later `join` gets its value.
fn join_with_timeout(clock: &Clock) -> anyhow::Result<()> {
    let finish = Arc::new(Event::new());
    let worker = {
        let finish = Arc::clone(&finish);
        ThreadBuilder::new().name("worker").spawn(move || {
            finish.wait();
            Some("worker's result")
        })?
    };
    clock.say("started \"worker\"; join(timeout = 1)");
    let first = worker.join_timeout(clock.units(1.0));
    clock.say(format_args!(
        "join returned {first:?}; is_alive = {}",
        worker.is_alive()
    ));
    ensure!(
        matches!(first, Err(flotilla::threading::Error::Timeout(_))),
        "join returned before the worker finished: {first:?}"
    );
    ensure!(worker.is_alive(), "the worker ended although never told to");

    clock.sleep(1.0);
    clock.say("telling the worker to finish; join() blocks until it has");
    finish.set();
    let value = worker.join()?;
    clock.say(format_args!(
        "join returned {value:?}; is_alive = {}",
        worker.is_alive()
    ));
    ensure!(
        value == Some("worker's result"),
        "unexpected result {value:?}"
    );
    ensure!(!worker.is_alive(), "the worker is alive after join");
    Ok(())
}
