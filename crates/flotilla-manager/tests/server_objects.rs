//! The server and its built-in types, served from a thread of the test process: every
//! method, parking and timeouts, bad input closing one connection only, panics.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use common::{LONG, TempDir, wait_for, with_deadline};
use flotilla_manager::wire::write_frame;
use flotilla_manager::{
    AuthKey, Call, CallError, Client, DictProxy, LockProxy, QueueProxy, RemoteError,
    RemoteErrorKind, Reply, RunningServer, Server, SharedObject, connect,
};

const SHORT: Duration = Duration::from_millis(50);

fn key() -> AuthKey {
    AuthKey::new(b"objects".to_vec())
}

struct Boom;

impl SharedObject for Boom {
    fn call(&mut self, call: &mut Call<'_>) -> Reply {
        match call.method() {
            "explode" => panic!("kaboom {}", 42),
            "fine" => Reply::ok(&"still here"),
            other => Reply::no_such_method(other),
        }
    }
}

fn boom(_: &[u8]) -> Result<Box<dyn SharedObject>, RemoteError> {
    Ok(Box::new(Boom))
}

fn boom_ctor(_: &[u8]) -> Result<Box<dyn SharedObject>, RemoteError> {
    panic!("the constructor broke")
}

fn start(dir: &TempDir) -> (RunningServer, Client) {
    let server = Server::builder(dir.sock("m.sock"))
        .authkey(key())
        .register("Boom", boom)
        .register("BoomCtor", boom_ctor)
        .max_frame(1 << 20)
        .bind()
        .unwrap()
        .spawn();
    let client = connect(server.address(), Some(&key())).unwrap();
    (server, client)
}

#[test]
fn dict_methods() {
    let dir = TempDir::new("dict");
    let (_server, c) = start(&dir);
    with_deadline(LONG, "dict", move || {
        let d: DictProxy<String, i64> = c.dict().unwrap();
        assert!(d.is_empty().unwrap());
        d.set(&"b".into(), &2).unwrap();
        d.set(&"a".into(), &1).unwrap();
        d.set(&"b".into(), &3).unwrap(); // keeps its place, as in Python
        assert_eq!(d.keys().unwrap(), ["b", "a"]);
        assert_eq!(d.values().unwrap(), [3, 1]);
        assert_eq!(d.items().unwrap(), [("b".into(), 3), ("a".into(), 1)]);
        assert!(d.contains_key(&"a".into()).unwrap());
        assert_eq!(d.get(&"zz".into()).unwrap(), None);
        assert_eq!(
            d.del(&"zz".into()).unwrap_err().remote_kind(),
            Some(RemoteErrorKind::KeyError)
        );
        assert_eq!(d.pop(&"a".into()).unwrap(), Some(1));
        assert_eq!(d.setdefault(&"c".into(), &9).unwrap(), 9);
        assert_eq!(d.setdefault(&"c".into(), &10).unwrap(), 9);
        assert_eq!(
            d.compare_and_set(&"c".into(), Some(&8), Some(&0)).unwrap(),
            Err(Some(9))
        );
        assert_eq!(
            d.compare_and_set(&"c".into(), Some(&9), Some(&0)).unwrap(),
            Ok(())
        );
        assert_eq!(
            d.compare_and_set(&"c".into(), Some(&0), None).unwrap(),
            Ok(())
        );
        assert!(!d.contains_key(&"c".into()).unwrap());
        assert_eq!(d.add(&"n".into(), 5).unwrap(), 5);
        assert_eq!(d.add(&"n".into(), -7).unwrap(), -2);
        d.set(&"big".into(), &i64::MAX).unwrap();
        assert_eq!(
            d.add(&"big".into(), 1).unwrap_err().remote_kind(),
            Some(RemoteErrorKind::ValueError)
        );
        d.update([(&"x".to_string(), &1), (&"y".to_string(), &2)])
            .unwrap();
        assert_eq!(d.len().unwrap(), 5);
        d.clear().unwrap();
        assert_eq!(d.len().unwrap(), 0);

        // Python's lost nested mutation, done on the server.
        let nested: DictProxy<u8, Vec<u32>> = c.dict().unwrap();
        for x in 0..3 {
            nested
                .update_with(&1, |v| {
                    let mut v = v.unwrap_or_default();
                    v.push(x);
                    v
                })
                .unwrap();
        }
        assert_eq!(nested.get(&1).unwrap(), Some(vec![0, 1, 2]));
        // add_int on a value that is not an i64 is a ValueError, not garbage.
        let strings: DictProxy<u8, String> = c.dict().unwrap();
        strings.set(&1, &"text".into()).unwrap();
        let as_ints = DictProxy::<u8, i64>::from_token(&c, &strings.share().unwrap()).unwrap();
        assert!(as_ints.add(&1, 1).is_err());
        // A float key works, as in Python.
        let floats: DictProxy<f64, Option<u8>> = c.dict().unwrap();
        floats.set(&0.25, &None).unwrap();
        assert_eq!(floats.get(&0.25).unwrap(), Some(None));
    });
}

