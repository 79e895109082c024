//! The manager as Python users meet it: a server in a child process, clients in other
//! processes, clients killed while holding locks and objects, the server killed under its
//! clients.

mod common;

use std::thread;
use std::time::Duration;

use common::{LONG, wait_for, with_deadline};
use flotilla_ipc::{Connection, pipe};
use flotilla_manager::{
    Address, AuthKey, ConnectError, DictProxy, LockProxy, Manager, QueueProxy, Token, connect,
};
use flotilla_process::Process;

#[test]
fn start_use_and_drop() {
    with_deadline(LONG, "manager", || {
        let manager = Manager::start().unwrap();
        assert!(matches!(manager.address(), Address::Unix(_)));
        let d = manager.dict::<u32, String>().unwrap();
        let l = manager.list::<u32>().unwrap();
        l.extend(&(0..10).collect::<Vec<_>>()).unwrap();
        d.set(&1, &"one".into()).unwrap();
        assert_eq!(manager.number_of_objects().unwrap(), 2);
        let Address::Unix(path) = manager.address().clone() else {
            unreachable!()
        };
        drop(manager);
        // Every proxy fails at once with the typed error; nothing is left behind.
        assert!(d.get(&1).unwrap_err().is_manager_gone());
        assert!(l.len().unwrap_err().is_manager_gone());
        assert!(!path.exists());
    });
}

/// 64 client threads × 1000 increments under the manager's lock, spread over 8
/// connections (8 threads each, multiplexed): not one update lost.
#[test]
fn sixty_four_threads_of_locked_increments_lose_nothing() {
    const CLIENTS: usize = 8;
    const THREADS_PER_CLIENT: usize = 8;
    const ROUNDS: i64 = 1000;
    with_deadline(Duration::from_secs(600), "increments", || {
        let manager = Manager::start().unwrap();
        let d = manager.dict::<String, i64>().unwrap();
        d.set(&"n".into(), &0).unwrap();
        let lock = manager.lock().unwrap();
        let mut threads = Vec::new();
        for _ in 0..CLIENTS {
            let client = connect(manager.address(), Some(manager.authkey())).unwrap();
            let d = DictProxy::<String, i64>::from_token(&client, &d.share().unwrap()).unwrap();
            let lock = LockProxy::from_token(&client, &lock.share().unwrap()).unwrap();
            for _ in 0..THREADS_PER_CLIENT {
                let (d, lock) = (d.clone(), lock.clone());
                threads.push(thread::spawn(move || {
                    for _ in 0..ROUNDS {
                        lock.acquire().unwrap();
                        let n = d.get(&"n".into()).unwrap().unwrap();
                        d.set(&"n".into(), &(n + 1)).unwrap();
                        lock.release().unwrap();
                    }
                }));
            }
        }
        for t in threads {
            t.join().unwrap();
        }
        let total = (CLIENTS * THREADS_PER_CLIENT) as i64 * ROUNDS;
        assert_eq!(d.get(&"n".into()).unwrap(), Some(total));
    });
}

#[derive(serde::Serialize, serde::Deserialize)]
struct HoldArgs {
    address: Address,
    authkey: AuthKey,
    lock: Token,
    report: Connection,
}

