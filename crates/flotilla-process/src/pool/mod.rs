//! [`ProcessPoolExecutor`]: Python's `concurrent.futures.ProcessPoolExecutor`, which
//! never hangs on a dead worker.
//!
//! # How it works
//!
//! Submissions are encoded on the caller's thread (so an argument that cannot be sent is
//! an error of `submit`, not of the task) and queued. One manager thread (`dispatcher`)
//! owns the workers: it starts them on demand up to `max_workers`, keeps up to
//! [`PIPELINE`] tasks in flight per worker whatever their size (so a worker's next task
//! is already there when it finishes one), and more small ones (up to 16, about a
//! millisecond of work by the time its recent tasks took) on a worker whose tasks prove
//! short, sent several to a write; it reads the answers, completes the futures, and
//! watches for a worker's death, which shows as end of file on its connection.
//!
//! The manager never blocks on one worker: it reads and writes the workers' connections
//! without blocking, from one `poll` over all of them, so a worker that stops reading or
//! stops halfway through a result (stopped by `SIGSTOP`, say) holds up only its own
//! tasks.
//!
//! A task is running only once a worker starts it. One sent to an idle worker starts at
//! once; one sent to a busy worker waits in its pipeline, still pending, with a *claim*:
//! a word in memory the pool shares with its workers (see `claims`). The worker starts
//! it by taking the claim with one compare-exchange, the moment the task before ends;
//! `cancel` takes the same word first to keep it from starting (the future is
//! [claimed](flotilla_core::Completer::claimed)), so exactly one of them wins, with no
//! frame back and forth and no wait for the manager between one task and the next. The
//! worker tells the manager that the task started with the answer to the task before
//! (or a frame of its own when there is none), and the future shows it running. So
//! `cancel` and `shutdown(cancel_futures = true)` reach every task that has not
//! started. When a worker is idle and nothing is queued, a task waiting in another's
//! pipeline is taken back for it the same way: its claim moves to a new copy, so the
//! old copy can no longer start.
//!
//! The chunks of a map (`map`, `imap`, `imap_unordered`, ...) are the pool's own futures,
//! which no user can cancel or see running: they are marked running as they are sent
//! and run one after the other with no claim to take, as Python's pools run the tasks
//! they have queued for a worker. Dropping a map's iterator cancels the chunks not yet
//! sent.
//!
//! The price: a chunk sent into a worker's pipeline behind a slow one cannot be taken
//! back for a worker that goes idle (it is already running, as far as the pool knows,
//! and the worker runs it with no claim to take), so it waits for the slow chunk.
//! What waits so is bounded by the pipeline: at most 15 chunks behind the slow one (16 in
//! flight) when a worker's recent chunks took a few microseconds, at most one once they
//! take half a millisecond or more (the depth follows their time); the other workers
//! take everything else meanwhile. So a skewed map loses at most a millisecond or so of
//! one worker's quick chunks; a larger `chunksize` makes the pipelines shallower still.
//!
//! A worker that fails to start (it cannot be started, or ends before it runs a task: its
//! initializer exited, say) is retried after a pause that doubles each time, from 50 ms;
//! after five such failures in a row with no task answered in between, the pool is
//! broken and every pending and later task fails with [`TaskError::Broken`] naming the
//! last failure. An initializer that panics breaks the pool at once.
//!
//! A worker that dies fails exactly the task it held with [`TaskError::WorkerDied`],
//! naming the signal or exit code; the tasks queued behind it go back to the front of
//! the queue, and a new worker takes its place ([`WorkerDeath::FailTask`], the default).
//! [`WorkerDeath::BreakPool`] gives Python's behaviour instead: the pool is broken and
//! every pending task fails. The default is the per-task one because a pool that loses
//! one worker to the OOM killer can still finish everything else, which is what a user
//! who chose processes for isolation wants.

mod claims;
mod classic;
mod dispatcher;
mod map;
mod worker;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use flotilla_core::{Completer, Future, FutureId, StartClaim, TaskError};
use flotilla_ipc::handle;
use serde::Serialize;
use serde::de::DeserializeOwned;

use self::claims::Claims;
pub use self::classic::{AsyncResult, Pool, PoolBuilder};
use self::dispatcher::Manager;
pub use self::map::ProcessMap;
use self::worker::{Held, task_frame};
use crate::boot::{self, Target};
use crate::context::{Context, StartMethod};
use crate::error::Error;
use crate::fds::Internal;

