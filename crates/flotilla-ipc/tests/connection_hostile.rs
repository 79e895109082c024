//! A hostile or broken peer on the other end of a connection: headers announcing huge
//! frames, a peer that stalls or closes in the middle of a frame, descriptors that
//! arrive with a frame the receiver refuses. Every case ends in a clear error, quickly,
//! never in an abort, a panic, a hang or a leak.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use flotilla_ipc::{Connection, FrameReader, RecvError, RecvIntoError, RecvTimeoutError, pipe};

const LONG: Duration = Duration::from_secs(30);
const SHORT: Duration = Duration::from_millis(200);

fn header(len: u64, nfds: u32) -> Vec<u8> {
    let mut h = len.to_le_bytes().to_vec();
    h.extend_from_slice(&nfds.to_le_bytes());
    h.extend_from_slice(b"FLT1");
    h
}

/// A connection end whose peer is a plain socket, for writing raw bytes.
fn raw_pair() -> (UnixStream, Connection) {
    let (peer, ours) = UnixStream::pair().unwrap();
    (peer, Connection::from_socket(OwnedFd::from(ours)))
}

/// Runs `f` on a thread and waits at most `LONG` for its answer: a test fails rather
/// than hangs when the call under test blocks.
fn within_deadline<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(LONG)
        .expect("the call did not return within its deadline")
}

// ---- 1. hostile headers -------------------------------------------------------------

/// The name of the environment variable that makes a test binary the child of
/// `hostile_headers_under_a_memory_limit`.
const CHILD: &str = "FLOTILLA_HOSTILE_HEADERS_CHILD";

/// The current size of this process's address space, from `/proc/self/status`.
fn address_space() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmSize:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

fn hostile_headers_child() {
    // Half a GiB of room: far below any of the lengths announced below.
    let limit = address_space() + (512 << 20);
    let rlimit = libc::rlimit {
        rlim_cur: limit,
        rlim_max: limit,
    };
    // SAFETY: setrlimit reads the struct we pass and changes only this process's limit.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &rlimit) }, 0);
    for (len, raise) in [
        (1u64 << 30, false), // the default maximum, under a memory limit
        (1 << 30, true),
        (1 << 40, true),
        (u64::MAX, true),
        (u64::MAX - 15, true),
    ] {
        let (mut peer, mut ours) = raw_pair();
        if raise {
            ours.set_max_frame(u64::MAX);
        }
        let mut bytes = header(len, 0);
        bytes.extend_from_slice(b"only this");
        peer.write_all(&bytes).unwrap();
        drop(peer);
        let started = Instant::now();
        match ours.recv_bytes() {
            Err(RecvError::Truncated { got, expected, .. }) => {
                assert_eq!((got, expected), (9, len), "header {len}");
            }
            other => panic!("header announcing {len}: unexpected {other:?}"),
        }
        assert!(started.elapsed() < LONG);
    }
    // A real frame still arrives whole under the limit.
    let (a, b) = pipe(true).unwrap();
    let big = vec![7u8; 3 << 20];
    let sender = {
        let big = big.clone();
        std::thread::spawn(move || a.send_bytes(&big).unwrap())
    };
    assert_eq!(b.recv_bytes().unwrap(), big);
    sender.join().unwrap();
    println!("hostile headers: all refused");
}

