//! wrap-future: two coroutines each submit "return after N seconds" (1 and 2) to a
//! thread pool, wrap the executor's future as an awaitable task, and are gathered: both
//! results arrive together, after the longer one.

use std::time::{Duration, Instant};

use anyhow::ensure;
use flotilla::asyncio::{gather, wrap_future};
use flotilla::futures::ThreadPoolExecutor;

use super::Clock;

fn after(pause: Duration, value: &'static str) -> &'static str {
    std::thread::sleep(pause);
    value
}

pub(crate) fn run(clock: &Clock) -> anyhow::Result<()> {
    let pool = ThreadPoolExecutor::builder().max_workers(2).build()?;
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    let (one, two) = (clock.units(1.0), clock.units(2.0));
    let started = Instant::now();
    let results = runtime.block_on(async {
        let first = async {
            let fut = pool.submit(move || after(one, "after 1"))?;
            wrap_future(fut).await
        };
        let second = async {
            let fut = pool.submit(move || after(two, "after 2"))?;
            wrap_future(fut).await
        };
        gather([
            Box::pin(first) as std::pin::Pin<Box<dyn Future<Output = _>>>,
            Box::pin(second),
        ])
        .await
    })?;
    clock.say(format!("gathered {results:?}"));
    ensure!(results == ["after 1", "after 2"], "results out of order");
    ensure!(
        started.elapsed() >= two,
        "returned before the longer task ended"
    );
    Ok(())
}
