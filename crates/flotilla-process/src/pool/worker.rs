//! A pool worker: the protocol between a pool and its worker processes, and the worker's
//! loop.
//!
//! The pool sends request frames on the worker's connection, the worker answers each
//! task it runs with one response frame, in order; handles in arguments and results
//! travel as descriptors beside the frames. Tasks are named like spawn targets: an entry
//! offset in this same binary (the worker was started by spawn or forkserver, which
//! checked the binary's fingerprint).
//!
//! A task sent while the worker is busy (or still starting) is *held*: the worker reads
//! it when it is free, then waits for the pool's decision on it, which the pool writes in
//! a word of shared memory beside the connection (a [`Gate`]): go, and the pool has
//! marked it running; skip, and it was cancelled meanwhile (no answer is sent for it).
//! So a task is running only once its worker starts it, and one waiting in a pipeline
//! can still be cancelled. The decision costs no frame: the pool makes it as it reads
//! the answer to the task before (one atomic store, and a futex wake only when the
//! worker already sleeps on the word), and the worker usually finds it made when it
//! looks.
//!
//! # Frames
//!
//! A frame is a task's payload as the codec encoded it (arguments one way, the value
//! or a message the other), followed by a fixed trailer: for a request the entry
//! (8 bytes, little-endian), a held task's sequence number (4 bytes, little-endian; 0
//! when it runs at once) and a kind byte (run now, or held), for a response a kind
//! byte. A trailer rather than an envelope type, because the payload then crosses with
//! no re-encoding — the codec writes a `Vec<u8>` field byte by byte, which cost more
//! than the rest of a small task's trip — and appending to the codec's buffer is free.
//! (The manager sends a copy, keeping the original to send again should the worker die
//! before it starts the task.)
//!
//! # The gate word
//!
//! One `u32` in shared memory per worker: bits 31..2 hold the sequence number (counted
//! by the pool from 1, modulo 2^30, in the order it sends held tasks; the request
//! carries it) of the last held task decided, bit 1 whether it may go, bit 0 that the worker sleeps on the word
//! (so the pool wakes it). The pool decides held tasks in order, and decides the next
//! only once the one before is skipped or answered; so a worker that finds a later
//! task decided than the one it holds knows its own was skipped.

use std::os::fd::{AsFd, OwnedFd};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use flotilla_ipc::handle::Fd;
use flotilla_ipc::{Connection, Value};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use serde::{Deserialize, Serialize};

use crate::boot::{self, EntryResult};

/// The kind byte of a request: run the entry on the payload now.
const TASK: u8 = 0x54;
/// The kind byte of a request that waits in the worker's pipeline: run it only when the
/// pool's [`Gate`] says go.
const HELD: u8 = 0x48;

/// Appends a task request's trailer to its encoded arguments: the frame to send.
pub(super) fn task_frame(mut args: Vec<u8>, entry: usize) -> Vec<u8> {
    args.extend_from_slice(&(entry as u64).to_le_bytes());
    args.extend_from_slice(&0u32.to_le_bytes());
    args.push(TASK);
    args
}

/// A copy of a request frame made by [`task_frame`], to run at once or, when `held` (with
/// its sequence number), to wait for the pool's decision.
pub(super) fn request_frame(frame: &[u8], held: Option<u32>) -> Vec<u8> {
    let mut frame = frame.to_vec();
    let len = frame.len();
    if len >= TRAILER {
        let (kind, seq) = match held {
            Some(seq) => (HELD, seq),
            None => (TASK, 0),
        };
        frame[len - 5..len - 1].copy_from_slice(&seq.to_le_bytes());
        frame[len - 1] = kind;
    }
    frame
}

/// The bytes a request frame adds after the arguments: entry, sequence number, kind.
const TRAILER: usize = 8 + 4 + 1;

/// Splits a request frame into its entry, its arguments, and, when it is held, its
/// sequence number; `None` when it is malformed.
fn parse_task(mut frame: Vec<u8>) -> Option<(usize, Vec<u8>, Option<u32>)> {
    if frame.len() < TRAILER {
        return None;
    }
    let at = frame.len() - TRAILER;
    let trailer = &frame[at..];
    let entry = u64::from_le_bytes(trailer[..8].try_into().ok()?);
    let seq = u32::from_le_bytes(trailer[8..12].try_into().ok()?);
    let held = match trailer[12] {
        TASK => None,
        HELD => Some(seq),
        _ => return None,
    };
    frame.truncate(at);
    Some((usize::try_from(entry).ok()?, frame, held))
}

/// The pool's decisions on a worker's held tasks: a word in shared memory (see the
/// module docs).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Gate {
    word: Value<u32>,
}

impl Gate {
    /// Bit 0: the worker sleeps on the word.
    const SLEEPING: u32 = 1;
    /// Bit 1: the task may go.
    const GO: u32 = 2;
    /// Sequence numbers have 30 bits.
    const SEQ: u32 = u32::MAX >> 2;
    /// Looks at the word this many times before sleeping on it: the decision is usually
    /// on its way.
    const SPINS: u32 = 200;
    /// How often a sleeping worker checks that the pool is still there.
    const CHECK: Duration = Duration::from_millis(200);

