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
//! it when it is free, then waits for the pool's one-byte word ([`Control`]) — go, and
//! the pool has marked it running; skip, and it was cancelled meanwhile (no answer is
//! sent for it). So a task is running only once its worker starts it, and one waiting in
//! a pipeline can still be cancelled. The price is a round trip between a worker's
//! pipelined tasks: the worker waits for the word where it used to start at once.
//!
//! # Frames
//!
//! A frame is a task's payload as the codec encoded it (arguments one way, the value
//! or a message the other), followed by a fixed trailer: for a request the entry
//! (8 bytes, little-endian) and a kind byte (run now, or held), for a response a kind
//! byte. A trailer rather than an envelope type, because the payload then crosses with
//! no re-encoding — the codec writes a `Vec<u8>` field byte by byte, which cost more
//! than the rest of a small task's trip — and appending to the codec's buffer is free.
//! (The manager sends a copy, keeping the original to send again should the worker die
//! before it starts the task.) The pool's words are frames of one byte, which no
//! request is.

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::panic::{AssertUnwindSafe, catch_unwind};

use flotilla_ipc::Connection;
use flotilla_ipc::handle::Fd;
use serde::{Deserialize, Serialize};

use crate::boot::{self, EntryResult};

/// The kind byte of a request: run the entry on the payload now.
const TASK: u8 = 0x54;
/// The kind byte of a request that waits in the worker's pipeline: run it only after a
/// [`Control::Go`], skip it after a [`Control::Skip`].
const HELD: u8 = 0x48;

/// Appends a task request's trailer to its encoded arguments: the frame to send.
pub(super) fn task_frame(mut args: Vec<u8>, entry: usize) -> Vec<u8> {
    args.extend_from_slice(&(entry as u64).to_le_bytes());
    args.push(TASK);
    args
}

/// A copy of a request frame made by [`task_frame`], to run at once or, when `held`, to
/// wait for the pool's word.
pub(super) fn request_frame(frame: &[u8], held: bool) -> Vec<u8> {
    let mut frame = frame.to_vec();
    if let Some(kind) = frame.last_mut() {
        *kind = if held { HELD } else { TASK };
    }
    frame
}

/// Splits a request frame into its entry, its arguments, and whether it is held;
/// `None` when it is malformed.
fn parse_task(mut frame: Vec<u8>) -> Option<(usize, Vec<u8>, bool)> {
    let held = match frame.pop()? {
        TASK => false,
        HELD => true,
        _ => return None,
    };
    if frame.len() < 8 {
        return None;
    }
    let at = frame.len() - 8;
    let entry = u64::from_le_bytes(frame[at..].try_into().ok()?);
    frame.truncate(at);
    Some((usize::try_from(entry).ok()?, frame, held))
}

/// The pool's word on a held task, when the worker is free to start it: one byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Control {
    /// Run it: the pool marked it running.
    Go,
    /// Skip it: it was cancelled while it waited.
    Skip,
}

impl Control {
    const GO: u8 = 0x47;
    const SKIP: u8 = 0x53;

    /// The frame that carries this word.
    pub(super) fn frame(self) -> Vec<u8> {
        vec![match self {
            Control::Go => Self::GO,
            Control::Skip => Self::SKIP,
        }]
    }

    fn from_frame(frame: &[u8]) -> Option<Control> {
        match frame {
            [Self::GO] => Some(Control::Go),
            [Self::SKIP] => Some(Control::Skip),
            _ => None,
        }
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
    /// The initializer's entry, encoded arguments and their descriptors.
    pub(super) init: Option<(usize, Vec<u8>, Vec<Fd>)>,
    /// How many tasks to run before exiting, so the pool replaces the worker.
    pub(super) max_tasks: Option<usize>,
}

/// The worker process's target.
pub(super) fn worker_main(args: WorkerArgs) {
    let WorkerArgs {
        conn,
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
    // The tasks received and not yet run, in order: held ones wait for the pool's word,
    // which comes in order too, after any tasks sent meanwhile.
    let mut waiting: VecDeque<Task> = VecDeque::new();
    let mut done = 0;
    while max_tasks.is_none_or(|max| done < max) {
        let task = match waiting.pop_front() {
            Some(task) if !task.held => task,
            front => {
                if let Some(task) = front {
                    waiting.push_front(task);
                }
                let Ok((bytes, fds)) = conn.recv_frame() else {
                    return; // the pool closed our connection: time to go
                };
                // A task frame is at least 9 bytes, a word one: no confusing them.
                let Some(word) = Control::from_frame(&bytes) else {
                    let Some((entry, args, held)) = parse_task(bytes) else {
                        return; // not the protocol: nothing can be trusted
                    };
                    waiting.push_back(Task {
                        entry,
                        args,
                        fds,
                        held,
                    });
                    continue;
                };
                // The pool's word on the first held task.
                match (word, waiting.front_mut()) {
                    (Control::Go, Some(task)) if task.held => task.held = false,
                    (Control::Skip, Some(task)) if task.held => {
                        waiting.pop_front();
                    }
                    _ => return,
                }
                continue;
            }
        };
        let sent = match run(task.entry, &task.args, task.fds) {
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

/// A task a worker has received.
struct Task {
    entry: usize,
    args: Vec<u8>,
    fds: Vec<OwnedFd>,
    /// Waiting for the pool's word.
    held: bool,
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
            parse_task(request_frame(&frame, true)),
            Some((0xdead_beef, vec![1, 2, 3], true))
        );
        assert_eq!(parse_task(frame), Some((0xdead_beef, vec![1, 2, 3], false)));
        assert_eq!(
            parse_task(task_frame(Vec::new(), 7)),
            Some((7, Vec::new(), false))
        );
        for word in [Control::Go, Control::Skip] {
            assert_eq!(Control::from_frame(&word.frame()), Some(word));
        }
        assert_eq!(Control::from_frame(&[]), None);
        assert_eq!(Control::from_frame(&[Control::GO, Control::GO]), None);
        assert_eq!(parse_task(Vec::new()), None);
        assert_eq!(parse_task(vec![0; 5]), None);
        assert_eq!(parse_task(vec![TASK; 3]), None);
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
}
