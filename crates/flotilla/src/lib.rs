//! flotilla: Python's concurrency toolkit, rebuilt in Rust.
//!
//! This crate gathers flotilla's sub-crates behind one name, laid out like the Python
//! modules they replace, so a Python programmer finds each concept where they would
//! look for it. Each sub-crate can also be used on its own; a cargo feature per
//! sub-crate (plus `full`, the default) chooses what is compiled in.
//!
//! # Index
//!
//! **[`futures`]** — Python's `concurrent.futures` (crate `flotilla-core`, and
//! `flotilla-thread` for the executor):
//! [`Future`](futures::Future) with its completing side [`Completer`](futures::Completer),
//! [`wait`](futures::wait()), [`as_completed`](futures::as_completed()),
//! [`ThreadPoolExecutor`](futures::ThreadPoolExecutor),
//! [`ProcessPoolExecutor`](futures::ProcessPoolExecutor), the [`Executor`](futures::Executor)
//! trait, [`TaskError`](futures::TaskError), and [`CancelToken`](futures::CancelToken) for
//! stopping tasks that already run.
//!
//! **[`threading`]** — Python's `threading` (crate `flotilla-thread`):
//! [`Thread`](threading::Thread) with timed join and daemon mode,
//! [`Event`](threading::Event), [`Semaphore`](threading::Semaphore),
//! [`BoundedSemaphore`](threading::BoundedSemaphore), [`RLock`](threading::RLock),
//! [`Condition`](threading::Condition), [`Barrier`](threading::Barrier).
//!
//! **[`queue`]** — Python's `queue`: [`Queue`](queue::Queue),
//! [`LifoQueue`](queue::LifoQueue), [`PriorityQueue`](queue::PriorityQueue), closable, with
//! `task_done`/`join`.
//!
//! **[`multiprocessing`]** — Python's `multiprocessing` (crates `flotilla-process` and
//! `flotilla-ipc`): [`Process`](multiprocessing::Process) under the fork, spawn and
//! forkserver [start methods](multiprocessing::StartMethod), [`Context`](multiprocessing::Context),
//! [`pipe`](multiprocessing::pipe()) and [`Connection`](multiprocessing::Connection),
//! [`Queue`](multiprocessing::Queue), [`JoinableQueue`](multiprocessing::JoinableQueue) and
//! [`SimpleQueue`](multiprocessing::SimpleQueue) between processes (with their builder
//! and errors in [`queues`](multiprocessing::queues)), shared memory with
//! [`Value`](multiprocessing::Value) and [`Array`](multiprocessing::Array), the
//! process-shared [`Lock`](multiprocessing::Lock), [`RLock`](multiprocessing::RLock),
//! [`Semaphore`](multiprocessing::Semaphore), [`Event`](multiprocessing::Event),
//! [`Condition`](multiprocessing::Condition) and [`Barrier`](multiprocessing::Barrier), and
//! [`init`] to call at the top of `main`.
//!
//! **[`managers`]** — Python's `multiprocessing.managers` (crate `flotilla-manager`):
//! [`Manager`](managers::Manager) starts a server process owning shared objects, used
//! through typed proxies ([`DictProxy`](managers::DictProxy),
//! [`ListProxy`](managers::ListProxy), [`QueueProxy`](managers::QueueProxy), ...), by
//! other processes and by other hosts over TCP with an authkey.
//!
//! **[`asyncio`]** — Python's `asyncio` bridge to executors, on tokio (crate
//! `flotilla-async`): [`run_in_executor`](asyncio::run_in_executor),
//! [`to_thread`](asyncio::to_thread), [`wrap_future`](asyncio::wrap_future) returning a
//! [`Task`](asyncio::Task) whose drop cancels the work, [`gather`](asyncio::gather()) (and
//! [`gather!`](asyncio::gather!) for futures of different types),
//! [`wait`](asyncio::wait()), [`as_completed`](asyncio::as_completed()),
//! [`shield`](asyncio::shield), [`wait_for`](asyncio::wait_for), and
//! [`AsyncConnection`](asyncio::AsyncConnection).
//!
//! **`pycompat`** (feature `pycompat`, not in `full`) — talking to Python processes on
//! their own terms (crate `flotilla-pycompat`): CPython's `multiprocessing.connection`
//! `Listener` / `Client` with pickled messages and the authkey handshake, and a client of
//! Python `BaseManager` servers; pickles are read without running code.
//!
//! **[`codec`]** — the one serialization seam for data crossing a process boundary.
//!
//! # Example
//!
//! ```
//! use flotilla::futures::{ReturnWhen, ThreadPoolExecutor, wait};
//!
//! let pool = ThreadPoolExecutor::builder().max_workers(4).build()?;
//! let futures: Vec<_> = (1..=4u64)
//!     .map(|n| pool.submit(move || (1..=n).product::<u64>()))
//!     .collect::<Result<_, _>>()?;
//! let (done, not_done) = wait(&futures, ReturnWhen::AllCompleted);
//! assert_eq!((done.len(), not_done.len()), (4, 0));
//! assert_eq!(futures[3].result()?, 24);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Feature flags
//!
//! One feature per sub-crate; `full` (every one of them) is the default. With
//! `default-features = false` only [`futures`] (without executors) and [`codec`]'s error
//! type remain.
//!
//! | feature | what it adds | crate |
//! |---|---|---|
//! | `full` | all of the below (default) | |
//! | `thread` | [`threading`], [`queue`], `futures::ThreadPoolExecutor` | `flotilla-thread` |
//! | `ipc` | [`multiprocessing`]'s pipes, shared memory, process-shared locks and queues; the codec | `flotilla-ipc` |
//! | `process` | `multiprocessing::Process`, `Pool`, `futures::ProcessPoolExecutor`, [`init`] (turns on `ipc`) | `flotilla-process` |
//! | `manager` | [`managers`]: the manager server and its proxies (turns on `process`) | `flotilla-manager` |
//! | `asyncio` | [`asyncio`], for the executors enabled beside it | `flotilla-async` (tokio) |
//! | `pycompat` | `pycompat`: Python's `multiprocessing.connection` and manager clients, pickles without code (not in `full`) | `flotilla-pycompat` |
//!
//! `thread` alone builds on any platform and pulls in no serde; `ipc` and `process` need
//! Linux (5.3 or newer).

