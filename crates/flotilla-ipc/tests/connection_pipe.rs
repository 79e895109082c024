//! Pipe and Connection within one process: values, bytes, directions, end of file,
//! timeouts, handles over connections, and many senders on one connection.

use std::io::{Read, Seek, Write};
use std::sync::Arc;
use std::time::Duration;

use flotilla_ipc::handle::Fd;
use flotilla_ipc::{
    Connection, Error, PollError, RecvError, RecvIntoError, RecvTimeoutError, SendError, pipe,
    wait_timeout,
};

const LONG: Duration = Duration::from_secs(30);

#[test]
fn duplex_both_ways() {
    let (a, b) = pipe(true).unwrap();
    a.send(&"dad, call me when mum is back").unwrap();
    assert_eq!(b.recv::<String>().unwrap(), "dad, call me when mum is back");
    b.send(&Some(42u64)).unwrap();
    assert_eq!(a.recv::<Option<u64>>().unwrap(), Some(42));
    assert!(a.readable() && a.writable());
}

#[test]
fn simplex_ends_refuse_the_wrong_direction() {
    let (reader, writer) = pipe(false).unwrap();
    assert!(matches!(
        reader.send_bytes(b"x"),
        Err(SendError::WrongDirection(_))
    ));
    assert!(matches!(
        writer.recv_bytes(),
        Err(RecvError::WrongDirection(_))
    ));
    assert!(matches!(
        writer.poll_timeout(Duration::ZERO),
        Err(PollError::WrongDirection(_))
    ));
    writer.send_bytes(b"one way").unwrap();
    assert_eq!(reader.recv_bytes().unwrap(), b"one way");
    let (other, _keep) = pipe(true).unwrap();
    assert!(matches!(
        writer.send(&other),
        Err(SendError::HandlesNotSupported(_))
    ));
}

#[test]
fn end_of_file_when_the_peer_is_gone() {
    let (a, b) = pipe(true).unwrap();
    a.send(&1u8).unwrap();
    a.close();
    assert_eq!(
        b.recv::<u8>().unwrap(),
        1,
        "what was sent before close still arrives"
    );
    assert!(matches!(b.recv::<u8>(), Err(RecvError::Disconnected)));
    assert!(matches!(b.send(&2u8), Err(SendError::Disconnected)));

    let (reader, writer) = pipe(false).unwrap();
    drop(reader);
    assert!(matches!(
        writer.send_bytes(b"nobody"),
        Err(SendError::Disconnected)
    ));
}

#[test]
fn poll_and_recv_timeout() {
    let (a, b) = pipe(true).unwrap();
    assert!(!b.poll_timeout(Duration::ZERO).unwrap());
    assert!(matches!(
        b.recv_timeout::<u8>(Duration::from_millis(20)),
        Err(RecvTimeoutError::Timeout(_))
    ));
    a.send(&9u8).unwrap();
    assert!(b.poll_timeout(LONG).unwrap());
    assert!(
        b.poll_timeout(std::time::Duration::MAX).unwrap(),
        "polling does not consume"
    );
    assert_eq!(b.recv_timeout::<u8>(LONG).unwrap(), 9);
}

