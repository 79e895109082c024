//! joinable-queue: the parent puts ten jobs on a JoinableQueue; two worker processes take
//! them, working a while on each and calling `task_done`; the parent's `join` returns
//! when the last job is marked done, and `close` ends the workers' loops (no sentinels).

use std::time::Duration;

use anyhow::ensure;
use flotilla::multiprocessing::{JoinableQueue, Process};

use super::Clock;

const LONG: Duration = Duration::from_secs(60);

fn worker((clock, name, q): (Clock, String, JoinableQueue<u32>)) -> u32 {
    let mut done = 0;
    for job in &q {
        let job = job.unwrap();
        clock.sleep(0.5);
        clock.say(format!("  {name} finished job {job}"));
        q.task_done().unwrap();
        done += 1;
    }
    clock.say(format!("  {name}: queue closed, {done} jobs done"));
    done
}

pub(crate) fn run(clock: &Clock) -> anyhow::Result<()> {
    let clock = *clock;
    let q = JoinableQueue::new()?;
    let workers = ["worker-1", "worker-2"]
        .map(|name| Process::new(worker, (clock, name.to_string(), q.clone())).start());
    for job in 0..10 {
        q.put(job)?;
    }
    clock.say(format!(
        "parent put 10 jobs; {} unfinished; join...",
        q.unfinished_tasks()
    ));
    ensure!(q.join_timeout(LONG)?, "join timed out");
    clock.say("parent: join returned, every job is done (about 2.5 units: 10 jobs, 2 workers)");
    q.close();
    let mut total = 0;
    for w in workers {
        total += w?.join_timeout(LONG)?;
    }
    ensure!(total == 10, "the workers did {total} jobs");
    Ok(())
}