    /// A new gate, with nothing decided.
    pub(super) fn new() -> Result<Gate, flotilla_ipc::Error> {
        Ok(Gate {
            word: Value::raw(0)?,
        })
    }

    /// The pool's side: decides held task `seq` (and so skips every earlier one the
    /// worker has not seen decided), waking the worker if it sleeps on the word.
    pub(super) fn decide(&self, seq: u32, go: bool) {
        let word = ((seq & Self::SEQ) << 2) | if go { Self::GO } else { 0 };
        if self.word.swap(word) & Self::SLEEPING != 0 {
            let _ = self.word.wake_all();
        }
    }

    /// The worker's side: waits for the decision on held task `seq`: `Some(true)` go,
    /// `Some(false)` skip, `None` when the pool closed the connection meanwhile.
    fn wait(&self, seq: u32, conn: &Connection) -> Option<bool> {
        let mut spins = 0;
        loop {
            let word = self.word.load();
            let ahead = (word >> 2).wrapping_sub(seq) & Self::SEQ;
            if ahead == 0 {
                return Some(word & Self::GO != 0);
            }
            if ahead <= Self::SEQ / 2 {
                return Some(false); // a later task is decided: this one was skipped
            }
            if spins < Self::SPINS {
                spins += 1;
                std::hint::spin_loop();
                continue;
            }
            let sleeping = word | Self::SLEEPING;
            if word != sleeping && self.word.compare_exchange(word, sleeping).is_err() {
                continue;
            }
            if !matches!(
                self.word.wait_while_timeout(sleeping, Self::CHECK),
                Ok(true)
            ) && pool_gone(conn)
            {
                return None;
            }
        }
    }
}

/// True when the pool has closed its end of `conn` (its manager is gone).
fn pool_gone(conn: &Connection) -> bool {
    let mut fds = [PollFd::new(conn.as_fd(), PollFlags::empty())];
    match poll(&mut fds, PollTimeout::ZERO) {
        Ok(_) => fds[0]
            .revents()
            .is_some_and(|got| got.intersects(PollFlags::POLLHUP | PollFlags::POLLERR)),
        Err(_) => false,
    }
}

/// From a worker to the pool, one per request, in order.
#[derive(Debug, PartialEq)]
pub(super) enum Response {
    /// The encoded value (descriptors beside the frame).
    Done(Vec<u8>),
    /// The task panicked, with its message.
    Panicked(String),
    /// The arguments or the value could not be decoded or encoded.
    Failed(String),
    /// The initializer failed; the worker ends after sending this.
    InitFailed(String),
    /// The initializer ran; tasks may come. Sent once, first.
    Ready,
}

impl Response {
    const DONE: u8 = 0x44;
    const PANICKED: u8 = 0x50;
    const FAILED: u8 = 0x46;
    const INIT_FAILED: u8 = 0x49;
    const READY: u8 = 0x52;

    /// The frame that carries this response.
    pub(super) fn into_frame(self) -> Vec<u8> {
        let (mut bytes, kind) = match self {
            Response::Done(value) => (value, Self::DONE),
            Response::Panicked(message) => (message.into_bytes(), Self::PANICKED),
            Response::Failed(message) => (message.into_bytes(), Self::FAILED),
            Response::InitFailed(message) => (message.into_bytes(), Self::INIT_FAILED),
            Response::Ready => (Vec::new(), Self::READY),
        };
        bytes.push(kind);
        bytes
    }

    /// The response a frame carries; `None` when it is malformed.
    pub(super) fn from_frame(mut frame: Vec<u8>) -> Option<Response> {
        let text = |bytes: Vec<u8>| String::from_utf8_lossy(&bytes).into_owned();
        Some(match frame.pop()? {
            Self::DONE => Response::Done(frame),
            Self::PANICKED => Response::Panicked(text(frame)),
            Self::FAILED => Response::Failed(text(frame)),
            Self::INIT_FAILED => Response::InitFailed(text(frame)),
            Self::READY if frame.is_empty() => Response::Ready,
            _ => return None,
        })
    }
}

/// A worker's start-up arguments.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct WorkerArgs {
    pub(super) conn: Connection,
    /// Where the pool writes its decisions on held tasks.
    pub(super) gate: Gate,
    /// The initializer's entry, encoded arguments and their descriptors.
    pub(super) init: Option<(usize, Vec<u8>, Vec<Fd>)>,
    /// How many tasks to run before exiting, so the pool replaces the worker.
    pub(super) max_tasks: Option<usize>,
}