#[test]
fn hostile_headers_under_a_memory_limit() {
    if std::env::var_os(CHILD).is_some() {
        return hostile_headers_child();
    }
    // In a child (this test binary again), under a lowered RLIMIT_AS: an allocation of
    // the announced size would fail there, and abort the child.
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "hostile_headers_under_a_memory_limit",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("the child did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        status.success() && stdout.contains("hostile headers: all refused"),
        "child ended with {status:?}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
}

#[test]
fn a_header_beyond_the_maximum_is_refused_at_once() {
    for len in [1001, 1 << 40, u64::MAX] {
        let (mut peer, mut ours) = raw_pair();
        ours.set_max_frame(1000);
        peer.write_all(&header(len, 0)).unwrap();
        // The peer stays open: the refusal must not wait for the payload.
        let got = within_deadline(move || (ours.recv_bytes(), peer));
        assert!(
            matches!(got.0, Err(RecvError::TooLarge { len: l, max: 1000 }) if l == len),
            "{len}: {:?}",
            got.0
        );
    }
}

// ---- 2. timed receives mid-frame ----------------------------------------------------

#[test]
fn a_timed_recv_honours_its_deadline_when_the_peer_stalls_mid_frame() {
    let (mut peer, ours) = raw_pair();
    let payload: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
    let mut first = header(1000, 0);
    first.extend_from_slice(&payload[..10]);
    peer.write_all(&first).unwrap();
    // The peer stalls: the rest of the frame is not coming for now.
    let ours = within_deadline(move || {
        assert!(
            matches!(
                ours.recv_frame_timeout(SHORT),
                Err(RecvTimeoutError::Timeout(_))
            ),
            "recv_frame_timeout"
        );
        assert!(
            matches!(
                ours.recv_timeout::<u32>(SHORT),
                Err(RecvTimeoutError::Timeout(_))
            ),
            "recv_timeout"
        );
        assert!(
            matches!(
                ours.recv_bytes_timeout(SHORT),
                Err(RecvTimeoutError::Timeout(_))
            ),
            "recv_bytes_timeout"
        );
        assert!(
            matches!(
                ours.recv_frame_timeout(Duration::ZERO),
                Err(RecvTimeoutError::Timeout(_))
            ),
            "zero timeout"
        );
        assert!(ours.try_recv_bytes().unwrap().is_none(), "try_recv_bytes");
        assert!(ours.try_recv::<u32>().unwrap().is_none(), "try_recv");
        assert!(
            !ours.poll_timeout(Duration::ZERO).unwrap(),
            "nothing more came"
        );
        ours
    });
    // The partial frame was kept: the rest completes it, and the stream goes on.
    peer.write_all(&payload[10..500]).unwrap();
    assert!(matches!(
        ours.recv_frame_timeout(SHORT),
        Err(RecvTimeoutError::Timeout(_))
    ));
    peer.write_all(&payload[500..]).unwrap();
    let mut second = header(3, 0);
    second.extend_from_slice(b"two");
    peer.write_all(&second).unwrap();
    assert!(ours.poll_timeout(LONG).unwrap());
    let (got, fds) = ours.recv_frame_timeout(LONG).unwrap();
    assert_eq!(got, payload);
    assert!(fds.is_empty());
    assert_eq!(ours.try_recv_bytes().unwrap().unwrap(), b"two");
}

#[test]
fn a_timed_recv_does_not_wait_behind_a_blocked_receiver() {
    let (a, b) = pipe(true).unwrap();
    let b = std::sync::Arc::new(b);
    let blocked = {
        let b = std::sync::Arc::clone(&b);
        std::thread::spawn(move || b.recv_bytes())
    };
    std::thread::sleep(Duration::from_millis(50)); // let it block first
    let timed = {
        let b = std::sync::Arc::clone(&b);
        within_deadline(move || {
            (
                b.recv_bytes_timeout(SHORT).map(|_| ()),
                b.try_recv_bytes().map(|_| ()),
            )
        })
    };
    assert!(
        matches!(timed.0, Err(RecvTimeoutError::Timeout(_))),
        "{:?}",
        timed.0
    );
    assert!(matches!(timed.1, Ok(())), "{:?}", timed.1);
    a.send_bytes(b"for the blocked one").unwrap();
    assert_eq!(blocked.join().unwrap().unwrap(), b"for the blocked one");
}

#[test]
fn a_timed_recv_on_a_simplex_pipe_honours_its_deadline_mid_frame() {
    let (reader, writer) = pipe(false).unwrap();
    let mut first = header(100, 0);
    first.extend_from_slice(&[1; 40]);
    nix::unistd::write(&writer, &first).unwrap();
    let reader = within_deadline(move || {
        assert!(matches!(
            reader.recv_bytes_timeout(SHORT),
            Err(RecvTimeoutError::Timeout(_))
        ));
        reader
    });
    nix::unistd::write(&writer, &[1; 60]).unwrap();
    assert_eq!(reader.recv_bytes_timeout(LONG).unwrap(), vec![1; 100]);
}

// ---- 3. truncated frames ------------------------------------------------------------

#[test]
fn a_peer_closing_mid_header_is_a_truncated_frame() {
    let (mut peer, ours) = raw_pair();
    peer.write_all(&header(100, 0)[..5]).unwrap();
    drop(peer);
    match within_deadline(move || (ours.recv_bytes(), ours)) {
        (
            Err(RecvError::Truncated {
                part: "header",
                got: 5,
                expected: 16,
            }),
            ours,
        ) => assert!(matches!(ours.recv_bytes(), Err(RecvError::Disconnected))),
        (other, _) => panic!("unexpected {other:?}"),
    }
}

#[test]
fn a_peer_closing_mid_payload_is_a_truncated_frame() {
    let (mut peer, ours) = raw_pair();
    let mut bytes = header(100, 0);
    bytes.extend_from_slice(&[0; 30]);
    peer.write_all(&bytes).unwrap();
    drop(peer);
    let (got, ours) = within_deadline(move || (ours.recv_bytes(), ours));
    match got {
        Err(
            e @ RecvError::Truncated {
                part: "payload",
                got: 30,
                expected: 100,
            },
        ) => assert!(e.to_string().contains("truncated frame"), "{e}"),
        other => panic!("unexpected {other:?}"),
    }
    assert!(matches!(ours.recv_bytes(), Err(RecvError::Disconnected)));

    // The same through a simplex pipe, with a timeout.
    let (reader, writer) = pipe(false).unwrap();
    nix::unistd::write(&writer, &bytes).unwrap();
    drop(writer);
    assert!(matches!(
        reader.recv_bytes_timeout(LONG),
        Err(RecvTimeoutError::Recv(RecvError::Truncated { got: 30, .. }))
    ));
}

#[test]
fn a_truncated_frame_without_blocking_is_reported_too() {
    let (mut peer, ours) = raw_pair();
    ours.set_nonblocking(true).unwrap();
    let mut bytes = header(100, 0);
    bytes.extend_from_slice(&[0; 30]);
    peer.write_all(&bytes).unwrap();
    let mut reader = FrameReader::default();
    // The part that arrived is kept in the connection (`reader` is not used any more).
    assert!(ours.try_recv_frame(&mut reader).unwrap().is_none());
    drop(peer);
    assert!(matches!(
        ours.try_recv_frame(&mut reader),
        Err(RecvError::Truncated {
            part: "payload",
            got: 30,
            expected: 100
        })
    ));
    assert!(matches!(
        ours.try_recv_frame(&mut reader),
        Err(RecvError::Disconnected)
    ));
}

// ---- 5. descriptors of refused frames -----------------------------------------------

/// A file of a name unique to `tag`, deleted at once: an object only this test's
/// descriptors name, so counting them ignores what other tests open meanwhile.
fn marked_file(tag: &str) -> (OwnedFd, String) {
    let name = format!("flotilla-fd-{}-{tag}", std::process::id());
    let path = std::env::temp_dir().join(&name);
    let file = std::fs::File::create(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    (OwnedFd::from(file), name)
}

/// How many descriptors of this process (`/proc/self/fd`) name `marker`'s file.
fn open_copies(marker: &str) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().contains(marker))
        .count()
}