#[test]
fn recv_bytes_into_hands_back_a_message_too_long() {
    let (a, b) = pipe(true).unwrap();
    a.send_bytes(b"short").unwrap();
    a.send_bytes(b"much too long").unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(b.recv_bytes_into(&mut buf).unwrap(), 5);
    assert_eq!(&buf[..5], b"short");
    match b.recv_bytes_into(&mut buf) {
        Err(RecvIntoError::BufferTooSmall {
            capacity: 8,
            message,
        }) => assert_eq!(message, b"much too long"),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn empty_and_large_messages() {
    let (a, b) = pipe(true).unwrap();
    let big = vec![0xabu8; 3 << 20];
    let sender = {
        let big = big.clone();
        std::thread::spawn(move || {
            a.send_bytes(&[]).unwrap();
            a.send_bytes(&big).unwrap();
            a
        })
    };
    assert!(b.recv_bytes().unwrap().is_empty());
    assert_eq!(b.recv_bytes().unwrap(), big);
    sender.join().unwrap();
}

#[test]
fn a_connection_end_travels_over_a_connection() {
    let (carrier_a, carrier_b) = pipe(true).unwrap();
    let (inner_a, inner_b) = pipe(true).unwrap();
    carrier_a.send(&("here is an end", inner_b)).unwrap();
    let (note, received): (String, Connection) = carrier_b.recv().unwrap();
    assert_eq!(note, "here is an end");
    inner_a.send(&"through the passed end").unwrap();
    assert_eq!(received.recv::<String>().unwrap(), "through the passed end");
    received.send(&7i32).unwrap();
    assert_eq!(inner_a.recv::<i32>().unwrap(), 7);
}

#[test]
fn a_file_descriptor_travels_inside_a_struct() {
    #[derive(serde::Serialize, serde::Deserialize)]
    struct Job {
        name: String,
        log: Fd,
    }
    let mut file = tempfile();
    let (a, b) = pipe(true).unwrap();
    let log = Fd::from(std::os::fd::OwnedFd::from(file.try_clone().unwrap()));
    a.send(&Job {
        name: "j".into(),
        log,
    })
    .unwrap();
    let job: Job = b.recv().unwrap();
    let mut received = std::fs::File::from(job.log.into_inner());
    received
        .write_all(b"written through the passed descriptor")
        .unwrap();
    let mut text = String::new();
    file.rewind().unwrap();
    file.read_to_string(&mut text).unwrap();
    assert_eq!(job.name, "j");
    assert_eq!(text, "written through the passed descriptor");
}

#[test]
fn handles_outside_a_connection_are_a_clear_error() {
    let (a, _b) = pipe(true).unwrap();
    let err = flotilla_core::codec::encode(&a).unwrap_err();
    assert!(err.to_string().contains("OS handle"), "{err}");
}

#[test]
fn wait_returns_the_ready_connections() {
    let (a1, b1) = pipe(true).unwrap();
    let (a2, b2) = pipe(true).unwrap();
    let ends = [&b1, &b2];
    assert!(
        wait_timeout(&ends, Duration::from_millis(10))
            .unwrap()
            .is_empty()
    );
    a2.send(&"second").unwrap();
    let ready = wait_timeout(&ends, LONG).unwrap();
    assert_eq!(ready.len(), 1);
    assert_eq!(ready[0].recv::<String>().unwrap(), "second");
    drop(a1); // end of file counts as ready
    let ready = wait_timeout(&ends, LONG).unwrap();
    assert_eq!(ready.len(), 1);
    assert!(matches!(
        ready[0].recv::<String>(),
        Err(RecvError::Disconnected)
    ));
}

#[test]
fn concurrent_senders_never_interleave_frames() {
    let (a, b) = pipe(true).unwrap();
    let a = Arc::new(a);
    let senders: Vec<_> = (0..4u8)
        .map(|t| {
            let a = Arc::clone(&a);
            std::thread::spawn(move || {
                for i in 0..200u32 {
                    a.send(&(t, i, vec![t; (i as usize * 37) % 5000])).unwrap();
                }
            })
        })
        .collect();
    let mut next = [0u32; 4];
    for _ in 0..800 {
        let (t, i, body): (u8, u32, Vec<u8>) = b.recv_timeout(LONG).unwrap();
        assert_eq!(i, next[t as usize], "per-sender order holds");
        assert!(body.iter().all(|&x| x == t));
        next[t as usize] += 1;
    }
    for s in senders {
        s.join().unwrap();
    }
}

#[test]
fn public_types_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Connection>();
    send_sync::<Error>();
    send_sync::<SendError>();
    send_sync::<RecvError>();
    send_sync::<RecvTimeoutError>();
    send_sync::<RecvIntoError>();
    send_sync::<PollError>();
    send_sync::<Fd>();
}

fn tempfile() -> std::fs::File {
    let path = std::env::temp_dir().join(format!("flotilla-ipc-test-{}", std::process::id()));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    file
}
