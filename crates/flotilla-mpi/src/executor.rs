//! [`MpiPoolExecutor`]: the executor, its map iterator, and the client's progress thread.
//!
//! # How it works
//!
//! A submission is encoded on the caller's thread (an argument that cannot be sent is an
//! error of `submit`, not of the task) and queued. One progress thread makes every MPI
//! call of the client while the executor lives (`MPI_THREAD_SERIALIZED` is all it
//! needs): it hands queued tasks to the least loaded worker rank, up to
//! [`pipeline`](MpiPoolExecutorBuilder::pipeline) tasks in flight per rank (so a rank's
//! next task is already there when it finishes one), with non-blocking sends that own
//! the encoded bytes until MPI is done with them; it takes the answers with matched
//! probes, decodes them into the futures, and completes them — so `wait`,
//! `as_completed`, done callbacks and `.await` work as on every flotilla future.
//!
//! A task is marked running when it is sent to its rank: `cancel` reaches the queued
//! ones only (a task in a rank's pipeline runs, as in `mpi4py.futures`).
//!
//! The thread polls MPI (MPI has no descriptor to sleep on): it spins briefly, yielding
//! the CPU, then sleeps longer and longer up to a millisecond while tasks are out, and
//! sleeps until the next submission when none is.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use flotilla_core::log::Level;
use flotilla_core::{Completer, Future, OrderedWindow, TaskError, event};
use flotilla_process::Target;
use flotilla_process::task::Entry;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::comm::{Comm, Sending};
use crate::error::BuildError;
use crate::wire::{self, Kind, TAG_RESULT, TAG_STOP, TAG_TASK};
use crate::world::{self, Backoff, fatal};

/// How many tasks a worker rank has in flight by default: one running, one waiting
/// beside it.
pub const PIPELINE: usize = 2;

/// A task's completion, type-erased for the progress thread.
trait Sink: Send {
    /// Marks the task running; false when it was cancelled and must be skipped.
    fn start(&self) -> bool;
    /// Completes the task with its rank's encoded answer.
    fn finish(self: Box<Self>, outcome: Result<Vec<u8>, TaskError>);
    /// Cancels a task that will never run.
    fn cancel(self: Box<Self>);
}

/// A task's sink: the completer and how the rank's answer becomes the outcome.
struct Typed<R, W> {
    completer: Completer<R>,
    /// What the rank sends (`R` itself, or `Result<R, E>` for `try_submit`) and how it
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

    fn finish(self: Box<Self>, outcome: Result<Vec<u8>, TaskError>) {
        let value = outcome.and_then(|bytes| {
            flotilla_core::codec::decode::<W>(&bytes)
                .map_err(|e| remote(format!("the task's value could not be decoded: {e}")))
                .and_then(self.outcome)
        });
        self.completer.complete(value);
    }

    fn cancel(self: Box<Self>) {
        self.completer.cancel();
    }
}

fn remote(message: String) -> TaskError {
    TaskError::Remote {
        message,
        backtrace: None,
    }
}

/// A task waiting for a rank.
struct Job {
    /// The encoded arguments (the task's trailer is appended when it is sent).
    args: Vec<u8>,
    entry: u64,
    sink: Box<dyn Sink>,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    shutdown: bool,
}

/// What the executor, its map iterators and its progress thread share.
struct Shared {
    queue: Mutex<Queue>,
    /// Set by the progress thread before it parks; a submitter that finds it set
    /// unparks it.
    sleeping: AtomicBool,
    thread: OnceLock<Thread>,
    /// The progress thread has ended.
    ended: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // No user code runs under this lock (futures are completed after it is released).
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wake(&self, always: bool) {
        let sleeping = self.sleeping.swap(false, Ordering::SeqCst);
        if (sleeping || always)
            && let Some(thread) = self.thread.get()
        {
            thread.unpark();
        }
    }

    /// Encodes `args` for `entry` and queues the task; its future.
    fn submit_with<A, R, W>(
        &self,
        entry: &Result<Entry, String>,
        args: &A,
        outcome: fn(W) -> Result<R, TaskError>,
    ) -> Result<Future<R>, TaskError>
    where
        A: Serialize + ?Sized,
        R: Send + 'static,
        W: DeserializeOwned + 'static,
    {
        let entry = entry.as_ref().map_err(|why| remote(why.clone()))?;
        let args = entry.encode_args(args).map_err(remote)?;
        let (completer, future) = Completer::relayed();
        {
            let mut queue = self.lock();
            if queue.shutdown {
                return Err(TaskError::ShutDown);
            }
            queue.jobs.push_back(Job {
                args,
                entry: entry.offset(),
                sink: Box::new(Typed { completer, outcome }),
            });
        }
        self.wake(false);
        Ok(future)
    }

