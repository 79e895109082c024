//! [`ThreadPoolExecutor`]: Python's `concurrent.futures.ThreadPoolExecutor`.
//!
//! # How it works
//!
//! Submissions go through one unbounded crossbeam channel; the pool owns the receiving
//! end and every worker thread holds a clone of it. The sending end sits in a mutex as
//! an `Option`: shutdown takes it out, so a submission after shutdown is refused, and
//! the workers see the channel disconnect once they have drained what was queued.
//!
//! Threads start lazily. `idle` counts workers that have finished a task and not yet been
//! promised a new one: a submission that can take one from it wakes that worker instead
//! of starting a thread; otherwise it starts one, up to `max_workers`. A worker marks
//! itself idle *before* it publishes its task's result, so a caller that submits its
//! next task as soon as it sees the result finds the worker it just used. Once every
//! thread is started, `idle` is no longer kept: a grown pool's submission and task touch
//! no shared counter.
//!
//! A queued job is a [`flotilla_core::Task`]: the closure in its future's own
//! allocation, so a submission costs one allocation.
//!
//! No lock is held while user code (a task, an initializer, a done callback) runs:
//! cancelled or failed jobs are collected under the lock and finished after it.

mod map;

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use crossbeam_utils::CachePadded;
use flotilla_core::{CancelToken, Deadline, Executor, Future, Task, TaskError, panic_message};

pub use self::map::Map;
use crate::error::Error;

type Initializer = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// Everything the executor, its workers and its `map` iterators share.
struct Pool {
    max_workers: usize,
    name_prefix: String,
    initializer: Option<Initializer>,
    /// `None` once shut down. Every submission locks it, so it has a cache line of its
    /// own: sharing one with what workers write or read per task (`spinning`, `broken`)
    /// made each submission wait for that line to come back from a worker's CPU.
    sender: CachePadded<Mutex<Option<Sender<Task>>>>,
    receiver: Receiver<Task>,
    idle: AtomicUsize,
    started: AtomicUsize,
    /// How many workers are polling the empty queue (see [`Pool::next_task`]). Written
    /// each time a worker finds the queue empty: a cache line of its own, too.
    spinning: CachePadded<AtomicUsize>,
    /// At most this many: half the CPUs this process may run on, at least one.
    max_spinning: usize,
    /// How many times a worker went to the blocking receive.
    #[cfg(test)]
    blocked: AtomicUsize,
    /// The most workers seen polling at once.
    #[cfg(test)]
    most_spinning: AtomicUsize,
    /// Workers still running, and the condition `shutdown(wait)` waits on.
    alive: Mutex<usize>,
    exited: Condvar,
    broken: OnceLock<String>,
}

