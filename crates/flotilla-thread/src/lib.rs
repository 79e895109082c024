//! Threads for flotilla: Python's `concurrent.futures.ThreadPoolExecutor`, and what
//! Python's `threading` and `queue` modules have that Rust's standard library lacks.
//!
//! - [`ThreadPoolExecutor`]: a pool of lazily started threads running closures, each
//!   submission returning a [`flotilla_core::Future`].
//! - [`Thread`] (made by [`ThreadBuilder`] or [`spawn`]): Python's `threading.Thread`, with
//!   a name, a daemon flag honoured at process exit, and `join` / `join_timeout` (retryable).
//! - Python's `threading` primitives with a timed form of every blocking call: [`Event`],
//!   [`Semaphore`] and [`BoundedSemaphore`], [`RLock`], [`Condition`] (owning its data)
//!   and [`Barrier`] (with `abort`, `reset`, an action and a default timeout).
//! - [`queue`]: Python's `queue` module. [`Queue`] (FIFO), [`LifoQueue`] and
//!   [`PriorityQueue`] (smallest first), bounded or not, with `task_done` / `join`, timed
//!   forms of every blocking call, and `close`, which ends consumers' loops once the queue
//!   is drained. A failed put hands its item back ([`PutError`], [`TryPutError`], ...).

#![cfg_attr(docsrs, feature(doc_cfg))]

/// The README's example, compiled and run as a doctest so it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

mod error;
mod executor;
pub mod queue;
mod sync;
mod thread;

pub use crate::error::{
    Error, GetError, GetTimeoutError, PutError, PutTimeoutError, TaskDoneError, TryGetError,
    TryPutError,
};
pub use crate::executor::{Map, ThreadPoolExecutor, ThreadPoolExecutorBuilder};
pub use crate::queue::{LifoQueue, PriorityQueue, Queue};
pub use crate::sync::{
    Barrier, BarrierBuilder, BoundedSemaphore, Condition, ConditionGuard, Event, RLock, RLockGuard,
    Semaphore, SemaphorePermit,
};
pub use crate::thread::{Thread, ThreadBuilder, join_non_daemon, spawn};