#![cfg_attr(docsrs, feature(doc_cfg))]

#[doc(inline)]
pub use flotilla_core::codec;

#[cfg(all(not(target_os = "linux"), any(feature = "ipc", feature = "process")))]
compile_error!(
    "flotilla's `ipc` and `process` features (in `full`, the default) support Linux only \
     (5.3 or newer). On other platforms depend on flotilla with \
     `default-features = false, features = [\"thread\"]` (futures, threads, queues)."
);

/// The README's examples, compiled and run as doctests so the tour stays true.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;

/// Python's `concurrent.futures`: futures, waiting on them, and executors.
pub mod futures {
    #[doc(inline)]
    pub use flotilla_core::{
        AsCompleted, CancelToken, Completer, Completion, Deadline, Executor, Future, FutureId,
        OrderedWindow, ResultFuture, ResultRefFuture, ReturnWhen, State, TaskError, Waitable,
        as_completed, as_completed_timeout, panic_message, wait, wait_timeout,
    };

    #[cfg(feature = "thread")]
    #[doc(inline)]
    pub use flotilla_thread::{Map, ThreadPoolExecutor, ThreadPoolExecutorBuilder};

    #[cfg(feature = "process")]
    #[doc(inline)]
    pub use flotilla_process::{
        ProcessMap, ProcessPoolExecutor, ProcessPoolExecutorBuilder, WorkerDeath,
    };
}

/// Python's `threading`: what std lacks, with a timed form of every blocking call.
#[cfg(feature = "thread")]
pub mod threading {
    #[doc(inline)]
    pub use flotilla_thread::{
        Barrier, BarrierBuilder, BoundedSemaphore, Condition, ConditionGuard, Error, Event, RLock,
        RLockGuard, Semaphore, SemaphorePermit, Thread, ThreadBuilder, spawn,
    };
}

/// Python's `queue`: FIFO, LIFO and priority queues with `task_done`/`join`, and a
/// `close` that ends consumers' iteration once drained.
#[cfg(feature = "thread")]
pub mod queue {
    #[doc(inline)]
    pub use flotilla_thread::queue::*;
    #[doc(inline)]
    pub use flotilla_thread::{
        GetError, GetTimeoutError, PutError, PutTimeoutError, TaskDoneError, TryGetError,
        TryPutError,
    };
}

