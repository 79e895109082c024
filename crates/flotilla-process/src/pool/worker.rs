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
//! Several requests may travel in one frame, a *batch*, so that one write carries the
//! tasks the pool hands a worker at once and one read takes them: the requests one
//! after the other, each preceded by its length (4 bytes, little-endian), then the kind
//! byte of a batch. Only requests without descriptors are batched (one with descriptors
//! travels alone, beside them), and only small ones (see [`BATCHED`]).
//!
//! # The gate word
//!
//! One `u32` in shared memory per worker: bits 31..3 hold the sequence number (counted
//! by the pool from 1, modulo 2^29, in the order it sends held tasks; the request
//! carries it) of the last held task decided, bit 2 that the worker has seen that
//! decision to go, bit 1 whether it may go, bit 0 that the worker sleeps on the word (so
//! the pool wakes it). The pool decides held tasks in order, and decides the next only
//! once the one before is skipped, answered, or seen to go; so a worker that finds a
//! later task decided than the one it holds knows its own was skipped. (A go not yet
//! seen must not be overwritten: the worker would take it for a skip. The pool takes a
//! task back from a pipeline for an idle worker only once the go before it was seen.)

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

/// The kind byte of a frame that carries several requests (see the module docs).
const BATCH: u8 = 0x42;

/// The largest request frame that goes in a batch; a larger one travels alone.
pub(super) const BATCHED: usize = 4 << 10;

/// The most bytes a batch collects before the next request starts another one.
pub(super) const BATCH_BYTES: usize = 32 << 10;

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
    let mut out = Vec::with_capacity(frame.len());
    push_request(&mut out, frame, held);
    out
}

/// Appends a copy of `frame` (made by [`task_frame`]) to `out`, marked to run at once or,
/// when `held`, to wait for the pool's decision.
fn push_request(out: &mut Vec<u8>, frame: &[u8], held: Option<u32>) {
    flotilla_core::copy::extend(out, frame);
    let len = out.len();
    if frame.len() >= TRAILER {
        let (kind, seq) = match held {
            Some(seq) => (HELD, seq),
            None => (TASK, 0),
        };
        out[len - 5..len - 1].copy_from_slice(&seq.to_le_bytes());
        out[len - 1] = kind;
    }
}

/// Appends request `frame` (made by [`task_frame`], marked as [`request_frame`] marks
/// it) to `batch`, a batch being built; [`seal_batch`] makes it a frame.
pub(super) fn batch_request(batch: &mut Vec<u8>, frame: &[u8], held: Option<u32>) {
    // A request is at most a frame, and frames that large are not batched.
    let len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
    batch.extend_from_slice(&len.to_le_bytes());
    push_request(batch, frame, held);
}

/// Ends a batch built with [`batch_request`]: the frame to send.
pub(super) fn seal_batch(batch: &mut Vec<u8>) {
    batch.push(BATCH);
}

/// The bytes a request frame adds after the arguments: entry, sequence number, kind.
const TRAILER: usize = 8 + 4 + 1;

/// A request taken from a frame: its entry, where its arguments are in the frame, and,
/// when it is held, its sequence number.
#[derive(Debug, PartialEq)]
struct Request {
    entry: usize,
    args: std::ops::Range<usize>,
    held: Option<u32>,
}

/// The request in `frame[at..end]` (see [`parse_requests`]); `None` when it is
/// malformed.
fn parse_request(frame: &[u8], at: usize, end: usize) -> Option<Request> {
    if end - at < TRAILER {
        return None;
    }
    let args_end = end - TRAILER;
    let trailer = &frame[args_end..end];
    let entry = u64::from_le_bytes(trailer[..8].try_into().ok()?);
    let seq = u32::from_le_bytes(trailer[8..12].try_into().ok()?);
    let held = match trailer[12] {
        TASK => None,
        HELD => Some(seq),
        _ => return None,
    };
    Some(Request {
        entry: usize::try_from(entry).ok()?,
        args: at..args_end,
        held,
    })
}

