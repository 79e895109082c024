//! Framing internals: what a raw peer can do to a connection; and handles while a
//! thread's locals are torn down.

use std::os::fd::AsFd;

use flotilla_core::testing::pin_to_cpu;

use crate::{Connection, RecvError, pipe};

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
        Err(RecvError::TooLarge { len, max: 1024 }) => assert_eq!(len, u64::MAX / 2),
        other => panic!("unexpected {other:?}"),
    }
    a.send_bytes(b"later").unwrap();
    assert!(matches!(b.recv_bytes(), Err(RecvError::Closed)));
}

#[test]
fn garbage_is_malformed() {
    let (a, b) = pipe(true).unwrap();
    raw_write(&a, b"GET / HTTP/1.1\r\n\r\n");
    assert!(matches!(b.recv_bytes(), Err(RecvError::Malformed(_))));
}

#[test]
fn a_frame_cut_short_is_a_truncated_frame_then_end_of_file() {
    let (a, b) = pipe(true).unwrap();
    let mut bytes = header(100, 0, b"FLT1");
    bytes.extend_from_slice(&[7; 10]);
    raw_write(&a, &bytes);
    drop(a);
    assert!(matches!(
        b.recv_bytes(),
        Err(RecvError::Truncated {
            part: "payload",
            got: 10,
            expected: 100
        })
    ));
    assert!(matches!(b.recv_bytes(), Err(RecvError::Disconnected)));
}

#[test]
fn a_frame_claiming_descriptors_it_lacks_is_malformed() {
    let (a, b) = pipe(true).unwrap();
    raw_write(&a, &header(0, 3, b"FLT1"));
    assert!(matches!(b.recv_bytes(), Err(RecvError::Malformed(_))));
}

/// What a thread-local destructor saw of `handle` while its thread's locals were being
/// torn down: a plain value round trip, and an attempt to encode a handle.
struct HandlesAtExit(std::sync::mpsc::Sender<(Result<u32, String>, bool)>);

impl Drop for HandlesAtExit {
    fn drop(&mut self) {
        let plain = crate::handle::encode(&7u32)
            .and_then(|(bytes, fds)| crate::handle::decode::<u32>(&bytes, fds))
            .map_err(|e| e.to_string());
        let shm = crate::SharedMemory::new(8).map(|shm| crate::handle::encode(&shm).is_err());
        let _ = self.0.send((plain, shm.unwrap_or(false)));
    }
}

thread_local! {
    static AT_EXIT: std::cell::RefCell<Option<HandlesAtExit>> = const { std::cell::RefCell::new(None) };
}

#[test]
fn handles_degrade_to_an_error_not_an_abort_while_thread_locals_are_torn_down() {
    // An exit handler that waits for a forkserver child decodes its exit status after
    // the main thread's locals are gone; a thread-local destructor is the same moment.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        AT_EXIT.with(|slot| *slot.borrow_mut() = Some(HandlesAtExit(tx)));
        // The handle module's locals, registered after AT_EXIT, are destroyed before it.
        let (bytes, fds) = crate::handle::encode(&1u32).unwrap();
        crate::handle::decode::<u32>(&bytes, fds).unwrap();
    })
    .join()
    .unwrap();
    let (plain, handle_refused) = rx.recv_timeout(std::time::Duration::from_secs(60)).unwrap();
    assert_eq!(plain, Ok(7), "values without handles still cross");
    assert!(handle_refused, "a handle is an error, not a panic");
}