thread_local! {
    /// The pool whose worker this thread is (its address), so `shutdown(wait)` from
    /// inside a task does not wait for itself.
    static WORKER_OF: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The number of pools created so far, for default thread names.
static POOLS: AtomicUsize = AtomicUsize::new(0);

/// How long a worker that found the queue empty polls it before it blocks (see
/// [`Pool::next_task`]).
const IDLE_SPIN: Duration = Duration::from_micros(50);

impl Pool {
    fn lock_sender(&self) -> MutexGuard<'_, Option<Sender<Task>>> {
        self.sender.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_alive(&self) -> MutexGuard<'_, usize> {
        self.alive.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn broken_error(&self) -> Option<TaskError> {
        self.broken.get().map(|reason| TaskError::Broken {
            reason: reason.clone(),
        })
    }

    fn submit_job(self: &Arc<Self>, job: Task) -> Result<(), TaskError> {
        {
            let sender = self.lock_sender();
            if let Some(error) = self.broken_error() {
                return Err(error);
            }
            let Some(sender) = sender.as_ref() else {
                return Err(TaskError::ShutDown);
            };
            // The pool holds a receiver for as long as it lives, so this cannot fail.
            let _ = sender.send(job);
        }
        self.adjust_thread_count();
        Ok(())
    }

    fn adjust_thread_count(self: &Arc<Self>) {
        // The common case of a busy, fully grown pool must touch no shared counter:
        // `idle` is kept only while threads may still be started.
        if self.started.load(Ordering::Acquire) >= self.max_workers {
            return;
        }
        if self
            .idle
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
        {
            return;
        }
        let mut alive = self.lock_alive();
        let started = self.started.load(Ordering::Relaxed);
        if started >= self.max_workers {
            return;
        }
        let pool = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name(format!("{}_{started}", self.name_prefix))
            .spawn(move || pool.work());
        match spawned {
            Ok(_detached) => {
                self.started.store(started + 1, Ordering::Release);
                *alive += 1;
            }
            Err(e) if *alive == 0 => {
                drop(alive);
                self.break_pool(format!("could not start a worker thread: {e}"));
            }
            Err(e) => {
                flotilla_core::event!(flotilla_core::log::Level::WARN, error = %e,
                    "could not start another worker thread; the running ones take the work");
            }
        }
    }

    /// A worker thread's whole life.
    fn work(self: Arc<Self>) {
        WORKER_OF.with(|w| w.set(Arc::as_ptr(&self) as usize));
        // Counted out on every exit path, including an unwinding one.
        let _exit = ExitGuard(&self);
        if let Some(init) = &self.initializer {
            let failure = match catch_unwind(AssertUnwindSafe(|| init())) {
                Ok(Ok(())) => None,
                Ok(Err(message)) => Some(message),
                Err(payload) => Some(format!("it panicked: {}", panic_message(&*payload))),
            };
            if let Some(message) = failure {
                self.break_pool(format!(
                    "a thread initializer failed ({message}); the pool runs no more tasks"
                ));
                return;
            }
        }
        let now_idle = || {
            // Once every thread is started nobody reads `idle` again.
            if self.started.load(Ordering::Acquire) < self.max_workers {
                self.idle.fetch_add(1, Ordering::AcqRel);
            }
        };
        // `next_task` takes a queued job without blocking, and ends once shutdown has
        // dropped the sender and the queue is drained.
        let mut woke = false;
        while let Some(job) = self.next_task(woke) {
            woke = match self.broken_error() {
                Some(error) => {
                    job.fail(error);
                    false
                }
                None => job.run(&now_idle),
            };
        }
    }

    /// The next job, waiting for one; `None` once the pool is shut down and drained.
    ///
    /// A worker that finds the queue empty polls it for up to [`IDLE_SPIN`] before it
    /// blocks, unless the most workers allowed to poll are polling already (see below).
    /// The reason is the cost of a
    /// wake-up on a virtual machine: a blocked worker lets its vCPU halt, and waking a
    /// halted vCPU took 50-120 µs on the VMs flotilla is measured on (haltpoll with no
    /// poll time). A caller that submits, waits and submits again feeds that back into
    /// itself: while the caller's own wake-up takes that long, a worker that blocks
    /// after a few microseconds (crossbeam's receive does) has blocked by the next
    /// submission, which must wake it, and the caller, whose task is still queued,
    /// blocks in turn. Every round trip then paid two wake-ups, 50-70 µs instead of
    /// 0.3-1 µs, for the rest of the process (issue 15's slow mode). A worker still
    /// polling takes the next task at once.
    ///
    /// It polls without yielding ([`flotilla_core::spin::spin_unless_contended`]), unlike
    /// a wait for a descriptor ([`flotilla_core::spin::poll_for`]):
    /// with a busy process on every CPU, a worker that yielded handed that process its
    /// time slice, stopped polling, and round trips took 5.6 µs; spinning, it keeps the
    /// CPU against the busy process and they took 0.75 µs. At most half the CPUs' worth
    /// of workers poll at a time, the others block at once, so an idle pool burns at
    /// most that many CPUs for at most `IDLE_SPIN` after its last task, and leaves the
    /// other half to its callers.
    ///
    /// A caller that the worker's completion woke (`woke`) may have been put on the
    /// worker's CPU, where the spin would keep it waiting: so the worker first yields
    /// once ([`flotilla_core::spin::yield_to_woken`]; with a busy process on every CPU,
    /// one process in five of `run_in_executor` round trips took 22 µs each instead of
    /// 3.3 without it). A worker whose yield was contended spins briefly, and not at all
    /// while such spins keep finding nothing
    /// ([`flotilla_core::spin::spin_unless_contended`]).
    ///
    /// A worker whose completed task's waiter was yielding or sleeping on the worker's
    /// own CPU moves to another CPU instead of yielding
    /// ([`flotilla_core::spin::leave_a_shared_cpu`]): a caller and worker that the
    /// scheduler put on one CPU hand each task over with two context switches, 3 µs
    /// a round trip with a busy process per CPU, against 0.45 µs apart.
    fn next_task(&self, woke: bool) -> Option<Task> {
        match self.receiver.try_recv() {
            Ok(job) => return Some(job),
            Err(TryRecvError::Disconnected) => return None,
            Err(TryRecvError::Empty) => {}
        }
        // A waiter that yielded to this worker shares its CPU: the worker moves to
        // another (see `leave_a_shared_cpu`), or, moved already lately, yields to it.
        if woke && !flotilla_core::spin::leave_a_shared_cpu() {
            flotilla_core::spin::yield_to_woken();
        }
        let polling = self
            .spinning
            .fetch_update(Ordering::Acquire, Ordering::Relaxed, |n| {
                (n < self.max_spinning).then_some(n + 1)
            });
        if let Ok(_others) = polling {
            #[cfg(test)]
            self.most_spinning.fetch_max(_others + 1, Ordering::Relaxed);
            let polled = self.poll_queue();
            self.spinning.fetch_sub(1, Ordering::Release);
            match polled {
                Ok(job) => return Some(job),
                Err(TryRecvError::Disconnected) => return None,
                Err(TryRecvError::Empty) => {}
            }
        }
        #[cfg(test)]
        self.blocked.fetch_add(1, Ordering::Relaxed);
        self.receiver.recv().ok()
    }

    /// Polls the queue for up to [`IDLE_SPIN`].
    fn poll_queue(&self) -> Result<Task, TryRecvError> {
        let mut polled = Err(TryRecvError::Empty);
        flotilla_core::spin::spin_unless_contended(IDLE_SPIN, || {
            polled = self.receiver.try_recv();
            !matches!(polled, Err(TryRecvError::Empty))
        });
        polled
    }

    /// Marks the pool broken and fails everything queued.
    fn break_pool(&self, reason: String) {
        flotilla_core::event!(flotilla_core::log::Level::ERROR, %reason, "thread pool broken");
        let _ = self.broken.set(reason);
        let error = self.broken_error().expect("just set");
        let queued: Vec<_> = {
            let mut sender = self.lock_sender();
            sender.take();
            self.receiver.try_iter().collect()
        };
        for job in queued {
            job.fail(error.clone());
        }
    }

    /// Stops taking tasks; with `cancel_futures`, cancels the queued ones.
    fn stop(&self, cancel_futures: bool) {
        let cancelled: Vec<_> = {
            let mut sender = self.lock_sender();
            sender.take();
            if cancel_futures {
                self.receiver.try_iter().collect()
            } else {
                Vec::new()
            }
        };
        for job in cancelled {
            job.cancel();
        }
    }

    /// Waits until every worker but the calling one (when it is one) has exited, or
    /// `timeout` passes; true when they all did.
    fn join_workers(&self, timeout: Option<Duration>) -> bool {
        let me = WORKER_OF.with(|w| w.get()) == self as *const Pool as usize;
        let deadline = Deadline::after(timeout);
        let mut alive = self.lock_alive();
        while *alive > usize::from(me) {
            if deadline.expired() {
                return false;
            }
            alive = deadline.wait(&self.exited, alive);
        }
        true
    }
}

struct ExitGuard<'a>(&'a Pool);

