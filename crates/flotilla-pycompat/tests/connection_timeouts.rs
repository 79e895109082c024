//! Every blocking call of a connection ends within its bound, against peers that say
//! nothing, read nothing, or stop half-way (no Python needed).

use std::io::Write;
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

use flotilla_pycompat::{
    Address, Client, ConnectError, FrameError, Listener, Options, RecvError, SendError,
};

const SHORT: Duration = Duration::from_millis(300);

fn dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("flotilla-pycompat-t-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d.join("sock")
}

/// Runs `f` in a thread and fails if it has not finished in 30 s.
fn bounded<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(f()).unwrap());
    rx.recv_timeout(Duration::from_secs(30))
        .expect("the call hung")
}

#[test]
fn a_silent_peer_times_out_the_handshake_on_both_sides() {
    bounded(|| {
        let path = dir("silent");
        let options = Options::new().authkey(b"k").timeout(SHORT);
        let listener = Listener::bind(&Address::Unix(path.clone()), options.clone()).unwrap();
        let _silent = UnixStream::connect(&path).unwrap();
        let started = Instant::now();
        let err = listener.accept_timeout(SHORT).unwrap_err();
        assert!(matches!(err, ConnectError::Timeout { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));

        let path = dir("silent-server");
        let _raw = UnixListener::bind(&path).unwrap();
        let err = Client::new(options)
            .connect(&Address::Unix(path))
            .unwrap_err();
        assert!(matches!(err, ConnectError::Timeout { .. }), "{err}");
    });
}

#[test]
fn accept_with_no_peer_times_out() {
    bounded(|| {
        let listener = Listener::bind(&"127.0.0.1:0".parse().unwrap(), Options::new()).unwrap();
        let err = listener.accept_timeout(SHORT).unwrap_err();
        assert!(matches!(err, ConnectError::Timeout { .. }), "{err}");
    });
}

#[test]
fn a_peer_that_reads_nothing_times_out_a_send() {
    bounded(|| {
        let path = dir("deaf");
        let listener =
            Listener::bind(&Address::Unix(path.clone()), Options::new().timeout(SHORT)).unwrap();
        let _deaf = UnixStream::connect(&path).unwrap();
        let mut conn = listener.accept_timeout(SHORT).unwrap();
        let err = conn.send_bytes(&vec![0u8; 64 << 20]).unwrap_err();
        assert!(matches!(err, SendError::Timeout(_)), "{err}");
    });
}

#[test]
fn a_frame_that_stops_half_way_is_a_stall_and_closes_the_connection() {
    bounded(|| {
        let path = dir("half");
        let listener =
            Listener::bind(&Address::Unix(path.clone()), Options::new().timeout(SHORT)).unwrap();
        let mut peer = UnixStream::connect(&path).unwrap();
        let mut conn = listener.accept_timeout(SHORT).unwrap();
        // No message yet: a timeout, and the connection is still fine.
        assert!(matches!(conn.recv_bytes(), Err(RecvError::Timeout(_))));
        peer.write_all(&[0, 0, 0, 10, 1, 2]).unwrap();
        let err = conn.recv_bytes().unwrap_err();
        assert!(
            matches!(err, RecvError::Frame(FrameError::Stalled(_))),
            "{err}"
        );
        assert!(matches!(
            conn.recv_bytes(),
            Err(RecvError::Frame(FrameError::Closed))
        ));
        drop(peer);
    });
}
