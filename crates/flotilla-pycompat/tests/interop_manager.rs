//! `ManagerClient` against a real CPython manager server: a Python producer and a Rust
//! consumer on one queue, the seeds' remote queues with one Python and one Rust client,
//! dicts, exceptions with their class, references released on drop.

mod common;

use std::time::Duration;

use common::{python_legacy, python_modern, spawn};
use flotilla_pycompat::{Address, CallError, ManagerClient, Options, PyValue};

/// A manager server: SyncManager's types plus three queues registered by name, and an
/// object whose method raises an exception of a class of its own.
const PY_SERVER: &str = r#"
import queue
from multiprocessing.managers import SyncManager
zhang, ming, jobs = queue.Queue(), queue.Queue(), queue.Queue()
class MyError(Exception):
    pass
class Thing:
    def boom(self):
        raise MyError('custom')
    def hidden(self):
        return 1
class M(SyncManager):
    pass
M.register('get_zhang_queue', callable=lambda: zhang)
M.register('get_ming_queue', callable=lambda: ming)
M.register('get_jobs', callable=lambda: jobs)
M.register('Thing', Thing, exposed=('boom',))
m = M(address=('127.0.0.1', 0), authkey=b'abc')
s = m.get_server()
print('%s:%d' % s.address, flush=True)
s.serve_forever()
"#;

const PY_PRODUCER: &str = r#"
import sys
from multiprocessing.managers import BaseManager
class M(BaseManager):
    pass
M.register('get_jobs')
host, port = sys.argv[1].rsplit(':', 1)
m = M(address=(host, int(port)), authkey=b'abc')
m.connect()
q = m.get_jobs()
for i in range(5):
    q.put({'job': i, 'payload': 'x' * i})
q.put(None)
print('produced', flush=True)
"#;

const PY_ZHANG: &str = r#"
import sys
from multiprocessing.managers import BaseManager
class M(BaseManager):
    pass
M.register('get_zhang_queue')
M.register('get_ming_queue')
host, port = sys.argv[1].rsplit(':', 1)
m = M(address=(host, int(port)), authkey=b'abc')
m.connect()
m.get_zhang_queue().put('hello from zhang (Python)')
print('zhang got:', m.get_ming_queue().get(timeout=30), flush=True)
"#;

struct Server {
    py: common::Py,
    address: Address,
}

fn server() -> Server {
    let mut py = spawn(&python_modern(), PY_SERVER, &[]);
    let address = py.line().parse().unwrap();
    Server { py, address }
}

fn client(address: &Address) -> ManagerClient {
    ManagerClient::connect(
        address,
        Options::new()
            .authkey(b"abc")
            .timeout(Duration::from_secs(30))
            .legacy_md5(common::only_legacy()),
    )
    .unwrap()
}

impl Server {
    fn stop(self, manager: &ManagerClient) {
        manager.shutdown().unwrap();
        self.py.finish();
    }
}

#[derive(Debug, PartialEq, serde::Deserialize)]
struct Job {
    job: u32,
    payload: String,
}

#[test]
fn a_python_producer_feeds_a_rust_consumer_through_a_python_managers_queue() {
    let server = server();
    let producer = spawn(
        &python_modern(),
        PY_PRODUCER,
        &[&server.address.to_string()],
    );
    assert_eq!(producer.finish(), ["produced"]);
    let manager = client(&server.address);
    let before = manager.number_of_objects().unwrap();
    let jobs = manager.queue("get_jobs", &()).unwrap();
    assert_eq!(manager.number_of_objects().unwrap(), before + 1);
    assert_eq!(jobs.qsize().unwrap(), 6);
    let mut got = Vec::new();
    while let Some(job) = jobs
        .get_timeout::<Option<Job>>(Duration::from_secs(30))
        .unwrap()
    {
        got.push(job);
    }
    assert_eq!(got.len(), 5);
    assert_eq!(
        got[3],
        Job {
            job: 3,
            payload: "xxx".into()
        }
    );
    // Empty at the deadline: Python's queue.Empty, by name.
    let err = jobs
        .get_timeout::<Option<Job>>(Duration::from_millis(100))
        .unwrap_err();
    let CallError::Exception(e) = &err else {
        panic!("expected queue.Empty, got {err}");
    };
    assert!(e.is("queue.Empty"), "{e}");
    // The channel is still in step after the exception.
    jobs.0.call::<(), _>("put", &("after",)).unwrap();
    assert_eq!(jobs.get::<String>().unwrap(), "after");
    drop(jobs);
    assert_eq!(manager.number_of_objects().unwrap(), before);
    server.stop(&manager);
}

