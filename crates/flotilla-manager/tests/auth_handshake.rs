//! The authkey handshake: Rust against Rust, against CPython's framing with the 3.12+
//! handshake written out in Python (this machine's python3 may be older than 3.12), and
//! against a real Python 3.11 (legacy HMAC-MD5), which must be refused clearly.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{LONG, TempDir, with_deadline};
use flotilla_manager::wire::{read_frame_from, write_frame};
use flotilla_manager::{Address, AuthError, AuthKey, BindError, ConnectError, Server, connect};

fn key(s: &str) -> AuthKey {
    AuthKey::new(s.as_bytes().to_vec())
}

fn serve(dir: &TempDir, k: Option<AuthKey>) -> flotilla_manager::RunningServer {
    let mut b = Server::builder(dir.sock("m.sock"));
    if let Some(k) = k {
        b = b.authkey(k);
    }
    b.bind().unwrap().spawn()
}

#[test]
fn the_right_key_is_accepted_both_ways() {
    let dir = TempDir::new("right");
    let server = serve(&dir, Some(key("sesame")));
    let addr = server.address().clone();
    with_deadline(LONG, "connect", move || {
        let c = connect(&addr, Some(&key("sesame"))).unwrap();
        assert_eq!(c.number_of_objects().unwrap(), 0);
    });
}

#[test]
fn a_wrong_key_is_refused() {
    let dir = TempDir::new("wrong");
    let server = serve(&dir, Some(key("sesame")));
    let addr = server.address().clone();
    let err = with_deadline(LONG, "connect", move || {
        connect(&addr, Some(&key("open up"))).unwrap_err()
    });
    assert!(
        matches!(
            err,
            ConnectError::Auth {
                source: AuthError::Rejected,
                ..
            }
        ),
        "{err}"
    );
    // The server goes on serving the right key.
    let addr = server.address().clone();
    with_deadline(LONG, "connect", move || {
        connect(&addr, Some(&key("sesame"))).unwrap();
    });
}

#[test]
fn a_client_with_no_key_is_refused() {
    let dir = TempDir::new("nokey");
    let server = serve(&dir, Some(key("sesame")));
    let addr = server.address().clone();
    let err = with_deadline(LONG, "connect", move || connect(&addr, None).unwrap_err());
    // Its first request is not a handshake reply: the server closes the connection.
    assert!(matches!(err, ConnectError::Call { .. }), "{err}");
}

#[test]
fn a_replayed_reply_is_refused() {
    let dir = TempDir::new("replay");
    let server = serve(&dir, Some(key("sesame")));
    let path = dir.sock("m.sock");
    with_deadline(LONG, "replay", move || {
        // An eavesdropper records a genuine exchange ...
        let mut honest = UnixStream::connect(&path).unwrap();
        let c0 = read_frame_from(&mut honest, 256).unwrap();
        let m0 = c0.strip_prefix(b"#CHALLENGE#").unwrap().to_vec();
        let r0 = flotilla_manager::auth::response(&key("sesame"), &m0);
        write_frame(&mut honest, &r0).unwrap();
        assert_eq!(read_frame_from(&mut honest, 256).unwrap(), b"#WELCOME#");
        drop(honest);
        // ... and replays the reply on a connection of its own.
        let mut thief = UnixStream::connect(&path).unwrap();
        let c1 = read_frame_from(&mut thief, 256).unwrap();
        assert_ne!(c1, c0, "every challenge is fresh");
        write_frame(&mut thief, &r0).unwrap();
        assert_eq!(read_frame_from(&mut thief, 256).unwrap(), b"#FAILURE#");
    });
    drop(server);
}

#[test]
fn a_remote_tcp_address_without_a_key_is_refused() {
    let err = Server::builder(Address::Tcp("0.0.0.0:0".parse().unwrap()))
        .bind()
        .unwrap_err();
    assert!(matches!(err, BindError::RemoteWithoutAuthkey(_)), "{err}");
    // Loopback without a key, and anything with one, may listen.
    Server::builder(Address::Tcp("127.0.0.1:0".parse().unwrap()))
        .bind()
        .unwrap();
    Server::builder(Address::Tcp("0.0.0.0:0".parse().unwrap()))
        .authkey(key("k"))
        .bind()
        .unwrap();
}

#[test]
fn tcp_with_a_key_works() {
    let server = Server::builder(Address::Tcp("127.0.0.1:0".parse().unwrap()))
        .authkey(key("k"))
        .bind()
        .unwrap()
        .spawn();
    let addr = server.address().clone();
    with_deadline(LONG, "tcp", move || {
        let c = connect(&addr, Some(&key("k"))).unwrap();
        let d = c.dict::<u8, u8>().unwrap();
        d.set(&1, &2).unwrap();
        assert_eq!(d.get(&1).unwrap(), Some(2));
    });
}