/// Python's `multiprocessing`: processes, pipes and connections, shared memory and
/// process-shared synchronization.
#[cfg(feature = "ipc")]
pub mod multiprocessing {
    #[doc(inline)]
    pub use flotilla_ipc::{
        AcquireError, Array, ArrayGuard, Connection, Element, Frame, FrameReader, FrameWriter,
        Integer, Lock, LockGuard, RLock, RLockGuard, SharedMemory, Value, ValueGuard, handle, pipe,
        wait, wait_indices, wait_indices_timeout, wait_timeout,
    };
    #[doc(inline)]
    pub use flotilla_ipc::{
        Barrier, BarrierBuilder, BoundedSemaphore, Condition, ConditionGuard, ConditionLock, Event,
        Semaphore, SemaphorePermit,
    };

    /// The umbrella error of pipes, connections, shared memory and shared primitives,
    /// which each of their own error types converts into.
    pub use flotilla_ipc::Error as IpcError;
    #[doc(inline)]
    pub use flotilla_ipc::{
        AccessError, CopyError, CreateError, FrameStartError, IndexError, IndexOutOfRange,
        LengthMismatch, LockError, OsError, QueueError, ShmError, WaitError,
    };
    #[doc(inline)]
    pub use flotilla_ipc::{
        BarrierError, PollError, RecvError, RecvIntoError, RecvTimeoutError, ReleaseError,
        SendError,
    };

    #[doc(inline)]
    pub use flotilla_ipc::queue as queues;
    #[doc(inline)]
    pub use flotilla_ipc::{JoinableQueue, Queue, SimpleQueue};

    #[cfg(feature = "process")]
    #[doc(inline)]
    pub use flotilla_process::{
        AsyncResult, Context, Error, FnTarget, ForkTarget, Pool, PoolBuilder, Process,
        ProcessBuilder, ProcessInfo, StartMethod, active_children, cpu_count, current_process,
        get_context, get_start_method, parent_process, set_start_method,
    };
    #[cfg(feature = "process")]
    #[doc(inline)]
    pub use flotilla_process::{One, Spread, Target};
}

/// Python's `multiprocessing.managers`: a server process that owns shared objects
/// (`dict`, `list`, `Namespace`, `Lock`, `Queue`, and types a program registers), used
/// by other processes and, over TCP with an authkey, other hosts, through typed proxies
/// (crate `flotilla-manager`).
///
/// ```
/// let manager = flotilla::managers::Manager::start().unwrap();
/// let d = manager.dict::<String, u32>().unwrap();
/// d.set(&"k".to_string(), &1).unwrap();
/// assert_eq!(d.get(&"k".to_string()).unwrap(), Some(1));
/// ```
#[cfg(feature = "manager")]
pub mod managers {
    #[doc(inline)]
    pub use flotilla_manager::{
        Address, AuthError, AuthKey, CallError, Client, ConnectError, DictProxy, ListProxy,
        LockProxy, LockProxyGuard, Manager, ManagerBuilder, NamespaceProxy, ObjectRef, QueueProxy,
        RemoteError, RemoteErrorKind, Server, ServerBuilder, SharedObject, StartError, Token,
        connect,
    };
    #[doc(inline)]
    pub use flotilla_manager::{
        ArrayProxy, BarrierProxy, BindError, BoundedSemaphoreProxy, ClaimError, ConditionProxy,
        EventProxy, JoinableQueueProxy, Pending, Proxy, ProxyGuard, RLockProxy, RunningServer,
        SemaphoreProxy, ValueProxy,
    };
}

/// Talking to Python processes on their own terms: CPython's `multiprocessing.connection`
/// ([`Listener`](pycompat::Listener), [`Client`](pycompat::Client)), a client of Python
/// managers ([`ManagerClient`](pycompat::ManagerClient)), and a pickle reader that runs no
/// code (crate `flotilla-pycompat`; feature `pycompat`, not in `full`).
///
/// ```
/// use flotilla::pycompat::pickle::{from_pickle, to_pickle};
///
/// let bytes = to_pickle(&("job", 7)).unwrap();
/// assert_eq!(from_pickle::<(String, u8)>(&bytes).unwrap(), ("job".to_owned(), 7));
/// ```
#[cfg(feature = "pycompat")]
pub mod pycompat {
    #[doc(inline)]
    pub use flotilla_pycompat::{
        Address, AuthError, AuthKey, CallError, Client, ConnectError, Connection,
        DEFAULT_MAX_FRAME, DEFAULT_TIMEOUT, DictProxy, FrameError, Listener, ManagerClient,
        Options, PickleError, Proxy, PyObject, PyValue, PythonException, QueueProxy, RecvError,
        SendError, UnpickleError, pickle,
    };
}