/// The worker process's target.
pub(super) fn worker_main(args: WorkerArgs) {
    let WorkerArgs {
        conn,
        gate,
        init,
        max_tasks,
    } = args;
    // A task's panic goes back to the pool with its message, as Python's pools send an
    // exception back without printing it: the worker prints nothing of its own.
    std::panic::set_hook(Box::new(|_| {}));
    if let Some((entry, bytes, fds)) = init {
        let fds = fds.into_iter().map(Fd::into_inner).collect();
        if let Ok(Err(message)) | Err(message) = run(entry, &bytes, fds) {
            let _ = send(&conn, Response::InitFailed(message), &[]);
            return;
        }
    }
    if send(&conn, Response::Ready, &[]).is_err() {
        return;
    }
    let mut done = 0;
    while max_tasks.is_none_or(|max| done < max) {
        let Ok((bytes, fds)) = conn.recv_frame() else {
            return; // the pool closed our connection: time to go
        };
        let Some((entry, args, held)) = parse_task(bytes) else {
            return; // not the protocol: nothing can be trusted
        };
        if let Some(seq) = held {
            match gate.wait(seq, &conn) {
                Some(true) => {}
                Some(false) => continue, // cancelled while it waited: its fds close
                None => return,
            }
        }
        let sent = match run(entry, &args, fds) {
            Ok(Ok((value, fds))) => send(&conn, Response::Done(value), &fds),
            Ok(Err(message)) => send(&conn, Response::Failed(message), &[]),
            Err(message) => send(&conn, Response::Panicked(message), &[]),
        };
        if sent.is_err() {
            return;
        }
        done += 1;
    }
}

/// Runs the entry at `entry` on `args`: its outcome (the encoded value, or why the
/// arguments or the value could not be decoded or encoded), or its panic's message.
fn run(entry: usize, args: &[u8], fds: Vec<OwnedFd>) -> Result<EntryResult, String> {
    // SAFETY: the pool computed `entry` with `entry_of`/`entry_of_chunk` in a process
    // running this very binary: this worker was started by spawn or forkserver, whose
    // bootstrap checked the binary's fingerprint.
    let entry = unsafe { boot::entry_at(entry) };
    catch_unwind(AssertUnwindSafe(|| entry(args, fds)))
        .map_err(|payload| flotilla_core::panic_message(&*payload))
}

fn send(conn: &Connection, response: Response, fds: &[OwnedFd]) -> Result<(), flotilla_ipc::Error> {
    conn.send_frame(&response.into_frame(), fds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_garbage_is_refused() {
        let frame = task_frame(vec![1, 2, 3], 0xdead_beef);
        assert_eq!(
            parse_task(request_frame(&frame, Some(7))),
            Some((0xdead_beef, vec![1, 2, 3], Some(7)))
        );
        assert_eq!(
            parse_task(request_frame(&frame, None)),
            Some((0xdead_beef, vec![1, 2, 3], None))
        );
        assert_eq!(parse_task(frame), Some((0xdead_beef, vec![1, 2, 3], None)));
        assert_eq!(
            parse_task(task_frame(Vec::new(), 7)),
            Some((7, Vec::new(), None))
        );
        assert_eq!(parse_task(Vec::new()), None);
        assert_eq!(parse_task(vec![0; 5]), None);
        assert_eq!(parse_task(vec![TASK; 3]), None);
        assert_eq!(parse_task(vec![0; TRAILER]), None);
        for response in [
            Response::Done(vec![9; 100]),
            Response::Done(Vec::new()),
            Response::Panicked("boom".into()),
            Response::Failed("bad".into()),
            Response::InitFailed("init".into()),
            Response::Ready,
        ] {
            let expected = format!("{response:?}");
            let back = Response::from_frame(response.into_frame()).unwrap();
            assert_eq!(format!("{back:?}"), expected);
        }
        assert_eq!(Response::from_frame(Vec::new()), None);
        assert_eq!(Response::from_frame(vec![0]), None);
        assert_eq!(Response::from_frame(vec![1, Response::READY]), None);
    }

    #[test]
    fn the_gate_lets_go_skips_wakes_and_sees_a_pool_gone() {
        let (ours, theirs) = flotilla_ipc::pipe(true).unwrap();
        let gate = Gate::new().unwrap();
        gate.decide(1, true);
        assert_eq!(gate.wait(1, &theirs), Some(true));
        // Task 2 was skipped with no decision of its own: a later one is decided.
        gate.decide(3, false);
        assert_eq!(gate.wait(2, &theirs), Some(false));
        assert_eq!(gate.wait(3, &theirs), Some(false));
        // A decision made while the worker sleeps on the word wakes it.
        let pool = gate.clone();
        let decides = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            pool.decide(4, true);
        });
        assert_eq!(gate.wait(4, &theirs), Some(true));
        decides.join().unwrap();
        // Sequence numbers wrap.
        gate.decide(Gate::SEQ, true);
        assert_eq!(gate.wait(Gate::SEQ, &theirs), Some(true));
        gate.decide(1, true);
        assert_eq!(gate.wait(Gate::SEQ, &theirs), Some(false));
        // No decision comes once the pool has closed its end: the worker is told so.
        drop(ours);
        assert_eq!(gate.wait(2, &theirs), None);
    }
}
