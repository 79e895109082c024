//! The ring alone, in one process: chunking and wrap-around, streaming through a small
//! ring, maxsize, timeouts that withdraw a half-written message, and the recovery after
//! a writer or reader that died holding its lock (a thread that ends holding a robust
//! mutex is reported exactly as a dead process is).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::*;

const LONG: Duration = Duration::from_secs(60);

fn ring(capacity: usize, maxsize: u64) -> Ring {
    Ring::create(Options {
        capacity,
        maxsize,
        max_message: 1 << 30,
        type_tag: 7,
    })
    .unwrap()
}

/// A message whose bytes say which message it is and how long it is.
fn message(id: u32, len: usize) -> Vec<u8> {
    (0..len).map(|i| (id as usize * 31 + i * 7) as u8).collect()
}

fn get(ring: &Ring, deadline: Deadline) -> Result<Vec<u8>, Refused> {
    let mut out = Vec::new();
    ring.get(deadline, &mut out).map(|()| out)
}

/// Writes a whole chunk, header and payload, as a writer in the middle of its work.
///
/// # Safety
///
/// As for [`Ring::write_at`], for the chunk's bytes.
unsafe fn write_chunk(ring: &Ring, pos: u64, flags: u32, payload: &[u8], total: u64) {
    // SAFETY: our caller's promise covers the header and the payload after it.
    unsafe {
        ring.write_header(pos, flags, payload.len() as u64, total);
        ring.write_at(pos + HEADER, payload);
    }
}

fn soon() -> Deadline {
    Deadline::after(Some(LONG))
}

#[test]
fn messages_of_every_size_come_out_whole_and_in_order_across_the_wrap() {
    let ring = ring(4096, 0);
    let sizes = [0usize, 1, 15, 16, 17, 100, 1000, 2000, 3, 4000, 7, 1500];
    for round in 0..20u32 {
        for (i, &len) in sizes.iter().enumerate() {
            let id = round * 100 + i as u32;
            // Sizes that fit whole go one at a time; the ring wraps many times over.
            ring.put(&message(id, len), soon()).unwrap();
            assert_eq!(get(&ring, soon()).unwrap(), message(id, len), "len {len}");
        }
    }
    assert_eq!(ring.len(), 0);
}

#[test]
fn a_message_larger_than_the_ring_streams_through_it() {
    let ring = ring(4096, 0);
    let big = message(1, 100_000);
    std::thread::scope(|s| {
        s.spawn(|| ring.put(&big, soon()).unwrap());
        assert_eq!(get(&ring, soon()).unwrap(), big);
    });
    // And many of them, both ways at once, with small ones between.
    std::thread::scope(|s| {
        s.spawn(|| {
            for id in 0..50 {
                let len = if id % 3 == 0 {
                    9000 + id as usize
                } else {
                    id as usize
                };
                ring.put(&message(id, len), soon()).unwrap();
            }
        });
        for id in 0..50 {
            let len = if id % 3 == 0 {
                9000 + id as usize
            } else {
                id as usize
            };
            assert_eq!(get(&ring, soon()).unwrap(), message(id, len));
        }
    });
}

