//! `Listener` and `Client` against the real CPython on this machine: values both ways,
//! the handshake both ways (3.12+ SHA-256, 3.11 legacy MD5 behind its flag), wrong keys,
//! and bad frames from the Python side.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{python_legacy, python_modern, pythons_modern, socket_path, spawn};
use flotilla_pycompat::{
    Address, AuthError, Client, ConnectError, FrameError, Listener, Options, PyValue, RecvError,
    UnpickleError,
};

fn tcp_any() -> Address {
    "127.0.0.1:0".parse().unwrap()
}

fn options(key: &[u8]) -> Options {
    Options::new()
        .authkey(key)
        .timeout(Duration::from_secs(30))
        .legacy_md5(common::only_legacy())
}

const PY_CLIENT: &str = r#"
import sys
from multiprocessing.connection import Client
host, port = sys.argv[1].rsplit(':', 1)
c = Client((host, int(port)), authkey=sys.argv[2].encode())
c.send(('hello', 42, [1.5, None, True], {'k': b'v'}))
c.send({'a': 1, 'b': -(2**40)})
c.send_bytes(b'x' * 100000)
r = c.recv()
assert r == {'n': 3, 'tags': ['a', 'b'], 'blob': b'\x00\xff'}, r
c.send(KeyError('missing'))
c.send({1, 2, 3})
c.send(2**70)
print('ok', flush=True)
"#;

#[derive(serde::Serialize)]
struct Reply {
    n: u32,
    tags: Vec<String>,
    #[serde(with = "bytes")]
    blob: Vec<u8>,
}

/// serde-pickle writes `Vec<u8>` as a list unless told it is bytes.
mod bytes {
    pub(crate) fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }
}

#[test]
fn a_python_client_talks_to_a_rust_listener() {
    let listener = Listener::bind(&tcp_any(), options(b"secret")).unwrap();
    let addr = listener.address().to_string();
    let py = spawn(&python_modern(), PY_CLIENT, &[&addr, "secret"]);
    let mut conn = listener.accept_timeout(common::STEP).unwrap();
    let first = conn.recv_value().unwrap();
    assert_eq!(
        first,
        PyValue::Tuple(vec![
            PyValue::Str("hello".into()),
            PyValue::Int(42),
            PyValue::List(vec![
                PyValue::Float(1.5),
                PyValue::None,
                PyValue::Bool(true)
            ]),
            PyValue::Dict(vec![(
                PyValue::Str("k".into()),
                PyValue::Bytes(b"v".to_vec())
            )]),
        ])
    );
    let typed: BTreeMap<String, i64> = conn.recv().unwrap();
    assert_eq!(
        typed,
        BTreeMap::from([("a".into(), 1), ("b".into(), -(1 << 40))])
    );
    assert_eq!(conn.recv_bytes().unwrap(), vec![b'x'; 100_000]);
    conn.send(&Reply {
        n: 3,
        tags: vec!["a".into(), "b".into()],
        blob: vec![0, 255],
    })
    .unwrap();
    let PyValue::Object(err) = conn.recv_value().unwrap() else {
        panic!("an exception arrives as an object");
    };
    assert_eq!(err.class.to_string(), "builtins.KeyError");
    assert_eq!(err.args, vec![PyValue::Str("missing".into())]);
    let set: Vec<i32> = conn.recv().unwrap();
    assert_eq!(set, [1, 2, 3]);
    let PyValue::BigInt(big) = conn.recv_value().unwrap() else {
        panic!("2**70 is a big int");
    };
    assert_eq!(big.to_string(), "1180591620717411303424");
    assert_eq!(py.finish(), ["ok"]);
}

const PY_LISTENER: &str = r#"
import sys
from multiprocessing.connection import Listener
key = sys.argv[2].encode()
l = Listener(sys.argv[1], authkey=key)
print('ready', flush=True)
c = l.accept()
while True:
    try:
        msg = c.recv_bytes()
    except EOFError:
        break
    if msg == b'bytes?':
        c.send_bytes(b'raw ' + b'y' * 3000000)
    else:
        import pickle
        c.send(('echo', pickle.loads(msg)))
print('done', flush=True)
"#;

#[test]
fn a_rust_client_talks_to_a_python_listener_on_a_unix_socket() {
    let path = socket_path("client");
    let mut py = spawn(
        &python_modern(),
        PY_LISTENER,
        &[path.to_str().unwrap(), "k3y"],
    );
    assert_eq!(py.line(), "ready");
    let mut conn = Client::new(options(b"k3y"))
        .connect(&Address::Unix(path.clone()))
        .unwrap();
    conn.send(&("tuple", 1u8, vec![1.5f64, -2.0], Some(7i64), None::<i64>))
        .unwrap();
    type Mixed = (String, u8, Vec<f64>, Option<i64>, Option<i64>);
    let (tag, back): (String, Mixed) = conn.recv().unwrap();
    assert_eq!(tag, "echo");
    assert_eq!(back, ("tuple".into(), 1, vec![1.5, -2.0], Some(7), None));
    let map = BTreeMap::from([("é".to_owned(), vec!["ü".to_owned()])]);
    conn.send(&map).unwrap();
    let (_, back): (String, BTreeMap<String, Vec<String>>) = conn.recv().unwrap();
    assert_eq!(back, map);
    conn.send_bytes(b"bytes?").unwrap();
    let raw = conn.recv_bytes().unwrap();
    assert_eq!(raw.len(), 4 + 3_000_000);
    assert!(raw.starts_with(b"raw yyy"));
    drop(conn);
    assert_eq!(py.finish(), ["done"]);
}

