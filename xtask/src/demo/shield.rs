//! shield: cancelling a shielded task's outer handle ends that await with Cancelled,
//! but the inner work runs on, and its result can still be awaited.

use anyhow::ensure;
use flotilla::asyncio::shield;

use super::Clock;

pub(crate) fn run(clock: &Clock) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    let (work, patience) = (clock.units(1.0), clock.units(0.2));
    runtime.block_on(async {
        let inner = shield(async move {
            tokio::time::sleep(work).await;
            "the inner work's result"
        });
        let outer = tokio::spawn({
            let inner = inner.clone();
            async move { inner.await }
        });
        tokio::time::sleep(patience).await;
        clock.say("cancelling the outer handle");
        outer.abort();
        let outcome = outer.await;
        clock.say(format!("outer await: {outcome:?}"));
        ensure!(
            outcome.as_ref().is_err_and(|e| e.is_cancelled()),
            "the outer await was not cancelled"
        );
        clock.say(format!("inner still running: {}", inner.running()));
        ensure!(
            inner.running(),
            "the shielded work stopped with its outer handle"
        );
        let value = inner.await?;
        clock.say(format!("awaited the inner work anyway: {value:?}"));
        ensure!(value == "the inner work's result");
        anyhow::Ok(())
    })
}