impl Drop for ExitGuard<'_> {
    fn drop(&mut self) {
        *self.0.lock_alive() -= 1;
        self.0.exited.notify_all();
    }
}

/// A pool of threads that runs closures and returns [`Future`]s: Python's
/// `concurrent.futures.ThreadPoolExecutor`.
///
/// - Threads start lazily, one per submission while none is idle, up to
///   [`max_workers`](ThreadPoolExecutorBuilder::max_workers) (default
///   `min(32, cpus + 4)`, as in Python).
/// - A task that panics fails its own future with [`TaskError::Panicked`]; its worker
///   lives on.
/// - [`map`](ThreadPoolExecutor::map) is lazy and ordered, and stops at the first failure.
/// - Dropping the executor is `shutdown(wait = true)`: like leaving Python's `with`
///   block, it waits for queued and running tasks.
///
/// To share one executor between threads, put it in an `Arc` (or borrow it from a
/// scope): all its methods take `&self`.
///
/// # Examples
///
/// ```
/// use flotilla_thread::ThreadPoolExecutor;
///
/// let pool = ThreadPoolExecutor::builder().max_workers(2).build().unwrap();
/// let fut = pool.submit(|| 6 * 7).unwrap();
/// assert_eq!(fut.result().unwrap(), 42);
///
/// let squares: Vec<u64> = pool.map(|x: u64| x * x, 1..=4).map(Result::unwrap).collect();
/// assert_eq!(squares, [1, 4, 9, 16]);
/// ```
pub struct ThreadPoolExecutor {
    pool: Arc<Pool>,
}