const PY_LEGACY_BOTH: &str = r#"
import sys, threading
from multiprocessing.connection import Listener, Client
l = Listener(('127.0.0.1', 0), authkey=b'old')
print('%s:%d' % l.address, flush=True)
def serve():
    try:
        c = l.accept()
        c.send(c.recv() * 2)
    except Exception as e:
        print('accept failed', type(e).__name__, flush=True)
t = threading.Thread(target=serve)
t.start()
host, port = sys.argv[1].rsplit(':', 1)
c = Client((host, int(port)), authkey=b'old')
c.send('py311')
print('reply', c.recv(), flush=True)
t.join()
"#;

#[test]
fn python_311_passes_with_the_legacy_flag_both_ways() {
    let opts = options(b"old").legacy_md5(true);
    let listener = Listener::bind(&tcp_any(), opts.clone()).unwrap();
    let addr = listener.address().to_string();
    let mut py = spawn(&python_legacy(), PY_LEGACY_BOTH, &[&addr]);
    let py_addr: Address = py.line().parse().unwrap();
    // Rust client → Python 3.11 listener.
    let mut to_py = Client::new(opts).connect(&py_addr).unwrap();
    to_py.send(&21).unwrap();
    assert_eq!(to_py.recv::<i64>().unwrap(), 42);
    // Python 3.11 client → Rust listener.
    let mut from_py = listener.accept_timeout(common::STEP).unwrap();
    let word: String = from_py.recv().unwrap();
    from_py.send(&format!("{word} seen by Rust")).unwrap();
    assert_eq!(py.finish(), ["reply py311 seen by Rust"]);
}