    /// Stops taking tasks; with `cancel_futures`, cancels the queued ones.
    fn shutdown(&self, cancel_futures: bool) {
        let cancelled: Vec<Job> = {
            let mut queue = self.lock();
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
        self.wake(true);
    }
}

/// The static world's live executor, for the exit hook.
static ACTIVE: Mutex<Option<Arc<Shared>>> = Mutex::new(None);

fn active() -> MutexGuard<'static, Option<Arc<Shared>>> {
    ACTIVE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// At exit: shuts the static world's live executor down (cancelling its queued tasks)
/// and waits for the tasks in flight, so the workers can be stopped.
pub(crate) fn stop_active() {
    let Some(shared) = active().clone() else {
        return;
    };
    shared.shutdown(true);
    if shared.thread.get().map(Thread::id) == Some(std::thread::current().id()) {
        return; // the program exits from a done callback: nobody else can finish
    }
    while !shared.ended.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// An executor whose tasks run on the other ranks of an MPI job: mpi4py's
/// `MPIPoolExecutor`, with the API of flotilla's `ProcessPoolExecutor`, so a program
/// switches between the two by changing the line that builds it.
///
/// Tasks are fn items, fn pointers or closures that capture nothing, with serde
/// arguments and results: every rank runs the same binary, so a task is named by its
/// function's place in it (flotilla-process's [`Entry`]) and its arguments travel
/// encoded with flotilla's codec. Handles (pipes, shared memory) cannot travel to
/// another host, and are refused with the codec's message. Its futures are
/// flotilla-core futures: `wait`, `as_completed` and `.await` work on them beside any
/// other executor's.
///
/// Dropping the executor is `shutdown(wait = true)`.
///
/// ```no_run
/// use flotilla_mpi::MpiPoolExecutor;
///
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// fn main() {
///     // `mpiexec -n 3 ./prog`: rank 0 goes on, ranks 1 and 2 serve tasks.
///     flotilla_mpi::init().expect("launch with mpiexec -n 3");
///     let pool = MpiPoolExecutor::builder().build().unwrap();
///     assert_eq!(pool.submit(square, 7).unwrap().result().unwrap(), 49);
///     let squares: Vec<u64> = pool.map(square, 1..=5, 2).map(Result::unwrap).collect();
///     assert_eq!(squares, [1, 4, 9, 16, 25]);
/// }
/// ```
pub struct MpiPoolExecutor {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
    workers: usize,
}

/// Options for an [`MpiPoolExecutor`]: `MpiPoolExecutor::builder()`.
#[derive(Debug, Default, Clone)]
pub struct MpiPoolExecutorBuilder {
    max_workers: Option<usize>,
    pipeline: Option<usize>,
}

impl MpiPoolExecutorBuilder {
    /// The most worker ranks to use. Default: every rank but the client.
    pub fn max_workers(mut self, n: usize) -> Self {
        self.max_workers = Some(n);
        self
    }

    /// How many tasks a worker rank may have in flight (at least 1; default
    /// [`PIPELINE`]). More hides the round trip of small tasks; each one waiting in a
    /// rank's pipeline is already running as far as `cancel` is concerned.
    pub fn pipeline(mut self, n: usize) -> Self {
        self.pipeline = Some(n.max(1));
        self
    }

    /// Creates the executor over the static world that [`init`](crate::init) set up:
    /// its workers are ranks 1..N-1. One executor at a time uses them
    /// ([`BuildError::Busy`] otherwise); the next one may start once the last one has
    /// ended (dropped, or `shutdown(wait = true)`).
    pub fn build(self) -> Result<MpiPoolExecutor, BuildError> {
        if self.max_workers == Some(0) {
            return Err(BuildError::NoWorkers);
        }
        let (comm, world) = world::acquire()?;
        let n = world.workers().min(self.max_workers.unwrap_or(usize::MAX));
        let workers: Vec<i32> = (1..=n as i32).collect();
        let executor = self.start(comm, workers, false, Some(end_static));
        match &executor {
            Ok(executor) => *active() = Some(Arc::clone(&executor.shared)),
            Err(_) => world::release(),
        }
        executor
    }

    /// Starts the progress thread over `workers` of `comm`. `stop_workers`: tell them
    /// to stop serving (and free `comm`) when the executor ends; `on_end` runs on the
    /// progress thread as it ends.
    pub(crate) fn start(
        self,
        comm: Comm,
        workers: Vec<i32>,
        stop_workers: bool,
        on_end: Option<fn()>,
    ) -> Result<MpiPoolExecutor, BuildError> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            sleeping: AtomicBool::new(false),
            thread: OnceLock::new(),
            ended: AtomicBool::new(false),
        });
        let n = workers.len();
        let progress = Progress {
            shared: Arc::clone(&shared),
            comm,
            load: vec![0; n],
            workers,
            pipeline: self.pipeline.unwrap_or(PIPELINE),
            tasks: HashMap::new(),
            sending: Vec::new(),
            next_id: 0,
            stop_workers,
            on_end,
        };
        let handle = std::thread::Builder::new()
            .name("MpiPoolExecutor-progress".into())
            .spawn(move || progress.run())
            .map_err(BuildError::Thread)?;
        let _ = shared.thread.set(handle.thread().clone());
        // A submission made before the thread handle was recorded found no thread to
        // wake: wake it now.
        shared.wake(true);
        Ok(MpiPoolExecutor {
            shared,
            thread: Mutex::new(Some(handle)),
            workers: n,
        })
    }
}

