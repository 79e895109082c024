//! async-cancel: a process-pool task stuck in a loop is stopped from async code (its
//! worker is killed and replaced), and the pool then runs the next task; and a thread
//! task whose await is given up has its cancel token set, so it stops on its own.

use std::time::Duration;

use anyhow::ensure;
use flotilla::asyncio::{Cancellable, run_in_executor, to_thread, wait_for};
use flotilla::futures::{CancelToken, ProcessPoolExecutor, TaskError};

use super::Clock;

fn forever(_: ()) -> u64 {
    loop {
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn square(x: u64) -> u64 {
    x * x
}

pub(crate) fn run(clock: &Clock) -> anyhow::Result<()> {
    let procs = ProcessPoolExecutor::builder().max_workers(1).build()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    let patience = clock.units(0.5);
    runtime.block_on(async {
        let stuck = run_in_executor(&procs, (forever, ()));
        while !stuck.future().running() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        clock.say("a process task is stuck in a loop; stopping it");
        ensure!(procs.stop(stuck.future()), "stop found nothing to stop");
        let outcome = stuck.await;
        clock.say(format!("the stuck task: {outcome:?}"));
        ensure!(matches!(outcome, Err(TaskError::Cancelled)));
        let next = run_in_executor(&procs, (square, 12)).await?;
        clock.say(format!(
            "the pool's next task: 12² = {next} (workers started: {})",
            procs.workers_started()
        ));
        ensure!(next == 144);

        let looping = to_thread(Cancellable(
            |token: &CancelToken| -> Result<u64, TaskError> {
                loop {
                    token.check()?;
                    std::thread::sleep(Duration::from_millis(5));
                }
            },
        ));
        let token = looping
            .cancel_token()
            .cloned()
            .expect("a Cancellable task has a token");
        let fut = looping.future().clone();
        let outcome = wait_for(looping, patience).await;
        clock.say(format!(
            "gave up on a thread task: {outcome:?}; its token is set: {}",
            token.is_cancelled()
        ));
        ensure!(matches!(outcome, Err(TaskError::TimedOut)) && token.is_cancelled());
        let ended = fut.result_timeout(Duration::from_secs(60));
        clock.say(format!("the thread task stopped by itself: {ended:?}"));
        ensure!(matches!(ended, Err(TaskError::Cancelled)));
        anyhow::Ok(())
    })
}
