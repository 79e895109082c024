//! A receive reads ahead (one read for a small frame, none for frames that arrived
//! together): frames still arrive whole and in order whatever pieces they come in, each
//! with its own descriptors, `poll` and `wait` count a frame read ahead, and an end
//! holding one refuses to be sent away.

use std::io::{Read, Seek, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::time::Duration;

use flotilla_ipc::handle::Fd;
use flotilla_ipc::{Connection, FrameReader, pipe, wait_timeout};

const LONG: Duration = Duration::from_secs(30);

fn header(len: u64, nfds: u32) -> Vec<u8> {
    let mut h = len.to_le_bytes().to_vec();
    h.extend_from_slice(&nfds.to_le_bytes());
    h.extend_from_slice(b"FLT1");
    h
}

/// Runs `f` on a thread and waits at most `LONG` for it: a test fails rather than hangs.
fn within<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(LONG)
        .expect("the call did not return within its deadline")
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// A large frame that trickles in, in pieces of odd sizes, so that the receive reads
/// some of it straight into place and the rest (with the small frames that follow) into
/// its read-ahead buffer. (It once copied the read-ahead bytes past the end of a payload
/// grown by less than they held, and panicked.)
#[test]
fn a_frame_trickling_in_pieces_arrives_whole_and_the_next_ones_too() {
    // 161 056 bytes: the first read fills the 64 KiB buffer, the payload grows to
    // 131 056, the first piece ends short of that, and the rest (under 64 KiB) comes
    // through the buffer.
    for (len, pieces) in [(161_056, [110_000, 1 << 20]), (300_000, [37_001, 37_001])] {
        trickle(len, &pieces);
    }
}

/// Both sides of the read-ahead size (64 KiB): a payload with at least that much still
/// to come is read straight into place, a smaller rest through the buffer. Frames around
/// it arrive whole, whether they come at once or with only their header first.
#[test]
fn frames_on_both_sides_of_the_read_ahead_size_arrive_whole() {
    const AHEAD: usize = 64 << 10;
    const HEADER: usize = 16;
    for len in [
        AHEAD - HEADER - 1,
        AHEAD - HEADER,
        AHEAD - 1,
        AHEAD,
        AHEAD + 1,
        2 * AHEAD - 1,
        2 * AHEAD,
        2 * AHEAD + 1,
    ] {
        trickle(len, &[usize::MAX, 1]); // all at once
        trickle(len, &[HEADER, 48_000]); // the header, then pieces
    }
}

/// Both sides of the hand-over size (16 KiB): a payload at least that long that begins
/// the read-ahead buffer becomes the received `Vec` itself, a shorter one is copied out.
/// Frames around it arrive whole: all at once with small frames behind them (which move
/// to a new buffer), header first, header split, and in pieces shorter than the frame.
#[test]
fn frames_on_both_sides_of_the_hand_over_size_arrive_whole() {
    const HAND_OVER: usize = 16 << 10;
    const HEADER: usize = 16;
    for len in [HAND_OVER - 1, HAND_OVER, HAND_OVER + 1, 40_000] {
        trickle(len, &[usize::MAX, 1]); // all at once
        trickle(len, &[HEADER, 48_000]); // the header, then the rest
        trickle(len, &[7, 48_000]); // the header split
        trickle(len, &[HEADER + 5_000, 3_001]); // the payload in pieces
    }
}

/// Both sides of the first growth of a payload's buffer (1 MiB): a frame that fits in it
/// gets all its room with its first bytes, a larger one grows again; either arrives
/// whole, at once or in pieces.
#[test]
fn frames_on_both_sides_of_the_first_growth_arrive_whole() {
    const GROWTH: usize = 1 << 20;
    const HEADER: usize = 16;
    for len in [GROWTH - 1, GROWTH, GROWTH + 1, GROWTH + (64 << 10) + 1] {
        trickle(len, &[usize::MAX, 1]); // all at once
        trickle(len, &[HEADER + 100, 300_001]); // in pieces
    }
}

/// A payload that became the received `Vec` keeps no more room than it needs: a
/// program that keeps many received messages holds their bytes, not a read-ahead
/// buffer each.
#[test]
fn a_handed_over_payload_keeps_no_spare_room() {
    let (a, b) = pipe(true).unwrap();
    within(move || {
        for len in [16 << 10, 20_000, (64 << 10) - 16] {
            let sent = pattern(len, 3);
            a.send_bytes(&sent).unwrap();
            let got = b.recv_bytes().unwrap();
            assert!(got == sent, "a {len}-byte frame arrived changed");
            assert!(
                got.capacity() < len + 4096,
                "a {len}-byte payload came with {} bytes of capacity",
                got.capacity()
            );
        }
    });
}

/// A simplex pipe is read with `readv` rather than `recvmsg`: frames around the
/// hand-over and read-ahead sizes arrive whole through one, several sent before the
/// first receive.
#[test]
fn frames_around_the_buffer_sizes_arrive_whole_through_a_pipe() {
    let (reader, writer) = pipe(false).unwrap();
    let lens = [
        0,
        1,
        (16 << 10) - 1,
        16 << 10,
        (16 << 10) + 1,
        64 << 10,
        200_000,
    ];
    let sent: Vec<Vec<u8>> = lens.iter().map(|&len| pattern(len, len as u8)).collect();
    let to_send = sent.clone();
    let sender = std::thread::spawn(move || {
        for frame in &to_send {
            writer.send_bytes(frame).unwrap();
        }
    });
    let got = within(move || {
        (0..7)
            .map(|_| reader.recv_bytes().unwrap())
            .collect::<Vec<_>>()
    });
    sender.join().unwrap();
    for (got, sent) in got.iter().zip(&sent) {
        assert!(got == sent, "a {}-byte frame arrived changed", sent.len());
    }
}

/// Sends a frame of `len` bytes followed by small ones, `pieces[0]` bytes first, then
/// the rest in pieces of `pieces[1]` bytes, pausing between them.
fn trickle(len: usize, pieces: &[usize; 2]) {
    let (mut peer, ours) = UnixStream::pair().unwrap();
    let ours = Connection::from_socket(OwnedFd::from(ours));
    let big = pattern(len, 1);
    let small: Vec<Vec<u8>> = (0..5).map(|i| pattern(100 + i * 1000, i as u8)).collect();
    let mut wire = header(big.len() as u64, 0);
    wire.extend_from_slice(&big);
    for frame in &small {
        wire.extend_from_slice(&header(frame.len() as u64, 0));
        wire.extend_from_slice(frame);
    }
    let [first, rest] = *pieces;
    let writer = std::thread::spawn(move || {
        let (head, tail) = wire.split_at(first.min(wire.len()));
        peer.write_all(head).unwrap();
        for piece in tail.chunks(rest) {
            std::thread::sleep(Duration::from_millis(50));
            peer.write_all(piece).unwrap();
        }
        peer
    });
    let got = within(move || {
        let mut got = Vec::new();
        for _ in 0..6 {
            got.push(ours.recv_bytes().unwrap());
        }
        got
    });
    drop(writer.join().unwrap());
    assert!(got[0] == big, "the large frame arrived changed");
    for (frame, expected) in got[1..].iter().zip(&small) {
        assert!(frame == expected, "a small frame arrived changed");
    }
}

fn marked_file(text: &[u8]) -> OwnedFd {
    let mut file = tempfile_like();
    file.write_all(text).unwrap();
    OwnedFd::from(file)
}

fn tempfile_like() -> std::fs::File {
    let path = std::env::temp_dir().join(format!(
        "flotilla-read-ahead-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    file
}

fn text_of(fd: OwnedFd) -> String {
    let mut file = std::fs::File::from(fd);
    file.rewind().unwrap();
    let mut text = String::new();
    file.read_to_string(&mut text).unwrap();
    text
}

/// Frames with and without descriptors, all sent before the first receive: each gets
/// its own descriptors, although several frames come in one read.
#[test]
fn descriptors_go_with_their_own_frame_among_frames_read_ahead() {
    let (a, b) = pipe(true).unwrap();
    a.send_frame(b"none", &[]).unwrap();
    a.send_frame(b"one", &[marked_file(b"first")]).unwrap();
    a.send_frame(b"none again", &[]).unwrap();
    a.send_frame(b"two", &[marked_file(b"second"), marked_file(b"third")])
        .unwrap();
    a.send_frame(b"last", &[]).unwrap();
    let frames = within(move || (0..5).map(|_| b.recv_frame().unwrap()).collect::<Vec<_>>());
    let summary: Vec<(Vec<u8>, Vec<String>)> = frames
        .into_iter()
        .map(|(bytes, fds)| (bytes, fds.into_iter().map(text_of).collect()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (b"none".to_vec(), vec![]),
            (b"one".to_vec(), vec!["first".to_owned()]),
            (b"none again".to_vec(), vec![]),
            (
                b"two".to_vec(),
                vec!["second".to_owned(), "third".to_owned()]
            ),
            (b"last".to_vec(), vec![]),
        ]
    );
}

/// `poll` and `wait` tell the truth about a frame read ahead, whose bytes are no longer
/// in the kernel; a non-blocking receive takes it; the end cannot be sent meanwhile.
#[test]
fn a_frame_read_ahead_is_ready_for_poll_and_wait_and_keeps_its_end_home() {
    let (a, b) = pipe(true).unwrap();
    let (idle, _idle_peer) = pipe(true).unwrap();
    for i in 0..3u8 {
        a.send_bytes(&[i; 10]).unwrap();
    }
    let (b, idle) = within(move || {
        assert_eq!(b.recv_bytes().unwrap(), [0; 10]);
        (b, idle)
    });
    assert!(b.poll_timeout(Duration::ZERO).unwrap());
    let ends = [&idle, &b];
    let ready = wait_timeout(&ends, Duration::ZERO).unwrap();
    assert_eq!(ready.len(), 1);
    assert!(std::ptr::eq(*ready[0], &b));
    // Sending the end away would leave the frames read ahead behind: refused.
    let (carrier, _carrier_peer) = pipe(true).unwrap();
    assert!(carrier.send(&b).is_err());
    let mut unused = FrameReader::default();
    assert_eq!(b.try_recv_frame(&mut unused).unwrap().unwrap().0, [1; 10]);
    assert_eq!(b.recv_bytes_timeout(LONG).unwrap(), [2; 10]);
    // All taken: nothing is ready, and the end may go.
    assert!(!b.poll_timeout(Duration::ZERO).unwrap());
    assert!(wait_timeout(&ends, Duration::ZERO).unwrap().is_empty());
    carrier.send(&b).unwrap();
    drop(Fd::from(b.into_fd()));
}

/// Two threads receive on one end: the second waits for the first to give the receive
/// record back, and is woken when it does (the record is given back without a wake-up
/// only when nobody waits).
#[test]
fn a_receiver_waiting_for_its_turn_is_woken_when_the_other_is_done() {
    let (a, b) = pipe(true).unwrap();
    let b = std::sync::Arc::new(b);
    let receivers: Vec<_> = (0..2)
        .map(|_| {
            let b = std::sync::Arc::clone(&b);
            std::thread::spawn(move || b.recv_bytes_timeout(LONG).map(|bytes| bytes.len()))
        })
        .collect();
    // Both are (most likely) waiting now: one in the read, one for the record.
    std::thread::sleep(Duration::from_millis(200));
    a.send_bytes(&[1; 10]).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    a.send_bytes(&[2; 20]).unwrap();
    let mut lens = within(move || {
        receivers
            .into_iter()
            .map(|r| r.join().unwrap().unwrap())
            .collect::<Vec<_>>()
    });
    lens.sort_unstable();
    assert_eq!(lens, [10, 20]);
}

/// A receive with no deadline that has to wait, whether its descriptor is in blocking
/// mode or not: frames that come later arrive whole, in order, with their descriptors,
/// through a socket pair and through a pipe. The sender waits long enough for the
/// receiver to be past its looks and blocked.
#[test]
fn a_receive_without_a_deadline_waits_in_either_mode() {
    for nonblocking in [false, true] {
        for duplex in [true, false] {
            let (receiver, sender) = pipe(duplex).unwrap();
            receiver.set_nonblocking(nonblocking).unwrap();
            let (large, small, fds) = within(move || {
                let writer = std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(50));
                    sender.send_bytes(&pattern(100_000, 3)).unwrap();
                    std::thread::sleep(Duration::from_millis(20));
                    let file = marked_file(b"later");
                    let fds = if duplex { vec![file] } else { Vec::new() };
                    sender.send_frame(b"small", &fds).unwrap();
                    sender
                });
                let large = receiver.recv_bytes().unwrap();
                let (small, fds) = receiver.recv_frame().unwrap();
                drop(writer.join().unwrap());
                (large, small, fds.len())
            });
            let case = format!("duplex {duplex}, non-blocking {nonblocking}");
            assert_eq!(large, pattern(100_000, 3), "{case}");
            assert_eq!(small, b"small", "{case}");
            assert_eq!(fds, usize::from(duplex), "{case}");
        }
    }
}