/// The end of a static-world executor: the world is free for the next one.
fn end_static() {
    *active() = None;
    world::release();
}

impl MpiPoolExecutor {
    /// Options for a new executor.
    pub fn builder() -> MpiPoolExecutorBuilder {
        MpiPoolExecutorBuilder::default()
    }

    /// The number of worker ranks.
    pub fn max_workers(&self) -> usize {
        self.workers
    }

    /// Schedules `task(args)` on a worker rank and returns the future of its value.
    ///
    /// `task` is any [`Target`](flotilla_process::Target): a function of one argument,
    /// or of two to eight given as a tuple and spread (`submit(add, (2, 3))` calls
    /// `add(2, 3)`), as `ProcessPoolExecutor::submit`. A closure's argument types must
    /// be written out (`|x: u64| x * 2`).
    ///
    /// Fails with [`TaskError::ShutDown`] after shutdown, or [`TaskError::Remote`] when
    /// the task or its arguments cannot be sent (a closure that captures data, a
    /// handle, more than 2 GiB).
    pub fn submit<F, M>(&self, task: F, args: F::Args) -> Result<Future<F::Output>, TaskError>
    where
        F: Target<M>,
        F::Args: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned + Send,
    {
        self.shared
            .submit_with(&Entry::of_target::<F, M>(&task), &args, Ok)
    }

    /// Schedules a task that reports failure by returning `Err`: its future fails with
    /// [`TaskError::Failed`] holding that very error, sent back from the worker rank, so
    /// [`TaskError::downcast_ref`] finds it (as with `ProcessPoolExecutor::try_submit`).
    pub fn try_submit<F, A, R, E>(&self, task: F, args: A) -> Result<Future<R>, TaskError>
    where
        F: Fn(A) -> Result<R, E> + 'static,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        E: Serialize + DeserializeOwned + std::error::Error + Send + Sync + 'static,
    {
        self.shared.submit_with(
            &Entry::of::<F, A, Result<R, E>>(&task),
            &args,
            |answer: Result<R, E>| answer.map_err(TaskError::failed),
        )
    }

