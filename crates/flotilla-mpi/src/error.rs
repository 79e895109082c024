//! The crate's errors, one type per operation.

use thiserror::Error;

/// What to tell a user whose program needs `mpiexec`.
pub(crate) const LAUNCH_HINT: &str = "launch the program with `mpiexec -n N ./program` (N ≥ 2: \
     rank 0 runs main, ranks 1..N-1 serve tasks); MPI itself comes with \
     `apt-get install mpich libmpich-dev libclang-dev` on Debian";

/// Why [`init`](crate::init) could not make this program an MPI client.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum InitError {
    /// The world has one rank: the program was not launched by `mpiexec` (or with
    /// `-n 1`), so there is no rank to run tasks on.
    #[error("the MPI world has {size} rank(s), so no rank is left to run tasks: {LAUNCH_HINT}")]
    NoWorkers {
        /// The world's size.
        size: i32,
    },
    /// The MPI library cannot let a second thread of the client call it.
    #[error(
        "the MPI library provides thread level {provided}, and flotilla-mpi needs \
         MPI_THREAD_SERIALIZED (its progress thread calls MPI): use an MPI built with \
         thread support"
    )]
    Threading {
        /// The level the library provides.
        provided: String,
    },
    /// The ranks do not all run the same build of the program, so a function named by
    /// its offset in one binary could be something else in another.
    #[error(
        "rank {rank} runs a different build of this program (fingerprint {theirs:016x}, \
         rank 0's is {ours:016x}): every rank must run the very same binary"
    )]
    DifferentBuilds {
        /// The first rank whose build differs.
        rank: i32,
        /// Its build's fingerprint.
        theirs: u64,
        /// The client's.
        ours: u64,
    },
    /// The root given to [`comm_executor`](crate::comm_executor) is not a rank of the
    /// communicator.
    #[error("the root {root} is not a rank of the communicator (size {size})")]
    BadRoot {
        /// The root asked for.
        root: i32,
        /// The communicator's size.
        size: i32,
    },
}

/// Why an [`MpiPoolExecutor`](crate::MpiPoolExecutor) could not be built.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum BuildError {
    /// `init` was not called (or this program was not launched by MPI).
    #[error(
        "MPI is not set up: call flotilla_mpi::init() (or flotilla::init()) at the top of \
         main, and {LAUNCH_HINT}"
    )]
    NotInitialized,
    /// `init` failed; this is why.
    #[error(transparent)]
    Init(#[from] InitError),
    /// Another executor uses the workers: one executor at a time per world (shut the
    /// other down first).
    #[error(
        "another MpiPoolExecutor is using the MPI workers: shut it down first (one \
         executor at a time)"
    )]
    Busy,
    /// `max_workers(0)`.
    #[error("an MpiPoolExecutor needs at least 1 worker (max_workers(0))")]
    NoWorkers,
    /// The progress thread could not be started.
    #[error("the MPI progress thread could not be started: {0}")]
    Thread(#[source] std::io::Error),
}
