//! pipe: a duplex pipe where the child asks "dad, call me when mum is back" and gets the
//! reply; a simplex pipe where only the child writes. Under each start method. (The
//! child starts before the parent's blocking `recv`: the other order would deadlock.)

use std::time::Duration;

use anyhow::ensure;
use flotilla::multiprocessing::{Connection, StartMethod, get_context, pipe};

use super::Clock;

const LONG: Duration = Duration::from_secs(60);

fn child_duplex((clock, conn): (Clock, Connection)) -> String {
    conn.send(&"dad, call me when mum is back").unwrap();
    let reply: String = conn.recv().unwrap();
    clock.say(format!("child  got {reply:?}"));
    reply
}

fn child_simplex((clock, conn): (Clock, Connection)) {
    for word in ["one", "way", "only"] {
        conn.send(&word).unwrap();
    }
    clock.say("child  wrote three words and closes its end");
}

pub(crate) fn run(clock: &Clock) -> anyhow::Result<()> {
    let clock = *clock;
    for method in StartMethod::ALL {
        clock.say(format!("-- {method}"));
        let ctx = get_context(Some(method));

        let (parent_end, child_end) = pipe(true)?;
        let child = ctx.process(child_duplex, (clock, child_end)).start()?;
        let asked: String = parent_end.recv_timeout(LONG)?;
        clock.say(format!("parent got {asked:?}"));
        parent_end.send(&"ok, I will call you")?;
        let reply = child.join_timeout(LONG)?;
        ensure!(reply == "ok, I will call you", "the child heard {reply:?}");

        let (reader, writer) = pipe(false)?;
        let child = ctx.process(child_simplex, (clock, writer)).start()?;
        let mut words = Vec::new();
        while let Ok(word) = reader.recv_timeout::<String>(LONG) {
            words.push(word);
        }
        child.join_timeout(LONG)?;
        clock.say(format!("parent read {words:?}, then end of file"));
        ensure!(words == ["one", "way", "only"], "read {words:?}");
        ensure!(reader.send(&"back").is_err(), "the read end cannot send");
    }
    Ok(())
}