    /// Applies `task` to every item on the worker ranks, `chunksize` items per message
    /// (`None`: 1, as Python's default): a lazy iterator of the results in input order,
    /// stopping after the first failure (Python's `Executor.map`).
    ///
    /// At most [`buffer_size`](MpiMap::buffer_size) chunks are in flight ahead of the
    /// consumer; nothing is submitted before the first `next()`.
    pub fn map<F, I, R>(
        &self,
        task: F,
        items: I,
        chunksize: impl Into<Option<usize>>,
    ) -> MpiMap<I::IntoIter, R>
    where
        F: Fn(I::Item) -> R + 'static,
        I: IntoIterator,
        I::Item: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.lazy_map(
            Entry::of_chunk::<F, I::Item, R>(&task),
            items,
            chunksize.into(),
        )
    }

    /// Like [`map`](Self::map), for a function of several arguments: each item is the
    /// tuple of one call's arguments, spread (Python's `Pool.starmap`, lazy as `map`).
    pub fn starmap<F, M, I>(
        &self,
        task: F,
        items: I,
        chunksize: impl Into<Option<usize>>,
    ) -> MpiMap<I::IntoIter, F::Output>
    where
        F: Target<M>,
        I: IntoIterator<Item = F::Args>,
        F::Args: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned + Send,
    {
        self.lazy_map(
            Entry::of_chunk_target::<F, M>(&task),
            items,
            chunksize.into(),
        )
    }

    /// The lazy map of `map` and `starmap`: `entry` runs one chunk of items.
    fn lazy_map<I: IntoIterator, R>(
        &self,
        entry: Result<Entry, String>,
        items: I,
        chunksize: Option<usize>,
    ) -> MpiMap<I::IntoIter, R> {
        MpiMap {
            shared: Arc::clone(&self.shared),
            entry,
            items: items.into_iter(),
            chunksize: chunksize.unwrap_or(1).max(1),
            window: OrderedWindow::new(),
            current: Vec::new().into_iter(),
            buffer_size: (4 * self.workers).max(1),
            started: Instant::now(),
        }
    }

    /// Stops taking tasks. With `cancel_futures`, cancels the ones still queued (not yet
    /// sent to a rank); with `wait`, blocks until every task is done.
    ///
    /// The worker ranks of the static world keep serving, for the next executor, until
    /// rank 0's program ends; those of a [`comm_executor`](crate::comm_executor) stop.
    pub fn shutdown(&self, wait: bool, cancel_futures: bool) {
        self.shared.shutdown(cancel_futures);
        if wait {
            let handle = self
                .thread
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let Some(handle) = handle
                && handle.thread().id() != std::thread::current().id()
            {
                let _ = handle.join();
            }
        }
    }

    /// Like `shutdown(wait = true, ..)` with a bound on the wait: true when every task
    /// is done in time (the twin of `ProcessPoolExecutor::shutdown_timeout`). On false
    /// the executor goes on shutting down; call it again, or `shutdown(true, ..)`, to
    /// wait more.
    pub fn shutdown_timeout(&self, timeout: Duration, cancel_futures: bool) -> bool {
        self.shutdown(false, cancel_futures);
        let deadline = flotilla_core::Deadline::after(Some(timeout));
        let mut pause = Duration::from_micros(100);
        while !self.shared.ended.load(Ordering::Acquire) {
            if deadline.expired() {
                return false;
            }
            std::thread::sleep(pause.min(deadline.remaining().unwrap_or(pause)));
            pause = (pause * 2).min(Duration::from_millis(20));
        }
        self.shutdown(true, false); // joins the ended thread
        true
    }
}

impl Drop for MpiPoolExecutor {
    fn drop(&mut self) {
        self.shutdown(true, false);
    }
}

impl fmt::Debug for MpiPoolExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let queue = self.shared.lock();
        f.debug_struct("MpiPoolExecutor")
            .field("workers", &self.workers)
            .field("queued", &queue.jobs.len())
            .field("shut_down", &queue.shutdown)
            .finish()
    }
}

/// The results of [`MpiPoolExecutor::map`], in input order, up to and including the
/// first failure. Dropping it cancels the chunks not yet sent to a rank.
#[must_use = "map runs nothing until it is iterated: consume it (a for loop, collect, or for_each(drop))"]
pub struct MpiMap<I: Iterator, R> {
    shared: Arc<Shared>,
    entry: Result<Entry, String>,
    items: I,
    chunksize: usize,
    window: OrderedWindow<Vec<R>>,
    current: std::vec::IntoIter<R>,
    buffer_size: usize,
    started: Instant,
}

impl<I, R> MpiMap<I, R>
where
    I: Iterator,
    I::Item: Serialize,
    R: DeserializeOwned + Send + 'static,
{
    /// Keeps at most `n` (at least 1) chunks in flight ahead of the consumer (default:
    /// four per worker rank).
    pub fn buffer_size(mut self, n: usize) -> Self {
        self.buffer_size = n.max(1);
        self
    }

    /// Fails the iteration with [`TaskError::TimedOut`] when a result is not ready
    /// `timeout` after the call to `map`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.window.set_deadline(self.started, timeout);
        self
    }

    fn fill(&mut self) {
        while !self.window.is_finished() && self.window.len() < self.buffer_size {
            let chunk: Vec<I::Item> = self.items.by_ref().take(self.chunksize).collect();
            if chunk.is_empty() {
                return;
            }
            let future = self
                .shared
                .submit_with::<_, Vec<R>, Vec<R>>(&self.entry, &chunk, Ok)
                .unwrap_or_else(Future::failed);
            self.window.push(future);
        }
    }
}

impl<I, R> Iterator for MpiMap<I, R>
where
    I: Iterator,
    I::Item: Serialize,
    R: DeserializeOwned + Send + 'static,
{
    type Item = Result<R, TaskError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(value) = self.current.next() {
                return Some(Ok(value));
            }
            self.fill();
            match self.window.next_result()? {
                Ok(values) => {
                    self.fill();
                    self.current = values.into_iter();
                }
                Err(error) => return Some(Err(error)),
            }
        }
    }
}

