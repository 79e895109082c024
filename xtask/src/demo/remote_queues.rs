//! remote-queues: a server program registers two queues by name, `get_zhang_queue` and
//! `get_ming_queue`, and serves them on a TCP address with an authkey; two client
//! programs connect with the same key, each puts a message on its own queue and reads
//! the other's. Here the three are processes on loopback; on separate hosts they are the
//! same code, with the server listening on `0.0.0.0:50000` (an address other hosts can
//! reach, which the server refuses without an authkey) and the clients connecting to
//! the server host's address (see docs/python-mapping.md, "Managers on other hosts").

use std::time::Duration;

use anyhow::{Context, ensure};
use flotilla::managers::{Address, AuthKey, QueueProxy, Server, connect};
use flotilla::multiprocessing::{Connection, Process, pipe};

use super::Clock;

const LONG: Duration = Duration::from_secs(60);
const KEY: &[u8] = b"zhang-and-ming";

/// The server program: two named queues on `127.0.0.1` (an OS-chosen port, sent back
/// through `ready`), serving until a client asks it to shut down.
fn server((ready, clock): (Connection, Clock)) {
    let bound = Server::builder("127.0.0.1:0".parse::<Address>().expect("an address"))
        .authkey(AuthKey::new(KEY))
        .register_object("get_zhang_queue", "Queue", &0u64)
        .register_object("get_ming_queue", "Queue", &0u64)
        .bind();
    match bound {
        Ok(server) => {
            clock.say(format!(
                "  server (pid {}): serving on {}",
                std::process::id(),
                server.address()
            ));
            let _ = ready.send(&Ok::<Address, String>(server.address().clone()));
            server.serve_forever();
            clock.say("  server: shut down");
        }
        Err(e) => {
            let _ = ready.send(&Err::<Address, String>(e.to_string()));
        }
    }
}

/// A client program: `me` puts on its own queue and reads the other's.
fn client((address, me, other, clock): (Address, String, String, Clock)) -> String {
    let client = connect(&address, Some(&AuthKey::new(KEY))).expect("the server lets us in");
    let mine: QueueProxy<String> = client.get(&format!("get_{me}_queue")).expect("our queue");
    let theirs: QueueProxy<String> = client
        .get(&format!("get_{other}_queue"))
        .expect("the other queue");
    let message = format!("hello {other}, this is {me} (pid {})", std::process::id());
    mine.put(&message).expect("put");
    clock.say(format!("  {me}: put {message:?}"));
    let got = theirs
        .get_timeout(LONG)
        .expect("get")
        .expect("the other client's message within a minute");
    clock.say(format!("  {me}: got {got:?}"));
    got
}

pub(crate) fn run(clock: &Clock) -> anyhow::Result<()> {
    let (ours, theirs) = pipe(false)?;
    let server = Process::new(server, (theirs, *clock))
        .name("server")
        .start()?;
    let address = ours
        .recv_timeout::<Result<Address, String>>(LONG)?
        .map_err(anyhow::Error::msg)
        .context("the server could not start")?;

    let clients = [("zhang", "ming"), ("ming", "zhang")].map(|(me, other)| {
        Process::new(
            client,
            (address.clone(), me.to_owned(), other.to_owned(), *clock),
        )
        .name(me)
        .start()
    });
    let mut got = Vec::new();
    for c in clients {
        got.push(c?.join_timeout(LONG)?);
    }
    ensure!(got[0].starts_with("hello zhang, this is ming"), "{got:?}");
    ensure!(got[1].starts_with("hello ming, this is zhang"), "{got:?}");

    // A wrong key is refused, on this address as on any other.
    let wrong = connect(&address, Some(&AuthKey::new(b"guess".to_vec())));
    ensure!(wrong.is_err(), "a wrong authkey was let in");
    clock.say(format!("a client with a wrong key: {}", wrong.unwrap_err()));

    connect(&address, Some(&AuthKey::new(KEY)))?.shutdown_server_timeout(LONG)?;
    server.join_timeout(LONG)?;
    Ok(())
}