/// Both sides of the contiguous-send size (a frame of up to 4 KiB + 16 bytes, header
/// included, without descriptors, is copied into one buffer and sent with `send`; a
/// larger one, or one with descriptors, goes with `sendmsg` in two pieces): frames of
/// every kind arrive whole and in order, with their own descriptors, while the sender
/// runs far ahead of a receiver that starts late (so sends block, and a socket buffer
/// short of room takes part of a frame).
#[test]
fn frames_on_both_sides_of_the_contiguous_send_size_arrive_whole() {
    const CONTIGUOUS: usize = 4096;
    let lens = [0, 1, CONTIGUOUS - 1, CONTIGUOUS, CONTIGUOUS + 1, 8192];
    let (a, b) = pipe(true).unwrap();
    let rounds = 200;
    let sender = std::thread::spawn(move || {
        for round in 0..rounds {
            for (i, &len) in lens.iter().enumerate() {
                let seed = (round * lens.len() + i) as u8;
                let fds = if (round + i) % 7 == 0 {
                    vec![marked_file(format!("{round}/{len}").as_bytes())]
                } else {
                    Vec::new()
                };
                a.send_frame(&pattern(len, seed), &fds).unwrap();
            }
        }
        a
    });
    std::thread::sleep(Duration::from_millis(200));
    let got = within(move || {
        (0..rounds * lens.len())
            .map(|_| b.recv_frame().unwrap())
            .collect::<Vec<_>>()
    });
    let _a = sender.join().unwrap();
    for (n, (bytes, fds)) in got.into_iter().enumerate() {
        let (round, i) = (n / lens.len(), n % lens.len());
        let len = lens[i];
        assert!(
            bytes == pattern(len, n as u8),
            "frame {n} ({len} bytes) arrived changed"
        );
        let texts: Vec<String> = fds.into_iter().map(text_of).collect();
        if (round + i) % 7 == 0 {
            assert_eq!(texts, [format!("{round}/{len}")], "frame {n}");
        } else {
            assert!(texts.is_empty(), "frame {n} got descriptors: {texts:?}");
        }
    }
}
