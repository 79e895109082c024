//! Threads for flotilla: Python's `concurrent.futures.ThreadPoolExecutor`, and what
//! Python's `threading` and `queue` modules have that Rust's standard library lacks.
//!
//! - [`ThreadPoolExecutor`]: a pool of lazily started threads running closures, each
//!   submission returning a [`flotilla_core::Future`].
//! - [`queue`]: Python's `queue` module. [`Queue`] (FIFO), [`LifoQueue`] and
//!   [`PriorityQueue`] (smallest first), bounded or not, with `task_done` / `join`, timed
//!   forms of every blocking call, and `close`, which ends consumers' loops once the queue
//!   is drained. A failed put hands its item back ([`PutError`], [`TryPutError`], ...).

mod error;
//mod executor;
pub mod queue;

pub use crate::error::{
    Error, GetError, GetTimeoutError, PutError, PutTimeoutError, TaskDoneError, TryGetError,
    TryPutError,
};
//pub use crate::executor::{Map, ThreadPoolExecutor, ThreadPoolExecutorBuilder};
pub use crate::queue::{LifoQueue, PriorityQueue, Queue};
