//! progress: a process pool's map reports completed / total, driving an indicatif
//! progress bar (drawn on a terminal; hidden otherwise, with the last count printed).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::ensure;
use flotilla::futures::ProcessPoolExecutor;
use indicatif::{ProgressBar, ProgressStyle};

use super::Clock;

fn slow_square((clock, x): (Clock, u64)) -> u64 {
    clock.sleep(0.05);
    x * x
}

pub(crate) fn run(clock: &Clock) -> anyhow::Result<()> {
    let clock = *clock;
    let pool = ProcessPoolExecutor::builder().max_workers(2).build()?;
    let bar = ProgressBar::new(200);
    bar.set_style(ProgressStyle::with_template("{bar:40} {pos}/{len} items")?);
    let last = Arc::new(AtomicUsize::new(0));
    let sum: u64 = {
        let (bar, last) = (bar.clone(), Arc::clone(&last));
        pool.map(slow_square, (0..200).map(|x| (clock, x)), 10)
            .progress(move |done, _total| {
                bar.set_position(done as u64);
                last.fetch_max(done, Ordering::SeqCst);
            })
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .sum()
    };
    pool.shutdown(true, false);
    bar.finish();
    clock.say(format!(
        "progress reached {}/200; sum of squares {sum}",
        last.load(Ordering::SeqCst)
    ));
    ensure!(last.load(Ordering::SeqCst) == 200, "progress ended short");
    ensure!(sum == (0..200u64).map(|x| x * x).sum::<u64>(), "wrong sum");
    Ok(())
}