/// Options for a [`ThreadPoolExecutor`]: `ThreadPoolExecutor::builder()`.
pub struct ThreadPoolExecutorBuilder {
    max_workers: Option<usize>,
    name_prefix: Option<String>,
    initializer: Option<Initializer>,
}

impl ThreadPoolExecutorBuilder {
    /// The most threads the pool starts. Default `min(32, cpus + 4)`, Python's: enough
    /// for I/O-bound work without starting hundreds of threads on a big machine.
    pub fn max_workers(mut self, max_workers: usize) -> Self {
        self.max_workers = Some(max_workers);
        self
    }

    /// Names the threads `PREFIX_0`, `PREFIX_1`, ... Default `ThreadPoolExecutor-N`, N
    /// counting the pools of this process.
    pub fn thread_name_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.name_prefix = Some(prefix.into());
        self
    }

    /// Runs `init` at the start of each worker thread. If it panics the pool is broken:
    /// queued and later tasks fail with [`TaskError::Broken`].
    pub fn initializer<F>(mut self, init: F) -> Self
    where
        F: Fn() + Send + Sync + 'static,
    {
        self.initializer = Some(Arc::new(move || {
            init();
            Ok(())
        }));
        self
    }

    /// Like [`initializer`](Self::initializer), for one that reports failure by
    /// returning `Err`.
    ///
    /// ```
    /// use flotilla_core::TaskError;
    /// use flotilla_thread::ThreadPoolExecutor;
    ///
    /// let pool = ThreadPoolExecutor::builder()
    ///     .try_initializer(|| "no database".parse::<u16>().map(drop))
    ///     .build()
    ///     .unwrap();
    /// let fut = pool.submit(|| 1).unwrap();
    /// assert!(matches!(fut.result(), Err(TaskError::Broken { .. })));
    /// assert!(matches!(pool.submit(|| 2), Err(TaskError::Broken { .. })));
    /// ```
    pub fn try_initializer<F, E>(mut self, init: F) -> Self
    where
        F: Fn() -> Result<(), E> + Send + Sync + 'static,
        E: fmt::Display,
    {
        self.initializer = Some(Arc::new(move || init().map_err(|e| e.to_string())));
        self
    }

    /// Creates the executor. No thread starts until the first submission.
    ///
    /// Fails when `max_workers` is 0.
    pub fn build(self) -> Result<ThreadPoolExecutor, Error> {
        let max_workers = match self.max_workers {
            Some(0) => return Err(Error::InvalidArgument("max_workers must be at least 1")),
            Some(n) => n,
            None => default_max_workers(),
        };
        let index = POOLS.fetch_add(1, Ordering::Relaxed);
        let (sender, receiver) = crossbeam_channel::unbounded();
        Ok(ThreadPoolExecutor {
            pool: Arc::new(Pool {
                max_workers,
                name_prefix: self
                    .name_prefix
                    .unwrap_or_else(|| format!("ThreadPoolExecutor-{index}")),
                initializer: self.initializer,
                sender: CachePadded::new(Mutex::new(Some(sender))),
                receiver,
                idle: AtomicUsize::new(0),
                started: AtomicUsize::new(0),
                spinning: CachePadded::new(AtomicUsize::new(0)),
                max_spinning: std::thread::available_parallelism()
                    .map_or(1, |cpus| (cpus.get() / 2).max(1)),
                #[cfg(test)]
                blocked: AtomicUsize::new(0),
                #[cfg(test)]
                most_spinning: AtomicUsize::new(0),
                alive: Mutex::new(0),
                exited: Condvar::new(),
                broken: OnceLock::new(),
            }),
        })
    }
}

fn default_max_workers() -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cpus + 4).min(32)
}

