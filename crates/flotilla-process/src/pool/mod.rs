//! [`ProcessPoolExecutor`]: Python's `concurrent.futures.ProcessPoolExecutor`, which
//! never hangs on a dead worker.
//!
//! # How it works
//!
//! Submissions are encoded on the caller's thread (so an argument that cannot be sent is
//! an error of `submit`, not of the task) and queued. One manager thread owns the
//! workers: it starts them on demand up to `max_workers`, keeps up to [`PIPELINE`] tasks
//! in flight per worker (so a worker never waits for the round trip to learn of its next
//! task), reads the answers, completes the futures, and watches for a worker's death,
//! which shows as end of file on its connection.
//!
//! A worker that dies fails exactly the task it held with [`TaskError::WorkerDied`],
//! naming the signal or exit code; the tasks queued behind it go back to the front of
//! the queue, and a new worker takes its place ([`WorkerDeath::FailTask`], the default).
//! [`WorkerDeath::BreakPool`] gives Python's behaviour instead: the pool is broken and
//! every pending task fails. The default is the per-task one because a pool that loses
//! one worker to the OOM killer can still finish everything else, which is what a user
//! who chose processes for isolation wants.

mod classic;
mod map;
mod worker;

use std::collections::VecDeque;
use std::fmt;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use flotilla_core::{Completer, Future, FutureId, TaskError};
use flotilla_ipc::handle::{self, Fd};
use flotilla_ipc::{Connection, pipe};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use self::classic::{AsyncResult, Pool, PoolBuilder};
pub use self::map::ProcessMap;
use self::worker::{Response, WorkerArgs, task_frame, worker_main};
use crate::boot;
use crate::context::{Context, StartMethod};
use crate::error::Error;
use crate::fds::Internal;
use crate::process::Process;

/// How many tasks a worker may have in flight: one running, one waiting beside it.
pub const PIPELINE: usize = 2;

/// Arguments larger than this go to a worker only when it is idle, so the pool never
/// blocks writing to a worker that is itself blocked writing a large result back.
const SMALL_ARGS: usize = 32 * 1024;

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
    /// Completes the task with a worker's encoded answer.
    fn finish(self: Box<Self>, outcome: Result<(Vec<u8>, Vec<OwnedFd>), TaskError>);
    /// Cancels a task that will never run.
    fn cancel(self: Box<Self>);
    /// The task's future.
    fn id(&self) -> FutureId;
}

/// A task's sink: the completer and how its worker's answer becomes the outcome.
struct Typed<R, W> {
    completer: Completer<R>,
    /// What the worker sends (`R` itself, or `Result<R, E>` for `try_submit`) and how it
    /// becomes an outcome.
    outcome: fn(W) -> Result<R, TaskError>,
}