/// How many tasks a worker may have in flight: one running, one waiting beside it (still
/// pending, and cancellable, until the worker starts it).
pub const PIPELINE: usize = 2;

/// How many chunks per worker a map (`map`, `imap`, `imap_unordered`) keeps in flight by
/// default: twice the deepest pipeline a worker has for small tasks, so that however
/// quick the tasks are, every worker's pipeline stays full while the consumer takes
/// results.
pub(super) const MAP_WINDOW: usize = 2 * dispatcher::DEEP;

/// What the pool does when a worker dies while running a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WorkerDeath {
    /// Fail that one task, start a replacement worker, go on. The default.
    #[default]
    FailTask,
    /// Python's `BrokenProcessPool`: fail every pending task and refuse new ones.
    BreakPool,
}

/// A task's completion, type-erased for the manager.
trait Sink: Send {
    /// Marks the task running; false when it was cancelled and must be skipped.
    fn start(&self) -> bool;
    /// Binds the task's future to its claim's token, as it is sent held: false when it
    /// was cancelled and must not be sent (see [`Completer::bind`]).
    fn bind(&self, token: u64) -> bool;
    /// Completes the task with a worker's encoded answer.
    fn finish(self: Box<Self>, outcome: Result<(Vec<u8>, Vec<OwnedFd>), TaskError>);
    /// Cancels a task that will never run.
    fn cancel(self: Box<Self>);
    /// What cancels the task's future, if it has not started, from another thread
    /// (`shutdown(cancel_futures = true)` for a task waiting in a pipeline).
    fn canceller(&self) -> Canceller;
    /// The task's future.
    fn id(&self) -> FutureId;
}

/// Cancels a future that has not started; true when it did.
type Canceller = Box<dyn Fn() -> bool + Send>;

/// A task's sink: the completer and how its worker's answer becomes the outcome.
struct Typed<R, W> {
    completer: Completer<R>,
    /// The task's future, for [`Sink::canceller`].
    future: Future<R>,
    /// What the worker sends (`R` itself, or `Result<R, E>` for `try_submit`) and how it
    /// becomes an outcome.
    outcome: fn(W) -> Result<R, TaskError>,
}

impl<R, W> Sink for Typed<R, W>
where
    R: Send + 'static,
    W: DeserializeOwned,
{
    fn start(&self) -> bool {
        self.completer.set_running_or_notify_cancel()
    }

    fn bind(&self, token: u64) -> bool {
        self.completer.bind(token)
    }

    fn finish(self: Box<Self>, outcome: Result<(Vec<u8>, Vec<OwnedFd>), TaskError>) {
        let value = outcome.and_then(|(bytes, fds)| {
            handle::decode::<W>(&bytes, fds)
                .map_err(|e| TaskError::Remote {
                    message: format!("the task's value could not be decoded: {e}"),
                    backtrace: None,
                })
                .and_then(self.outcome)
        });
        self.completer.complete(value);
    }

    fn cancel(self: Box<Self>) {
        self.completer.cancel();
    }

    fn canceller(&self) -> Canceller {
        let future = self.future.clone();
        Box::new(move || future.cancel())
    }

    fn id(&self) -> FutureId {
        self.completer.id()
    }
}

/// A task on its way to a worker.
struct Job {
    /// The request frame: the encoded arguments and the entry (see `worker`).
    frame: Vec<u8>,
    fds: Vec<OwnedFd>,
    sink: Box<dyn Sink>,
    /// Marked running and sent to run without a claim: it was at the front
    /// of its worker's pipeline, or it is `eager`. (Marking it running again, when it
    /// goes back to the queue after its worker died before starting it, is no change.)
    started: bool,
    /// Its future is the pool's own (a chunk of a map), which nobody can cancel but the
    /// pool, and nobody sees running: it may be marked running as it is sent, to run
    /// right after the tasks before it with no word from the manager in between.
    eager: bool,
    /// Its claim, from when it was first sent held until it is done with: the slot, and
    /// the word of its latest copy (see `claims`).
    claim: Option<Held>,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    shutdown: bool,
    /// Stop now: fail what is pending, kill the workers (`Pool::terminate`).
    terminate: bool,
    /// Running tasks to stop by killing their workers ([`ProcessPoolExecutor::stop`]).
    stops: Vec<FutureId>,
    broken: Option<String>,
    /// The tasks waiting in a worker's pipeline, not started: what cancels each.
    held: HashMap<FutureId, Canceller>,
}

