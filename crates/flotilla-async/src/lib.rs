//! flotilla's asyncio bridge on tokio: blocking work on thread and process pools,
//! awaited from async code, with cancellation that reaches the work.
//!
//! What asyncio gives Python programs for mixing coroutines with threads and processes,
//! done for tokio, and better at the two points where asyncio fails its users:
//! cancelling the awaiting side does stop the work (a queued task is cancelled, a
//! running one gets its [`CancelToken`](flotilla_core::CancelToken) cancelled), and a
//! thread blocked in [`to_thread`]'s executor does not hold up the end of the program.
//!
//! Nothing here blocks a runtime thread: every wait is a waker registered with the
//! future (or, for [`AsyncConnection`], a readiness registration with tokio's reactor),
//! so all of it works in a current-thread runtime, where timers and other tasks keep
//! running while a task awaits a pool's result.
//!
//! # Python names
//!
//! | Python (`asyncio`)                        | flotilla-async                               |
//! |-------------------------------------------|----------------------------------------------|
//! | `loop.run_in_executor(executor, f, *args)`| [`run_in_executor`]                          |
//! | `asyncio.to_thread(f)`                    | [`to_thread`] (on [`default_executor`])      |
//! | `asyncio.wrap_future(fut)`                | [`wrap_future`]                              |
//! | `Task.cancel()`                           | [`Task::cancel`], or drop the [`Task`]        |
//! | `asyncio.gather(*aws)`                    | [`gather()`]                                 |
//! | `asyncio.gather(a, b)` of different types | [`gather!`] (a tuple), [`gather_tuple`]       |
//! | `gather(..., return_exceptions=True)`     | [`Gather::return_exceptions`]                |
//! | `asyncio.wait(aws, timeout, return_when)` | [`wait`], [`wait_timeout`]                   |
//! | `asyncio.as_completed(aws, timeout)`      | [`as_completed`], [`as_completed_timeout`] (a `Stream`) |
//! | `asyncio.shield(aw)`                      | [`shield`], [`Task::detach`]                 |
//! | `asyncio.wait_for(aw, timeout)`           | [`wait_for`]                                 |
//! | `loop.connect_read_pipe` / `Connection` in asyncio | [`AsyncConnection`]                 |
//! | a `multiprocessing.Queue` in asyncio      | `Queue::put_async` / `get_async` / `JoinableQueue::join_async` in flotilla-ipc (plain futures, usable here) |
//!
//! # Features
//!
//! - `thread` (default): [`to_thread`], and [`Cancellable`] jobs on a
//!   `ThreadPoolExecutor`.
//! - `process` (default, implies `ipc`): `run_in_executor` on a `ProcessPoolExecutor`.
//! - `ipc`: [`AsyncConnection`].
//!
//! Without features, [`run_in_executor`] still takes any
//! [`Executor`](flotilla_core::Executor), and every combinator works on any flotilla
//! future.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use flotilla_async::{gather, run_in_executor, to_thread};
//! use flotilla_process::ProcessPoolExecutor;
//!
//! fn sum_of_squares(n: u64) -> u64 {
//!     (0..n).map(|i| i * i).sum()
//! }
//!
//! let procs = ProcessPoolExecutor::builder().max_workers(1).build().unwrap();
//! let results = gather([
//!     to_thread(|| 42u64),                                // a blocking call on a thread
//!     run_in_executor(&procs, (sum_of_squares, 1_000)),   // CPU work in another process
//! ])
//! .await
//! .unwrap();
//! assert_eq!(results, [42, 332_833_500]);
//! # }
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]

/// The README's example, compiled and run as a doctest so it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

#[cfg(feature = "ipc")]
mod connection;
mod gather;
mod gather_tuple;
mod ready;
mod shield;
mod task;
mod wait;

#[cfg(feature = "ipc")]
pub use crate::connection::AsyncConnection;
pub use crate::gather::{Gather, GatherAll, gather};
pub use crate::gather_tuple::{Children, GatherTuple, IntoGatherTuple, TryOutput, gather_tuple};
pub use crate::shield::{shield, wait_for};
pub use crate::task::{Cancellable, Submit, Task, run_in_executor, wrap_future};
#[cfg(feature = "thread")]
pub use crate::task::{default_executor, to_thread};
pub use crate::wait::{
    AsCompleted, AsFuture, as_completed, as_completed_timeout, wait, wait_timeout,
};

#[cfg(test)]
mod tests;