/// `mpi4py.futures` (crate `flotilla-mpi`, feature `mpi`, not in `full`: it needs an MPI
/// library, e.g. `apt-get install mpich libmpich-dev libclang-dev`): `MpiPoolExecutor`
/// runs tasks on the other ranks of `mpiexec -n N ./prog`, with `ProcessPoolExecutor`'s
/// API; [`init`] sets the ranks up when the program was launched by MPI.
#[cfg(feature = "mpi")]
pub mod mpi {
    #[doc(inline)]
    pub use flotilla_mpi::{
        BuildError, InitError, MpiMap, MpiPoolExecutor, MpiPoolExecutorBuilder, PIPELINE, World,
        comm_executor, init, init_if_launched, launched_by_mpi,
    };
}

/// Python's `asyncio` bridge to executors, on tokio: awaiting thread and process pool
/// work from async code, with cancellation that reaches the work.
#[cfg(feature = "asyncio")]
pub mod asyncio {
    #[doc(inline)]
    pub use flotilla_async::{
        AsCompleted, AsFuture, Cancellable, Gather, GatherAll, GatherTuple, IntoGatherTuple,
        Submit, Task, as_completed, as_completed_timeout, gather, gather_tuple, run_in_executor,
        shield, wait, wait_for, wait_timeout, wrap_future,
    };

    #[cfg(feature = "thread")]
    #[doc(inline)]
    pub use flotilla_async::{default_executor, to_thread};

    #[cfg(feature = "ipc")]
    #[doc(inline)]
    pub use flotilla_async::AsyncConnection;
}

/// Makes this program ready to be a flotilla worker: call it first thing in `main`, before
/// any thread starts. Python's `if __name__ == "__main__":`.
///
/// When this process was started as a worker (a spawned child, or the forkserver), it
/// runs its task and exits here, before any of `main`'s own code. In any other process
/// it returns at once. (flotilla also runs this check before `main` by itself, which is
/// what lets tests start processes with no setup; calling it keeps a program correct
/// should that ever not happen.)
///
/// ```no_run
/// # #[allow(clippy::needless_doctest_main, reason = "the point is where the call goes")]
/// fn main() {
///     flotilla::init();
///     // ... the program ...
/// }
/// ```
///
/// With the `mpi` feature, a program launched by an MPI launcher (`mpiexec`) also
/// becomes an MPI pool here (`flotilla_mpi::init`): ranks 1..N-1 serve tasks and never
/// return, rank 0 goes on as the client. A failure of that set-up is reported by
/// `MpiPoolExecutor::builder().build()`.
#[cfg(feature = "process")]
pub fn init() {
    flotilla_process::init();
    #[cfg(feature = "mpi")]
    flotilla_mpi::init_if_launched();
}

/// Logging across processes: Python's `multiprocessing.log_to_stderr`, and a setup
/// function every spawn and forkserver child runs before its task (where a subscriber
/// installed by `main` never exists). Every flotilla event, and every event of a process
/// target, is inside the span `flotilla.process{name, pid}`.
#[cfg(feature = "process")]
pub mod log {
    #[doc(inline)]
    pub use flotilla_process::log::{Level, log_to_stderr, set_worker_setup};
}

#[cfg(feature = "process")]
#[doc(inline)]
pub use flotilla_process::log::log_to_stderr;

/// The names most programs use, for a glob import.
///
/// It never shadows a name of std's prelude: flotilla's `Future` struct is not here (std's
/// `Future` trait is what `impl Future` and `async fn` mean), so name it as
/// `flotilla::futures::Future`.
///
/// ```
/// use flotilla::prelude::*;
///
/// fn later() -> impl Future<Output = u8> {
///     async { 7 }
/// }
/// # drop(later());
/// ```
pub mod prelude {
    #[doc(no_inline)]
    pub use crate::futures::{
        ReturnWhen, TaskError, as_completed, as_completed_timeout, wait, wait_timeout,
    };

    #[cfg(feature = "thread")]
    #[doc(no_inline)]
    pub use crate::futures::ThreadPoolExecutor;
}