/// What the executor, its map iterators and its manager share.
struct Shared {
    queue: Mutex<Queue>,
    /// The manager sets this before it sleeps in `poll`, when a new task could be
    /// dispatched at once; a submitter that finds it set rings `wake`.
    sleeping: AtomicBool,
    wake: Doorbell,
    /// The claims of held tasks, shared with the workers, and kept by every task's
    /// future.
    claims: Arc<Claims>,
}

/// The manager's doorbell: an eventfd that submitters ring (one `write`) and the manager
/// polls and clears (one `read`), where a frame on a socket pair took a `sendmsg` and
/// two reads.
struct Doorbell(Internal<OwnedFd>); // flotilla's own: see `fds`

impl Doorbell {
    fn new() -> Result<Doorbell, Error> {
        // SAFETY: eventfd with constant flags makes a new descriptor; the result is
        // checked before it is owned.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(Error::os("eventfd", nix::errno::Errno::last()));
        }
        // SAFETY: `fd` was just made by eventfd and nothing else owns it.
        Ok(Doorbell(Internal::new(unsafe {
            <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd)
        })))
    }

    /// Rings: the manager's `poll` on it returns. Rings add up until it is cleared.
    fn ring(&self) {
        let one = 1u64.to_ne_bytes();
        // Fails only when the count would overflow (it is far from that): then it is
        // rung anyway.
        let _ = nix::unistd::write(self.0.as_fd(), &one);
    }

    /// Clears the rings so far (the descriptor is non-blocking: nothing to clear is
    /// no wait).
    fn clear(&self) {
        let mut count = [0u8; 8];
        let _ = nix::unistd::read(self.0.as_fd(), &mut count);
    }
}

impl AsFd for Doorbell {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // No user code runs under this lock (futures are completed after it is released).
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes the manager for a new task, if it sleeps with room to dispatch one.
    fn wake_manager(&self) {
        if self.sleeping.swap(false, Ordering::AcqRel) {
            self.send_wake();
        }
    }

    /// Wakes the manager whatever it waits for: for a request it must act on even when
    /// no task could be dispatched (a stop, a shutdown).
    fn alert_manager(&self) {
        self.sleeping.store(false, Ordering::Release);
        self.send_wake();
    }

    fn send_wake(&self) {
        self.wake.ring();
    }

    fn submit_job(&self, job: Job) -> Result<(), TaskError> {
        {
            let mut queue = self.lock();
            if let Some(reason) = &queue.broken {
                return Err(TaskError::Broken {
                    reason: reason.clone(),
                });
            }
            if queue.shutdown {
                return Err(TaskError::ShutDown);
            }
            queue.jobs.push_back(job);
        }
        self.wake_manager();
        Ok(())
    }

    /// Encodes `args` for `entry` and queues the task; its future.
    fn submit_entry<A, R>(&self, entry: &Target, args: &A) -> Result<Future<R>, TaskError>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned + Send + 'static,
    {
        self.submit_with(entry, args, Ok, false)
    }

    /// Like `submit_entry`, for a chunk of a map, whose future is the pool's own: it may
    /// start as soon as it reaches a worker (see [`Job::eager`]).
    fn submit_chunk<A, R>(&self, entry: &Target, args: &A) -> Result<Future<R>, TaskError>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned + Send + 'static,
    {
        self.submit_with(entry, args, Ok, true)
    }

    /// Like `submit_entry`, for an entry whose worker-side value `W` becomes the outcome
    /// through `outcome`.
    fn submit_with<A, R, W>(
        &self,
        entry: &Target,
        args: &A,
        outcome: fn(W) -> Result<R, TaskError>,
        eager: bool,
    ) -> Result<Future<R>, TaskError>
    where
        A: Serialize + ?Sized,
        R: Send + 'static,
        W: DeserializeOwned + 'static,
    {
        let entry = entry.as_ref().map_err(|message| TaskError::Remote {
            message: message.clone(),
            backtrace: None,
        })?;
        let (args, fds) = entry.encode_args(args).map_err(|e| TaskError::Remote {
            message: format!("the task's arguments could not be encoded: {e}"),
            backtrace: None,
        })?;
        // Every task may be held, a map's chunk too (in the pipeline of a worker still
        // starting), so every future is claimed: a cancel of one that waits there (a
        // dropped map's chunk) keeps it from running.
        let claims: Arc<dyn StartClaim> = self.claims.clone();
        let (completer, fut) = Completer::claimed(claims);
        self.submit_job(Job {
            frame: task_frame(args, entry.offset),
            fds,
            sink: Box::new(Typed {
                completer,
                future: fut.clone(),
                outcome,
            }),
            started: false,
            eager,
            claim: None,
        })?;
        Ok(fut)
    }
}

