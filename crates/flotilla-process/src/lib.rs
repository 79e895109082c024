//! Processes for flotilla: Python's `multiprocessing.Process`, started by fork, spawn or
//! forkserver, with the target's value coming back typed.
//!
//! - [`Process`]: start a function with serde arguments under any start method
//!   ([`Process::new`], [`Context::process`]), or any closure under fork
//!   ([`Process::fork`]); then `join()` / `join_timeout(d)`, `is_alive`, `terminate`, `kill`,
//!   `exitcode` as in Python.
//! - [`StartMethod`], [`Context`], [`get_context`], [`set_start_method`]: how processes
//!   begin; forkserver by default.
//! - [`ProcessPoolExecutor`]: Python's `concurrent.futures.ProcessPoolExecutor`, whose
//!   futures mix with every other flotilla future, and which never hangs on a dead
//!   worker.
//! - [`init`]: the worker bootstrap, Python's `if __name__ == "__main__":`. It also runs
//!   by itself before `main`, so tests need no setup; call it at the top of `main` all
//!   the same.
//! - [`current_process`], [`parent_process`], [`active_children`], [`cpu_count`].
//!
//! Arguments and return values may hold flotilla IPC handles (a `Connection` end, ...):
//! their descriptors travel beside the bytes (`flotilla_ipc::handle`).
//!
//! The process-wide state (identity, children, the forkserver, the shared-memory name
//! tracker) lives in one place, the private `state` module; the forkserver singleton is
//! owned by `forkserver`, the tracker by `tracker`, and the registry of flotilla's own
//! descriptors (which a fork child drops) by `fds`.
//!
//! A child ends as Python's do: it waits for its non-daemon `flotilla_thread::Thread`s
//! and its own non-daemonic children first. A daemonic child dies with its parent
//! *process*, whichever thread started it. A named `flotilla_ipc::SharedMemory` whose
//! creator dies without unlinking it is unlinked by the creator's tracker.
//!
//! Linux only: it uses pidfds, `PR_SET_PDEATHSIG` (in forkserver children) and
//! `/proc/self/exe`.

#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(not(target_os = "linux"))]
compile_error!(
    "flotilla-process supports Linux only (5.3 or newer): it is built on fork, \
     posix_spawn of /proc/self/exe, pidfd and PR_SET_PDEATHSIG. flotilla-core and \
     flotilla-thread build on other platforms."
);

/// The README's example, compiled and run as a doctest so it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

mod boot;
mod child;
mod context;
mod error;
mod fds;
mod forkserver;
pub mod log;
mod pool;
mod process;
mod state;
mod sys;
mod target;
pub mod task;
#[doc(hidden)]
pub mod testing;
mod tracker;

pub use crate::boot::init;
pub use crate::context::{Context, StartMethod, get_context, get_start_method, set_start_method};
pub use crate::error::Error;
pub use crate::pool::{
    AsyncResult, PIPELINE, Pool, PoolBuilder, ProcessMap, ProcessPoolExecutor,
    ProcessPoolExecutorBuilder, WorkerDeath,
};
pub use crate::process::{FnTarget, ForkTarget, Process, ProcessBuilder, active_children};
pub use crate::state::{ProcessInfo, cpu_count, current_process, parent_process};
pub use crate::target::{One, Spread, Target};
