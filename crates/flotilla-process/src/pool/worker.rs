//! A pool worker: the protocol between a pool and its worker processes, and the worker's
//! loop.
//!
//! The pool sends [`Request`] frames on the worker's connection, the worker answers each
//! with one [`Response`] frame, in order; handles in arguments and results travel as
//! descriptors beside the frames. Tasks are named like spawn targets: an entry offset in
//! this same binary (the worker was started by spawn or forkserver, which checked the
//! binary's fingerprint).

use std::panic::{AssertUnwindSafe, catch_unwind};

use flotilla_core::codec;
use flotilla_ipc::Connection;
use flotilla_ipc::handle::Fd;
use serde::{Deserialize, Serialize};

use crate::boot;

/// From the pool to a worker.
#[derive(Debug, Serialize, Deserialize)]
pub(super) enum Request {
    /// Run the entry on these encoded arguments (descriptors beside the frame).
    Task { entry: usize, args: Vec<u8> },
}

/// From a worker to the pool, one per request, in order.
#[derive(Debug, Serialize, Deserialize)]
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
        if let Err(message) = run(entry, &bytes, fds) {
            let _ = send(&conn, &Response::InitFailed(message), &[]);
            return;
        }
    }
    if send(&conn, &Response::Ready, &[]).is_err() {
        return;
    }
    let mut done = 0;
    while max_tasks.is_none_or(|max| done < max) {
        let Ok((bytes, fds)) = conn.recv_frame() else {
            return; // the pool closed our connection: time to go
        };
        let Ok(Request::Task { entry, args }) = codec::decode(&bytes) else {
            return;
        };
        let sent = match run(entry, &args, fds) {
            Ok((value, fds)) => send(&conn, &Response::Done(value), &fds),
            Err(message) if message.starts_with(PANIC) => send(
                &conn,
                &Response::Panicked(message[PANIC.len()..].to_owned()),
                &[],
            ),
            Err(message) => send(&conn, &Response::Failed(message), &[]),
        };
        if sent.is_err() {
            return;
        }
        done += 1;
    }
}

/// Marks a `run` error that is a panic, not a decoding failure.
const PANIC: &str = "\u{0}panic:";

/// Runs the entry at `entry` on `args`, catching a panic.
fn run(
    entry: usize,
    args: &[u8],
    fds: Vec<std::os::fd::OwnedFd>,
) -> Result<(Vec<u8>, Vec<std::os::fd::OwnedFd>), String> {
    // SAFETY: the pool computed `entry` with `entry_of`/`entry_of_chunk` in a process
    // running this very binary: this worker was started by spawn or forkserver, whose
    // bootstrap checked the binary's fingerprint.
    let entry = unsafe { boot::entry_at(entry) };
    match catch_unwind(AssertUnwindSafe(|| entry(args, fds))) {
        Ok(result) => result,
        Err(payload) => Err(format!(
            "{PANIC}{}",
            flotilla_core::panic_message(&*payload)
        )),
    }
}

fn send(
    conn: &Connection,
    response: &Response,
    fds: &[std::os::fd::OwnedFd],
) -> Result<(), flotilla_ipc::Error> {
    let bytes = codec::encode(response)?;
    conn.send_frame(&bytes, fds)
}
