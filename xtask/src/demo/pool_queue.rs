//! pool-queue: a Queue given to pool tasks. Python refuses it — `pool.apply(f, (q,))`
//! raises "Queue objects should only be shared between processes through inheritance" —
//! and its workarounds were a Manager queue or an initializer that stores the queue in a
//! global. In flotilla the queue is simply an argument, by `apply`, `apply_async` and
//! `map`; the initializer route works too.

use std::sync::OnceLock;
use std::time::Duration;

use anyhow::ensure;
use flotilla::multiprocessing::{Pool, Queue, current_process};

use super::Clock;

const LONG: Duration = Duration::from_secs(60);

/// Puts a line saying which worker ran it, and returns `n²`.
fn report((queue, n): (Queue<String>, u32)) -> u32 {
    let me = current_process();
    queue
        .put(format!("task {n} ran in {} (pid {})", me.name, me.pid))
        .expect("the queue takes it");
    n * n
}

/// The initializer route: the worker keeps the queue it was given in a global.
static QUEUE: OnceLock<Queue<String>> = OnceLock::new();

fn keep(queue: Queue<String>) {
    let _ = QUEUE.set(queue);
}

fn report_to_global(n: u32) -> u32 {
    let queue = QUEUE.get().expect("the initializer ran in this worker");
    report((queue.clone(), n))
}

/// Takes `n` lines off the queue, printing them.
fn drain(clock: &Clock, queue: &Queue<String>, n: usize) -> anyhow::Result<()> {
    for _ in 0..n {
        clock.say(format!("  parent got: {}", queue.get_timeout(LONG)?));
    }
    ensure!(queue.is_empty(), "nothing more than the tasks' lines");
    Ok(())
}

pub(crate) fn run(clock: &Clock) -> anyhow::Result<()> {
    let queue = Queue::<String>::new()?;

    clock.say("a Queue as an argument of pool tasks (Python: RuntimeError):");
    let pool = Pool::new(2)?;
    ensure!(pool.apply(report, (queue.clone(), 1))? == 1);
    let pending = pool.apply_async(report, (queue.clone(), 2))?;
    ensure!(pending.get_timeout(LONG)? == 4);
    let squares = pool.map(report, (3..=6).map(|n| (queue.clone(), n)), None)?;
    ensure!(squares == [9, 16, 25, 36], "{squares:?}");
    drain(clock, &queue, 6)?;
    pool.close();
    pool.join()?;

    clock.say("the initializer route: each worker keeps the queue in a global:");
    let pool = Pool::builder()
        .processes(2)
        .initializer(keep, queue.clone())
        .build()?;
    let squares = pool.map(report_to_global, 1..=4, None)?;
    ensure!(squares == [1, 4, 9, 16], "{squares:?}");
    drain(clock, &queue, 4)?;
    Ok(())
}