/// A pool of worker processes running functions and returning [`Future`]s: Python's
/// `concurrent.futures.ProcessPoolExecutor`.
///
/// Tasks are fn items, fn pointers or closures that capture nothing, with serde arguments and
/// results, as for [`Process::new`](crate::Process::new); arguments may hold flotilla handles (a
/// `Connection` end, ...). Its futures are flotilla-core futures: `wait`,
/// `as_completed` and `.await` work on them beside thread-pool futures.
///
/// Dropping the executor is `shutdown(wait = true)`.
///
/// # Examples
///
/// ```
/// use flotilla_process::ProcessPoolExecutor;
///
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// let pool = ProcessPoolExecutor::builder().max_workers(2).build().unwrap();
/// assert_eq!(pool.submit(square, 7).unwrap().result().unwrap(), 49);
/// let squares: Vec<u64> = pool.map(square, 1..=5, 2).map(Result::unwrap).collect();
/// assert_eq!(squares, [1, 4, 9, 16, 25]);
/// ```
pub struct ProcessPoolExecutor {
    shared: Arc<Shared>,
    manager: Mutex<Option<JoinHandle<()>>>,
    max_workers: usize,
    started: Arc<AtomicUsize>,
}

/// Options for a [`ProcessPoolExecutor`]: `ProcessPoolExecutor::builder()`.
#[derive(Debug)]
pub struct ProcessPoolExecutorBuilder {
    max_workers: Option<usize>,
    context: Option<Context>,
    initializer: Option<(usize, Vec<u8>, Vec<OwnedFd>)>,
    initializer_error: Option<String>,
    max_tasks_per_child: Option<usize>,
    on_worker_death: WorkerDeath,
    eager: bool,
}

impl ProcessPoolExecutorBuilder {
    /// The most worker processes. Default: the CPU count.
    pub fn max_workers(mut self, n: usize) -> Self {
        self.max_workers = Some(n);
        self
    }

    /// The start method of the workers: spawn or forkserver (the default is the
    /// program's start method, forkserver unless set otherwise). Fork is refused: the
    /// pool starts workers from its manager thread, and a fork of a multi-threaded
    /// process is unsound in general.
    pub fn context(mut self, context: Context) -> Self {
        self.context = Some(context);
        self
    }

    /// Runs `init(args)` in each worker before its first task. An initializer that
    /// fails (panics) breaks the pool: pending and later tasks fail with
    /// [`TaskError::Broken`] naming the failure; it is not retried. One that ends its
    /// worker (exits, is killed) is a failed start: the pool retries after a pause,
    /// and breaks after five in a row (see the module's "How it works").
    ///
    /// `init` takes one argument, or several spread from the tuple `args` (see
    /// [`Target`](crate::Target)):
    ///
    /// ```
    /// use flotilla_process::ProcessPoolExecutor;
    ///
    /// fn init(name: String, level: u8) {
    ///     assert!(!name.is_empty() && level > 0);
    /// }
    ///
    /// let pool = ProcessPoolExecutor::builder()
    ///     .max_workers(1)
    ///     .initializer(init, ("worker".to_owned(), 3))
    ///     .build()
    ///     .unwrap();
    /// pool.shutdown(true, false);
    /// ```
    pub fn initializer<F, M>(mut self, init: F, args: F::Args) -> Self
    where
        F: crate::Target<M, Output = ()>,
        F::Args: Serialize + DeserializeOwned,
    {
        match boot::entry_of_target::<F, M>(&init) {
            Ok(entry) => match entry.encode_args(&args) {
                Ok((bytes, fds)) => self.initializer = Some((entry.offset, bytes, fds)),
                Err(e) => {
                    self.initializer_error = Some(format!(
                        "the initializer's arguments could not be encoded: {e}"
                    ))
                }
            },
            Err(why) => self.initializer_error = Some(why),
        }
        self
    }

