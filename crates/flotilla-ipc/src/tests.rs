//! Framing internals: what a raw peer can do to a connection.

use std::os::fd::AsFd;

use crate::{Connection, Error, pipe};

/// Writes raw bytes to the peer of `conn`, bypassing the framing.
fn raw_write(conn: &Connection, bytes: &[u8]) {
    crate::sys::write_all(conn.as_fd(), true, &[bytes], &[]).unwrap();
}

fn header(len: u64, nfds: u32, magic: &[u8; 4]) -> Vec<u8> {
    let mut h = len.to_le_bytes().to_vec();
    h.extend_from_slice(&nfds.to_le_bytes());
    h.extend_from_slice(magic);
    h
}

#[test]
fn an_oversized_frame_is_refused_and_closes_the_connection() {
    let (a, mut b) = pipe(true).unwrap();
    b.set_max_frame(1024);
    raw_write(&a, &header(u64::MAX / 2, 0, b"FLT1"));
    match b.recv_bytes() {
        Err(Error::FrameTooLarge { len, max: 1024 }) => assert_eq!(len, u64::MAX / 2),
        other => panic!("unexpected {other:?}"),
    }
    a.send_bytes(b"later").unwrap();
    assert!(matches!(b.recv_bytes(), Err(Error::Closed)));
}

#[test]
fn garbage_is_malformed() {
    let (a, b) = pipe(true).unwrap();
    raw_write(&a, b"GET / HTTP/1.1\r\n\r\n");
    assert!(matches!(b.recv_bytes(), Err(Error::Malformed(_))));
}

#[test]
fn a_frame_cut_short_is_end_of_file() {
    let (a, b) = pipe(true).unwrap();
    let mut bytes = header(100, 0, b"FLT1");
    bytes.extend_from_slice(&[7; 10]);
    raw_write(&a, &bytes);
    drop(a);
    assert!(matches!(b.recv_bytes(), Err(Error::Eof)));
}

#[test]
fn a_frame_claiming_descriptors_it_lacks_is_malformed() {
    let (a, b) = pipe(true).unwrap();
    raw_write(&a, &header(0, 3, b"FLT1"));
    assert!(matches!(b.recv_bytes(), Err(Error::Malformed(_))));
}
