//! [`Task`], the awaitable handle to work running on an executor, and the ways to start
//! one from async code: [`run_in_executor`], [`to_thread`] and [`wrap_future`].

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use flotilla_core::{CancelToken, Executor, Future, ResultFuture, TaskError};

/// The awaitable handle to a task running on an executor: what [`run_in_executor`],
/// [`to_thread`] and [`wrap_future`] return.
///
/// `.await` it for the task's value (or its [`TaskError`]). Dropping it unfinished
/// cancels the task as far as that is possible: this is what makes
/// `tokio::time::timeout`, `select!` and `JoinHandle::abort` stop work that nobody waits
/// for any more, instead of leaving it to run on (asyncio's behaviour for a running
/// executor job).
///
/// # Cancellation
///
/// A `Task` owns its task's fate the way an asyncio future chained to an executor
/// future does, and goes further where asyncio stops:
///
/// - dropped (or its tokio task aborted) while its task is still queued, it cancels the
///   task ([`Future::cancel`]), which then never runs;
/// - dropped while its task runs, it cancels the task's [`CancelToken`] when it has one
///   ([`Cancellable`] jobs, or [`Task::with_token`]); a task without a token runs to the
///   end, as in Python, since a thread cannot be stopped from outside;
/// - [`Task::detach`] gives up that ownership: the task runs on, and the returned
///   [`Future`] still yields its value.
///
/// A `Task` needs no runtime of its own: completion wakes whichever waker polled it
/// last, from the executor's thread.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use flotilla_async::to_thread;
///
/// let len = to_thread(|| std::fs::read_dir(".").map(|d| d.count()).unwrap_or(0)).await;
/// assert!(len.unwrap() > 0);
/// # }
/// ```
#[must_use = "a Task cancels its task when dropped; detach() it to let the task run on"]
pub struct Task<T> {
    fut: Future<T>,
    /// The `.await` form of `fut`; polled again once it has yielded, it reports
    /// [`TaskError::ResultTaken`].
    result: ResultFuture<T>,
    token: Option<CancelToken>,
    detached: bool,
}

impl<T> Task<T> {
    fn new(fut: Future<T>, token: Option<CancelToken>) -> Self {
        Task {
            result: fut.clone().into_future(),
            fut,
            token,
            detached: false,
        }
    }

    /// A task that has already failed with `error` (a refused submission).
    fn failed(error: TaskError) -> Self {
        Self::new(Future::failed(error), None)
    }

    /// Cancels `token` too when this task is cancelled or dropped while it runs.
    ///
    /// For a task that checks a token of its own, submitted without [`Cancellable`].
    pub fn with_token(mut self, token: CancelToken) -> Self {
        self.token = Some(token);
        self
    }

    /// The executor future behind this task (for `wait`, callbacks, state).
    pub fn future(&self) -> &Future<T> {
        &self.fut
    }

    /// The token this task cancels when it is cancelled or dropped while running.
    pub fn cancel_token(&self) -> Option<&CancelToken> {
        self.token.as_ref()
    }

    /// Asks the task to stop: a queued task is cancelled and never runs; a running one
    /// has its token cancelled, when it has one. True when the task is (now) cancelled
    /// or was asked to stop through its token; false when it already finished, or runs
    /// without a token. Python's `Task.cancel`.
    pub fn cancel(&self) -> bool {
        let cancelled = self.fut.cancel();
        let asked = match &self.token {
            // Cancelled too when the task was still queued: a task picked up in the
            // meantime then finds it cancelled before it starts.
            Some(token) if cancelled || !self.fut.done() => {
                token.cancel();
                true
            }
            _ => false,
        };
        cancelled || asked
    }

    /// True once the task finished or was cancelled.
    pub fn done(&self) -> bool {
        self.fut.done()
    }

    /// Lets the task run on whatever happens to this handle: the returned [`Future`]
    /// (awaitable, cloneable) still yields its value, and dropping it cancels nothing.
    /// The form of [`shield`](crate::shield()) for a task that is already running.
    pub fn detach(mut self) -> Future<T> {
        self.detached = true;
        self.fut.clone()
    }
}

impl<T> std::future::Future for Task<T> {
    type Output = Result<T, TaskError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.get_mut().result).poll(cx)
    }
}

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        if !self.detached && !self.fut.done() {
            self.cancel();
        }
    }
}

impl<T> fmt::Debug for Task<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Task")
            .field("future", &self.fut)
            .field("token", &self.token)
            .field("detached", &self.detached)
            .finish()
    }
}

/// Makes a flotilla [`Future`] (from any executor) a [`Task`]: awaitable from tokio, and
/// cancelled when the task is dropped before the work started. Python's
/// `asyncio.wrap_future`.
///
/// flotilla futures are already awaitable as they are; awaiting one directly never
/// cancels anything, since other handles may still want the result. Wrap it when
/// dropping the await should cancel the work.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use flotilla_async::wrap_future;
/// use flotilla_thread::ThreadPoolExecutor;
///
/// let pool = ThreadPoolExecutor::new();
/// let fut = pool.submit(|| 6 * 7).unwrap();
/// assert_eq!(wrap_future(fut).await.unwrap(), 42);
/// # }
/// ```
pub fn wrap_future<T>(future: Future<T>) -> Task<T> {
    Task::new(future, None)
}

