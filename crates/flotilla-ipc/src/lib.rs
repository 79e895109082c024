//! Inter-process communication for flotilla: Python's `multiprocessing.Pipe` and
//! `Connection`, and the mechanism by which IPC handles cross process boundaries.
//!
//! - [`pipe`] and [`Connection`]: framed messages of bytes or serde values between two
//!   ends, with a per-connection maximum frame size enforced before any allocation.
//! - [`wait`]: wait on many connections at once.
//! - [`SharedMemory`]: anonymous (memfd) or named (`/dev/shm`) segments, with explicit
//!   ownership of names.
//! - [`Lock`] and [`RLock`]: process-shared locks that tell the next acquirer when a
//!   holder died ([`AcquireError::OwnerDied`]) instead of hanging.
//! - [`Semaphore`], [`BoundedSemaphore`], [`Event`], [`Condition`] and [`Barrier`]:
//!   process-shared, futex-based, with the methods of their `flotilla-thread` twins.
//! - [`Value`] and [`Array`]: plain data ([`Element`]s) in shared memory, with a
//!   recursive lock or raw; integer values also have atomic operations.
//! - [`Queue`], [`JoinableQueue`] and [`SimpleQueue`] (module [`queue`]): queues of any
//!   serde type between any number of producer and consumer processes, in a
//!   shared-memory ring, with no feeder thread.
//! - [`handle`]: how any value holding OS handles (a connection end, a shared segment, a
//!   lock, a value, a queue) is sent to another process — its
//!   descriptors travel beside its bytes.
//!
//! This crate is Linux-first: it uses Unix sockets and `SCM_RIGHTS`.

#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(not(target_os = "linux"))]
compile_error!(
    "flotilla-ipc supports Linux only (5.3 or newer): it is built on memfd, futexes, \
     robust process-shared mutexes and SCM_RIGHTS. flotilla-core and flotilla-thread \
     build on other platforms."
);

/// The README's example, compiled and run as a doctest so it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

mod connection;
mod element;
mod error;
mod futex;
pub mod handle;
mod lock;
pub mod queue;
mod readiness;
mod shm;
mod sync;
mod sys;
mod value;

pub use crate::connection::{
    Connection, DEFAULT_MAX_FRAME, Frame, FrameReader, FrameWriter, pipe, wait, wait_indices,
    wait_indices_timeout, wait_timeout,
};
pub use crate::element::{Element, Integer};
pub use crate::error::{
    AccessError, BarrierError, CopyError, CreateError, Error, FrameStartError, IndexError,
    IndexOutOfRange, LengthMismatch, LockError, OsError, PollError, RecvError, RecvIntoError,
    RecvTimeoutError, ReleaseError, SendError, ShmError, WaitError,
};
pub use crate::lock::{AcquireError, Lock, LockGuard, RLock, RLockGuard};
pub use crate::queue::{
    GetError, GetTimeoutError, JoinableQueue, PutError, PutTimeoutError, Queue, QueueBuilder,
    QueueError, SimpleQueue, TaskDoneError, TryGetError, TryPutError,
};
pub use crate::shm::{NameEvent, SharedMemory, set_name_tracker};
pub use crate::sync::{
    Barrier, BarrierBuilder, BoundedSemaphore, Condition, ConditionGuard, ConditionLock, Event,
    Semaphore, SemaphorePermit,
};
#[doc(hidden)]
pub use crate::sys::poll_briefly;
pub use crate::value::{Array, ArrayGuard, Value, ValueGuard};

#[cfg(test)]
mod tests;