/// Sends a frame of `payload` carrying three duplicates of a marked file, then closes
/// every copy this side holds: afterwards, whatever copies remain are the receiver's.
fn send_marked(from: &Connection, payload: &[u8], tag: &str) -> String {
    let (file, marker) = marked_file(tag);
    let fds: Vec<OwnedFd> = (0..3).map(|_| file.try_clone().unwrap()).collect();
    drop(file);
    assert_eq!(open_copies(&marker), 3);
    from.send_frame(payload, &fds).unwrap();
    drop(fds);
    marker
}

#[test]
fn descriptors_of_a_frame_refused_as_too_large_are_closed_at_once() {
    let (a, mut b) = pipe(true).unwrap();
    b.set_max_frame(16);
    let marker = send_marked(&a, &[0; 64], "too-large");
    assert!(matches!(b.recv_bytes(), Err(RecvError::TooLarge { .. })));
    assert_eq!(open_copies(&marker), 0, "the refused frame's descriptors");
}

#[test]
fn descriptors_of_a_frame_refused_without_blocking_are_closed_at_once() {
    let (a, mut b) = pipe(true).unwrap();
    b.set_max_frame(16);
    b.set_nonblocking(true).unwrap();
    let marker = send_marked(&a, &[0; 64], "too-large-async");
    let mut reader = FrameReader::default();
    assert!(matches!(
        b.try_recv_frame(&mut reader),
        Err(RecvError::TooLarge { .. })
    ));
    assert_eq!(open_copies(&marker), 0, "the refused frame's descriptors");
    drop(reader);
}

#[test]
fn descriptors_of_a_frame_that_fails_to_decode_are_closed_at_once() {
    let (a, b) = pipe(true).unwrap();
    let marker = send_marked(&a, b"not a (String, Fd, Fd, Fd)", "undecodable");
    assert!(
        b.recv::<(String, flotilla_ipc::handle::Fd)>().is_err(),
        "decoding fails"
    );
    assert_eq!(
        open_copies(&marker),
        0,
        "the undecodable frame's descriptors"
    );
}

#[test]
fn descriptors_of_a_frame_received_as_raw_bytes_are_closed_at_once() {
    let (a, b) = pipe(true).unwrap();
    let marker = send_marked(&a, b"too long for the buffer", "bytes-into");
    let mut buf = [0u8; 4];
    assert!(matches!(
        b.recv_bytes_into(&mut buf),
        Err(RecvIntoError::BufferTooSmall { .. })
    ));
    assert_eq!(open_copies(&marker), 0, "descriptors nobody can claim");
    let marker = send_marked(&a, b"ok", "bytes-into-fits");
    assert_eq!(b.recv_bytes_into(&mut buf).unwrap(), 2);
    assert_eq!(open_copies(&marker), 0, "descriptors nobody can claim");
}