#[test]
fn list_namespace_methods() {
    let dir = TempDir::new("list");
    let (_server, c) = start(&dir);
    with_deadline(LONG, "list", move || {
        let l = c.list::<i32>().unwrap();
        assert_eq!(l.extend(&(0..10).collect::<Vec<_>>()).unwrap(), 10);
        assert_eq!(l.append(&10).unwrap(), 11);
        assert_eq!(l.get(0).unwrap(), 0);
        assert_eq!(l.get(-1).unwrap(), 10);
        assert_eq!(
            l.get(11).unwrap_err().remote_kind(),
            Some(RemoteErrorKind::IndexError)
        );
        l.set(1, &100).unwrap();
        assert_eq!(l.pop(None).unwrap(), 10);
        assert_eq!(l.pop(Some(0)).unwrap(), 0);
        l.insert(0, &-1).unwrap();
        l.reverse().unwrap();
        assert_eq!(l.to_vec().unwrap(), [9, 8, 7, 6, 5, 4, 3, 2, 100, -1]);
        assert_eq!(l.len().unwrap(), 10);
        l.clear().unwrap();
        assert_eq!(
            l.pop(None).unwrap_err().remote_kind(),
            Some(RemoteErrorKind::IndexError)
        );

        let ns = c.namespace().unwrap();
        ns.set("x", &1u8).unwrap();
        ns.set("name", "flotilla").unwrap();
        assert_eq!(ns.get::<u8>("x").unwrap(), 1);
        assert_eq!(ns.get::<String>("name").unwrap(), "flotilla");
        assert_eq!(ns.names().unwrap(), ["name", "x"]);
        ns.del("x").unwrap();
        let err = ns.get::<u8>("x").unwrap_err();
        assert_eq!(err.remote_kind(), Some(RemoteErrorKind::AttributeError));
        assert!(err.to_string().contains("no attribute 'x'"), "{err}");
    });
}

#[test]
fn lock_and_queue_park_on_the_server_and_time_out() {
    let dir = TempDir::new("park");
    let (_server, c) = start(&dir);
    with_deadline(LONG, "park", move || {
        let lock = c.lock().unwrap();
        lock.acquire().unwrap();
        assert!(lock.locked().unwrap());
        assert!(!lock.try_acquire().unwrap());
        assert!(!lock.acquire_timeout(SHORT).unwrap());
        lock.release().unwrap();
        assert_eq!(
            lock.release().unwrap_err().remote_kind(),
            Some(RemoteErrorKind::RuntimeError)
        );

        // A get parked on the server holds up nothing else on the same connection.
        let q: QueueProxy<String> = c.queue(0).unwrap();
        let q2 = q.clone();
        let getter = thread::spawn(move || q2.get().unwrap());
        let d = c.dict::<u8, u8>().unwrap();
        for i in 0..100 {
            d.set(&i, &i).unwrap();
        }
        assert_eq!(d.len().unwrap(), 100);
        q.put(&"wake".into()).unwrap();
        assert_eq!(getter.join().unwrap(), "wake");
        assert_eq!(q.get_timeout(SHORT).unwrap(), None);
        assert_eq!(q.try_get().unwrap(), None);

        // A bounded queue parks its putters.
        let b: QueueProxy<u32> = c.queue(1).unwrap();
        assert!(b.try_put(&1).unwrap());
        assert!(b.full().unwrap());
        assert!(!b.try_put(&2).unwrap());
        assert!(!b.put_timeout(&2, SHORT).unwrap());
        let b2 = b.clone();
        let putter = thread::spawn(move || b2.put(&3).unwrap());
        assert_eq!(b.get().unwrap(), 1);
        putter.join().unwrap();
        assert_eq!(b.get().unwrap(), 3);
        assert!(b.empty().unwrap());
        assert_eq!(b.qsize().unwrap(), 0);

        // A waiting acquire is granted by another client's release.
        let other = connect(c.address(), Some(&key())).unwrap();
        let theirs = LockProxy::from_token(&other, &lock.share().unwrap()).unwrap();
        lock.acquire().unwrap();
        let t = thread::spawn(move || theirs.acquire_timeout(LONG).unwrap());
        thread::sleep(SHORT);
        lock.release().unwrap();
        assert!(t.join().unwrap());
    });
}

