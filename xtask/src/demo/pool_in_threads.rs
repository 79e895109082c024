//! pool-in-threads: one producer thread puts 42, 33, 24 on a thread queue and closes it;
//! three consumer threads share one process pool, each taking items and running
//! `pool.apply(func, r)` until the queue is drained (no `None` sentinels needed).

use std::sync::Arc;

use anyhow::ensure;
use flotilla::multiprocessing::Pool;
use flotilla::queue::Queue;

use super::Clock;

fn func(r: u64) -> (u64, i32) {
    (r * r, std::process::id() as i32)
}

pub(crate) fn run(clock: &Clock) -> anyhow::Result<()> {
    let clock = *clock;
    let pool = Arc::new(Pool::new(3)?);
    let queue: Queue<u64> = Queue::new();
    let producer = {
        let queue = queue.clone();
        std::thread::spawn(move || {
            for r in [42, 33, 24] {
                clock.say(format!("producer puts {r}"));
                let _ = queue.put(r);
            }
            queue.close();
        })
    };
    let consumers: Vec<_> = (1..=3)
        .map(|id| {
            let (queue, pool) = (queue.clone(), Arc::clone(&pool));
            std::thread::spawn(move || -> anyhow::Result<Vec<u64>> {
                let mut got = Vec::new();
                for r in &queue {
                    let (square, pid) = pool.apply(func, r)?;
                    clock.say(format!(
                        "consumer {id}: {r}² = {square}, computed by worker {pid}"
                    ));
                    got.push(square);
                }
                Ok(got)
            })
        })
        .collect();
    producer
        .join()
        .map_err(|_| anyhow::anyhow!("the producer panicked"))?;
    let mut all = Vec::new();
    for c in consumers {
        all.extend(
            c.join()
                .map_err(|_| anyhow::anyhow!("a consumer panicked"))??,
        );
    }
    all.sort_unstable();
    ensure!(all == [576, 1089, 1764], "got {all:?}");
    clock.say("the queue closed and drained: every consumer ended");
    Ok(())
}