/// A job whose closure receives a [`CancelToken`]: the [`Task`] running it cancels the
/// token when it is dropped (or [`cancel`](Task::cancel)led) while the job runs.
///
/// The closure checks the token now and then; `token.check()?` ends it with
/// [`TaskError::Cancelled`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::time::Duration;
/// use flotilla_async::{Cancellable, to_thread};
/// use flotilla_core::TaskError;
///
/// let task = to_thread(Cancellable(|token: &flotilla_core::CancelToken| -> Result<(), TaskError> {
///     loop {
///         token.check()?;
///         std::thread::sleep(Duration::from_millis(1));
///     }
/// }));
/// let token = task.cancel_token().unwrap().clone();
/// // Giving up on the await stops the loop on its thread.
/// assert!(tokio::time::timeout(Duration::from_millis(20), task).await.is_err());
/// assert!(token.is_cancelled());
/// # }
/// ```
#[derive(Clone, Copy)]
pub struct Cancellable<F>(pub F);

impl<F> fmt::Debug for Cancellable<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Cancellable(..)")
    }
}

/// An executor that can run a job of type `J`: what [`run_in_executor`] accepts.
///
/// - Every [`Executor`] (a `ThreadPoolExecutor`, or your own) runs closures
///   `FnOnce() -> T`.
/// - A `ThreadPoolExecutor` also runs [`Cancellable`] closures, which get a token.
/// - A `ProcessPoolExecutor` runs `(function, args)` pairs: a fn item, fn pointer (or
///   closure that captures nothing) and its serde arguments, as its `submit` takes them.
pub trait Submit<J> {
    /// The value the job produces.
    type Output;

    /// Starts `job` and returns its task; a refused submission (after shutdown, a
    /// broken pool, arguments that cannot be encoded) is a task that has failed.
    fn submit_job(&self, job: J) -> Task<Self::Output>;
}

impl<E, F, T> Submit<F> for E
where
    E: Executor + ?Sized,
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    type Output = T;

    fn submit_job(&self, job: F) -> Task<T> {
        match self.submit(job) {
            Ok(fut) => wrap_future(fut),
            Err(error) => Task::failed(error),
        }
    }
}

#[cfg(feature = "thread")]
impl<F, T> Submit<Cancellable<F>> for flotilla_thread::ThreadPoolExecutor
where
    F: FnOnce(&CancelToken) -> Result<T, TaskError> + Send + 'static,
    T: Send + 'static,
{
    type Output = T;

    fn submit_job(&self, job: Cancellable<F>) -> Task<T> {
        let token = CancelToken::new();
        match self.submit_with_token(token.clone(), job.0) {
            Ok(fut) => Task::new(fut, Some(token)),
            Err(error) => Task::failed(error),
        }
    }
}

#[cfg(feature = "process")]
impl<F, A, R> Submit<(F, A)> for flotilla_process::ProcessPoolExecutor
where
    F: Fn(A) -> R + 'static,
    A: serde::Serialize + serde::de::DeserializeOwned + 'static,
    R: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
{
    type Output = R;

    fn submit_job(&self, (task, args): (F, A)) -> Task<R> {
        match self.submit(task, args) {
            Ok(fut) => wrap_future(fut),
            Err(error) => Task::failed(error),
        }
    }
}

/// Runs `job` on `executor` and returns its awaitable [`Task`]: Python's
/// `loop.run_in_executor(executor, func, *args)`.
///
/// The job is what the executor takes (see [`Submit`]): a closure for a thread pool,
/// a [`Cancellable`] closure for a thread pool task that can be stopped while it runs,
/// a `(function, args)` pair for a process pool. Nothing blocks the calling runtime
/// thread: the task's completion wakes it.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use flotilla_async::run_in_executor;
/// use flotilla_thread::ThreadPoolExecutor;
///
/// let pool = ThreadPoolExecutor::builder().max_workers(2).build().unwrap();
/// let sum = run_in_executor(&pool, || (1..=100u32).sum::<u32>()).await.unwrap();
/// assert_eq!(sum, 5050);
/// # }
/// ```
pub fn run_in_executor<E, J>(executor: &E, job: J) -> Task<E::Output>
where
    E: Submit<J> + ?Sized,
{
    executor.submit_job(job)
}

/// The executor behind [`to_thread`]: a `ThreadPoolExecutor` of Python's default size,
/// `min(32, cpus + 4)` threads, started on first use and kept for the life of the
/// process.
///
/// Bounded, unlike tokio's blocking pool (up to 512 threads): a burst of blocking calls
/// queues instead of starting hundreds of threads. It is never shut down, so a thread
/// blocked in it does not hold up the end of the program (asyncio waits for its default
/// executor at exit).
#[cfg(feature = "thread")]
pub fn default_executor() -> &'static flotilla_thread::ThreadPoolExecutor {
    static DEFAULT: std::sync::OnceLock<flotilla_thread::ThreadPoolExecutor> =
        std::sync::OnceLock::new();
    DEFAULT.get_or_init(|| {
        flotilla_thread::ThreadPoolExecutor::builder()
            .thread_name_prefix("flotilla-to-thread")
            .build()
            .expect("the default options are valid")
    })
}

/// Runs a blocking `job` on the [`default_executor`] and returns its awaitable
/// [`Task`]: Python's `asyncio.to_thread`.
///
/// The job is a closure, or a [`Cancellable`] closure that gets a token the task
/// cancels when it is dropped while the job runs.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::time::Duration;
///
/// let slept = flotilla_async::to_thread(|| {
///     std::thread::sleep(Duration::from_millis(10));
///     "awake"
/// });
/// assert_eq!(slept.await.unwrap(), "awake");
/// # }
/// ```
#[cfg(feature = "thread")]
pub fn to_thread<J>(job: J) -> Task<<flotilla_thread::ThreadPoolExecutor as Submit<J>>::Output>
where
    flotilla_thread::ThreadPoolExecutor: Submit<J>,
{
    default_executor().submit_job(job)
}