impl ThreadPoolExecutor {
    /// An executor with the default options.
    pub fn new() -> Self {
        Self::builder()
            .build()
            .expect("the default options are valid")
    }

    /// Options for a new executor.
    pub fn builder() -> ThreadPoolExecutorBuilder {
        ThreadPoolExecutorBuilder {
            max_workers: None,
            name_prefix: None,
            initializer: None,
        }
    }

    /// The most threads this pool starts.
    pub fn max_workers(&self) -> usize {
        self.pool.max_workers
    }

    /// How many worker threads have been started so far.
    pub fn num_threads(&self) -> usize {
        self.pool.started.load(Ordering::Relaxed)
    }

    fn submit_with<T, F>(&self, task: F) -> Result<Future<T>, TaskError>
    where
        F: FnOnce() -> Result<T, TaskError> + Send + 'static,
        T: Send + 'static,
    {
        let (job, fut) = Task::new(task);
        self.pool.submit_job(job)?;
        Ok(fut)
    }

    /// Schedules `task` and returns the future of its value.
    ///
    /// Fails with [`TaskError::ShutDown`] after [`shutdown`](Self::shutdown), or
    /// [`TaskError::Broken`] when the pool is broken; a task that panics fails its
    /// future, not this call.
    pub fn submit<F, T>(&self, task: F) -> Result<Future<T>, TaskError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.submit_with(move || Ok(task()))
    }

    /// Schedules a task that reports failure by returning `Err`: its future fails with
    /// [`TaskError::Failed`], as if it had raised.
    ///
    /// ```
    /// use flotilla_thread::ThreadPoolExecutor;
    ///
    /// let pool = ThreadPoolExecutor::new();
    /// let fut = pool.try_submit(|| "x".parse::<i32>()).unwrap();
    /// let err = fut.result().unwrap_err();
    /// assert!(err.downcast_ref::<std::num::ParseIntError>().is_some());
    /// ```
    pub fn try_submit<F, T, E>(&self, task: F) -> Result<Future<T>, TaskError>
    where
        F: FnOnce() -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: std::error::Error + Send + Sync + 'static,
    {
        self.submit_with(move || task().map_err(TaskError::failed))
    }

    /// Schedules a task that can be asked to stop while it runs: it gets `token` to
    /// check, and returns `Err` to fail (`token.check()?` stops it with
    /// [`TaskError::Cancelled`]).
    ///
    /// [`Future::cancel`] stops a task only before it starts; the token reaches it after.
    /// A token cancelled before a worker picks the task up makes the task not run at
    /// all, and its future ends cancelled, as does a task that returns
    /// [`TaskError::Cancelled`]. Keep a clone of the token to cancel it (the async
    /// bridge does this when its awaiting side is dropped).
    ///
    /// ```
    /// use std::time::Duration;
    /// use flotilla_core::{CancelToken, TaskError};
    /// use flotilla_thread::ThreadPoolExecutor;
    ///
    /// let pool = ThreadPoolExecutor::new();
    /// let token = CancelToken::new();
    /// let fut = pool
    ///     .submit_with_token(token.clone(), |token| -> Result<u64, TaskError> {
    ///         loop {
    ///             token.check()?; // Err(Cancelled) once asked to stop
    ///             std::thread::sleep(Duration::from_millis(1));
    ///         }
    ///     })
    ///     .unwrap();
    /// while !fut.running() {
    ///     std::thread::yield_now();
    /// }
    /// token.cancel();
    /// assert!(matches!(fut.result(), Err(TaskError::Cancelled)));
    /// assert!(fut.cancelled());
    /// ```
    pub fn submit_with_token<F, T>(
        &self,
        token: CancelToken,
        task: F,
    ) -> Result<Future<T>, TaskError>
    where
        F: FnOnce(&CancelToken) -> Result<T, TaskError> + Send + 'static,
        T: Send + 'static,
    {
        self.submit_with(move || {
            token.check()?;
            task(&token)
        })
    }

    /// Applies `f` to every item on the pool: a lazy iterator of the results in input
    /// order, Python's `Executor.map`.
    ///
    /// Unlike Python's, and like every Rust iterator adapter, nothing is submitted until
    /// the first `next()`: that is when the first window of tasks starts.
    ///
    /// At most [`buffer_size`](Map::buffer_size) items are taken from the input ahead of
    /// the consumer (default: 256, or 4 × `max_workers`, or 4 chunks per worker,
    /// whichever is most), so a huge or endless input is not consumed eagerly. Items run in tasks of
    /// [`chunksize`](Map::chunksize) items, chosen automatically from the input's
    /// `size_hint` by default, so a long map of cheap items does not pay a task per
    /// item. Iteration stops after the first failure, which it yields; dropping the
    /// iterator cancels the tasks that have not started. [`timeout`](Map::timeout)
    /// bounds the whole iteration, counted from this call.
    pub fn map<I, F, T>(&self, f: F, items: I) -> Map<I::IntoIter, T>
    where
        I: IntoIterator,
        I::Item: Send + 'static,
        F: Fn(I::Item) -> T + Send + Sync + 'static,
        T: Send + 'static,
    {
        Map::new(
            Arc::clone(&self.pool),
            items.into_iter(),
            Arc::new(move |x| Ok(f(x))),
        )
    }

    /// Like [`map`](Self::map), for a function that reports failure by returning `Err`:
    /// iteration yields that failure as [`TaskError::Failed`] and stops.
    ///
    /// ```
    /// use flotilla_thread::ThreadPoolExecutor;
    ///
    /// let pool = ThreadPoolExecutor::new();
    /// let parsed: Vec<_> = pool.try_map(|s: &str| s.parse::<u8>(), ["1", "2", "x", "4"]).collect();
    /// assert_eq!(parsed.len(), 3); // 1, 2, then the error; "4" is never yielded
    /// assert!(parsed[2].is_err());
    /// ```
    pub fn try_map<I, F, T, E>(&self, f: F, items: I) -> Map<I::IntoIter, T>
    where
        I: IntoIterator,
        I::Item: Send + 'static,
        F: Fn(I::Item) -> Result<T, E> + Send + Sync + 'static,
        T: Send + 'static,
        E: std::error::Error + Send + Sync + 'static,
    {
        Map::new(
            Arc::clone(&self.pool),
            items.into_iter(),
            Arc::new(move |x| f(x).map_err(TaskError::failed)),
        )
    }

    /// Stops taking tasks: later submissions fail with [`TaskError::ShutDown`].
    ///
    /// With `cancel_futures`, tasks that have not started are cancelled; otherwise they
    /// still run. With `wait`, blocks until every worker has finished (from inside a
    /// task, every worker but the caller's). Calling it again is harmless.
    pub fn shutdown(&self, wait: bool, cancel_futures: bool) {
        self.pool.stop(cancel_futures);
        if wait {
            self.pool.join_workers(None);
        }
    }

    /// Like `shutdown(wait = true, ..)` with a bound on the wait: true when every worker
    /// finished in time.
    pub fn shutdown_timeout(&self, timeout: Duration, cancel_futures: bool) -> bool {
        self.pool.stop(cancel_futures);
        self.pool.join_workers(Some(timeout))
    }
}

