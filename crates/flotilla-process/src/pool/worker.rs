//! A pool worker: the protocol between a pool and its worker processes, and the worker's
//! loop.
//!
//! The pool sends request frames on the worker's connection, the worker answers each
//! task it runs with one response frame, in order; handles in arguments and results
//! travel as descriptors beside the frames. Tasks are named like spawn targets: an entry
//! offset in this same binary (the worker was started by spawn or forkserver, which
//! checked the binary's fingerprint).
//!
//! A task sent while the worker is busy (or still starting) is *held*: it waits in the
//! worker's pipeline, still pending and cancellable, and the worker starts it only by
//! taking its claim, a word in memory the pool shares with its workers (see `claims`),
//! with one compare-exchange; a cancel takes the same word first to keep it from
//! starting. So a task is running only once its worker starts it, one waiting in a
//! pipeline can still be cancelled, and the worker goes from one task to the next with
//! no word from the pool in between. A held task it finds revoked (cancelled) or sent
//! elsewhere, it skips, answering that it did.
//!
//! # Frames
//!
//! A frame is a task's payload as the codec encoded it (arguments one way, the value
//! or a message the other), followed by a fixed trailer: for a request the entry
//! (8 bytes, little-endian), a held task's claim slot (4 bytes) and the claim word it
//! expects there (8 bytes; both 0 when it runs at once), and a kind byte (run now, or
//! held), for a response a kind byte (a skip carries the claim word it skipped as its
//! payload). A trailer rather than an envelope type, because the payload then crosses
//! with no re-encoding — the codec writes a `Vec<u8>` field byte by byte, which cost
//! more than the rest of a small task's trip — and appending to the codec's buffer is
//! free. (The manager sends a copy, keeping the original to send again should the
//! worker die before it starts the task.)
//!
//! Several requests may travel in one frame, a *batch*, so that one write carries the
//! tasks the pool hands a worker at once and one read takes them: the requests one
//! after the other, each preceded by its length (4 bytes, little-endian), then the kind
//! byte of a batch. Only requests without descriptors are batched (one with descriptors
//! travels alone, beside them), and only small ones (see [`BATCHED`]).
//!
//! The worker answers every request, in order, with one response: the task's outcome,
//! or a skip.
//!
//! # Telling the pool a held task started
//!
//! The claim settles a cancel; the pool also needs to know that the task started, for
//! its future to say it runs and for a worker's death to fail the task it was running
//! and requeue the rest. So the worker says so, at no extra write when it can: having
//! ended a task, it keeps the answer while it looks at the next request, if that one
//! is already read (or read ahead in its connection's buffer); if the next is held and
//! it takes the claim, the answer goes with a flag in its kind byte, "and the next
//! started". A held task started with no answer before it (the first after the worker
//! became ready, or after an idle wait) gets a frame of its own, `Started`, before it
//! runs. A worker that dies between taking a claim and telling of it never ran the
//! task: the pool sends it again.

use std::os::fd::OwnedFd;
use std::panic::{AssertUnwindSafe, catch_unwind};

use flotilla_ipc::Connection;
use flotilla_ipc::handle::Fd;
use serde::{Deserialize, Serialize};

use super::claims::Claims;
use crate::boot::{self, EntryResult};

/// The kind byte of a request: run the entry on the payload now.
const TASK: u8 = 0x54;
/// The kind byte of a request that waits in the worker's pipeline: run it only if its
/// claim can be taken.
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
    args.extend_from_slice(&[0; 12]);
    args.push(TASK);
    args
}

/// Where a held task's claim is: its slot, and the word it expects there.
pub(super) type Held = (u32, u64);

/// A copy of a request frame made by [`task_frame`], to run at once or, when `held` (with
/// its claim), to run if its claim can be taken.
pub(super) fn request_frame(frame: &[u8], held: Option<Held>) -> Vec<u8> {
    let mut out = Vec::with_capacity(frame.len());
    push_request(&mut out, frame, held);
    out
}

/// Appends a copy of `frame` (made by [`task_frame`]) to `out`, marked to run at once or,
/// when `held`, to run if its claim can be taken.
fn push_request(out: &mut Vec<u8>, frame: &[u8], held: Option<Held>) {
    flotilla_core::copy::extend(out, frame);
    let len = out.len();
    if frame.len() >= TRAILER {
        let (kind, (slot, word)) = match held {
            Some(held) => (HELD, held),
            None => (TASK, (0, 0)),
        };
        out[len - 13..len - 9].copy_from_slice(&slot.to_le_bytes());
        out[len - 9..len - 1].copy_from_slice(&word.to_le_bytes());
        out[len - 1] = kind;
    }
}

