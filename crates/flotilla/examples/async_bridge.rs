//! The asyncio bridge on tokio, as with Python's `loop.run_in_executor`,
//! `asyncio.to_thread` and `asyncio.gather`: blocking and CPU-bound work awaited from
//! async code without blocking the runtime. Run with `cargo run --example async_bridge`.

use std::time::Duration;

use flotilla::asyncio::{gather, run_in_executor, to_thread};
use flotilla::futures::ProcessPoolExecutor;

fn sum_of_squares(n: u64) -> u64 {
    (0..n).map(|i| i * i).sum()
}

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    flotilla::init();

    let procs = ProcessPoolExecutor::builder().max_workers(2).build()?;
    // A current-thread runtime is enough: nothing here blocks a runtime thread.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    runtime.block_on(async {
        let blocking = to_thread(|| {
            std::thread::sleep(Duration::from_millis(50));
            7
        });
        let cpu = run_in_executor(&procs, (sum_of_squares, 1_000_000));
        println!("to_thread: {}", blocking.await?);
        println!("process pool: {}", cpu.await?);

        // gather fails fast; dropping the other tasks cancels them.
        let all = gather((1..=4u64).map(|n| run_in_executor(&procs, (sum_of_squares, n)))).await?;
        println!("gathered: {all:?}");
        Ok(())
    })
}