    /// Replaces each worker after it has run `n` tasks (Python's `max_tasks_per_child`).
    pub fn max_tasks_per_child(mut self, n: usize) -> Self {
        self.max_tasks_per_child = Some(n.max(1));
        self
    }

    /// What happens when a worker dies mid-task; see [`WorkerDeath`].
    pub fn on_worker_death(mut self, policy: WorkerDeath) -> Self {
        self.on_worker_death = policy;
        self
    }

    /// Starts every worker at once instead of on demand.
    pub(crate) fn eager(mut self) -> Self {
        self.eager = true;
        self
    }

    /// Creates the executor. No worker starts until the first task arrives.
    pub fn build(self) -> Result<ProcessPoolExecutor, Error> {
        boot::guard()?;
        if let Some(why) = self.initializer_error {
            return Err(Error::Unsupported(format!(
                "the initializer cannot be used: {why}"
            )));
        }
        let max_workers = match self.max_workers {
            Some(0) => {
                return Err(Error::Unsupported(
                    "a ProcessPoolExecutor needs at least 1 worker (max_workers(0))".into(),
                ));
            }
            Some(n) => n,
            None => crate::cpu_count(),
        };
        let context = self.context.unwrap_or_else(Context::default_context);
        if context.start_method() == StartMethod::Fork {
            return Err(Error::Unsupported(
                "a process pool cannot use the fork start method: it starts workers from its \
                 manager thread; use spawn or forkserver"
                    .into(),
            ));
        }
        // A slot for every task that can be held at once, with room for those that
        // keep theirs while waiting in the queue to be sent again.
        let claims = Claims::new(max_workers.saturating_mul(2 * dispatcher::DEEP))?;
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            sleeping: AtomicBool::new(false),
            wake: Doorbell::new()?,
            claims: Arc::new(claims),
        });
        let started = Arc::new(AtomicUsize::new(0));
        let manager = Manager::new(
            Arc::clone(&shared),
            context,
            max_workers,
            self.max_tasks_per_child,
            self.initializer,
            self.on_worker_death,
            self.eager,
            Arc::clone(&started),
        );
        let handle = std::thread::Builder::new()
            .name("ProcessPoolExecutor-manager".into())
            .spawn(move || manager.run())
            .map_err(|e| Error::Os {
                op: "starting the pool's manager thread",
                source: e,
            })?;
        Ok(ProcessPoolExecutor {
            shared,
            manager: Mutex::new(Some(handle)),
            max_workers,
            started,
        })
    }
}

impl ProcessPoolExecutor {
    /// Options for a new executor.
    pub fn builder() -> ProcessPoolExecutorBuilder {
        ProcessPoolExecutorBuilder {
            max_workers: None,
            context: None,
            initializer: None,
            initializer_error: None,
            max_tasks_per_child: None,
            on_worker_death: WorkerDeath::default(),
            eager: false,
        }
    }

    /// The most worker processes.
    pub fn max_workers(&self) -> usize {
        self.max_workers
    }

    /// How many worker processes have been started so far (replacements included).
    pub fn workers_started(&self) -> usize {
        self.started.load(Ordering::Relaxed)
    }

    /// Schedules `task(args)` on a worker and returns the future of its value.
    ///
    /// Fails with [`TaskError::ShutDown`] after shutdown, [`TaskError::Broken`] when the
    /// pool is broken, or [`TaskError::Remote`] when the arguments cannot be encoded.
    ///
    /// `task` takes one argument, or several spread from the tuple `args` (see
    /// [`Target`](crate::Target)).
    pub fn submit<F, M>(&self, task: F, args: F::Args) -> Result<Future<F::Output>, TaskError>
    where
        F: crate::Target<M>,
        F::Args: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned + Send,
    {
        self.shared
            .submit_entry(&boot::entry_of_target::<F, M>(&task), &args)
    }