/// Appends request `frame` (made by [`task_frame`], marked as [`request_frame`] marks
/// it) to `batch`, a batch being built; [`seal_batch`] makes it a frame.
pub(super) fn batch_request(batch: &mut Vec<u8>, frame: &[u8], held: Option<Held>) {
    // A request is at most a frame, and frames that large are not batched.
    let len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
    batch.extend_from_slice(&len.to_le_bytes());
    push_request(batch, frame, held);
}

/// Ends a batch built with [`batch_request`]: the frame to send.
pub(super) fn seal_batch(batch: &mut Vec<u8>) {
    batch.push(BATCH);
}

/// The bytes a request frame adds after the arguments: entry, claim slot and word,
/// kind.
const TRAILER: usize = 8 + 4 + 8 + 1;

/// A request taken from a frame: its entry, where its arguments are in the frame, and,
/// when it is held, its claim.
#[derive(Debug, PartialEq)]
struct Request {
    entry: usize,
    args: std::ops::Range<usize>,
    held: Option<Held>,
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
    let slot = u32::from_le_bytes(trailer[8..12].try_into().ok()?);
    let word = u64::from_le_bytes(trailer[12..20].try_into().ok()?);
    let held = match trailer[20] {
        TASK => None,
        HELD => Some((slot, word)),
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
    /// The held task whose claim word this was is not run: it was cancelled, or sent
    /// elsewhere.
    Skipped(u64),
    /// The worker took the claim of the held task at the front of its pipeline, with
    /// no answer before it to say so.
    Started,
}

impl Response {
    const DONE: u8 = 0x44;
    const PANICKED: u8 = 0x50;
    const FAILED: u8 = 0x46;
    const INIT_FAILED: u8 = 0x49;
    const READY: u8 = 0x52;
    const SKIPPED: u8 = 0x53;
    const STARTED: u8 = 0x47;
    /// Set in the kind byte of an answer: the worker has just started the next task,
    /// a held one (its claim is taken).
    const NEXT_STARTED: u8 = 0x80;

    /// The frame that carries this response, and whether the next task has started
    /// (for an answer: `Done`, `Panicked` or `Failed`).
    pub(super) fn into_frame(self, next_started: bool) -> Vec<u8> {
        let (mut bytes, kind) = match self {
            Response::Done(value) => (value, Self::DONE),
            Response::Panicked(message) => (message.into_bytes(), Self::PANICKED),
            Response::Failed(message) => (message.into_bytes(), Self::FAILED),
            Response::InitFailed(message) => (message.into_bytes(), Self::INIT_FAILED),
            Response::Ready => (Vec::new(), Self::READY),
            Response::Skipped(word) => (word.to_le_bytes().to_vec(), Self::SKIPPED),
            Response::Started => (Vec::new(), Self::STARTED),
        };
        bytes.push(if next_started {
            kind | Self::NEXT_STARTED
        } else {
            kind
        });
        bytes
    }

    /// The response a frame carries, and whether the next task has started; `None`
    /// when it is malformed.
    pub(super) fn from_frame(mut frame: Vec<u8>) -> Option<(Response, bool)> {
        let text = |bytes: Vec<u8>| String::from_utf8_lossy(&bytes).into_owned();
        let kind = frame.pop()?;
        let next_started = kind & Self::NEXT_STARTED != 0;
        let response = match kind & !Self::NEXT_STARTED {
            Self::DONE => Response::Done(frame),
            Self::PANICKED => Response::Panicked(text(frame)),
            Self::FAILED => Response::Failed(text(frame)),
            _ if next_started => return None, // only an answer says so
            Self::INIT_FAILED => Response::InitFailed(text(frame)),
            Self::READY if frame.is_empty() => Response::Ready,
            Self::SKIPPED => Response::Skipped(u64::from_le_bytes(frame.try_into().ok()?)),
            Self::STARTED if frame.is_empty() => Response::Started,
            _ => return None,
        };
        Some((response, next_started))
    }
}

/// A worker's start-up arguments.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct WorkerArgs {
    pub(super) conn: Connection,
    /// The claims of held tasks.
    pub(super) claims: Claims,
    /// The initializer's entry, encoded arguments and their descriptors.
    pub(super) init: Option<(usize, Vec<u8>, Vec<Fd>)>,
    /// How many tasks to run before exiting, so the pool replaces the worker.
    pub(super) max_tasks: Option<usize>,
}