#[test]
fn a_panicking_method_answers_its_panic_text_and_the_server_goes_on() {
    let dir = TempDir::new("panic");
    let (_server, c) = start(&dir);
    with_deadline(LONG, "panic", move || {
        let obj = c.create("Boom", &()).unwrap();
        let err = obj.call::<_, ()>("explode", &()).unwrap_err();
        assert_eq!(err.remote_kind(), Some(RemoteErrorKind::Panicked));
        assert!(err.to_string().contains("kaboom 42"), "{err}");
        assert_eq!(obj.call::<_, String>("fine", &()).unwrap(), "still here");
        let err = obj.call::<_, ()>("nope", &()).unwrap_err();
        assert_eq!(err.remote_kind(), Some(RemoteErrorKind::NoSuchMethod));
        let err = c.create("BoomCtor", &()).unwrap_err();
        assert!(err.to_string().contains("the constructor broke"), "{err}");
        let err = c.create("NoSuchType", &()).unwrap_err();
        assert_eq!(err.remote_kind(), Some(RemoteErrorKind::NoSuchType));
        assert_eq!(c.number_of_objects().unwrap(), 1);
    });
}

/// Opens a raw authenticated connection, for speaking the protocol by hand.
fn raw(dir: &TempDir) -> UnixStream {
    let s = UnixStream::connect(dir.sock("m.sock")).unwrap();
    flotilla_manager::testing::client_handshake(s.try_clone().unwrap(), &key(), LONG).unwrap();
    s.set_read_timeout(Some(LONG)).unwrap();
    s
}

/// Reads until end of file: the server closed the connection.
fn expect_closed(mut s: UnixStream) {
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)
        .expect("the server closes the connection, in time");
}

#[test]
fn bad_input_closes_that_connection_only() {
    let dir = TempDir::new("garbage");
    let (server, c) = start(&dir);
    let d = c.dict::<u8, u8>().unwrap();
    d.set(&1, &1).unwrap();
    let dir = Arc::new(dir);
    with_deadline(LONG, "garbage", move || {
        // Garbage in a well-formed frame.
        let mut s = raw(&dir);
        write_frame(&mut s, b"\xff\xfe garbage \x00\x01").unwrap();
        expect_closed(s);
        // Over the limit (1 MiB here): refused from the header alone.
        let mut s = raw(&dir);
        s.write_all(&0x7fff_fff0i32.to_be_bytes()).unwrap();
        expect_closed(s);
        // The large form with an absurd length.
        let mut s = raw(&dir);
        s.write_all(&(-1i32).to_be_bytes()).unwrap();
        s.write_all(&u64::MAX.to_be_bytes()).unwrap();
        expect_closed(s);
        // A negative length.
        let mut s = raw(&dir);
        s.write_all(&(-7i32).to_be_bytes()).unwrap();
        expect_closed(s);
        // Truncated: a header for 100 bytes, 10 bytes, then end of file.
        let mut s = raw(&dir);
        s.write_all(&100i32.to_be_bytes()).unwrap();
        s.write_all(&[0; 10]).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        expect_closed(s);
        // No handshake at all: a request where the reply to the challenge belongs.
        let mut s = UnixStream::connect(dir.sock("m.sock")).unwrap();
        s.set_read_timeout(Some(LONG)).unwrap();
        write_frame(
            &mut s,
            &flotilla_manager::testing::encode_request(1, "ping"),
        )
        .unwrap();
        expect_closed(s);
        // The others go on.
        d.set(&2, &2).unwrap();
        assert_eq!(d.len().unwrap(), 2);
        connect(
            &flotilla_manager::Address::Unix(dir.sock("m.sock")),
            Some(&key()),
        )
        .unwrap()
        .number_of_objects()
        .unwrap();
    });
    drop(server);
}

#[test]
fn a_frame_that_stalls_is_cut_off() {
    let dir = TempDir::new("stall");
    let server = Server::builder(dir.sock("m.sock"))
        .frame_timeout(Duration::from_millis(200))
        .bind()
        .unwrap()
        .spawn();
    let path = dir.sock("m.sock");
    with_deadline(LONG, "stall", move || {
        let mut s = UnixStream::connect(&path).unwrap();
        s.set_read_timeout(Some(LONG)).unwrap();
        s.write_all(&[0, 0]).unwrap(); // half a header, then nothing
        expect_closed(s);
    });
    drop(server);
}

