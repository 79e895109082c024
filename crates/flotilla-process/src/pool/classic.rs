//! [`Pool`]: Python's `multiprocessing.Pool` — `apply`, `apply_async` with callbacks,
//! `map`, `map_async`, `imap`, `imap_unordered`, `starmap`, `close`, `join`,
//! `terminate` — on the same workers and manager as [`ProcessPoolExecutor`].
//!
//! The differences from the executor are Python's: every worker starts with the pool,
//! `join` needs `close` first, and dropping a pool terminates it (as leaving
//! `with Pool() as p:` does), where dropping an executor waits.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use flotilla_core::{Future, TaskError};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::map::Unordered;
use super::{ProcessMap, ProcessPoolExecutor, ProcessPoolExecutorBuilder};
use crate::boot;
use crate::context::Context;
use crate::error::Error;
use crate::target::{One, Target};

/// A pool of worker processes: Python's `multiprocessing.Pool`.
///
/// Targets are fn items, fn pointers or closures that capture nothing, with serde
/// arguments, as for
/// [`Process::new`](crate::Process::new). A worker killed mid-task fails exactly that
/// task (naming the signal) and is replaced: nothing hangs.
///
/// # Examples
///
/// ```
/// use flotilla_process::Pool;
///
/// fn hello(name: String) -> String {
///     format!("hello {name}")
/// }
///
/// let pool = Pool::new(2).unwrap();
/// assert_eq!(pool.apply(hello, "ann".into()).unwrap(), "hello ann");
/// let all = pool.map(hello, ["bo".to_string(), "cy".to_string()], None).unwrap();
/// assert_eq!(all, ["hello bo", "hello cy"]);
/// pool.close();
/// pool.join().unwrap();
/// ```
pub struct Pool {
    executor: ProcessPoolExecutor,
    closed: AtomicBool,
}

/// Options for a [`Pool`]: `Pool::builder()`.
#[derive(Debug)]
pub struct PoolBuilder {
    inner: ProcessPoolExecutorBuilder,
}

impl PoolBuilder {
    /// The number of worker processes. Default: the CPU count.
    pub fn processes(mut self, n: usize) -> Self {
        self.inner = self.inner.max_workers(n);
        self
    }

    /// Runs `init(args)` in each worker before its first task; see
    /// [`ProcessPoolExecutorBuilder::initializer`]. `init` takes one argument, or several
    /// spread from the tuple `args` (see [`Target`](crate::Target)).
    pub fn initializer<F, M>(mut self, init: F, args: F::Args) -> Self
    where
        F: Target<M, Output = ()>,
        F::Args: Serialize + DeserializeOwned,
    {
        self.inner = self.inner.initializer(init, args);
        self
    }

    /// Replaces each worker after `n` tasks (Python's `maxtasksperchild`).
    pub fn maxtasksperchild(mut self, n: usize) -> Self {
        self.inner = self.inner.max_tasks_per_child(n);
        self
    }

    /// The start method of the workers (spawn or forkserver).
    pub fn context(mut self, context: Context) -> Self {
        self.inner = self.inner.context(context);
        self
    }

    /// Creates the pool and starts its workers.
    pub fn build(self) -> Result<Pool, Error> {
        if self.inner.max_workers == Some(0) {
            // Python: "Number of processes must be at least 1".
            return Err(Error::Unsupported(
                "a Pool needs at least 1 process (Pool::new(0) or processes(0))".into(),
            ));
        }
        Ok(Pool {
            executor: self.inner.eager().build()?,
            closed: AtomicBool::new(false),
        })
    }
}

/// The pending result of [`Pool::apply_async`] or [`Pool::map_async`]: Python's
/// `AsyncResult`.
pub struct AsyncResult<R> {
    future: Future<R>,
}

impl<R> AsyncResult<R> {
    /// Waits for the result and returns the value, or the task's failure: Python's
    /// `get()`. Never [`TaskError::TimedOut`]: that is [`get_timeout`](Self::get_timeout)'s.
    pub fn get(&self) -> Result<R, TaskError>
    where
        R: Clone,
    {
        self.future.result()
    }