/// A client process that takes the lock, says so, and waits to be killed.
fn hold_the_lock(args: HoldArgs) {
    let client = connect(&args.address, Some(&args.authkey)).unwrap();
    let lock = LockProxy::from_token(&client, &args.lock).unwrap();
    assert!(lock.acquire_timeout(LONG).unwrap());
    args.report.send(&"held").unwrap();
    loop {
        thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn a_client_killed_while_holding_a_lock_releases_it() {
    with_deadline(Duration::from_secs(120), "killed holder", || {
        let manager = Manager::start().unwrap();
        let lock = manager.lock().unwrap();
        let (ours, theirs) = pipe(false).unwrap();
        let child = Process::new(
            hold_the_lock,
            HoldArgs {
                address: manager.address().clone(),
                authkey: manager.authkey().clone(),
                lock: lock.share().unwrap(),
                report: theirs,
            },
        )
        .start()
        .unwrap();
        assert_eq!(ours.recv_timeout::<String>(LONG).unwrap(), "held");
        assert!(lock.locked().unwrap());
        assert!(!lock.try_acquire().unwrap());
        child.kill().unwrap();
        assert!(child.join_timeout(LONG).is_err()); // killed: no value
        assert!(
            lock.acquire_timeout(LONG).unwrap(),
            "the dead holder's lock was released"
        );
        lock.release().unwrap();
    });
}

#[derive(serde::Serialize, serde::Deserialize)]
struct LitterArgs {
    address: Address,
    authkey: AuthKey,
    report: Connection,
}

/// A client process that makes objects (one of them a parked get), says so, and waits to
/// be killed.
fn make_objects(args: LitterArgs) {
    let client = connect(&args.address, Some(&args.authkey)).unwrap();
    let mut keep = Vec::new();
    for i in 0..5u32 {
        let d = client.dict::<u32, u32>().unwrap();
        d.set(&i, &i).unwrap();
        keep.push(d);
    }
    let l = client.list::<u8>().unwrap();
    let lock = client.lock().unwrap();
    lock.acquire().unwrap();
    let q: QueueProxy<u8> = client.queue(0).unwrap();
    let q2 = q.clone();
    thread::spawn(move || q2.get());
    args.report.send(&"made").unwrap();
    let _keep = (keep, l, lock, q);
    loop {
        thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn objects_of_a_killed_client_are_freed() {
    with_deadline(Duration::from_secs(120), "killed client", || {
        let manager = Manager::start().unwrap();
        let _mine = manager.dict::<u8, u8>().unwrap();
        let before = manager.number_of_objects().unwrap();
        let (ours, theirs) = pipe(false).unwrap();
        let child = Process::new(
            make_objects,
            LitterArgs {
                address: manager.address().clone(),
                authkey: manager.authkey().clone(),
                report: theirs,
            },
        )
        .start()
        .unwrap();
        assert_eq!(ours.recv_timeout::<String>(LONG).unwrap(), "made");
        assert_eq!(manager.number_of_objects().unwrap(), before + 8);
        child.kill().unwrap();
        let _ = child.join_timeout(LONG);
        wait_for("the dead client's objects freed", || {
            manager.number_of_objects().unwrap() == before
        });
    });
}

#[test]
fn the_server_killed_under_its_clients_gives_manager_gone() {
    with_deadline(LONG, "killed server", || {
        let manager = Manager::start().unwrap();
        let d = manager.dict::<u8, u8>().unwrap();
        let q: QueueProxy<u8> = manager.queue(0).unwrap();
        let other = connect(manager.address(), Some(manager.authkey())).unwrap();
        let theirs = QueueProxy::<u8>::from_token(&other, &q.share().unwrap()).unwrap();
        // Calls parked on the server, from both connections.
        let waiting = [q.clone(), theirs.clone()].map(|q| thread::spawn(move || q.get()));
        thread::sleep(Duration::from_millis(100));
        let pid = manager.pid().unwrap();
        // SAFETY: kill(2) on our own child's pid, with a valid signal; no memory is touched.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
        for w in waiting {
            let err = w.join().unwrap().unwrap_err();
            assert!(err.is_manager_gone(), "{err}");
        }
        let err = d.set(&1, &1).unwrap_err();
        assert!(err.is_manager_gone(), "{err}");
        assert!(theirs.try_get().unwrap_err().is_manager_gone());
        // A connection attempt while the killed process is still closing its sockets
        // may be accepted and then reset (its connections can close before its
        // listener); once it is gone, connecting is refused with the typed error.
        wait_for("connecting refused", || {
            matches!(
                connect(manager.address(), Some(manager.authkey())),
                Err(ConnectError::Io { .. })
            )
        });
        drop(manager); // its shutdown finds the server dead, and says nothing
    });
}

#[test]
fn the_server_runs_under_spawn_and_forkserver() {
    use flotilla_process::{StartMethod, get_context};
    for method in [StartMethod::Spawn, StartMethod::ForkServer] {
        with_deadline(LONG, "start methods", move || {
            let manager = Manager::builder()
                .context(get_context(Some(method)))
                .authkey(AuthKey::new(b"chosen".to_vec()))
                .start()
                .unwrap();
            assert_eq!(manager.authkey().as_bytes(), b"chosen");
            let ns = manager.namespace().unwrap();
            ns.set("method", &method.to_string()).unwrap();
            assert_eq!(ns.get::<String>("method").unwrap(), method.to_string());
            // A client with the wrong key is refused by the real server process too.
            assert!(matches!(
                connect(manager.address(), Some(&AuthKey::new(b"other".to_vec()))),
                Err(ConnectError::Auth { .. })
            ));
        });
    }
}

#[test]
fn shutdown_is_idempotent_and_proxies_fail_at_once_after_it() {
    with_deadline(LONG, "shutdown", || {
        let mut manager = Manager::start().unwrap();
        let lock = manager.lock().unwrap();
        lock.acquire().unwrap();
        manager.shutdown();
        manager.shutdown();
        assert!(lock.locked().unwrap_err().is_manager_gone());
        assert!(manager.dict::<u8, u8>().unwrap_err().is_manager_gone());
        assert!(manager.is_gone());
    });
}

#[test]
fn dropping_a_manager_whose_server_hangs_kills_it_instead_of_waiting() {
    with_deadline(LONG, "hung server", || {
        let manager = Manager::builder()
            .shutdown_timeout(Duration::from_millis(500))
            .start()
            .unwrap();
        let d = manager.dict::<u8, u8>().unwrap();
        let pid = manager.pid().unwrap();
        // SAFETY: kill(2) on our own child's pid, with a valid signal; no memory is touched.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
        drop(manager);
        assert!(d.len().unwrap_err().is_manager_gone());
    });
}

#[test]
fn a_forked_child_cannot_use_its_parents_connection_but_can_connect_its_own() {
    with_deadline(LONG, "fork", || {
        let manager = Manager::start().unwrap();
        let d = manager.dict::<u8, u8>().unwrap();
        d.set(&1, &1).unwrap();
        let (address, authkey) = (manager.address().clone(), manager.authkey().clone());
        let token = d.share().unwrap();
        let inherited = d.clone();
        // A call in flight when the child is forked: the child's copy is refused too
        // (it would wait for ever, or read its parent's replies).
        let in_flight = d.get_pending(&1).unwrap();
        // SAFETY: before taking any lock, the child's first call checks the process id and
        // fails; then it connects afresh (new sockets, a new reader thread of its own). It
        // takes no lock another thread of this test process could hold but the
        // allocator's, which is fork-safe.
        let child = unsafe {
            Process::fork(move || {
                let refused = matches!(
                    inherited.len(),
                    Err(flotilla_manager::CallError::InheritedConnection { .. })
                ) && matches!(
                    in_flight.wait(),
                    Err(flotilla_manager::CallError::InheritedConnection { .. })
                );
                let own = connect(&address, Some(&authkey)).unwrap();
                let mine = DictProxy::<u8, u8>::from_token(&own, &token).unwrap();
                mine.set(&2, &2).unwrap();
                drop(inherited); // sends nothing: the connection is not this process's
                refused
            })
            .start_unchecked()
        }
        .unwrap();
        assert!(
            child.join_timeout(LONG).unwrap(),
            "the inherited connection was refused"
        );
        // The parent's connection is intact, and sees the child's write.
        assert_eq!(d.items().unwrap(), [(1, 1), (2, 2)]);
    });
}