#[test]
fn python_311_is_refused_without_the_legacy_flag_both_ways() {
    let opts = options(b"old").legacy_md5(false);
    let listener = Listener::bind(&tcp_any(), opts.clone()).unwrap();
    let addr = listener.address().to_string();
    let mut py = spawn(&python_legacy(), PY_LEGACY_BOTH, &[&addr]);
    let py_addr: Address = py.line().parse().unwrap();
    let err = Client::new(opts).connect(&py_addr).unwrap_err();
    assert!(
        matches!(
            err,
            ConnectError::Handshake {
                source: AuthError::LegacyPeer(_),
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("3.11"), "{err}");
    let err = listener.accept_timeout(common::STEP).unwrap_err();
    assert!(
        matches!(
            err,
            ConnectError::Handshake {
                source: AuthError::LegacyPeer(_),
                ..
            }
        ),
        "{err}"
    );
    // The Python side sees both failures and exits on its own (its client raises).
    let _ = py.line();
}

const PY_WRONG_KEY: &str = r#"
import sys, threading
from multiprocessing import AuthenticationError
from multiprocessing.connection import Listener, Client
l = Listener(('127.0.0.1', 0), authkey=b'python-key')
print('%s:%d' % l.address, flush=True)
try:
    l.accept()
    print('python listener: accepted?!', flush=True)
except AuthenticationError as e:
    print('python listener refused:', e, flush=True)
host, port = sys.argv[1].rsplit(':', 1)
try:
    Client((host, int(port)), authkey=b'python-key')
    print('python client: accepted?!', flush=True)
except AuthenticationError as e:
    print('python client refused:', e, flush=True)
"#;

#[test]
fn a_wrong_authkey_is_refused_both_ways() {
    let listener = Listener::bind(&tcp_any(), options(b"rust-key")).unwrap();
    let addr = listener.address().to_string();
    let mut py = spawn(&python_modern(), PY_WRONG_KEY, &[&addr]);
    let py_addr: Address = py.line().parse().unwrap();
    let err = Client::new(options(b"rust-key"))
        .connect(&py_addr)
        .unwrap_err();
    assert!(
        matches!(
            err,
            ConnectError::Handshake {
                source: AuthError::Rejected,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        py.line()
            .starts_with("python listener refused: digest received was wrong")
    );
    let err = listener.accept_timeout(common::STEP).unwrap_err();
    assert!(
        matches!(
            err,
            ConnectError::Handshake {
                source: AuthError::WrongDigest,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        py.finish(),
        ["python client refused: digest sent was rejected"]
    );
}

const PY_BAD_FRAMES: &str = r#"
import sys, struct, os
from multiprocessing.connection import Client
host, port = sys.argv[1].rsplit(':', 1)
addr = (host, int(port))
def client():
    return Client(addr, authkey=b'k')
# 1. a frame over the Rust side's limit
c = client()
try:
    c.send_bytes(b'x' * (2 << 20))
except OSError:
    pass
c.close()
# 2. a header with a negative length
c = client()
c._send(struct.pack('!i', -2))
c.close()
# 3. a header announcing more than ever comes
c = client()
c._send(struct.pack('!i', 1000) + b'abc')
c.close()
# 4. garbage and forbidden pickles, then a good one on the same connection
c = client()
c.send_bytes(b'not a pickle')
c.send(os.system)
c.send_bytes(b'\x80\x04\x95')
c.send(7)
assert c.recv() == 'still in step'
c.close()
print('ok', flush=True)
"#;

#[test]
fn oversized_and_garbage_frames_from_python_are_refused_cleanly() {
    let opts = options(b"k").max_frame(1 << 20);
    let listener = Listener::bind(&tcp_any(), opts).unwrap();
    let addr = listener.address().to_string();
    let py = spawn(&python_modern(), PY_BAD_FRAMES, &[&addr]);
    let accept = || listener.accept_timeout(common::STEP).unwrap();

    let mut c = accept();
    let err = c.recv_bytes().unwrap_err();
    assert!(
        matches!(
            err,
            RecvError::Frame(FrameError::TooLarge {
                len: 2097152,
                max: 1048576
            })
        ),
        "{err}"
    );
    // CPython closes a connection after a bad frame; so does this one.
    assert!(matches!(
        c.recv_bytes(),
        Err(RecvError::Frame(FrameError::Closed))
    ));

    let mut c = accept();
    let err = c.recv_bytes().unwrap_err();
    assert!(
        matches!(err, RecvError::Frame(FrameError::BadLength(-2))),
        "{err}"
    );

    let mut c = accept();
    let err = c.recv_bytes().unwrap_err();
    assert!(
        matches!(err, RecvError::Frame(FrameError::Truncated { .. })),
        "{err}"
    );

    let mut c = accept();
    let err = c.recv::<i64>().unwrap_err();
    assert!(
        matches!(err, RecvError::Unpickle(UnpickleError::Malformed { .. })),
        "{err}"
    );
    let err = c.recv::<i64>().unwrap_err();
    assert!(
        matches!(&err, RecvError::Unpickle(UnpickleError::Refused { module, name })
            if module == "posix" && name == "system"),
        "{err}"
    );
    assert!(err.to_string().contains("never runs code"), "{err}");
    let err = c.recv::<i64>().unwrap_err();
    assert!(
        matches!(err, RecvError::Unpickle(UnpickleError::Malformed { .. })),
        "{err}"
    );
    assert_eq!(c.recv::<i64>().unwrap(), 7);
    c.send(&"still in step").unwrap();
    assert_eq!(py.finish(), ["ok"]);
}

#[test]
fn recv_times_out_and_the_connection_stays_usable() {
    let path = socket_path("timeout");
    let mut py = spawn(
        &python_modern(),
        PY_LISTENER,
        &[path.to_str().unwrap(), "k"],
    );
    assert_eq!(py.line(), "ready");
    let mut conn = Client::new(options(b"k"))
        .connect(&Address::Unix(path))
        .unwrap();
    let err = conn
        .recv_timeout::<i64>(Duration::from_millis(200))
        .unwrap_err();
    assert!(matches!(err, RecvError::Timeout(_)), "{err}");
    assert!(!conn.poll_timeout(Duration::from_millis(10)).unwrap());
    conn.send(&5).unwrap();
    let (_, five): (String, i64) = conn.recv().unwrap();
    assert_eq!(five, 5);
    drop(conn);
    assert_eq!(py.finish(), ["done"]);
}

/// Each 3.12+ on the machine (3.12 and 3.13 here), both ways, over one Listener.
#[test]
fn every_modern_python_authenticates_both_ways() {
    for python in pythons_modern() {
        let listener = Listener::bind(&tcp_any(), options(b"old")).unwrap();
        let addr = listener.address().to_string();
        let mut py = spawn(&python, PY_LEGACY_BOTH, &[&addr]);
        let py_addr: Address = py.line().parse().unwrap();
        let mut to_py = Client::new(options(b"old")).connect(&py_addr).unwrap();
        to_py.send(&"ab").unwrap();
        assert_eq!(to_py.recv::<String>().unwrap(), "abab");
        let mut from_py = listener.accept_timeout(common::STEP).unwrap();
        let word: String = from_py.recv().unwrap();
        from_py.send(&word.to_uppercase()).unwrap();
        assert_eq!(py.finish(), ["reply PY311"], "{}", python.display());
    }
}