#[test]
fn references_are_per_connection_and_freed_with_it() {
    let dir = TempDir::new("refs");
    let (_server, c) = start(&dir);
    with_deadline(LONG, "refs", move || {
        let other = connect(c.address(), Some(&key())).unwrap();
        let d = other.dict::<u8, u8>().unwrap();
        let l = other.list::<u8>().unwrap();
        let lock = other.lock().unwrap();
        lock.acquire().unwrap();
        let token = lock.share().unwrap();
        assert_eq!(c.number_of_objects().unwrap(), 3);
        // Dropping a proxy releases its object.
        drop(l);
        wait_for("the list released", || c.number_of_objects().unwrap() == 2);
        // The connection going away frees the rest, except what a ticket holds, and
        // releases the lock.
        drop((d, lock, other));
        wait_for("the other client's objects released", || {
            c.number_of_objects().unwrap() == 1
        });
        let mine = LockProxy::from_token(&c, &token).unwrap();
        assert!(mine.acquire_timeout(LONG).unwrap());
        // A ticket is spent once.
        assert_eq!(
            LockProxy::from_token(&c, &token).unwrap_err().remote_kind(),
            Some(RemoteErrorKind::BadTicket)
        );
        drop(mine);
        wait_for("the lock released", || c.number_of_objects().unwrap() == 0);
        // An id alone grants nothing: this client never held object 1.
        let q: QueueProxy<u8> = c.queue(0).unwrap();
        let token = q.share().unwrap();
        let wrong = DictProxy::<u8, u8>::from_token(&c, &token).unwrap_err();
        assert!(wrong.to_string().contains("not a `dict`"), "{wrong}");
    });
}

#[test]
fn a_shutdown_request_answers_calls_in_flight_then_every_proxy_gets_manager_gone() {
    let dir = TempDir::new("shutdown");
    let (server, c) = start(&dir);
    let q: QueueProxy<u8> = c.queue(0).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let q2 = q.clone();
    let blocked = thread::spawn(move || q2.get());
    thread::sleep(SHORT);
    with_deadline(LONG, "shutdown", move || {
        c.shutdown_server_timeout(LONG).unwrap();
        assert!(server.wait_stopped(LONG));
        let err: CallError = blocked.join().unwrap().unwrap_err();
        // The parked get is answered (gone), or the connection ended first: never a hang.
        assert!(
            err.is_manager_gone() || err.remote_kind() == Some(RemoteErrorKind::Gone),
            "{err}"
        );
        let err = q.try_get().unwrap_err();
        assert!(err.is_manager_gone(), "{err}");
        stop.store(true, Ordering::SeqCst);
    });
}

#[test]
fn a_client_that_never_reads_its_replies_is_cut_off() {
    let dir = TempDir::new("noread");
    let server = Server::builder(dir.sock("m.sock"))
        .frame_timeout(Duration::from_millis(200))
        .bind()
        .unwrap()
        .spawn();
    let path = dir.sock("m.sock");
    let good = connect(server.address(), None).unwrap();
    with_deadline(LONG, "no reader", move || {
        let mut s = UnixStream::connect(&path).unwrap();
        let request = flotilla_manager::testing::encode_request(1, "number_of_objects");
        let mut frame = Vec::new();
        write_frame(&mut frame, &request).unwrap();
        let batch = frame.repeat(1000);
        // Requests, and never a read: once the server's writes to us time out, it closes
        // the connection and our writes fail.
        while s.write_all(&batch).is_ok() {}
        // Everyone else is still served.
        assert_eq!(good.number_of_objects().unwrap(), 0);
    });
    drop(server);
}

#[test]
fn a_stopping_server_does_not_wait_for_a_silent_handshake() {
    let dir = TempDir::new("silent");
    // A handshake timeout far past the test's deadline: only being cut short can pass.
    let server = Server::builder(dir.sock("m.sock"))
        .authkey(key())
        .frame_timeout(Duration::from_secs(600))
        .bind()
        .unwrap()
        .spawn();
    let silent = UnixStream::connect(dir.sock("m.sock")).unwrap();
    let mut challenge = [0u8; 4];
    (&silent).read_exact(&mut challenge).unwrap(); // the server is in the handshake
    with_deadline(LONG, "stop with a silent client", move || server.shutdown());
    drop(silent);
}

/// Calls parked with a long timeout and answered early leave no deadline behind: the
/// timer thread's queue does not grow with every such call until the deadlines pass.
#[test]
fn calls_answered_before_their_deadline_leave_nothing_queued() {
    with_deadline(LONG, "deadlines", || {
        let dir = TempDir::new("deadlines");
        let (server, client) = start(&dir);
        let q: QueueProxy<u32> = client.queue(0).unwrap();
        const GETS: usize = 200;
        let getters: Vec<_> = (0..GETS)
            .map(|_| {
                let q = q.clone();
                thread::spawn(move || q.get_timeout(Duration::from_secs(3600)).unwrap())
            })
            .collect();
        let start = std::time::Instant::now();
        while server.queued_deadlines() < GETS {
            assert!(start.elapsed() < LONG, "the gets did not all park");
            thread::sleep(Duration::from_millis(10));
        }
        for i in 0..GETS as u32 {
            q.put(&i).unwrap();
        }
        for g in getters {
            assert!(g.join().unwrap().is_some());
        }
        assert_eq!(server.queued_deadlines(), 0);
    });
}