    /// Like [`get`](Self::get), but gives up after `timeout` with
    /// [`TaskError::TimedOut`] (the task goes on): Python's `get(timeout)`.
    pub fn get_timeout(&self, timeout: Duration) -> Result<R, TaskError>
    where
        R: Clone,
    {
        self.future.result_timeout(timeout)
    }

    /// Waits until the result is ready: Python's `wait()`.
    pub fn wait(&self) {
        self.future.wait();
    }

    /// Waits up to `timeout`; true when the result is ready: Python's `wait(timeout)`.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.future.wait_timeout(timeout)
    }

    /// True once the result is ready.
    pub fn ready(&self) -> bool {
        self.future.done()
    }

    /// Whether the task succeeded; `None` while it is not ready (Python raises there).
    pub fn successful(&self) -> Option<bool> {
        self.ready()
            .then(|| matches!(self.future.error_timeout(Duration::ZERO), Ok(None)))
    }

    /// The underlying future, for `wait`, `as_completed` or `.await`.
    pub fn into_future(self) -> Future<R> {
        self.future
    }
}

impl<R> fmt::Debug for AsyncResult<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("AsyncResult").field(&self.future).finish()
    }
}

impl Pool {
    /// A pool of `processes` workers with the default options.
    pub fn new(processes: usize) -> Result<Pool, Error> {
        Pool::builder().processes(processes).build()
    }

    /// Options for a new pool.
    pub fn builder() -> PoolBuilder {
        PoolBuilder {
            inner: ProcessPoolExecutor::builder(),
        }
    }

