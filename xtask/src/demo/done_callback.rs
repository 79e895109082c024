//! done-callback: a task returns 42 after one unit; a callback added while it runs
//! reports its end; a second one, added after it is done, runs at once, on the thread
//! that adds it.

use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, ensure};
use flotilla::futures::ThreadPoolExecutor;

use super::Clock;

pub(crate) fn run(clock: &Clock) -> anyhow::Result<()> {
    let clock = *clock;
    let executor = ThreadPoolExecutor::new();
    let fut = executor.submit(move || {
        clock.say("t starts");
        clock.sleep(1.0);
        42
    })?;

    let (tx, rx) = mpsc::channel();
    fut.add_done_callback(move |f| {
        let value = f.result();
        clock.say(format!(
            "t end: callback sees {value:?} on {:?}",
            std::thread::current().name()
        ));
        let _ = tx.send(value.ok());
    });
    clock.say("callback added while the task runs; main goes on");
    let seen = rx
        .recv_timeout(Duration::from_secs(60))
        .context("the callback never ran")?;
    ensure!(seen == Some(42), "the callback saw {seen:?}");

    let main = std::thread::current().id();
    let (tx, rx) = mpsc::channel();
    fut.add_done_callback(move |f| {
        clock.say(format!("late callback runs at once, sees {:?}", f.result()));
        let _ = tx.send(std::thread::current().id());
    });
    ensure!(
        rx.try_recv() == Ok(main),
        "a callback added when done runs at once on the caller"
    );
    Ok(())
}
