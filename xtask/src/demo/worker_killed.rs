//! worker-killed (flotilla's own): a worker is SIGKILLed in the middle of a map. The
//! task it held fails with the signal named; the others complete; the pool goes on.
//! Python's `multiprocessing.Pool` hangs forever here (bpo-22393), and its
//! `ProcessPoolExecutor` breaks entirely.

use std::time::Duration;

use anyhow::ensure;
use flotilla::futures::{ProcessPoolExecutor, TaskError, as_completed_timeout};

use super::Clock;

/// Item 4 plays the victim: its worker kills itself the way the OOM killer would.
fn work(item: u32) -> u32 {
    std::thread::sleep(Duration::from_millis(50));
    if item == 4 {
        // SIGKILL cannot be caught: nothing of the worker's runs after this.
        // SAFETY: kill(2) on our own pid takes integers and touches no memory.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        std::thread::sleep(Duration::from_secs(60));
    }
    item * 10
}

pub(crate) fn run(clock: &Clock) -> anyhow::Result<()> {
    let pool = ProcessPoolExecutor::builder().max_workers(2).build()?;
    let futures = (0..8)
        .map(|i| pool.submit(work, i))
        .collect::<Result<Vec<_>, _>>()?;
    let (mut ok, mut died) = (0, 0);
    for fut in as_completed_timeout(futures, Duration::from_secs(60)) {
        match fut?.result() {
            Ok(value) => {
                clock.say(format!("result {value}"));
                ok += 1;
            }
            Err(TaskError::WorkerDied { reason, signal, .. }) => {
                clock.say(format!("a task failed: its worker died: {reason}"));
                ensure!(signal == Some(9), "the worker was SIGKILLed: {signal:?}");
                died += 1;
            }
            Err(e) => anyhow::bail!("unexpected failure: {e}"),
        }
    }
    ensure!(
        (ok, died) == (7, 1),
        "expected 7 results and 1 dead worker, got {ok} and {died}"
    );
    let after = pool
        .submit(work, 5)?
        .result_timeout(Duration::from_secs(60))?;
    clock.say(format!(
        "the pool goes on: a new task returns {after} ({} workers started in all)",
        pool.workers_started()
    ));
    Ok(())
}