#[test]
fn the_seeds_remote_queues_with_a_python_and_a_rust_client() {
    let server = server();
    let zhang = spawn(&python_modern(), PY_ZHANG, &[&server.address.to_string()]);
    // Ming, in Rust: put on its own queue, read Zhang's.
    let manager = client(&server.address);
    let ming_queue = manager.queue("get_ming_queue", &()).unwrap();
    let zhang_queue = manager.queue("get_zhang_queue", &()).unwrap();
    ming_queue.put("hello from ming (Rust)").unwrap();
    let from_zhang: String = zhang_queue.get_timeout(common::STEP).unwrap();
    assert_eq!(from_zhang, "hello from zhang (Python)");
    assert_eq!(zhang.finish(), ["zhang got: hello from ming (Rust)"]);
    drop((ming_queue, zhang_queue));
    server.stop(&manager);
}

#[test]
fn dicts_exceptions_and_proxies_returned_by_methods() {
    let server = server();
    let manager = client(&server.address);
    let d = manager.dict("dict", &()).unwrap();
    d.set("a", &1).unwrap();
    d.set("b", &2).unwrap();
    assert_eq!(d.get::<_, i64>("a").unwrap(), Some(1));
    assert_eq!(d.get::<_, i64>("zz").unwrap(), None);
    let mut keys: Vec<String> = d.keys().unwrap();
    keys.sort();
    assert_eq!(keys, ["a", "b"]);
    assert_eq!(d.len().unwrap(), 2);

    // A Python exception keeps its class and arguments.
    let err =
        d.0.call::<i64, _>("__getitem__", &("missing",))
            .unwrap_err();
    let CallError::Exception(e) = &err else {
        panic!("expected KeyError, got {err}");
    };
    assert!(e.is("KeyError"), "{e}");
    assert_eq!(e.args, vec![PyValue::Str("missing".into())]);
    assert_eq!(err.exception_class().as_deref(), Some("builtins.KeyError"));

    // A method whose result the server shares as a new object: a Token comes back.
    let it = d.0.call_proxy("__iter__", &()).unwrap();
    assert_eq!(it.typeid(), "Iterator");
    let mut seen = vec![
        it.call::<String, _>("__next__", &()).unwrap(),
        it.call::<String, _>("__next__", &()).unwrap(),
    ];
    seen.sort();
    assert_eq!(seen, ["a", "b"]);
    let end = it.call::<String, _>("__next__", &()).unwrap_err();
    assert_eq!(
        end.exception_class().as_deref(),
        Some("builtins.StopIteration")
    );

    // A class off the allow-list: named, never unpickled.
    let thing = manager.create("Thing", &()).unwrap();
    let err = thing.call::<(), _>("boom", &()).unwrap_err();
    assert!(
        matches!(&err, CallError::UnknownException { module, name }
            if module == "__main__" && name == "MyError"),
        "{err}"
    );
    // A method that is not exposed: the server's traceback, as Python's RemoteError.
    let err = thing.call::<i64, _>("hidden", &()).unwrap_err();
    assert!(
        matches!(&err, CallError::Remote(text) if text.contains("not in exposed")),
        "{err}"
    );
    drop((d, it, thing));
    server.stop(&manager);
}

#[test]
fn a_wrong_authkey_is_refused_by_the_python_manager() {
    let server = server();
    let err = ManagerClient::connect(
        &server.address,
        Options::new()
            .authkey(b"nope")
            .legacy_md5(common::only_legacy()),
    )
    .unwrap_err();
    assert!(matches!(err, CallError::Connect(_)), "{err}");
    assert!(err.to_string().contains("different authkey"), "{err}");
    let manager = client(&server.address);
    server.stop(&manager);
}

/// The same seeds case with a Python 3.11 server and client: the legacy handshake,
/// asked for with `legacy_md5`.
#[test]
fn a_python_311_manager_with_the_legacy_flag() {
    let mut py = spawn(&python_legacy(), PY_SERVER, &[]);
    let address: Address = py.line().parse().unwrap();
    let zhang = spawn(&python_legacy(), PY_ZHANG, &[&address.to_string()]);
    let options = Options::new()
        .authkey(b"abc")
        .timeout(Duration::from_secs(30));
    let refused = ManagerClient::connect(&address, options.clone()).unwrap_err();
    assert!(refused.to_string().contains("legacy"), "{refused}");
    let manager = ManagerClient::connect(&address, options.legacy_md5(true)).unwrap();
    let ming_queue = manager.queue("get_ming_queue", &()).unwrap();
    let zhang_queue = manager.queue("get_zhang_queue", &()).unwrap();
    ming_queue.put("hello from ming (Rust)").unwrap();
    let from_zhang: String = zhang_queue.get_timeout(common::STEP).unwrap();
    assert_eq!(from_zhang, "hello from zhang (Python)");
    assert_eq!(zhang.finish(), ["zhang got: hello from ming (Rust)"]);
    drop((ming_queue, zhang_queue));
    Server { py, address }.stop(&manager);
}
