//! Inter-process communication for flotilla: Python's `multiprocessing.Pipe` and
//! `Connection`, and the mechanism by which IPC handles cross process boundaries.
//!
//! - [`pipe`] and [`Connection`]: framed messages of bytes or serde values between two
//!   ends, with a per-connection maximum frame size enforced before any allocation.
//! - [`wait`]: wait on many connections at once.
//! - [`handle`]: how any value holding OS handles (a connection end, and the queues,
//!   shared memory and locks to come) is sent to another process — its descriptors
//!   travel beside its bytes.
//!
//! This crate is Linux-first: it uses Unix sockets and `SCM_RIGHTS`.

mod connection;
mod error;
pub mod handle;
mod sys;

pub use crate::connection::{Connection, DEFAULT_MAX_FRAME, pipe, wait};
pub use crate::error::Error;

#[cfg(test)]
mod tests;