impl<I: Iterator, R> fmt::Debug for MpiMap<I, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MpiMap")
            .field("chunksize", &self.chunksize)
            .field("window", &self.window)
            .field("buffer_size", &self.buffer_size)
            .finish_non_exhaustive()
    }
}

/// The progress thread's own state: it alone calls MPI while the executor lives.
struct Progress {
    shared: Arc<Shared>,
    comm: Comm,
    /// The worker ranks, and how many tasks each has in flight.
    workers: Vec<i32>,
    load: Vec<usize>,
    pipeline: usize,
    /// The tasks sent and not yet answered: their worker's index and sink, by id.
    tasks: HashMap<u64, (usize, Box<dyn Sink>)>,
    /// Sends MPI may still be reading.
    sending: Vec<Sending>,
    next_id: u64,
    stop_workers: bool,
    on_end: Option<fn()>,
}

impl Progress {
    fn run(mut self) {
        let mut backoff = Backoff::default();
        loop {
            let mut progressed = self.dispatch();
            progressed |= self.receive();
            self.sending.retain_mut(|s| match s.done() {
                Ok(done) => !done,
                Err(e) => fatal(&e),
            });
            let idle = self.tasks.is_empty() && self.sending.is_empty();
            if idle {
                let queue = self.shared.lock();
                if queue.shutdown && queue.jobs.is_empty() {
                    break;
                }
            }
            if progressed {
                backoff.reset();
            } else if idle {
                // Nothing can come from MPI: sleep until a submission or a shutdown.
                self.shared.sleeping.store(true, Ordering::SeqCst);
                let nothing = {
                    let queue = self.shared.lock();
                    queue.jobs.is_empty() && !queue.shutdown
                };
                if nothing {
                    std::thread::park_timeout(Duration::from_millis(100));
                }
                self.shared.sleeping.store(false, Ordering::SeqCst);
            } else if backoff.is_spinning() {
                backoff.pause();
            } else {
                // Answers are due: poll again soon, sooner if a task is submitted.
                self.shared.sleeping.store(true, Ordering::SeqCst);
                backoff.pause_parked();
                self.shared.sleeping.store(false, Ordering::SeqCst);
            }
        }
        if self.stop_workers {
            for &rank in &self.workers {
                if let Err(e) = self.comm.send(rank, TAG_STOP, &[]) {
                    fatal(&e);
                }
            }
            self.comm.free();
        }
        if let Some(on_end) = self.on_end {
            on_end();
        }
        self.shared.ended.store(true, Ordering::Release);
    }

    /// The least loaded worker with room in its pipeline.
    fn free_worker(&self) -> Option<usize> {
        (0..self.workers.len())
            .filter(|&w| self.load[w] < self.pipeline)
            .min_by_key(|&w| self.load[w])
    }

    /// Sends queued tasks to workers with room; true when it took any.
    fn dispatch(&mut self) -> bool {
        let mut any = false;
        while let Some(w) = self.free_worker() {
            let Some(job) = self.shared.lock().jobs.pop_front() else {
                break;
            };
            any = true;
            if !job.sink.start() {
                continue; // cancelled while queued
            }
            let id = self.next_id;
            self.next_id += 1;
            let message = wire::task_message(job.args, id, job.entry);
            match self.comm.start_send(self.workers[w], TAG_TASK, message) {
                Ok(sending) => {
                    self.sending.push(sending);
                    self.tasks.insert(id, (w, job.sink));
                    self.load[w] += 1;
                }
                Err(e) => job.sink.finish(Err(remote(e))),
            }
        }
        any
    }

    /// Completes the tasks whose answers arrived; true when any did.
    fn receive(&mut self) -> bool {
        let mut any = false;
        loop {
            let message = match self.comm.try_receive(None, Some(TAG_RESULT)) {
                Ok(Some((_, _, message))) => message,
                Ok(None) => return any,
                Err(e) => fatal(&e),
            };
            any = true;
            let Some((id, kind, payload)) = wire::parse_result(message) else {
                event!(Level::WARN, "flotilla-mpi: a malformed answer was ignored");
                continue;
            };
            let Some((w, sink)) = self.tasks.remove(&id) else {
                event!(
                    Level::WARN,
                    id,
                    "flotilla-mpi: an answer to no task was ignored"
                );
                continue;
            };
            self.load[w] -= 1;
            let text = |payload: Vec<u8>| String::from_utf8_lossy(&payload).into_owned();
            sink.finish(match kind {
                Kind::Done => Ok(payload),
                Kind::Panicked => Err(TaskError::Panicked {
                    message: text(payload),
                }),
                Kind::Failed => Err(remote(text(payload))),
            });
        }
    }
}