// ---- CPython -------------------------------------------------------------------------

/// CPython 3.12's `answer_challenge` then `deliver_challenge` (Lib/multiprocessing/
/// connection.py), written out so it runs on any python3, over CPython's own framing
/// (`Client(authkey=None)` is a bare framed connection). Then one request, sent as hex
/// bytes, and the reply printed as hex.
const PY_CLIENT: &str = r#"
import sys, os, hmac
from multiprocessing.connection import Client
addr, key, request = sys.argv[1], sys.argv[2].encode(), bytes.fromhex(sys.argv[3])
c = Client(addr, authkey=None)
m = c.recv_bytes(256)
assert m.startswith(b'#CHALLENGE#'), m
m = m[len(b'#CHALLENGE#'):]
assert m.startswith(b'{sha256}') and len(m) == 48, m
c.send_bytes(b'{sha256}' + hmac.new(key, m, 'sha256').digest())
if c.recv_bytes(256) != b'#WELCOME#':
    print('REJECTED'); sys.exit(0)
msg = b'{sha256}' + os.urandom(40)
c.send_bytes(b'#CHALLENGE#' + msg)
resp = c.recv_bytes(256)
ok = resp.startswith(b'{sha256}') and hmac.compare_digest(hmac.new(key, msg, 'sha256').digest(), resp[8:])
c.send_bytes(b'#WELCOME#' if ok else b'#FAILURE#')
if not ok:
    print('SERVER-FAILED'); sys.exit(0)
c.send_bytes(request)
print('WELCOME', c.recv_bytes(1 << 20).hex())
"#;

/// CPython 3.12's `deliver_challenge` then `answer_challenge`, serving one connection.
/// With `liar`, it welcomes any reply and answers with a wrong key.
const PY_SERVER: &str = r#"
import sys, os, hmac
from multiprocessing.connection import Listener
addr, key, liar = sys.argv[1], sys.argv[2].encode(), sys.argv[3] == 'liar'
l = Listener(addr, authkey=None)
print('LISTENING', flush=True)
c = l.accept()
msg = b'{sha256}' + os.urandom(40)
c.send_bytes(b'#CHALLENGE#' + msg)
resp = c.recv_bytes(256)
ok = resp.startswith(b'{sha256}') and hmac.compare_digest(hmac.new(key, msg, 'sha256').digest(), resp[8:])
c.send_bytes(b'#WELCOME#' if ok or liar else b'#FAILURE#')
if not (ok or liar):
    print('CLIENT-REJECTED', flush=True); sys.exit(0)
m = c.recv_bytes(256)[len(b'#CHALLENGE#'):]
k = b'not the key' if liar else key
c.send_bytes(b'{sha256}' + hmac.new(k, m, 'sha256').digest())
print('WELCOMED' if c.recv_bytes(256) == b'#WELCOME#' else 'WE-WERE-REJECTED', flush=True)
"#;

/// The real `multiprocessing.connection` of this python3, both roles.
const PY_REAL: &str = r#"
import sys
from multiprocessing.connection import Client, Listener
role, addr, key = sys.argv[1], sys.argv[2], sys.argv[3].encode()
try:
    if role == 'client':
        Client(addr, authkey=key)
        print('CONNECTED')
    else:
        l = Listener(addr, authkey=key)
        print('LISTENING', flush=True)
        l.accept()
        print('ACCEPTED')
except Exception as e:
    print('REFUSED', type(e).__name__, e, flush=True)
"#;

fn python_version() -> (u32, u32) {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys; print(sys.version_info[0], sys.version_info[1])",
        ])
        .output()
        .expect("python3 is installed (the interop tests need it)");
    let s = String::from_utf8(out.stdout).unwrap();
    let mut it = s.split_whitespace().map(|n| n.parse().unwrap());
    (it.next().unwrap(), it.next().unwrap())
}

