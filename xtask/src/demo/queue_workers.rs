//! queue-workers: a producer fills a queue, two workers drain it calling `task_done` per
//! item, `join` waits until every item is processed, and `close` ends the workers' loops,
//! with no `None` sentinels and no daemon threads.

use std::thread;

use anyhow::{anyhow, ensure};
use flotilla::queue::{PutError, Queue};

const ITEMS: u32 = 8;

pub(crate) fn run(clock: &super::Clock) -> anyhow::Result<()> {
    let q = Queue::new();

    thread::scope(|s| {
        // Whatever ends this scope (success, a failed `ensure!`, a panic), the queue gets
        // closed first, so the workers' loops end and the scope's implicit join returns.
        let _close = CloseOnDrop(&q);
        let workers: Vec<_> = ["worker-1", "worker-2"]
            .into_iter()
            .map(|name| {
                let q = &q;
                s.spawn(move || -> anyhow::Result<Vec<u32>> {
                    let mut handled = Vec::new();
                    // Waits for each item; ends once the queue is closed and drained.
                    for item in q {
                        clock.say(format!("{name} processing item {item}"));
                        clock.sleep(1.0);
                        handled.push(item);
                        q.task_done()?;
                    }
                    clock.say(format!("{name} sees the queue closed and drained: exits"));
                    Ok(handled)
                })
            })
            .collect();

        let producer = s.spawn(|| -> anyhow::Result<()> {
            for item in 0..ITEMS {
                clock.say(format!("producer puts item {item}"));
                q.put(item)?;
                clock.sleep(0.25);
            }
            clock.say("producer done");
            Ok(())
        });
        producer
            .join()
            .map_err(|_| anyhow!("the producer panicked"))??;

        // Every put counted a task, every task_done uncounted one: join waits for zero.
        // Timed, so a broken queue fails the demo instead of hanging it.
        clock.say("main: join() waits for every item to be processed");
        ensure!(
            q.join_timeout(clock.units(60.0)),
            "join timed out with {} tasks unfinished",
            q.unfinished_tasks()
        );
        clock.say("main: join() returned, all items processed; closing the queue");
        q.close();

        let mut handled = Vec::new();
        for worker in workers {
            handled.extend(worker.join().map_err(|_| anyhow!("a worker panicked"))??);
        }
        handled.sort_unstable();
        ensure!(
            handled == (0..ITEMS).collect::<Vec<_>>(),
            "items not processed exactly once: {handled:?}"
        );
        clock.say(format!(
            "main: each of the {ITEMS} items processed exactly once"
        ));

        // A put after close is refused and hands the item back.
        ensure!(
            q.put(99) == Err(PutError::Closed(99)),
            "a closed queue took an item"
        );
        clock.say("main: put(99) after close refused, 99 handed back");
        Ok(())
    })
}

/// Closes the queue when dropped.
struct CloseOnDrop<'a, T>(&'a Queue<T>);

impl<T> Drop for CloseOnDrop<'_, T> {
    fn drop(&mut self) {
        self.0.close();
    }
}
