//! The foundation of flotilla: the [`Future`] every executor returns, the [`Completer`]
//! executors finish it with, waiting on many futures ([`wait()`], [`as_completed()`]),
//! cooperative cancellation ([`CancelToken`]), the one error type for failed tasks
//! ([`TaskError`]), the one [`codec`] for data that crosses a process boundary, and the
//! [`Deadline`] every timed blocking call counts down to.
//!
//! This crate spawns no threads and does no I/O: it is the vocabulary the executor
//! crates (`flotilla-thread`, `flotilla-process`, `flotilla-async`) share, so futures
//! from all of them can be mixed in one `wait`.
//!
//! # Python names
//!
//! | Python (`concurrent.futures`)           | flotilla-core                          |
//! |-----------------------------------------|----------------------------------------|
//! | `Future.result()`, `result(timeout)`    | [`Future::result`], [`Future::result_timeout`], [`Future::into_result`] |
//! | `Future.exception()`, `exception(timeout)` | [`Future::error`], [`Future::error_timeout`] |
//! | `Future.cancel / cancelled / running / done` | the methods of the same names     |
//! | `Future.add_done_callback`              | [`Future::add_done_callback`]          |
//! | `Future.set_running_or_notify_cancel`, `set_result`, `set_exception` | [`Completer`] |
//! | `wait(fs, timeout, return_when)`        | [`wait()`], [`wait_timeout()`] with [`ReturnWhen`] |
//! | `as_completed(fs, timeout)`             | [`as_completed()`], [`as_completed_timeout()`] |
//! | `Executor`                              | [`Executor`]                           |

#![cfg_attr(docsrs, feature(doc_cfg))]

/// The README's example, compiled and run as a doctest so it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

pub mod build;
pub mod codec;
#[doc(hidden)]
pub mod copy;
#[doc(hidden)]
pub mod fork_slot;
pub mod log;
pub mod spin;
#[doc(hidden)]
pub mod testing;

mod cancel;
mod deadline;
mod error;
mod executor;
mod future;
mod slab;
mod wait;
mod window;

pub use crate::cancel::CancelToken;
pub use crate::deadline::Deadline;
pub use crate::error::{TaskError, panic_message};
pub use crate::executor::Executor;
pub use crate::future::{
    Completer, Completion, Future, FutureId, ResultFuture, ResultRefFuture, StartClaim, State, Task,
};
pub use crate::wait::{
    AsCompleted, ReturnWhen, Waitable, as_completed, as_completed_timeout, wait, wait_timeout,
};
pub use crate::window::OrderedWindow;

#[cfg(test)]
mod tests;