fn run_python(limit: Duration, args: Vec<String>) -> String {
    with_deadline(limit, "python3", move || {
        let out = Command::new("python3").args(&args).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "python3 failed: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    })
}

#[test]
fn a_python_client_speaking_the_312_handshake_is_accepted_and_served() {
    let dir = TempDir::new("pyclient");
    let server = serve(&dir, Some(key("py-key")));
    let request = flotilla_manager::testing::encode_request(7, "number_of_objects");
    let hex: String = request.iter().map(|b| format!("{b:02x}")).collect();
    let out = run_python(
        LONG,
        vec![
            "-c".into(),
            PY_CLIENT.into(),
            dir.sock("m.sock").display().to_string(),
            "py-key".into(),
            hex,
        ],
    );
    let reply_hex = out
        .trim()
        .strip_prefix("WELCOME ")
        .unwrap_or_else(|| panic!("{out}"));
    let reply: Vec<u8> = (0..reply_hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&reply_hex[i..i + 2], 16).unwrap())
        .collect();
    let (id, objects) = flotilla_manager::testing::decode_count_reply(&reply).unwrap();
    assert_eq!((id, objects), (7, 0));
    drop(server);
}

#[test]
fn a_python_client_with_the_wrong_key_is_refused() {
    let dir = TempDir::new("pywrong");
    let server = serve(&dir, Some(key("py-key")));
    let out = run_python(
        LONG,
        vec![
            "-c".into(),
            PY_CLIENT.into(),
            dir.sock("m.sock").display().to_string(),
            "other-key".into(),
            "00".into(),
        ],
    );
    assert_eq!(out.trim(), "REJECTED");
    drop(server);
}

/// Starts PY_SERVER (or PY_REAL's listener) and waits until it listens.
fn python_listener(args: Vec<String>) -> std::process::Child {
    let mut child = Command::new("python3")
        .args(&args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.as_mut().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "LISTENING");
    child
}

fn finish(mut child: std::process::Child) -> String {
    with_deadline(LONG, "python3 exit", move || {
        let mut rest = String::new();
        std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut rest).unwrap();
        child.wait().unwrap();
        rest
    })
}

#[test]
fn the_rust_client_passes_a_python_312_server_and_catches_a_liar() {
    let dir = TempDir::new("pyserver");
    let path = dir.sock("py.sock");
    for (mode, our_key, expect_ok, expect_py) in [
        ("honest", "py-key", true, "WELCOMED"),
        ("honest", "bad-key", false, "CLIENT-REJECTED"),
        ("liar", "py-key", false, "WE-WERE-REJECTED"),
    ] {
        let _ = std::fs::remove_file(&path);
        let child = python_listener(vec![
            "-c".into(),
            PY_SERVER.into(),
            path.display().to_string(),
            "py-key".into(),
            mode.into(),
        ]);
        let stream = UnixStream::connect(&path).unwrap();
        let result = flotilla_manager::testing::client_handshake(stream, &key(our_key), LONG);
        assert_eq!(result.is_ok(), expect_ok, "{mode} {our_key}: {result:?}");
        match (mode, our_key) {
            ("liar", _) => assert!(matches!(result, Err(AuthError::WrongDigest)), "{result:?}"),
            (_, "bad-key") => assert!(matches!(result, Err(AuthError::Rejected)), "{result:?}"),
            _ => {}
        }
        assert_eq!(finish(child).trim(), expect_py, "{mode} {our_key}");
    }
}

#[test]
fn a_legacy_python_client_gets_a_clear_refusal() {
    if python_version() >= (3, 12) {
        // A modern python3 speaks sha256: it must be accepted instead.
        let dir = TempDir::new("legacy-modern");
        let server = serve(&dir, Some(key("k")));
        let out = run_python(
            LONG,
            vec![
                "-c".into(),
                PY_REAL.into(),
                "client".into(),
                dir.sock("m.sock").display().to_string(),
                "k".into(),
            ],
        );
        assert_eq!(out.trim(), "CONNECTED");
        drop(server);
        return;
    }
    let dir = TempDir::new("legacy");
    let server = serve(&dir, Some(key("k")));
    let out = run_python(
        LONG,
        vec![
            "-c".into(),
            PY_REAL.into(),
            "client".into(),
            dir.sock("m.sock").display().to_string(),
            "k".into(),
        ],
    );
    assert!(
        out.starts_with("REFUSED AuthenticationError digest sent was rejected"),
        "{out}"
    );
    drop(server);
}

#[test]
fn a_legacy_python_server_is_refused_with_a_message_naming_it() {
    if python_version() >= (3, 12) {
        return; // no legacy peer here; the 3.12 exchange is covered above
    }
    let dir = TempDir::new("legacy-server");
    let path = dir.sock("py.sock");
    let child = python_listener(vec![
        "-c".into(),
        PY_REAL.into(),
        "server".into(),
        path.display().to_string(),
        "k".into(),
    ]);
    let stream = UnixStream::connect(&path).unwrap();
    let err = flotilla_manager::testing::client_handshake(stream, &key("k"), LONG).unwrap_err();
    assert!(matches!(err, AuthError::LegacyPeer(_)), "{err}");
    assert!(err.to_string().contains("Python 3.11 or older"), "{err}");
    assert!(finish(child).starts_with("REFUSED"));
}

