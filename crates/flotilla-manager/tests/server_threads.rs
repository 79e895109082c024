//! The server's threads end with their connection, whatever its objects do: a user type
//! that keeps a parked waiter for ever (no timeout, no `client_gone`) does not keep the
//! connection's writer thread alive after its client is gone. One test in its own binary,
//! since it counts this process's threads by name.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::{LONG, TempDir, with_deadline};
use flotilla_ipc::{Connection, pipe};
use flotilla_manager::{
    Address, AuthKey, Call, RemoteError, Reply, Server, SharedObject, Waiter, connect,
};
use flotilla_process::Process;

/// Parks every call and never lets go of its waiters.
struct Hoarder(Vec<Waiter>);

impl SharedObject for Hoarder {
    fn call(&mut self, call: &mut Call<'_>) -> Reply {
        self.0.push(call.park());
        Reply::Parked
    }
}

fn hoarder(_: &[u8]) -> Result<Box<dyn SharedObject>, RemoteError> {
    Ok(Box::new(Hoarder(Vec::new())))
}

/// This process's threads named `name`.
fn threads_named(name: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim() == name)
        .count()
}

/// A client that parks a call on the hoarder, says so, and waits to be killed.
fn park_and_wait((address, report): (Address, Connection)) {
    let client = connect(&address, Some(&AuthKey::new(b"k".to_vec()))).unwrap();
    let obj = client.lookup("hoard").unwrap();
    let parked = thread::spawn(move || obj.call::<_, ()>("wait", &()));
    thread::sleep(Duration::from_millis(100));
    report.send(&"parked").unwrap();
    let _ = parked.join();
}

#[test]
fn a_dead_clients_writer_thread_ends_though_its_waiter_is_kept() {
    with_deadline(LONG, "writer thread", || {
        let dir = TempDir::new("threads");
        let server = Server::builder(dir.sock("m.sock"))
            .authkey(AuthKey::new(b"k".to_vec()))
            .register("Hoarder", hoarder)
            .register_object("hoard", "Hoarder", &())
            .bind()
            .unwrap()
            .spawn();
        // The hoarder is served by name: the server holds it, so it (and the dead
        // client's waiter in it) outlives the client's connection.
        let before = threads_named("manager-writer");
        let (ours, theirs) = pipe(false).unwrap();
        let child = Process::new(park_and_wait, (server.address().clone(), theirs))
            .start()
            .unwrap();
        assert_eq!(ours.recv_timeout::<String>(LONG).unwrap(), "parked");
        assert_eq!(threads_named("manager-writer"), before + 1);
        child.kill().unwrap();
        let _ = child.join_timeout(LONG);
        let start = Instant::now();
        while threads_named("manager-writer") != before {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the dead client's writer thread is still running"
            );
            thread::sleep(Duration::from_millis(20));
        }
    });
}
