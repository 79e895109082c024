//! flotilla's executor across many hosts, on MPI: `MpiPoolExecutor`, mpi4py's
//! `mpi4py.futures.MPIPoolExecutor`, with the API of flotilla's `ProcessPoolExecutor`.
//!
//! **Everything here needs the crate feature `mpi`** (off by default, because it needs
//! an MPI library and libclang to build: on Debian,
//! `apt-get install mpich libmpich-dev libclang-dev`). Without it the crate is empty but
//! for this page, so a workspace build on a machine without MPI still works.
//!
//! # The static world
//!
//! MPI runs the same binary on every rank, so flotilla's spawn-style tasks (a function
//! named by its place in the binary, serde arguments) work there unchanged. Launched
//! with `mpiexec -n N ./prog` (Python: `mpiexec -n N python -m mpi4py.futures prog.py`),
//! `init` at the top of `main` makes rank 0 return to `main` as the client while
//! ranks 1..N-1 serve tasks until rank 0's program ends:
//!
//! ```text
//! mpiexec -n 3 ./prog      # rank 0 runs main; ranks 1 and 2 run its tasks
//! ```
//!
//! and the one line that differs from a `ProcessPoolExecutor` program is the one that
//! builds the executor: `MpiPoolExecutor::builder().build()` (see its example).
//!
//! A program not launched by `mpiexec` gets `InitError::NoWorkers`, which says how to
//! launch it (there is no one-rank fallback: a cluster program should not run quietly on
//! one core). `comm_executor` is mpi4py's `MPICommExecutor`: the pool over a
//! communicator the program set up itself.
//!
//! # How it works
//!
//! A submission is encoded once, on the submitting thread, with flotilla's codec (a task
//! is named by its function's offset in this binary: flotilla-process's `task::Entry`;
//! every rank's build is checked to be the same at `init`). One progress thread on the
//! client makes every MPI call while an executor lives (`MPI_THREAD_SERIALIZED`): it
//! sends each task to the least loaded worker rank, up to `pipeline` (default 2) in
//! flight per rank, with non-blocking sends that own the encoded bytes (so two ranks
//! sending large messages at once cannot deadlock it), receives the answers into buffers
//! of their exact size with matched probes, and completes flotilla-core futures. The
//! bytes are never re-encoded or copied on the way: a fixed trailer (task id, entry) is
//! appended to the codec's buffer and cut off by the receiver. MPI has no descriptor to
//! sleep on, so the progress thread and idle workers poll: a short spin that yields the
//! CPU, then naps of up to a millisecond.
//!
//! # When a rank dies
//!
//! MPI's answer to a dead rank is to end the job: with MPICH (and Open MPI), a rank that
//! exits without finalising, or is killed, makes `mpiexec` kill every other rank and
//! exit with a failure status. So rank 0's futures never wait for a dead worker: the
//! whole program ends, and `mpiexec`'s status and message say so. (A task's panic or
//! `Err` is not a death: it comes back as `TaskError`, as
//! from a process pool.) Per-task recovery from a worker's death stays a feature of
//! flotilla-process's pool on one host. An MPI call that fails without ending the job
//! (which MPI's default error handler does not allow) aborts the job with a message.

#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg_attr(not(feature = "mpi"), allow(dead_code))]
mod wire;

#[cfg(feature = "mpi")]
mod comm;
#[cfg(feature = "mpi")]
mod error;
#[cfg(feature = "mpi")]
mod executor;
#[cfg(feature = "mpi")]
mod world;

#[cfg(feature = "mpi")]
pub use crate::error::{BuildError, InitError};
#[cfg(feature = "mpi")]
pub use crate::executor::{MpiMap, MpiPoolExecutor, MpiPoolExecutorBuilder, PIPELINE};
#[cfg(feature = "mpi")]
pub use crate::world::{World, comm_executor, init, init_if_launched, launched_by_mpi};
/// rsmpi, for programs that set up MPI themselves ([`comm_executor`]).
#[cfg(feature = "mpi")]
pub use mpi;