/// Rounds of a message that comes `gap` after the echoing end's reply, until 20 rounds
/// in a row found the echoing end's wait for it not blocked (true), or 10 s passed
/// (false: a loaded machine preempts some rounds, so they are retried). The ends are
/// threads pinned to two CPUs. With `paused`, the echoing end puts itself in a pause
/// before each wait, as a contended yield does, and the test fails if the pause was
/// over before the wait ended.
fn rounds_until_twenty_did_not_block(gap: std::time::Duration, paused: bool) -> bool {
    use std::time::{Duration, Instant};
    let (a, b) = pipe(true).unwrap();
    let echo = std::thread::spawn(move || {
        pin_to_cpu(1);
        while let Ok(()) = b.recv::<()>() {
            if paused {
                flotilla_core::spin::pause_for(Duration::from_secs(60));
            }
            b.send(&()).unwrap();
            let before = crate::sys::BLOCKED_WAITS.get();
            if b.recv::<()>().is_err() {
                break;
            }
            let blocked = crate::sys::BLOCKED_WAITS.get() != before;
            let still_paused = !paused || flotilla_core::spin::paused();
            b.send(&(blocked, still_paused)).unwrap();
        }
    });
    pin_to_cpu(0);
    let give_up = Instant::now() + Duration::from_secs(10);
    let mut in_a_row = 0;
    while in_a_row < 20 && Instant::now() < give_up {
        a.send(&()).unwrap();
        a.recv_timeout::<()>(Duration::from_secs(30)).unwrap();
        let sent = Instant::now();
        while sent.elapsed() < gap {
            std::hint::spin_loop();
        }
        a.send(&()).unwrap();
        let (blocked, still_paused): (bool, bool) =
            a.recv_timeout(Duration::from_secs(30)).unwrap();
        assert!(still_paused, "the wait was to be made paused");
        in_a_row = if blocked { 0 } else { in_a_row + 1 };
    }
    drop(a);
    echo.join().unwrap();
    in_a_row == 20
}

/// Issue 15's slow mode on a connection: a receiver that blocked between messages let
/// its vCPU halt, and paid its wake-up (50-120 µs on a VM) for every message. A wait
/// polls before it blocks, so a message that comes 15 µs after the receiver's last reply
/// finds it still polling. The test fails if every round blocked.
#[test]
fn a_receiver_polls_before_it_blocks() {
    assert!(
        rounds_until_twenty_did_not_block(std::time::Duration::from_micros(15), false),
        "the receiver blocked between messages 15 µs apart in every round"
    );
}

/// A wait whose CPU is contended (paused after a yield that handed it to a busy
/// process) spins briefly before it blocks: where the two ends sit on different CPUs,
/// each beside a busy process, blocking made every wake-up wait for the woken end to
/// preempt that process (40-55 µs a round trip). Before the change a paused wait looked
/// once and blocked: every round blocked, for a message sent 5 µs after the reply.
#[test]
fn a_paused_receiver_spins_before_it_blocks() {
    assert!(
        rounds_until_twenty_did_not_block(std::time::Duration::from_micros(5), true),
        "a paused receiver blocked for a message 5 µs away in every round"
    );
}

/// A wait whose yield hands the CPU to another process (or thread) that wanted it stops
/// yielding, and the thread's waits spin briefly or block for a while: a poll that
/// yields to a busy neighbour would wait out its time slice, milliseconds, for every
/// message.
#[test]
fn a_wait_that_yields_to_a_busy_neighbour_stops_yielding() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;
    let stop = Arc::new(AtomicBool::new(false));
    let spinning = Arc::new(AtomicBool::new(false));
    let busy = {
        let (stop, spinning) = (Arc::clone(&stop), Arc::clone(&spinning));
        std::thread::spawn(move || {
            pin_to_cpu(0);
            spinning.store(true, Ordering::Release);
            while !stop.load(Ordering::Relaxed) {
                std::hint::spin_loop();
            }
        })
    };
    let waiter = std::thread::spawn(move || {
        pin_to_cpu(0);
        // Only once the busy thread is on CPU 0 is there anyone to yield to (it once
        // started late, on a loaded machine, and the yield came straight back).
        while !spinning.load(Ordering::Acquire) {
            std::thread::yield_now();
        }
        let (_a, b) = pipe(true).unwrap();
        flotilla_core::spin::unpause();
        // Nothing comes: the wait polls, yields to the busy thread for its slice, and
        // times out, well inside the pause that starts (5 ms at first). Not every
        // yield hands over the slice (on Linux 6.18 runs of them came straight back),
        // so give it a few waits.
        for _ in 0..50 {
            assert!(!b.poll_timeout(Duration::from_micros(100)).unwrap());
            if flotilla_core::spin::paused() {
                return true;
            }
        }
        false
    });
    let stopped_polling = waiter.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    busy.join().unwrap();
    assert!(
        stopped_polling,
        "a wait sharing its CPU with a busy thread kept yielding"
    );
}