impl Default for ThreadPoolExecutor {
    fn default() -> Self {
        Self::new()
    }
}

impl Executor for ThreadPoolExecutor {
    fn submit<F, T>(&self, task: F) -> Result<Future<T>, TaskError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        ThreadPoolExecutor::submit(self, task)
    }

    fn try_submit<F, T, E>(&self, task: F) -> Result<Future<T>, TaskError>
    where
        F: FnOnce() -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: std::error::Error + Send + Sync + 'static,
    {
        ThreadPoolExecutor::try_submit(self, task)
    }

    fn shutdown(&self, wait: bool, cancel_futures: bool) {
        ThreadPoolExecutor::shutdown(self, wait, cancel_futures);
    }
}

impl Drop for ThreadPoolExecutor {
    fn drop(&mut self) {
        self.shutdown(true, false);
    }
}

impl fmt::Debug for ThreadPoolExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadPoolExecutor")
            .field("name_prefix", &self.pool.name_prefix)
            .field("max_workers", &self.pool.max_workers)
            .field("threads", &self.num_threads())
            .field("shut_down", &self.pool.lock_sender().is_none())
            .field("broken", &self.pool.broken.get())
            .finish()
    }
}

impl fmt::Debug for ThreadPoolExecutorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadPoolExecutorBuilder")
            .field("max_workers", &self.max_workers)
            .field("name_prefix", &self.name_prefix)
            .field("initializer", &self.initializer.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests;