/// The worker process's target.
pub(super) fn worker_main(args: WorkerArgs) {
    let WorkerArgs {
        conn,
        claims,
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
    // The last task's answer, while the worker looks at the next request: when that
    // one is held and it takes its claim, the answer says so (see the module docs).
    let mut answer: Option<(Response, Vec<OwnedFd>)> = None;
    let mut done = 0;
    loop {
        let last = max_tasks.is_some_and(|max| done >= max);
        if answer.is_some() && (last || !conn.frame_read_ahead()) {
            // The next request is not here yet (or none comes): the answer goes now.
            if flush(&conn, &mut answer, false).is_err() {
                return;
            }
        }
        if last {
            return;
        }
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
                // The pool sends no more than that: not the protocol. The last answer
                // still goes.
                let _ = flush(&conn, &mut answer, false);
                return;
            }
            let fds = fds.take().unwrap_or_default();
            let sent = match request.held {
                Some((slot, word)) => match claims.start(slot, word) {
                    // Started: the pool learns so with the answer before, or now.
                    Some(true) if answer.is_some() => flush(&conn, &mut answer, true),
                    Some(true) => send(&conn, Response::Started, &[]),
                    Some(false) => {
                        // Cancelled while it waited, or sent elsewhere: its fds close.
                        if flush(&conn, &mut answer, false).is_err()
                            || send(&conn, Response::Skipped(word), &[]).is_err()
                        {
                            return;
                        }
                        continue;
                    }
                    None => return, // no such claim: not the protocol
                },
                None => flush(&conn, &mut answer, false),
            };
            if sent.is_err() {
                return;
            }
            answer = Some(match run(request.entry, &bytes[request.args], fds) {
                Ok(Ok((value, fds))) => (Response::Done(value), fds),
                Ok(Err(message)) => (Response::Failed(message), Vec::new()),
                Err(message) => (Response::Panicked(message), Vec::new()),
            });
            done += 1;
        }
    }
}

/// Sends the answer kept in `answer`, if any, saying whether the worker has just
/// started the next task (a held one, whose claim it took).
fn flush(
    conn: &Connection,
    answer: &mut Option<(Response, Vec<OwnedFd>)>,
    next_started: bool,
) -> Result<(), flotilla_ipc::SendError> {
    match answer.take() {
        Some((response, fds)) => conn.send_frame(&response.into_frame(next_started), &fds),
        None => Ok(()),
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
    conn.send_frame(&response.into_frame(false), fds)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one request a frame carries: its entry, arguments and held sequence number.
    fn parse_task(frame: Vec<u8>) -> Option<(usize, Vec<u8>, Option<Held>)> {
        let mut requests = parse_requests(&frame)?;
        assert_eq!(requests.len(), 1);
        let request = requests.pop()?;
        Some((request.entry, frame[request.args].to_vec(), request.held))
    }

    #[test]
    fn frames_round_trip_and_garbage_is_refused() {
        let frame = task_frame(vec![1, 2, 3], 0xdead_beef);
        assert_eq!(
            parse_task(request_frame(&frame, Some((7, 0x1234_5678_9abc)))),
            Some((0xdead_beef, vec![1, 2, 3], Some((7, 0x1234_5678_9abc))))
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
            Response::Skipped(0x0102_0304_0506_0708),
            Response::Started,
        ] {
            let expected = format!("{response:?}");
            let (back, next) = Response::from_frame(response.into_frame(false)).unwrap();
            assert_eq!(format!("{back:?}"), expected);
            assert!(!next);
        }
        // Only an answer says that the next task started.
        for (response, answer) in [
            (Response::Done(vec![1]), true),
            (Response::Panicked("p".into()), true),
            (Response::Failed("f".into()), true),
            (Response::Ready, false),
            (Response::Started, false),
            (Response::Skipped(3), false),
            (Response::InitFailed("i".into()), false),
        ] {
            let expected = format!("{response:?}");
            let back = Response::from_frame(response.into_frame(true));
            if answer {
                let (back, next) = back.unwrap();
                assert_eq!(format!("{back:?}"), expected);
                assert!(next);
            } else {
                assert_eq!(back, None);
            }
        }
        assert_eq!(Response::from_frame(Vec::new()), None);
        assert_eq!(Response::from_frame(vec![0]), None);
        assert_eq!(Response::from_frame(vec![1, Response::READY]), None);
        assert_eq!(Response::from_frame(vec![1, 2, Response::SKIPPED]), None);
        assert_eq!(Response::from_frame(vec![1, Response::STARTED]), None);
    }

    #[test]
    fn a_batch_carries_its_requests_in_order_and_a_bad_one_is_refused() {
        let mut batch = Vec::new();
        batch_request(&mut batch, &task_frame(vec![1, 2], 5), None);
        batch_request(&mut batch, &task_frame(Vec::new(), 6), Some((9, 1 << 40)));
        batch_request(
            &mut batch,
            &task_frame(vec![3; 100], 7),
            Some((10, u64::MAX)),
        );
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
                (6, Vec::new(), Some((9, 1 << 40))),
                (7, vec![3; 100], Some((10, u64::MAX))),
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
}