/// The requests a frame carries, in order: one, or a batch's; `None` when it is
/// malformed.
fn parse_requests(frame: &[u8]) -> Option<Vec<Request>> {
    let Some((&BATCH, body)) = frame.split_last() else {
        return Some(vec![parse_request(frame, 0, frame.len())?]);
    };
    let mut requests = Vec::new();
    let mut at = 0;
    while at < body.len() {
        let len = u32::from_le_bytes(body.get(at..at + 4)?.try_into().ok()?) as usize;
        let start = at + 4;
        let end = start.checked_add(len).filter(|&end| end <= body.len())?;
        requests.push(parse_request(body, start, end)?);
        at = end;
    }
    (!requests.is_empty()).then_some(requests)
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
    /// Bit 2: the worker has seen the decision to go.
    const SEEN: u32 = 4;
    /// Sequence numbers have 29 bits, above the three flags.
    const SEQ: u32 = u32::MAX >> 3;
    const SHIFT: u32 = 3;
    /// Looks at the word this many times before yielding: the decision is usually on
    /// its way.
    const SPINS: u32 = 50;
    /// Then yields the processor this many times, looking at the word after each, before
    /// sleeping on it: the manager has just been woken by the answer before, and on a
    /// busy machine it may be waiting for this very processor; sleeping instead would
    /// cost the manager a futex wake and the worker a wake-up for each task.
    const YIELDS: u32 = 100;
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
        let word = ((seq & Self::SEQ) << Self::SHIFT) | if go { Self::GO } else { 0 };
        if self.word.swap(word) & Self::SLEEPING != 0 {
            let _ = self.word.wake_all();
        }
    }

    /// The pool's side: true when no decision to go waits unseen, so the pool may decide
    /// a later task (skip it) without the worker mistaking an earlier go for a skip.
    pub(super) fn settled(&self) -> bool {
        let word = self.word.load();
        word & Self::GO == 0 || word & Self::SEEN != 0
    }

    /// The worker's side: waits for the decision on held task `seq`: `Some(true)` go,
    /// `Some(false)` skip, `None` when the pool closed the connection meanwhile.
    fn wait(&self, seq: u32, conn: &Connection) -> Option<bool> {
        let mut spins = 0;
        loop {
            let word = self.word.load();
            let ahead = (word >> Self::SHIFT).wrapping_sub(seq) & Self::SEQ;
            if ahead == 0 {
                let go = word & Self::GO != 0;
                if go && word & Self::SEEN == 0 {
                    // Only this worker changes the word now (the pool decides nothing
                    // more until it sees this, or the task's answer): set SEEN, keeping
                    // SLEEPING as it is.
                    let _ = self.word.compare_exchange(word, word | Self::SEEN);
                }
                return Some(go);
            }
            if ahead <= Self::SEQ / 2 {
                return Some(false); // a later task is decided: this one was skipped
            }
            if spins < Self::SPINS + Self::YIELDS {
                spins += 1;
                if spins <= Self::SPINS {
                    std::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                }
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
        let Some(requests) = parse_requests(&bytes) else {
            return; // not the protocol: nothing can be trusted
        };
        // A batch carries no descriptors: those that came go with its one request.
        let mut fds = Some(fds);
        for request in requests {
            if max_tasks.is_some_and(|max| done >= max) {
                return; // the pool sends no more than that: not the protocol
            }
            let fds = fds.take().unwrap_or_default();
            if let Some(seq) = request.held {
                match gate.wait(seq, &conn) {
                    Some(true) => {}
                    Some(false) => continue, // cancelled while it waited: its fds close
                    None => return,
                }
            }
            let sent = match run(request.entry, &bytes[request.args], fds) {
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

fn send(
    conn: &Connection,
    response: Response,
    fds: &[OwnedFd],
) -> Result<(), flotilla_ipc::SendError> {
    conn.send_frame(&response.into_frame(), fds)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one request a frame carries: its entry, arguments and held sequence number.
    fn parse_task(frame: Vec<u8>) -> Option<(usize, Vec<u8>, Option<u32>)> {
        let mut requests = parse_requests(&frame)?;
        assert_eq!(requests.len(), 1);
        let request = requests.pop()?;
        Some((request.entry, frame[request.args].to_vec(), request.held))
    }

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
    fn a_batch_carries_its_requests_in_order_and_a_bad_one_is_refused() {
        let mut batch = Vec::new();
        batch_request(&mut batch, &task_frame(vec![1, 2], 5), None);
        batch_request(&mut batch, &task_frame(Vec::new(), 6), Some(9));
        batch_request(&mut batch, &task_frame(vec![3; 100], 7), Some(10));
        seal_batch(&mut batch);
        let requests = parse_requests(&batch).unwrap();
        let got: Vec<_> = requests
            .iter()
            .map(|r| (r.entry, batch[r.args.clone()].to_vec(), r.held))
            .collect();
        assert_eq!(
            got,
            [
                (5, vec![1, 2], None),
                (6, Vec::new(), Some(9)),
                (7, vec![3; 100], Some(10)),
            ]
        );
        // An empty batch, a length past the end, a request too short, a cut length.
        assert_eq!(parse_requests(&[BATCH]), None);
        let mut long = Vec::new();
        batch_request(&mut long, &task_frame(vec![1], 5), None);
        long[0] += 1;
        long.push(BATCH);
        assert_eq!(parse_requests(&long), None);
        assert_eq!(parse_requests(&[2, 0, 0, 0, TASK, TASK, BATCH]), None);
        assert_eq!(parse_requests(&[2, 0, BATCH]), None);
    }

    #[test]
    fn the_gate_lets_go_skips_wakes_and_sees_a_pool_gone() {
        let (ours, theirs) = flotilla_ipc::pipe(true).unwrap();
        let gate = Gate::new().unwrap();
        assert!(gate.settled());
        gate.decide(1, true);
        // A go the worker has not seen yet must not be decided over.
        assert!(!gate.settled());
        assert_eq!(gate.wait(1, &theirs), Some(true));
        assert!(gate.settled());
        // Task 2 was skipped with no decision of its own: a later one is decided.
        gate.decide(3, false);
        assert!(gate.settled());
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