    /// Schedules a task that reports failure by returning `Err`: its future fails with
    /// [`TaskError::Failed`] holding that very error, sent back from the worker, so
    /// [`TaskError::downcast_ref`] finds it as it would for a thread-pool task.
    ///
    /// ```
    /// use flotilla_process::ProcessPoolExecutor;
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Debug, PartialEq, Serialize, Deserialize)]
    /// struct NotANumber(String);
    ///
    /// impl std::fmt::Display for NotANumber {
    ///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    ///         write!(f, "{:?} is not a number", self.0)
    ///     }
    /// }
    ///
    /// impl std::error::Error for NotANumber {}
    ///
    /// fn parse(s: String) -> Result<u8, NotANumber> {
    ///     s.parse().map_err(|_| NotANumber(s))
    /// }
    ///
    /// let pool = ProcessPoolExecutor::builder().max_workers(1).build().unwrap();
    /// assert_eq!(pool.try_submit(parse, "7".into()).unwrap().result().unwrap(), 7);
    /// let err = pool.try_submit(parse, "x".into()).unwrap().result().unwrap_err();
    /// assert_eq!(err.downcast_ref(), Some(&NotANumber("x".into())));
    /// ```
    ///
    /// The error type travels by serde, so it must implement `Serialize` and
    /// `Deserialize` besides `std::error::Error` (std's own error types do not: wrap
    /// them, or map them to your error enum, in the task).
    ///
    /// `task` takes one argument, or several spread from the tuple `args` (see
    /// [`Target`](crate::Target)), as with [`submit`](Self::submit).
    pub fn try_submit<F, M, R, E>(&self, task: F, args: F::Args) -> Result<Future<R>, TaskError>
    where
        F: crate::Target<M, Output = Result<R, E>>,
        F::Args: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
        E: Serialize + DeserializeOwned + std::error::Error + Send + Sync + 'static,
    {
        self.shared.submit_with(
            &boot::entry_of_target::<F, M>(&task),
            &args,
            |answer: Result<R, E>| answer.map_err(TaskError::failed),
            false,
        )
    }

    /// Stops a task: cancels it if it has not started yet, or kills the
    /// worker running it, so that its future fails with [`TaskError::Cancelled`] and a
    /// replacement worker takes the dead one's place; the pool goes on with the rest
    /// (tasks queued behind it on that worker go back to the queue, unharmed), whatever
    /// its [`WorkerDeath`] policy. Returns false when the task had already finished (or
    /// been cancelled).
    ///
    /// Python has no way to stop a running task of a process pool; this is the one
    /// asyncio's cancellation needs. The kill is `SIGKILL`: the task gets no chance to
    /// clean up, so a task holding a process-shared lock leaves it to the next acquirer
    /// as owner-died. A task that finishes before the kill lands keeps its result.
    ///
    /// Returns at once; wait on the future to see the outcome.
    ///
    /// ```
    /// use std::time::Duration;
    /// use flotilla_core::TaskError;
    /// use flotilla_process::ProcessPoolExecutor;
    ///
    /// fn forever(_: ()) {
    ///     loop {
    ///         std::thread::sleep(Duration::from_secs(1));
    ///     }
    /// }
    ///
    /// let pool = ProcessPoolExecutor::builder().max_workers(1).build().unwrap();
    /// let stuck = pool.submit(forever, ()).unwrap();
    /// while !stuck.running() {
    ///     std::thread::sleep(Duration::from_millis(1));
    /// }
    /// assert!(pool.stop(&stuck));
    /// let outcome = stuck.result_timeout(Duration::from_secs(60));
    /// assert!(matches!(outcome, Err(TaskError::Cancelled)));
    /// ```
    pub fn stop<R>(&self, future: &Future<R>) -> bool {
        if future.done() {
            return false;
        }
        if future.cancel() {
            return true;
        }
        self.shared.lock().stops.push(future.id());
        self.shared.alert_manager();
        true
    }

    /// Applies `task` to every item on the workers, `chunksize` items per message
    /// (`None`: 1, as Python's default; every map and imap of flotilla takes a number or
    /// `None` alike): a
    /// lazy iterator of the results in input order, stopping after the first failure
    /// (Python's `ProcessPoolExecutor.map`).
    ///
    /// At most [`buffer_size`](ProcessMap::buffer_size) chunks are in flight ahead of
    /// the consumer (by default 32 per worker: enough to keep every worker busy with
    /// short tasks), so a huge input is not consumed eagerly (Python 3.14's
    /// `buffersize`); nothing is submitted before the first `next()`.
    pub fn map<F, I, R>(
        &self,
        task: F,
        items: I,
        chunksize: impl Into<Option<usize>>,
    ) -> ProcessMap<I::IntoIter, R>
    where
        F: Fn(I::Item) -> R + 'static,
        I: IntoIterator,
        I::Item: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        ProcessMap::new(
            Arc::clone(&self.shared),
            boot::entry_of_chunk::<F, I::Item, R>(&task),
            items.into_iter(),
            chunksize.into().unwrap_or(1).max(1),
            MAP_WINDOW * self.max_workers,
        )
    }

    /// Stops taking tasks. With `cancel_futures`, cancels the ones that have not
    /// started (queued, or waiting in a worker's pipeline); with `wait`, blocks until
    /// every task is done and the workers have exited.
    pub fn shutdown(&self, wait: bool, cancel_futures: bool) {
        let (cancelled, held): (Vec<Job>, Vec<Canceller>) = {
            let mut queue = self.shared.lock();
            queue.shutdown = true;
            if cancel_futures {
                (
                    queue.jobs.drain(..).collect(),
                    queue.held.drain().map(|(_, cancel)| cancel).collect(),
                )
            } else {
                (Vec::new(), Vec::new())
            }
        };
        for job in cancelled {
            job.sink.cancel();
        }
        // Those in a pipeline: the manager skips them when their worker is free (a task
        // that started meanwhile is not cancelled: it runs to the end).
        for cancel in held {
            cancel();
        }
        self.shared.alert_manager();
        if wait {
            self.wait_for_manager(None);
        }
    }

    /// Like `shutdown(wait = true, ..)` with a bound on the wait: true when every task
    /// is done and the workers have exited in time (the twin of
    /// `ThreadPoolExecutor::shutdown_timeout`). On false the pool goes on shutting down;
    /// call it again, or `shutdown(true, ..)`, to wait more.
    ///
    /// ```
    /// use std::time::Duration;
    /// use flotilla_process::ProcessPoolExecutor;
    ///
    /// fn nap(ms: u64) {
    ///     std::thread::sleep(Duration::from_millis(ms));
    /// }
    ///
    /// let pool = ProcessPoolExecutor::builder().max_workers(1).build().unwrap();
    /// pool.submit(nap, 2_000).unwrap();
    /// assert!(!pool.shutdown_timeout(Duration::from_millis(10), false));
    /// assert!(pool.shutdown_timeout(Duration::from_secs(60), false));
    /// ```
    pub fn shutdown_timeout(&self, timeout: Duration, cancel_futures: bool) -> bool {
        self.shutdown(false, cancel_futures);
        self.wait_for_manager(Some(timeout))
    }

    /// Waits for the manager thread to end (it ends once the pool is shut down and its
    /// tasks are done), at most `timeout`; true when it has.
    fn wait_for_manager(&self, timeout: Option<Duration>) -> bool {
        let deadline = flotilla_core::Deadline::after(timeout);
        let mut slot = self.manager.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(handle) = slot.take() else {
            return true; // joined before
        };
        // A JoinHandle has no timed join: look, then sleep a little, until the deadline.
        let mut pause = Duration::from_micros(100);
        while !handle.is_finished() {
            if deadline.expired() {
                *slot = Some(handle);
                return false;
            }
            std::thread::sleep(pause.min(deadline.remaining().unwrap_or(pause)));
            pause = (pause * 2).min(Duration::from_millis(20));
        }
        let _ = handle.join();
        true
    }
}

impl ProcessPoolExecutor {
    /// Fails every pending task with [`TaskError::ShutDown`], stops the workers at once
    /// and waits for the manager to end (`Pool::terminate`).
    pub(crate) fn terminate(&self) {
        {
            let mut queue = self.shared.lock();
            queue.shutdown = true;
            queue.terminate = true;
        }
        // `shutdown` wakes the manager, which sees `terminate`, and waits for it.
        self.shutdown(true, false);
    }
}

impl Drop for ProcessPoolExecutor {
    fn drop(&mut self) {
        self.shutdown(true, false);
    }
}

impl fmt::Debug for ProcessPoolExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let queue = self.shared.lock();
        f.debug_struct("ProcessPoolExecutor")
            .field("max_workers", &self.max_workers)
            .field("queued", &queue.jobs.len())
            .field("shut_down", &queue.shutdown)
            .field("broken", &queue.broken)
            .finish()
    }
}
