//! queue-processes: a child puts `[42, None, 'hello']` on a queue and the parent gets it;
//! then two children talk through one queue, the asker retrying with back-off until the
//! reply comes. Under each start method, with the queue passed as a plain argument. And
//! what Python cannot do: a child that puts and exits at once is joined before anyone
//! reads its item (Python's feeder thread would hang the join).

use std::time::Duration;

use anyhow::ensure;
use flotilla::multiprocessing::{Queue, StartMethod, get_context};

use super::Clock;

const LONG: Duration = Duration::from_secs(60);

/// Python's `[42, None, 'hello']`.
type Mixed = (i32, Option<i32>, String);

fn put_mixed(q: Queue<Mixed>) {
    q.put((42, None, "hello".into())).unwrap();
}

fn answer((clock, q): (Clock, Queue<String>)) {
    let question = q.get_timeout(LONG).unwrap();
    clock.say(format!("  answerer got {question:?}"));
    q.put("fine, thanks".into()).unwrap();
}

fn ask((clock, q): (Clock, Queue<String>)) -> String {
    q.put("how are you?".into()).unwrap();
    let mut wait = 0.5;
    loop {
        clock.sleep(wait);
        match q.try_get() {
            // Our own question, not taken yet: put it back and wait longer.
            Ok(mine) if mine.ends_with('?') => {
                clock.say(format!(
                    "  asker: only my own question, retrying in {}",
                    wait * 2.0
                ));
                q.put(mine).unwrap();
            }
            Ok(reply) => {
                clock.say(format!("  asker got {reply:?}"));
                return reply;
            }
            Err(_) => clock.say(format!("  asker: no reply yet, retrying in {}", wait * 2.0)),
        }
        wait *= 2.0;
    }
}

pub(crate) fn run(clock: &Clock) -> anyhow::Result<()> {
    let clock = *clock;
    for method in StartMethod::ALL {
        clock.say(format!("-- {method}"));
        let ctx = get_context(Some(method));

        let q = Queue::new()?;
        let child = ctx.process(put_mixed, q.clone()).start()?;
        // Joined first: the item is in shared memory already, nobody has to read it.
        child.join_timeout(LONG)?;
        let got = q.get_timeout(LONG)?;
        clock.say(format!("parent got {got:?} from an exited child"));
        ensure!(got == (42, None, "hello".to_string()), "got {got:?}");

        let q = Queue::new()?;
        let asker = ctx.process(ask, (clock, q.clone())).start()?;
        clock.sleep(1.0);
        let answerer = ctx.process(answer, (clock, q.clone())).start()?;
        answerer.join_timeout(LONG)?;
        let reply = asker.join_timeout(LONG)?;
        ensure!(reply == "fine, thanks", "the asker heard {reply:?}");
        ensure!(q.is_empty(), "left {} items", q.len());
    }
    Ok(())
}