    fn check_open(&self) -> Result<(), TaskError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(TaskError::ShutDown);
        }
        Ok(())
    }

    /// Queues `f` over the items, `chunksize` to a task (by default Python's choice: the
    /// items spread over four chunks per worker); the chunks' futures, in order.
    fn submit_chunks<F, M, I>(
        &self,
        f: F,
        items: I,
        chunksize: impl Into<Option<usize>>,
    ) -> Result<Vec<Future<Vec<F::Output>>>, TaskError>
    where
        F: Target<M>,
        I: IntoIterator<Item = F::Args>,
        F::Args: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned + Send,
    {
        self.check_open()?;
        let entry = boot::entry_of_chunk_target::<F, M>(&f);
        let items: Vec<F::Args> = items.into_iter().collect();
        let chunksize = chunksize
            .into()
            .unwrap_or_else(|| items.len().div_ceil(4 * self.executor.max_workers()))
            .max(1);
        items
            .chunks(chunksize)
            .map(|chunk| self.executor.shared.submit_chunk(&entry, chunk))
            .collect()
    }

    /// Runs `f(arg)` on a worker and waits for its value.
    ///
    /// `f` takes one argument, or several spread from the tuple `arg` (Python's
    /// `apply(f, (a, b))`; see [`Target`]).
    pub fn apply<F, M>(&self, f: F, arg: F::Args) -> Result<F::Output, TaskError>
    where
        F: Target<M>,
        F::Args: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned + Send,
    {
        self.check_open()?;
        self.executor.submit(f, arg)?.into_result()
    }

    /// Runs `f(arg)` on a worker; its pending result.
    pub fn apply_async<F, M>(&self, f: F, arg: F::Args) -> Result<AsyncResult<F::Output>, TaskError>
    where
        F: Target<M>,
        F::Args: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned + Send,
    {
        self.check_open()?;
        Ok(AsyncResult {
            future: self.executor.submit(f, arg)?,
        })
    }

    /// Like [`apply_async`](Self::apply_async), calling `callback` with the value or
    /// `error_callback` with the failure when the task ends (on the pool's manager
    /// thread: keep them short). A panicking callback is reported and changes nothing.
    ///
    /// ```
    /// use std::sync::mpsc;
    /// use flotilla_process::Pool;
    ///
    /// fn half(x: i32) -> i32 {
    ///     assert!(x % 2 == 0, "odd input");
    ///     x / 2
    /// }
    ///
    /// let pool = Pool::new(1).unwrap();
    /// let (tx, rx) = mpsc::channel();
    /// let (ok, err) = (tx.clone(), tx);
    /// pool.apply_async_with(half, 8, move |v| ok.send(format!("got {v}")).unwrap(),
    ///                       move |e| err.send(format!("failed: {e}")).unwrap()).unwrap();
    /// assert_eq!(rx.recv().unwrap(), "got 4");
    /// ```
    pub fn apply_async_with<F, M, C, E>(
        &self,
        f: F,
        arg: F::Args,
        callback: C,
        error_callback: E,
    ) -> Result<AsyncResult<F::Output>, TaskError>
    where
        F: Target<M>,
        F::Args: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned + Clone + Send,
        C: FnOnce(&F::Output) + Send + 'static,
        E: FnOnce(&TaskError) + Send + 'static,
    {
        let result = self.apply_async(f, arg)?;
        with_callbacks(&result.future, callback, error_callback);
        Ok(result)
    }

    /// Applies `f` to every item and waits for all the values, in order; the first
    /// failure (in input order) is returned instead. `chunksize` defaults to Python's
    /// choice: the items spread over four chunks per worker.
    pub fn map<F, I, R>(
        &self,
        f: F,
        items: I,
        chunksize: impl Into<Option<usize>>,
    ) -> Result<Vec<R>, TaskError>
    where
        F: Fn(I::Item) -> R + 'static,
        I: IntoIterator,
        I::Item: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.map_async(f, items, chunksize)?.future.into_result()
    }

    /// [`map`](Self::map) without waiting: one pending result for the whole list.
    pub fn map_async<F, I, R>(
        &self,
        f: F,
        items: I,
        chunksize: impl Into<Option<usize>>,
    ) -> Result<AsyncResult<Vec<R>>, TaskError>
    where
        F: Fn(I::Item) -> R + 'static,
        I: IntoIterator,
        I::Item: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        let chunks = self.submit_chunks::<F, One<I::Item>, I>(f, items, chunksize)?;
        Ok(AsyncResult {
            future: gather_in_order(chunks),
        })
    }

    /// [`map_async`](Self::map_async) with Python's `callback` and `error_callback`:
    /// `callback(&values)` runs once every chunk is done, or `error_callback(&error)` at
    /// the first failure in input order, on the pool's manager thread (keep them short),
    /// before [`AsyncResult::get`] returns.
    ///
    /// ```
    /// use std::sync::mpsc;
    /// use flotilla_process::Pool;
    ///
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// let pool = Pool::new(2).unwrap();
    /// let (tx, rx) = mpsc::channel();
    /// let result = pool
    ///     .map_async_with(square, 0..5u64, None, move |v: &Vec<u64>| tx.send(v.clone()).unwrap(), |_| {})
    ///     .unwrap();
    /// assert_eq!(rx.recv().unwrap(), [0, 1, 4, 9, 16]);
    /// assert_eq!(result.get().unwrap(), [0, 1, 4, 9, 16]);
    /// ```
    pub fn map_async_with<F, I, R, C, E>(
        &self,
        f: F,
        items: I,
        chunksize: Option<usize>,
        callback: C,
        error_callback: E,
    ) -> Result<AsyncResult<Vec<R>>, TaskError>
    where
        F: Fn(I::Item) -> R + 'static,
        I: IntoIterator,
        I::Item: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Clone + Send + 'static,
        C: FnOnce(&Vec<R>) + Send + 'static,
        E: FnOnce(&TaskError) + Send + 'static,
    {
        let result = self.map_async(f, items, chunksize)?;
        with_callbacks(&result.future, callback, error_callback);
        Ok(result)
    }

    /// A lazy iterator of `f` over the items, in order, `chunksize` items per message
    /// (`None`: 1, as Python's default).
    pub fn imap<F, I, R>(
        &self,
        f: F,
        items: I,
        chunksize: impl Into<Option<usize>>,
    ) -> Result<ProcessMap<I::IntoIter, R>, TaskError>
    where
        F: Fn(I::Item) -> R + 'static,
        I: IntoIterator,
        I::Item: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.check_open()?;
        Ok(self.executor.map(f, items, chunksize))
    }

    /// `f` over the items, each value as soon as it is ready: completion order,
    /// `chunksize` items per message (`None`: 1, as Python's default).
    /// Every item's result comes exactly once; a failed chunk yields its failure once.
    ///
    /// Lazy: at most 32 chunks per worker are in flight (enough to keep every worker's pipeline full of small tasks), and the
    /// input is read only as results are taken, so an endless input works.
    pub fn imap_unordered<F, I, R, C>(
        &self,
        f: F,
        items: I,
        chunksize: C,
    ) -> Result<impl Iterator<Item = Result<R, TaskError>> + use<F, I, R, C>, TaskError>
    where
        C: Into<Option<usize>>,
        F: Fn(I::Item) -> R + 'static,
        I: IntoIterator,
        I::Item: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.check_open()?;
        Ok(Unordered::new(
            Arc::clone(&self.executor.shared),
            boot::entry_of_chunk::<F, I::Item, R>(&f),
            items.into_iter(),
            chunksize.into().unwrap_or(1),
            super::MAP_WINDOW * self.executor.max_workers(),
        ))
    }

    /// Python's `starmap`: each item is the tuple of `f`'s arguments, spread over them,
    /// so `f` is `fn(a, b)` over `(a, b)` items as in Python (see [`Target`]); a
    /// function taking the tuple itself works too, as it does with [`map`](Self::map).
    ///
    /// ```
    /// fn power(base: u64, exp: u32) -> u64 {
    ///     base.pow(exp)
    /// }
    ///
    /// let pool = flotilla_process::Pool::new(2).unwrap();
    /// assert_eq!(pool.starmap(power, [(2, 3), (3, 2)], None).unwrap(), [8, 9]);
    /// ```
    pub fn starmap<F, M, I>(
        &self,
        f: F,
        items: I,
        chunksize: impl Into<Option<usize>>,
    ) -> Result<Vec<F::Output>, TaskError>
    where
        F: Target<M>,
        I: IntoIterator<Item = F::Args>,
        F::Args: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned + Send,
    {
        self.starmap_async(f, items, chunksize)?
            .future
            .into_result()
    }

    /// [`starmap`](Self::starmap) without waiting.
    pub fn starmap_async<F, M, I>(
        &self,
        f: F,
        items: I,
        chunksize: impl Into<Option<usize>>,
    ) -> Result<AsyncResult<Vec<F::Output>>, TaskError>
    where
        F: Target<M>,
        I: IntoIterator<Item = F::Args>,
        F::Args: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned + Send,
    {
        let chunks = self.submit_chunks::<F, M, I>(f, items, chunksize)?;
        Ok(AsyncResult {
            future: gather_in_order(chunks),
        })
    }

    /// [`starmap_async`](Self::starmap_async) with Python's `callback` and
    /// `error_callback`, as [`map_async_with`](Self::map_async_with).
    pub fn starmap_async_with<F, M, I, C, E>(
        &self,
        f: F,
        items: I,
        chunksize: Option<usize>,
        callback: C,
        error_callback: E,
    ) -> Result<AsyncResult<Vec<F::Output>>, TaskError>
    where
        F: Target<M>,
        I: IntoIterator<Item = F::Args>,
        F::Args: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned + Clone + Send,
        C: FnOnce(&Vec<F::Output>) + Send + 'static,
        E: FnOnce(&TaskError) + Send + 'static,
    {
        let result = self.starmap_async(f, items, chunksize)?;
        with_callbacks(&result.future, callback, error_callback);
        Ok(result)
    }

    /// Takes no more tasks; the workers exit once the submitted ones are done.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.executor.shutdown(false, false);
    }

    /// Waits for the workers to exit. An error before [`close`](Self::close) or
    /// [`terminate`](Self::terminate), as in Python.
    pub fn join(&self) -> Result<(), Error> {
        if !self.closed.load(Ordering::Acquire) {
            return Err(Error::Unsupported(
                "Pool::join called before close or terminate".into(),
            ));
        }
        self.executor.shutdown(true, false);
        Ok(())
    }

    /// [`join`](Self::join) with a bound on the wait: `Ok(true)` once the workers have
    /// exited, `Ok(false)` if they still run after `timeout` (join again later).
    ///
    /// # Errors
    ///
    /// As for [`join`](Self::join): called before close or terminate.
    pub fn join_timeout(&self, timeout: Duration) -> Result<bool, Error> {
        if !self.closed.load(Ordering::Acquire) {
            return Err(Error::Unsupported(
                "Pool::join_timeout called before close or terminate".into(),
            ));
        }
        Ok(self.executor.shutdown_timeout(timeout, false))
    }

    /// Stops the workers at once; pending tasks fail with [`TaskError::ShutDown`].
    pub fn terminate(&self) {
        self.closed.store(true, Ordering::Release);
        self.executor.terminate();
    }
}