impl<R, W> Sink for Typed<R, W>
where
    R: Send,
    W: DeserializeOwned,
{
    fn start(&self) -> bool {
        self.completer.set_running_or_notify_cancel()
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
}

/// What the executor, its map iterators and its manager share.
struct Shared {
    queue: Mutex<Queue>,
    /// The manager sets this before it sleeps in `poll`, when a new task could be
    /// dispatched at once; a submitter that finds it set writes to `wake`.
    sleeping: AtomicBool,
    wake: Internal<Connection>, // flotilla's own: see `fds`
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
        // A full socket already holds a wake-up; nothing more is needed.
        let _ = self.wake.send_bytes(&[1]);
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
    fn submit_entry<A, R>(&self, entry: usize, args: &A) -> Result<Future<R>, TaskError>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned + Send + 'static,
    {
        self.submit_with(entry, args, Ok)
    }

    /// Like `submit_entry`, for an entry whose worker-side value `W` becomes the outcome
    /// through `outcome`.
    fn submit_with<A, R, W>(
        &self,
        entry: usize,
        args: &A,
        outcome: fn(W) -> Result<R, TaskError>,
    ) -> Result<Future<R>, TaskError>
    where
        A: Serialize + ?Sized,
        R: Send + 'static,
        W: DeserializeOwned + 'static,
    {
        let (args, fds) = handle::encode(args).map_err(|e| TaskError::Remote {
            message: format!("the task's arguments could not be encoded: {e}"),
            backtrace: None,
        })?;
        let (completer, fut) = Completer::new();
        self.submit_job(Job {
            frame: task_frame(args, entry),
            fds,
            sink: Box::new(Typed { completer, outcome }),
        })?;
        Ok(fut)
    }
}

/// A pool of worker processes running functions and returning [`Future`]s: Python's
/// `concurrent.futures.ProcessPoolExecutor`.
///
/// Tasks are fn items or closures that capture nothing, with serde arguments and
/// results, as for [`Process::new`]; arguments may hold flotilla handles (a
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
/// assert_eq!(pool.submit(square, 7).unwrap().result(None).unwrap(), 49);
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
    /// [`TaskError::Broken`] naming the failure; it is not retried.
    pub fn initializer<F, A>(mut self, init: F, args: A) -> Self
    where
        F: Fn(A) + 'static,
        A: Serialize + DeserializeOwned,
    {
        let _ = init;
        let entry = boot::entry_of::<F, A, ()>();
        match handle::encode(&args) {
            Ok((bytes, fds)) => self.initializer = Some((entry, bytes, fds)),
            Err(e) => self.initializer_error = Some(e.to_string()),
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
        if let Some(e) = self.initializer_error {
            return Err(Error::Unsupported(format!(
                "the initializer's arguments could not be encoded: {e}"
            )));
        }
        let max_workers = match self.max_workers {
            Some(0) => return Err(Error::Unsupported("max_workers must be at least 1".into())),
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
        let (wake_rx, wake_tx) = pipe(true)?;
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            sleeping: AtomicBool::new(false),
            wake: Internal::new(wake_tx),
        });
        let started = Arc::new(AtomicUsize::new(0));
        let manager = Manager {
            shared: Arc::clone(&shared),
            wake: Internal::new(wake_rx),
            context,
            max_workers,
            max_tasks: self.max_tasks_per_child,
            init: self.initializer,
            on_death: self.on_worker_death,
            eager: self.eager,
            workers: Vec::new(),
            started: Arc::clone(&started),
            stops: Vec::new(),
        };
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
    pub fn submit<F, A, R>(&self, task: F, args: A) -> Result<Future<R>, TaskError>
    where
        F: Fn(A) -> R + 'static,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        let _ = task;
        self.shared.submit_entry(boot::entry_of::<F, A, R>(), &args)
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
    /// assert_eq!(pool.try_submit(parse, "7".into()).unwrap().result(None).unwrap(), 7);
    /// let err = pool.try_submit(parse, "x".into()).unwrap().result(None).unwrap_err();
    /// assert_eq!(err.downcast_ref(), Some(&NotANumber("x".into())));
    /// ```
    ///
    /// The error type travels by serde, so it must implement `Serialize` and
    /// `Deserialize` besides `std::error::Error` (std's own error types do not: wrap
    /// them, or map them to your error enum, in the task).
    pub fn try_submit<F, A, R, E>(&self, task: F, args: A) -> Result<Future<R>, TaskError>
    where
        F: Fn(A) -> Result<R, E> + 'static,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
        E: Serialize + DeserializeOwned + std::error::Error + Send + Sync + 'static,
    {
        let _ = task;
        self.shared.submit_with(
            boot::entry_of::<F, A, Result<R, E>>(),
            &args,
            |answer: Result<R, E>| answer.map_err(TaskError::failed),
        )
    }

    /// Stops a task: cancels it if it has not been sent to a worker yet, or kills the
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
    /// let outcome = stuck.result(Some(Duration::from_secs(60)));
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

    /// Applies `task` to every item on the workers, `chunksize` items per message: a
    /// lazy iterator of the results in input order, stopping after the first failure
    /// (Python's `ProcessPoolExecutor.map`).
    ///
    /// At most [`buffer_size`](ProcessMap::buffer_size) chunks are in flight ahead of
    /// the consumer, so a huge input is not consumed eagerly (Python 3.14's
    /// `buffersize`); nothing is submitted before the first `next()`.
    pub fn map<F, I, R>(&self, task: F, items: I, chunksize: usize) -> ProcessMap<I::IntoIter, R>
    where
        F: Fn(I::Item) -> R + 'static,
        I: IntoIterator,
        I::Item: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        let _ = task;
        ProcessMap::new(
            Arc::clone(&self.shared),
            boot::entry_of_chunk::<F, I::Item, R>(),
            items.into_iter(),
            chunksize.max(1),
            4 * self.max_workers,
        )
    }

    /// Stops taking tasks. With `cancel_futures`, cancels the ones not yet sent to a
    /// worker; with `wait`, blocks until every task is done and the workers have exited.
    pub fn shutdown(&self, wait: bool, cancel_futures: bool) {
        let cancelled: Vec<Job> = {
            let mut queue = self.shared.lock();
            queue.shutdown = true;
            if cancel_futures {
                queue.jobs.drain(..).collect()
            } else {
                Vec::new()
            }
        };
        for job in cancelled {
            job.sink.cancel();
        }
        self.shared.alert_manager();
        if wait {
            let handle = self
                .manager
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let Some(handle) = handle {
                let _ = handle.join();
            }
        }
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

/// One worker, as the manager sees it.
struct Worker {
    process: Process<()>,
    conn: Internal<Connection>, // flotilla's own: see `fds`
    inflight: VecDeque<Job>,
    /// Tasks it may still be given before it retires (`max_tasks_per_child`).
    left: Option<usize>,
    /// Killed by [`ProcessPoolExecutor::stop`] to stop this task.
    stopped: Option<FutureId>,
}

/// The manager thread's state.
struct Manager {
    shared: Arc<Shared>,
    wake: Internal<Connection>, // flotilla's own: see `fds`
    context: Context,
    max_workers: usize,
    max_tasks: Option<usize>,
    init: Option<(usize, Vec<u8>, Vec<OwnedFd>)>,
    on_death: WorkerDeath,
    /// Start every worker at once rather than on demand (`Pool`, as in Python).
    eager: bool,
    workers: Vec<Worker>,
    started: Arc<AtomicUsize>,
    /// Stop requests for tasks not yet running on a worker: a task second in a worker's
    /// pipeline is stopped when it reaches the front.
    stops: Vec<FutureId>,
}

impl Manager {
    fn run(mut self) {
        loop {
            if let Err(reason) = self.start_workers() {
                self.break_pool(reason);
                break;
            }
            self.dispatch();
            self.stop_tasks();
            let (shutdown, idle) = {
                let queue = self.shared.lock();
                if queue.broken.is_some() {
                    break;
                }
                if queue.terminate {
                    drop(queue);
                    self.fail_all(&TaskError::ShutDown, true);
                    break;
                }
                let idle =
                    queue.jobs.is_empty() && self.workers.iter().all(|w| w.inflight.is_empty());
                (queue.shutdown, idle)
            };
            if shutdown && idle {
                break;
            }
            // Ask to be woken by a submission only when one could be dispatched at once.
            let capacity = self.workers.len() < self.max_workers
                || self.workers.iter().any(|w| self.has_room(w, 0));
            self.shared.sleeping.store(capacity, Ordering::Release);
            if capacity && !self.shared.lock().jobs.is_empty() {
                self.shared.sleeping.store(false, Ordering::Release);
                continue;
            }
            self.wait_for_events();
        }
        self.stop_workers();
    }

    fn has_room(&self, worker: &Worker, args_len: usize) -> bool {
        let depth = if args_len > SMALL_ARGS { 1 } else { PIPELINE };
        worker.inflight.len() < depth && worker.left.is_none_or(|left| left > 0)
    }

    /// Starts workers while more tasks wait than there are idle workers, up to
    /// `max_workers` (or all of them at once, when eager).
    fn start_workers(&mut self) -> Result<(), String> {
        loop {
            let waiting = self.shared.lock().jobs.len();
            let idle = self
                .workers
                .iter()
                .filter(|w| w.inflight.is_empty())
                .count();
            let wanted = self.eager || waiting > idle;
            if !wanted || self.workers.len() >= self.max_workers {
                return Ok(());
            }
            let worker = self.start_worker()?;
            self.workers.push(worker);
        }
    }

    fn start_worker(&mut self) -> Result<Worker, String> {
        let (ours, theirs) = pipe(true).map_err(|e| e.to_string())?;
        let init = match &self.init {
            Some((entry, bytes, fds)) => {
                let fds = fds
                    .iter()
                    .map(|fd| fd.try_clone().map(Fd::from))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("could not share the initializer's handles: {e}"))?;
                Some((*entry, bytes.clone(), fds))
            }
            None => None,
        };
        let n = self.started.fetch_add(1, Ordering::Relaxed) + 1;
        let process = self
            .context
            .process(
                worker_main,
                WorkerArgs {
                    conn: theirs,
                    init,
                    max_tasks: self.max_tasks,
                },
            )
            .name(format!("PoolWorker-{n}"))
            .daemon(true)
            .start()
            .map_err(|e| format!("could not start a worker: {e}"))?;
        Ok(Worker {
            process,
            conn: Internal::new(ours),
            inflight: VecDeque::new(),
            left: self.max_tasks,
            stopped: None,
        })
    }

    /// Sends queued tasks to workers with room, the least busy first: an idle worker
    /// gets a task before any worker gets a second one in flight.
    fn dispatch(&mut self) {
        loop {
            let job = {
                let mut queue = self.shared.lock();
                let Some(front) = queue.jobs.front() else {
                    return;
                };
                let args_len = front.frame.len();
                let Some(i) = (0..self.workers.len())
                    .filter(|&i| self.has_room(&self.workers[i], args_len))
                    .min_by_key(|&i| self.workers[i].inflight.len())
                else {
                    return;
                };
                (i, queue.jobs.pop_front().expect("just looked"))
            };
            let (i, job) = job;
            if !job.sink.start() {
                continue; // cancelled while queued
            }
            let worker = &mut self.workers[i];
            match worker.conn.send_frame(&job.frame, &job.fds) {
                Ok(()) => {
                    if let Some(left) = &mut worker.left {
                        *left -= 1;
                    }
                    worker.inflight.push_back(job);
                }
                // The worker died: its end of file will be read shortly and it will be
                // replaced; this task, which no one ran, goes back with its others.
                Err(flotilla_ipc::Error::Eof) => {
                    worker.inflight.push_back(job);
                    worker.left = Some(0);
                }
                Err(e) => job.sink.finish(Err(TaskError::Remote {
                    message: format!("could not send the task to a worker: {e}"),
                    backtrace: None,
                })),
            }
        }
    }

    /// Carries out stop requests: kills each worker whose running task (the front of its
    /// pipeline) was asked to stop. Requests for a task waiting behind another in a
    /// worker's pipeline stay until it runs; those for tasks no longer anywhere (finished)
    /// are dropped.
    fn stop_tasks(&mut self) {
        self.stops.append(&mut self.shared.lock().stops);
        if self.stops.is_empty() {
            return;
        }
        let mut waiting = Vec::new();
        for id in std::mem::take(&mut self.stops) {
            for worker in &mut self.workers {
                let Some(at) = worker.inflight.iter().position(|job| job.sink.id() == id) else {
                    continue;
                };
                if at > 0 {
                    waiting.push(id);
                } else if worker.stopped.is_none() {
                    worker.stopped = Some(id);
                    // No more tasks for it: its end of file comes next.
                    worker.left = Some(0);
                    if let Err(e) = worker.process.kill() {
                        flotilla_core::event!(flotilla_core::log::Level::WARN, error = %e, "could not kill a worker to stop its task");
                    }
                }
                break;
            }
        }
        self.stops = waiting;
    }

    /// Sleeps until a submission, an answer, or a worker's end; handles what came.
    fn wait_for_events(&mut self) {
        let mut fds = vec![self.wake.as_fd()];
        fds.extend(self.workers.iter().map(|w| w.conn.as_fd()));
        let Ok(ready) = flotilla_ipc::wait_indices(&fds, None) else {
            return;
        };
        if ready.contains(&0) {
            // Drain the wake-ups; the first one is there (`wait` said so).
            let mut buf = [0u8; 64];
            while self.wake.recv_bytes_into(&mut buf).is_ok()
                && self.wake.poll(Some(Duration::ZERO)).unwrap_or(false)
            {}
        }
        // Highest index first, so removing a dead worker keeps the others' indices.
        for &i in ready.iter().rev().filter(|&&i| i > 0) {
            self.read_answers(i - 1);
        }
    }

    /// Reads every answer worker `i` has sent; handles its end. Called when its
    /// connection is readable, so the first read does not wait for a frame to begin.
    fn read_answers(&mut self, i: usize) {
        loop {
            let worker = &mut self.workers[i];
            let (bytes, fds) = match worker.conn.recv_frame() {
                Ok(frame) => frame,
                Err(_) => {
                    self.worker_ended(i);
                    return;
                }
            };
            let outcome = match Response::from_frame(bytes) {
                None => {
                    flotilla_core::event!(
                        flotilla_core::log::Level::ERROR,
                        "a worker sent garbage; replacing it"
                    );
                    let _ = worker.process.kill();
                    None
                }
                Some(Response::Ready) => None,
                Some(Response::InitFailed(message)) => {
                    self.break_pool(format!("a worker's initializer failed: {message}"));
                    return;
                }
                Some(Response::Done(value)) => Some(Ok((value, fds))),
                Some(Response::Panicked(message)) => Some(Err(TaskError::Panicked { message })),
                Some(Response::Failed(message)) => Some(Err(TaskError::Remote {
                    message,
                    backtrace: None,
                })),
            };
            if let Some(outcome) = outcome
                && let Some(job) = worker.inflight.pop_front()
            {
                job.sink.finish(outcome);
            }
            match worker.conn.poll(Some(Duration::ZERO)) {
                Ok(true) => {}
                Ok(false) => return,
                Err(_) => {
                    self.worker_ended(i);
                    return;
                }
            }
        }
    }

    /// Worker `i` closed its connection: it retired or died.
    fn worker_ended(&mut self, i: usize) {
        let mut worker = self.workers.swap_remove(i);
        let how = match worker.process.join(Some(Duration::from_secs(10))) {
            Ok(()) => "exited".to_owned(),
            Err(Error::Signaled { signal, name }) => {
                format!("was killed by signal {signal} ({name})")
            }
            Err(Error::Exited { code }) => format!("exited with code {code}"),
            Err(Error::Timeout(_)) => {
                let _ = worker.process.kill();
                "closed its connection and hung (it was killed)".to_owned()
            }
            Err(e) => e.to_string(),
        };
        let Some(held) = worker.inflight.pop_front() else {
            return; // retired after its last task, or died idle: nothing lost
        };
        if let Some(stopped) = worker.stopped {
            // Killed on purpose. The task it held is the one to stop — unless that one
            // finished just before the kill and the next had started: that one did
            // nothing wrong, so it goes back to run again, with the rest.
            if held.sink.id() == stopped {
                self.requeue(worker.inflight);
                held.sink.finish(Err(TaskError::Cancelled));
            } else {
                worker.inflight.push_front(held);
                self.requeue(worker.inflight);
            }
            return;
        }
        let reason = format!(
            "{} (pid {}) {how} while running this task",
            worker.process.name(),
            worker.process.pid()
        );
        match self.on_death {
            WorkerDeath::FailTask => {
                held.sink.finish(Err(TaskError::WorkerDied { reason }));
                self.requeue(worker.inflight);
            }
            WorkerDeath::BreakPool => {
                held.sink.finish(Err(TaskError::WorkerDied {
                    reason: reason.clone(),
                }));
                for job in worker.inflight.drain(..) {
                    job.sink.finish(Err(TaskError::Broken {
                        reason: reason.clone(),
                    }));
                }
                self.break_pool(format!("a worker died: {reason}"));
            }
        }
    }

    /// Puts tasks a worker held but never started back at the front of the queue, in
    /// order.
    fn requeue(&self, jobs: VecDeque<Job>) {
        let mut queue = self.shared.lock();
        for job in jobs.into_iter().rev() {
            queue.jobs.push_front(job);
        }
    }

    /// Marks the pool broken and fails everything pending.
    fn break_pool(&mut self, reason: String) {
        flotilla_core::event!(flotilla_core::log::Level::ERROR, %reason, "process pool broken");
        self.shared.lock().broken = Some(reason.clone());
        self.fail_all(&TaskError::Broken { reason }, true);
    }

    /// Fails every queued and in-flight task with `error`; with `kill`, also stops the
    /// workers at once.
    fn fail_all(&mut self, error: &TaskError, kill: bool) {
        let queued: Vec<Job> = self.shared.lock().jobs.drain(..).collect();
        for job in queued {
            job.sink.finish(Err(error.clone()));
        }
        for worker in &mut self.workers {
            for job in worker.inflight.drain(..) {
                job.sink.finish(Err(error.clone()));
            }
            if kill {
                let _ = worker.process.terminate();
            }
        }
    }

    /// Closes every worker's connection (they exit at end of file) and reaps them.
    fn stop_workers(&mut self) {
        let workers = std::mem::take(&mut self.workers);
        let mut processes = Vec::new();
        for worker in workers {
            for job in worker.inflight {
                job.sink.finish(Err(TaskError::ShutDown));
            }
            drop(worker.conn);
            processes.push(worker.process);
        }
        for process in processes {
            if matches!(
                process.join(Some(Duration::from_secs(10))),
                Err(Error::Timeout(_))
            ) {
                let _ = process.kill();
                let _ = process.join(Some(Duration::from_secs(10)));
            }
        }
    }
}