/// The handshake's one timeout in the deadline tests, and how late the slow peer answers
/// the first half: before one deadline covered both halves, the second half started a
/// fresh timeout, and the handshake took `SLOW + HANDSHAKE` to give up.
const HANDSHAKE: Duration = Duration::from_secs(3);
const SLOW: Duration = Duration::from_millis(2400);

/// Runs `ours` (one side's whole handshake, given `HANDSHAKE`) against `peer` on a
/// socket pair; how long `ours` took and its result.
fn time_handshake(
    ours: fn(UnixStream, &AuthKey, Duration) -> Result<(), AuthError>,
    peer: impl FnOnce(UnixStream) + Send + 'static,
) -> (Duration, Result<(), AuthError>) {
    let (a, b) = UnixStream::pair().unwrap();
    let peer = std::thread::spawn(move || peer(b));
    let (took, res) = with_deadline(LONG, "handshake", move || {
        let start = std::time::Instant::now();
        let res = ours(a, &key("sesame"), HANDSHAKE);
        (start.elapsed(), res)
    });
    peer.join().unwrap();
    (took, res)
}

#[test]
fn one_deadline_bounds_both_halves_of_the_servers_handshake() {
    // The client answers the server's challenge late, then never sends its own.
    let (took, res) = time_handshake(flotilla_manager::testing::server_handshake, |mut s| {
        let c = read_frame_from(&mut s, 256).unwrap();
        let m = c.strip_prefix(b"#CHALLENGE#").unwrap().to_vec();
        std::thread::sleep(SLOW);
        write_frame(
            &mut s,
            &flotilla_manager::auth::response(&key("sesame"), &m),
        )
        .unwrap();
        assert_eq!(read_frame_from(&mut s, 256).unwrap(), b"#WELCOME#");
        // Stall: hold the stream open until the server gives up and closes its end.
        let _ = read_frame_from(&mut s, 256);
    });
    assert!(matches!(res, Err(AuthError::Frame(_))), "{res:?}");
    // The second half had only what the first left: the handshake ends near
    // `HANDSHAKE`, far from the `SLOW + HANDSHAKE` of a fresh timeout per half.
    assert!(
        took < HANDSHAKE + (SLOW / 2),
        "the handshake took {took:?}, over its one timeout of {HANDSHAKE:?}"
    );
}

#[test]
fn one_deadline_bounds_both_halves_of_the_clients_handshake() {
    // The server welcomes the client late, then never answers the client's challenge.
    let (took, res) = time_handshake(flotilla_manager::testing::client_handshake, |mut s| {
        let mut m = b"{sha256}".to_vec();
        m.extend_from_slice(&[7u8; 40]);
        let mut c = b"#CHALLENGE#".to_vec();
        c.extend_from_slice(&m);
        write_frame(&mut s, &c).unwrap();
        let reply = read_frame_from(&mut s, 256).unwrap();
        assert_eq!(reply, flotilla_manager::auth::response(&key("sesame"), &m));
        std::thread::sleep(SLOW);
        write_frame(&mut s, b"#WELCOME#").unwrap();
        // The client's challenge arrives; stall until the client gives up.
        let _ = read_frame_from(&mut s, 256);
        let _ = read_frame_from(&mut s, 256);
    });
    assert!(matches!(res, Err(AuthError::Frame(_))), "{res:?}");
    assert!(
        took < HANDSHAKE + (SLOW / 2),
        "the handshake took {took:?}, over its one timeout of {HANDSHAKE:?}"
    );
}

#[test]
fn a_server_that_sends_no_challenge_is_named_as_silent() {
    // Something listens (a TLS manager, to a plain client, looks just like this) but
    // never sends the handshake's challenge.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = Address::Tcp(listener.local_addr().unwrap());
    let holder = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        // Hold the connection open until the client gives up and closes it.
        let _ = std::io::Read::read(&mut s, &mut [0u8; 1]);
    });
    let err = with_deadline(LONG, "connect", move || {
        flotilla_manager::testing::connect_with_timeout(
            &addr,
            Some(&key("sesame")),
            Duration::from_secs(1),
        )
        .unwrap_err()
    });
    holder.join().unwrap();
    assert!(
        matches!(
            err,
            ConnectError::Auth {
                source: AuthError::ServerSilent(_),
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("TLS"), "{err}");
}