#[test]
fn many_writers_and_readers_lose_and_duplicate_nothing() {
    let ring = ring(8192, 0);
    let mut got: Vec<Vec<u8>> = std::thread::scope(|s| {
        for w in 0..3u32 {
            let ring = &ring;
            s.spawn(move || {
                for i in 0..200u32 {
                    let id = w * 1000 + i;
                    ring.put(&message(id, (id as usize * 37) % 5000), soon())
                        .unwrap();
                }
            });
        }
        let readers: Vec<_> = (0..3)
            .map(|_| {
                s.spawn(|| {
                    (0..200)
                        .map(|_| get(&ring, soon()).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        readers
            .into_iter()
            .flat_map(|r| r.join().unwrap())
            .collect()
    });
    let mut sent: Vec<Vec<u8>> = (0..3u32)
        .flat_map(|w| (0..200u32).map(move |i| w * 1000 + i))
        .map(|id| message(id, (id as usize * 37) % 5000))
        .collect();
    got.sort();
    sent.sort();
    assert_eq!(got, sent);
}

#[test]
fn try_forms_never_wait_and_maxsize_is_kept() {
    let ring = ring(4096, 2);
    assert!(matches!(get(&ring, now()), Err(Refused::Busy)));
    ring.put(b"a", now()).unwrap();
    ring.put(b"b", now()).unwrap();
    assert_eq!(ring.len(), 2);
    assert!(matches!(ring.put(b"c", now()), Err(Refused::Busy)));
    let start = Instant::now();
    let timeout = Deadline::after(Some(Duration::from_millis(30)));
    assert!(matches!(ring.put(b"c", timeout), Err(Refused::Busy)));
    assert!(start.elapsed() >= Duration::from_millis(30));
    assert_eq!(get(&ring, now()).unwrap(), b"a");
    ring.put(b"c", now()).unwrap();
    assert_eq!(ring.len(), 2);

    // Bytes: an unbounded ring without room says Busy to a try, and a message larger
    // than the ring can never be put without waiting.
    let ring = super::Ring::create(Options {
        capacity: 4096,
        maxsize: 0,
        max_message: 1 << 20,
        type_tag: 0,
    })
    .unwrap();
    ring.put(&[0; 3000], now()).unwrap();
    assert!(matches!(ring.put(&[0; 2000], now()), Err(Refused::Busy)));
    assert!(matches!(ring.put(&[0; 9000], now()), Err(Refused::Busy)));
    assert!(matches!(
        ring.put(&[0; 2 << 20], now()),
        Err(Refused::Failed(QueueError::MessageTooLarge { .. }))
    ));
}

#[test]
fn a_put_that_times_out_mid_stream_withdraws_its_message() {
    let ring = ring(4096, 0);
    let big = message(1, 20_000);
    let timeout = Deadline::after(Some(Duration::from_millis(50)));
    // Nobody reads: the first pieces go in, then the put gives up.
    assert!(matches!(ring.put(&big, timeout), Err(Refused::Busy)));
    assert!(ring.writer().open.load(Ordering::Relaxed) == 0);
    assert_eq!(ring.len(), 0);
    // The withdrawn pieces still fill the ring: the next put needs a reader to drop them.
    std::thread::scope(|s| {
        s.spawn(|| ring.put(b"next", soon()).unwrap());
        assert_eq!(get(&ring, soon()).unwrap(), b"next");
    });
    assert!(matches!(get(&ring, now()), Err(Refused::Busy)));
}

#[test]
fn close_lets_readers_drain_then_refuses() {
    let ring = ring(4096, 0);
    ring.put(b"last", soon()).unwrap();
    ring.close();
    assert!(matches!(ring.put(b"late", soon()), Err(Refused::Closed)));
    assert_eq!(get(&ring, soon()).unwrap(), b"last");
    assert!(matches!(get(&ring, soon()), Err(Refused::Closed)));
    assert!(matches!(get(&ring, now()), Err(Refused::Closed)));

    // A reader asleep is woken by the close.
    let ring = self::ring(4096, 0);
    std::thread::scope(|s| {
        let reader = s.spawn(|| get(&ring, Deadline::NEVER));
        std::thread::sleep(Duration::from_millis(20));
        ring.close();
        assert!(matches!(reader.join().unwrap(), Err(Refused::Closed)));
    });
}

/// Takes the write lock on a thread that then ends holding it, after `work`: the robust
/// mutex reports that owner dead to the next holder, as for a killed process.
fn die_holding(mutex: &RawMutex, work: impl FnOnce() + Send) {
    std::thread::scope(|s| {
        s.spawn(|| {
            std::mem::forget(lock(mutex, soon()).unwrap());
            work();
        });
    });
}

#[test]
fn a_writer_that_dies_mid_message_leaves_it_aborted() {
    let ring = ring(4096, 0);
    ring.put(b"before", soon()).unwrap();
    // A writer publishes the first piece of a long message and dies.
    die_holding(&ring.write_lock, || {
        let head = ring.writer().pos.load(Ordering::Relaxed);
        // SAFETY: this thread holds the write lock, and the ring has room.
        unsafe { write_chunk(&ring, head, FIRST, &[9; 1024], 100_000) };
        commit(ring.writer(), head + span(1024), 1, true);
    });
    assert_eq!(get(&ring, soon()).unwrap(), b"before");
    // The next writer repairs it before putting its own.
    ring.put(b"after", soon()).unwrap();
    assert_eq!(get(&ring, soon()).unwrap(), b"after");
    assert_eq!(ring.len(), 0);
}

#[test]
fn a_reader_waiting_on_a_dead_writers_message_repairs_it_itself() {
    let ring = ring(4096, 0);
    std::thread::scope(|s| {
        let reader = s.spawn(|| get(&ring, soon()));
        die_holding(&ring.write_lock, || {
            let head = ring.writer().pos.load(Ordering::Relaxed);
            // SAFETY: this thread holds the write lock, and the ring has room.
            unsafe { write_chunk(&ring, head, FIRST, &[1; 512], 10_000) };
            commit(ring.writer(), head + span(512), 0, true);
            wake_all(&ring.signals().data_seq);
        });
        // No other writer comes: within a slice the reader sees the lock free and the
        // message open, aborts it, and waits on for a real one.
        std::thread::sleep(SLICE * 3);
        ring.put(b"real", soon()).unwrap();
        assert_eq!(reader.join().unwrap().unwrap(), b"real");
    });
}

#[test]
fn a_writer_that_dies_while_committing_has_its_message_rolled_forward() {
    let ring = ring(4096, 0);
    die_holding(&ring.write_lock, || {
        let writer = ring.writer();
        let head = writer.pos.load(Ordering::Relaxed);
        // SAFETY: this thread holds the write lock, and the ring has room.
        unsafe { write_chunk(&ring, head, FIRST | LAST, b"whole", 5) };
        // The commit's record is written, and nothing after it.
        writer.pend_pos.store(head + span(5), Ordering::Relaxed);
        writer.pend_msgs.store(1, Ordering::Relaxed);
        writer.pend_open.store(0, Ordering::Relaxed);
        writer.pending.store(1, Ordering::Release);
    });
    assert_eq!(ring.len(), 0, "not published yet");
    ring.put(b"second", soon()).unwrap();
    assert_eq!(get(&ring, soon()).unwrap(), b"whole");
    assert_eq!(get(&ring, soon()).unwrap(), b"second");
}

#[test]
fn a_reader_that_dies_mid_message_takes_only_that_message() {
    let ring = ring(4096, 0);
    let big = message(3, 30_000);
    std::thread::scope(|s| {
        s.spawn(|| {
            ring.put(&big, soon()).unwrap();
            ring.put(b"small", soon()).unwrap();
        });
        // A reader consumes the first piece of the big message and dies.
        die_holding(&ring.read_lock, || {
            let reader = ring.reader();
            let tail = reader.pos.load(Ordering::Relaxed);
            let head = loop {
                let head = ring.head(tail, true).unwrap();
                if head > tail {
                    break head;
                }
                std::thread::yield_now();
            };
            let mut header = [0u8; 16];
            // SAFETY: this thread holds the read lock and a chunk is published.
            unsafe { ring.read_at(tail, header.as_mut_ptr(), 16) };
            let len = u64::from(u32::from_le_bytes(header[..4].try_into().unwrap()));
            assert!(span(len) <= head - tail);
            commit(reader, tail + span(len), 0, true);
            wake_all(&ring.signals().space_seq);
        });
        // The next reader skips the rest of it (waiting for the writer to stream it).
        assert_eq!(get(&ring, soon()).unwrap(), b"small");
    });
    assert_eq!(ring.len(), 0);
}

#[test]
fn a_reader_that_dies_before_committing_leaves_the_message_to_the_next() {
    let ring = ring(4096, 0);
    ring.put(b"kept", soon()).unwrap();
    die_holding(&ring.read_lock, || {
        let mut out = [0u8; 20];
        // SAFETY: this thread holds the read lock and the message is published.
        unsafe { ring.read_at(0, out.as_mut_ptr(), 20) };
    });
    assert_eq!(get(&ring, soon()).unwrap(), b"kept");
}

#[test]
fn a_corrupted_header_is_an_error_not_a_panic() {
    let ring = ring(4096, 0);
    ring.put(b"x", soon()).unwrap();
    // SAFETY: nobody else uses this ring; overwrite the published chunk's length.
    unsafe { std::ptr::write_bytes(ring.data(), 0xff, 4) };
    assert!(matches!(
        get(&ring, now()),
        Err(Refused::Failed(QueueError::Corrupted(_)))
    ));
    // And a head gone wild.
    ring.writer().pos.store(1 << 40, Ordering::SeqCst);
    ring.reader().other.store(0, Ordering::Relaxed);
    assert!(matches!(
        get(&ring, now()),
        Err(Refused::Failed(QueueError::Corrupted(_)))
    ));
}

#[test]
fn task_done_and_join_count_published_messages() {
    let ring = ring(4096, 0);
    assert!(!ring.task_done());
    assert!(ring.join(now()).unwrap());
    ring.put(b"1", soon()).unwrap();
    ring.put(b"2", soon()).unwrap();
    assert_eq!(ring.unfinished(), 2);
    assert!(
        !ring
            .join(Deadline::after(Some(Duration::from_millis(10))))
            .unwrap()
    );
    std::thread::scope(|s| {
        let joiner = s.spawn(|| ring.join(Deadline::after(Some(LONG))).unwrap());
        for _ in 0..2 {
            get(&ring, soon()).unwrap();
            assert!(ring.task_done());
        }
        assert!(joiner.join().unwrap());
    });
    assert!(!ring.task_done());
}

#[test]
fn attach_refuses_what_is_not_a_queue_of_the_type() {
    let ring = ring(4096, 0);
    let (bytes, fds) = crate::handle::encode(ring.shm()).unwrap();
    let shm: SharedMemory = crate::handle::decode(&bytes, fds).unwrap();
    assert!(matches!(
        Ring::attach(shm, 8, "u8"),
        Err(Error::InvalidQueue(m)) if m.contains("u8")
    ));
    let plain = SharedMemory::new(8192).unwrap();
    assert!(matches!(
        Ring::attach(plain, 7, "x"),
        Err(Error::InvalidQueue(_))
    ));
    let tiny = SharedMemory::new(100).unwrap();
    assert!(matches!(
        Ring::attach(tiny, 7, "x"),
        Err(Error::InvalidQueue(_))
    ));
}

#[test]
fn a_message_longer_than_a_piece_goes_in_pieces_and_comes_out_whole() {
    let ring = ring(1 << 20, 0);
    let piece = ring.piece();
    assert_eq!(piece, 256 << 10, "a quarter of the ring");
    let long = message(3, 600 << 10);
    // It fits: a try_put writes it at once, in pieces, without waiting.
    ring.put(&long, now()).unwrap();
    ring.put(&message(4, 10), now()).unwrap();
    assert_eq!(
        first_chunk(&ring),
        (piece, FIRST),
        "the first piece, not the whole"
    );
    assert_eq!(get(&ring, now()).unwrap(), long);
    assert_eq!(get(&ring, now()).unwrap(), message(4, 10));
    // And streamed through the ring while a reader takes the pieces.
    let longer = message(5, 3 << 20);
    std::thread::scope(|s| {
        s.spawn(|| ring.put(&longer, soon()).unwrap());
        assert_eq!(get(&ring, soon()).unwrap(), longer);
    });
}

/// The first chunk's payload length and flags, for a ring whose first message starts at
/// position 0.
fn first_chunk(ring: &Ring) -> (u64, u32) {
    let mut header = [0u8; HEADER as usize];
    // SAFETY: nothing else uses the ring; the first chunk begins at position 0.
    unsafe { ring.read_at(0, header.as_mut_ptr(), header.len()) };
    (
        u64::from(u32::from_le_bytes(header[..4].try_into().unwrap())),
        u32::from_le_bytes(header[4..8].try_into().unwrap()),
    )
}

#[test]
fn a_message_of_a_piece_goes_whole_and_one_byte_more_goes_in_pieces() {
    // A quarter of a large ring, and the 64 KiB floor of a small one.
    for (capacity, piece) in [(1usize << 20, 256u64 << 10), (128 << 10, MIN_PIECE)] {
        let probe = ring(capacity, 0);
        assert_eq!(probe.piece(), piece, "ring of {capacity}");
        for len in [piece - 1, piece, piece + 1] {
            let ring = ring(capacity, 0);
            let m = message(len as u32, len as usize);
            ring.put(&m, now()).unwrap();
            let expected = if len <= piece {
                (len, FIRST | LAST)
            } else {
                (piece, FIRST)
            };
            assert_eq!(
                first_chunk(&ring),
                expected,
                "ring of {capacity}, message of {len}"
            );
            assert_eq!(
                get(&ring, now()).unwrap(),
                m,
                "ring of {capacity}, message of {len}"
            );
        }
    }
}

/// [`Ring::get_with`]: the bytes `stream` read, or `out`'s for a message of one chunk;
/// `true` if it came through `stream`.
fn get_streamed(ring: &Ring, read_size: usize) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let streamed = ring
        .get_with(soon(), &mut out, |pieces| {
            let mut got = Vec::new();
            let mut buf = vec![0u8; read_size];
            loop {
                match std::io::Read::read(pieces, &mut buf).unwrap() {
                    0 => break got,
                    n => got.extend_from_slice(&buf[..n]),
                }
            }
        })
        .unwrap();
    match streamed {
        Some(got) => (got, true),
        None => (out, false),
    }
}

#[test]
fn a_message_of_a_piece_is_copied_out_whole_and_a_longer_one_is_read_in_pieces() {
    let ring = ring(1 << 20, 0);
    let piece = ring.piece() as usize;
    std::thread::scope(|s| {
        // A busy writer keeps the ring full, so every read races a write.
        s.spawn(|| {
            for round in 0..4u32 {
                for len in [piece - 1, piece, piece + 1, 3 * piece + 5] {
                    ring.put(&message(round, len), soon()).unwrap();
                }
            }
        });
        for round in 0..4u32 {
            for len in [piece - 1, piece, piece + 1, 3 * piece + 5] {
                // Reads of odd sizes straddle the chunks' edges.
                let (got, streamed) = get_streamed(&ring, 7 + 4093 * round as usize);
                assert_eq!(got, message(round, len), "len {len}");
                assert_eq!(streamed, len > piece, "len {len}");
            }
        }
    });
    assert_eq!(ring.len(), 0);
}

#[test]
fn a_reader_that_stops_early_skips_the_rest_of_its_message() {
    let ring = ring(4096, 0);
    let long = message(1, 100_000);
    std::thread::scope(|s| {
        s.spawn(|| {
            ring.put(&long, soon()).unwrap();
            ring.put(&message(2, 10), soon()).unwrap();
        });
        let mut out = Vec::new();
        let head = ring
            .get_with(soon(), &mut out, |pieces| {
                let mut buf = [0u8; 10];
                std::io::Read::read_exact(pieces, &mut buf).map(|()| buf)
            })
            .unwrap();
        assert_eq!(head.unwrap().unwrap()[..], long[..10]);
        assert_eq!(get(&ring, soon()).unwrap(), message(2, 10));
    });
    assert_eq!(ring.len(), 0);
}

#[test]
fn a_message_aborted_while_it_is_read_in_pieces_gives_way_to_the_next() {
    let ring = ring(4096, 0);
    std::thread::scope(|s| {
        s.spawn(|| {
            // The reader stalls after a first read: this put runs out of time mid-stream.
            let deadline = Deadline::after(Some(Duration::from_millis(50)));
            assert!(matches!(
                ring.put(&message(1, 100_000), deadline),
                Err(Refused::Busy)
            ));
            ring.put(&message(2, 10), soon()).unwrap();
        });
        let mut out = Vec::new();
        let mut tries = 0;
        let streamed = ring
            .get_with(soon(), &mut out, |pieces| {
                tries += 1;
                let mut buf = [0u8; 100];
                std::io::Read::read_exact(pieces, &mut buf).unwrap();
                std::thread::sleep(Duration::from_millis(500));
                std::io::Read::read_to_end(pieces, &mut Vec::new())
            })
            .unwrap();
        assert_eq!(
            (streamed.is_none(), tries),
            (true, 1),
            "the abort was skipped"
        );
        assert_eq!(out, message(2, 10));
    });
    assert_eq!(ring.len(), 0);
}

#[test]
fn a_writer_asleep_for_room_is_woken_once_per_half_ring_not_per_piece() {
    // A slow reader takes a long message piece by piece; the writer, its ring full,
    // sleeps between pieces. Woken for every piece the reader frees (16 of them), it
    // would take turns with the reader; it is woken only when half the ring is free.
    let ring = ring(1 << 20, 0);
    let piece = ring.piece() as usize;
    let long = message(8, 16 * piece);
    let woken_before = ring.signals().space_seq.load(Ordering::SeqCst);
    std::thread::scope(|s| {
        s.spawn(|| ring.put(&long, soon()).unwrap());
        let mut out = Vec::new();
        let got = ring
            .get_with(soon(), &mut out, |pieces| {
                let mut got = Vec::new();
                let mut buf = vec![0u8; piece / 4];
                loop {
                    // Slow enough that the writer is asleep whenever room is freed.
                    std::thread::sleep(Duration::from_millis(2));
                    match std::io::Read::read(pieces, &mut buf).unwrap() {
                        0 => break got,
                        n => got.extend_from_slice(&buf[..n]),
                    }
                }
            })
            .unwrap();
        assert!(got == Some(long.clone()), "the message differs");
    });
    let wakes = ring
        .signals()
        .space_seq
        .load(Ordering::SeqCst)
        .wrapping_sub(woken_before);
    assert!(
        wakes <= 10,
        "the writer was woken {wakes} times for 16 pieces through a ring of 4"
    );
}