impl Drop for Pool {
    /// Terminates the pool, as leaving Python's `with Pool() as p:` block does.
    fn drop(&mut self) {
        self.terminate();
    }
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("executor", &self.executor)
            .field("closed", &self.closed.load(Ordering::Relaxed))
            .finish()
    }
}

/// Runs `callback` on `future`'s value or `error_callback` on its failure, once it is
/// done (at once if it is). The value is cloned so that `get` still returns it, as in
/// Python.
fn with_callbacks<R, C, E>(future: &Future<R>, callback: C, error_callback: E)
where
    R: Clone + Send + 'static,
    C: FnOnce(&R) + Send + 'static,
    E: FnOnce(&TaskError) + Send + 'static,
{
    future.add_done_callback(move |fut| {
        // The future is done: this reads its outcome without waiting.
        match fut.result_timeout(Duration::ZERO) {
            Ok(value) => callback(&value),
            Err(e) => error_callback(&e),
        }
    });
}

/// One future for a list made of `chunks`, in order: done once every chunk is, with
/// their values joined, or at the first failure in input order, with that failure. Done
/// callbacks drive it (no thread waits for the chunks).
fn gather_in_order<R: Send + 'static>(chunks: Vec<Future<Vec<R>>>) -> Future<Vec<R>> {
    struct Gather<R> {
        chunks: Vec<Future<Vec<R>>>,
        /// The chunks before this one are done, and none failed.
        next: usize,
        completer: Option<flotilla_core::Completer<Vec<R>>>,
    }

    let (completer, future) = flotilla_core::Completer::relayed();
    let state = Arc::new(std::sync::Mutex::new(Gather {
        chunks: chunks.clone(),
        next: 0,
        completer: Some(completer),
    }));
    let advance = move |state: &std::sync::Mutex<Gather<R>>| {
        // Decided under the lock, completed after it: the list's own done callbacks
        // (the user's) never run under it.
        let (completer, outcome) = {
            let mut g = state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            while g.next < g.chunks.len()
                && g.chunks[g.next].done()
                && !g.chunks[g.next].is_failed()
            {
                g.next += 1;
            }
            let outcome = if g.next < g.chunks.len() {
                if !g.chunks[g.next].is_failed() {
                    return; // the next chunk in order is still running
                }
                Err(match g.chunks[g.next].error_timeout(Duration::ZERO) {
                    Ok(Some(e)) => e,
                    _ => TaskError::Cancelled,
                })
            } else {
                // Every chunk is done; a cancelled one fails the list here.
                std::mem::take(&mut g.chunks)
                    .into_iter()
                    .try_fold(Vec::new(), |mut all, chunk| {
                        all.extend(chunk.into_result_timeout(Duration::ZERO)?);
                        Ok(all)
                    })
            };
            match g.completer.take() {
                Some(c) => (c, outcome),
                None => return,
            }
        };
        completer.complete(outcome);
    };
    if chunks.is_empty() {
        advance(&state);
    }
    for chunk in chunks {
        let state = Arc::clone(&state);
        chunk.add_done_callback(move |_| advance(&state));
    }
    future
}
