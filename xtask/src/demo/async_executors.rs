//! async-executors: a blocking I/O call (sleep 2, return 42) on a thread executor and a
//! CPU-bound one (the sum of squares below 10^7) on a process executor, awaited together
//! with `gather` from a current-thread runtime: they overlap, so the total is about the
//! longer of the two, not their sum.

use std::time::Instant;

use anyhow::ensure;
use flotilla::asyncio::{gather, run_in_executor};
use flotilla::futures::{ProcessPoolExecutor, ThreadPoolExecutor};

use super::Clock;

fn sum_of_squares(below: u64) -> u128 {
    (0..below).map(|i| u128::from(i) * u128::from(i)).sum()
}

pub(crate) fn run(clock: &Clock) -> anyhow::Result<()> {
    let threads = ThreadPoolExecutor::builder().max_workers(1).build()?;
    let procs = ProcessPoolExecutor::builder().max_workers(1).build()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    let pause = clock.units(2.0);
    // Durations in scenario seconds, the unit of the timestamps.
    let secs = |d: std::time::Duration| d.as_secs_f64() / clock.units(1.0).as_secs_f64();

    // The worker process starts on first use; start it before timing anything.
    runtime.block_on(run_in_executor(&procs, (sum_of_squares, 1)))?;
    // The CPU-bound call alone first, to know what the sum would be.
    let started = Instant::now();
    let cpu_alone = runtime.block_on(run_in_executor(&procs, (sum_of_squares, 10_000_000)))?;
    let cpu_time = started.elapsed();
    clock.say(format!(
        "process executor alone: {cpu_alone} in {:.2} s",
        secs(cpu_time)
    ));

    let started = Instant::now();
    let (io, cpu) = runtime.block_on(async {
        let blocking_io = run_in_executor(&threads, move || {
            std::thread::sleep(pause);
            42u128
        });
        let cpu_bound = run_in_executor(&procs, (sum_of_squares, 10_000_000));
        let both = gather([blocking_io, cpu_bound]).await?;
        anyhow::Ok((both[0], both[1]))
    })?;
    let total = started.elapsed();
    clock.say(format!("gather: blocking I/O -> {io}, CPU-bound -> {cpu}"));
    clock.say(format!(
        "together in {:.2} s; one after the other would take {:.2} s",
        secs(total),
        secs(pause + cpu_time)
    ));
    ensure!(io == 42 && cpu == cpu_alone, "wrong results");
    ensure!(
        cpu == 333_333_283_333_335_000_000,
        "the sum of squares below 10^7 is wrong"
    );
    Ok(())
}
