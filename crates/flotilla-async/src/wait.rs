//! [`wait`] and [`as_completed`] for async code: Python's `asyncio.wait` and
//! `asyncio.as_completed`, over flotilla futures and [`Task`]s.
//!
//! Both leave the values where they are: they wait on each future's
//! [`completion`](Future::completion), so the caller reads (or awaits) the results it
//! wants afterwards, as with the blocking [`flotilla_core::wait`].

use std::collections::VecDeque;
use std::fmt;
use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use flotilla_core::{Completion, Future, ReturnWhen, TaskError};
use futures_core::Stream;
use tokio::time::Sleep;

use crate::ready::ReadySet;
use crate::task::Task;

/// Something [`wait`] and [`as_completed`] can wait on: a flotilla [`Future`], a
/// [`Task`], or a reference to one.
pub trait AsFuture {
    /// The value type of the future.
    type Output;

    /// The flotilla future behind this value.
    fn as_future(&self) -> &Future<Self::Output>;
}

impl<T> AsFuture for Future<T> {
    type Output = T;
    fn as_future(&self) -> &Future<T> {
        self
    }
}

impl<T> AsFuture for Task<T> {
    type Output = T;
    fn as_future(&self) -> &Future<T> {
        self.future()
    }
}

impl<W: AsFuture + ?Sized> AsFuture for &W {
    type Output = W::Output;
    fn as_future(&self) -> &Future<W::Output> {
        (**self).as_future()
    }
}

/// `futures` with every future after its first appearance left out: a future given
/// more than once (or with its clones, or as a `Task` and its future) is one future, as
/// in Python's sets.
fn distinct<I, W>(futures: I) -> Vec<W>
where
    I: IntoIterator<Item = W>,
    W: AsFuture,
{
    let mut futures: Vec<W> = futures.into_iter().collect();
    if futures.len() > 1 {
        let mut seen = std::collections::HashSet::with_capacity(futures.len());
        futures.retain(|f| seen.insert(f.as_future().id()));
    }
    futures
}

/// The deadline of a wait, as a tokio timer. Needs a tokio runtime with time enabled.
fn timer(timeout: Option<Duration>) -> Option<Pin<Box<Sleep>>> {
    timeout.map(|t| Box::pin(tokio::time::sleep(t)))
}

/// Waits until `return_when` holds for `futures`, or `timeout` passes, and returns them
/// split into `(done, pending)`, each in input order: Python's `asyncio.wait`.
///
/// On timeout nothing is cancelled: the pending ones are simply returned (cancel them,
/// or drop the [`Task`]s, if they are no longer wanted). No runtime thread blocks.
///
/// # Panics
///
/// With a `timeout`, when called outside a tokio runtime that has its time driver
/// enabled (as `tokio::time::sleep` does).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::time::Duration;
/// use flotilla_async::{to_thread, wait, wait_timeout};
/// use flotilla_core::ReturnWhen;
///
/// let quick = to_thread(|| 1);
/// let slow = to_thread(|| std::thread::sleep(Duration::from_secs(5)));
/// let (done, pending) = wait([quick.future().clone()], ReturnWhen::AllCompleted).await;
/// assert_eq!((done.len(), pending.len()), (1, 0));
///
/// let (done, pending) =
///     wait_timeout([&slow], ReturnWhen::FirstCompleted, Duration::from_millis(10)).await;
/// assert_eq!((done.len(), pending.len()), (0, 1));
/// # drop(quick);
/// # }
/// ```
pub async fn wait<I, W>(futures: I, return_when: ReturnWhen) -> (Vec<W>, Vec<W>)
where
    I: IntoIterator<Item = W>,
    W: AsFuture,
{
    wait_within(futures, return_when, None).await
}

/// Like [`wait()`], but returns once `timeout` has passed at the latest, with the
/// futures not yet done as pending: Python's `asyncio.wait(aws, timeout=..)`.
///
/// # Panics
///
/// When called outside a tokio runtime that has its time driver enabled.
pub async fn wait_timeout<I, W>(
    futures: I,
    return_when: ReturnWhen,
    timeout: Duration,
) -> (Vec<W>, Vec<W>)
where
    I: IntoIterator<Item = W>,
    W: AsFuture,
{
    wait_within(futures, return_when, Some(timeout)).await
}

/// The body of [`wait()`] and [`wait_timeout()`]; `None` waits without limit.
async fn wait_within<I, W>(
    futures: I,
    return_when: ReturnWhen,
    timeout: Option<Duration>,
) -> (Vec<W>, Vec<W>)
where
    I: IntoIterator<Item = W>,
    W: AsFuture,
{
    let futures = distinct(futures);
    let satisfied = |done: usize, failed: bool| return_when.is_met(done, futures.len(), failed);
    let done = futures.iter().filter(|f| f.as_future().done()).count();
    let mut any_failed = futures.iter().any(|f| f.as_future().is_failed());
    if !satisfied(done, any_failed) && timeout != Some(Duration::ZERO) {
        // Counted afresh from what the stream yields: it decides once per future
        // whether it is done already or to be waited for, so a future that completes
        // meanwhile is counted exactly once.
        let mut completed = as_completed_within(&futures, timeout);
        let mut done = 0;
        while !satisfied(done, any_failed) {
            match completed.next().await {
                Some(Ok(f)) => {
                    done += 1;
                    any_failed |= f.as_future().is_failed();
                }
                // The deadline passed.
                _ => break,
            }
        }
    }
    futures.into_iter().partition(|f| f.as_future().done())
}

/// A [`Stream`] of `futures` in the order they complete: Python's
/// `asyncio.as_completed`.
///
/// The ones already done come first, in input order; then each as it completes; every
/// distinct future is yielded exactly once (a future given twice is one future). Every
/// item is `Ok`: the [`TaskError::Unfinished`] item comes only from
/// [`as_completed_timeout()`]. [`next`](AsCompleted::next) reads it without a
/// stream-extension crate.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::time::Duration;
/// use flotilla_async::{as_completed, to_thread};
///
/// let tasks = vec![
///     to_thread(|| { std::thread::sleep(Duration::from_millis(50)); "slow" }),
///     to_thread(|| "quick"),
/// ];
/// let mut order = Vec::new();
/// let mut completed = as_completed(tasks);
/// while let Some(task) = completed.next().await {
///     order.push(task.unwrap().await.unwrap());
/// }
/// assert_eq!(order, ["quick", "slow"]);
/// # }
/// ```
pub fn as_completed<I, W>(futures: I) -> AsCompleted<W>
where
    I: IntoIterator<Item = W>,
    W: AsFuture,
{
    as_completed_within(futures, None)
}

/// Like [`as_completed()`], but when `timeout` (counted from this call) passes with
/// futures unfinished, the stream yields one [`TaskError::Unfinished`] and ends:
/// Python's `asyncio.as_completed(aws, timeout=..)`.
///
/// # Panics
///
/// When called outside a tokio runtime with its time driver enabled.
pub fn as_completed_timeout<I, W>(futures: I, timeout: Duration) -> AsCompleted<W>
where
    I: IntoIterator<Item = W>,
    W: AsFuture,
{
    as_completed_within(futures, Some(timeout))
}

/// The body of [`as_completed()`] and [`as_completed_timeout()`].
fn as_completed_within<I, W>(futures: I, timeout: Option<Duration>) -> AsCompleted<W>
where
    I: IntoIterator<Item = W>,
    W: AsFuture,
{
    let futures = distinct(futures);
    let mut queue = VecDeque::new();
    let completions = futures
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let fut = f.as_future();
            if fut.done() {
                queue.push_back(i);
                None
            } else {
                Some(fut.completion())
            }
        })
        .collect();
    AsCompleted {
        ready: ReadySet::new(futures.len()),
        remaining: futures.len(),
        futures: futures.into_iter().map(Some).collect(),
        completions,
        queue,
        deadline: timer(timeout),
        timed_out: false,
    }
}

/// The stream returned by [`as_completed`].
#[must_use = "streams do nothing unless polled"]
pub struct AsCompleted<W: AsFuture> {
    /// Each in its input place, `None` once yielded.
    futures: Vec<Option<W>>,
    completions: Vec<Option<Completion<W::Output>>>,
    ready: ReadySet,
    /// Done, not yet yielded, in completion order.
    queue: VecDeque<usize>,
    deadline: Option<Pin<Box<Sleep>>>,
    remaining: usize,
    timed_out: bool,
}

// The futures are handles, moved out by value when yielded, never pinned in place.
impl<W: AsFuture> Unpin for AsCompleted<W> {}

impl<W: AsFuture> AsCompleted<W> {
    /// The next future to complete; `None` once every one was yielded (or after the
    /// timeout's error).
    pub async fn next(&mut self) -> Option<Result<W, TaskError>> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }
}

impl<W: AsFuture> Stream for AsCompleted<W> {
    type Item = Result<W, TaskError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.timed_out || this.remaining == 0 {
            return Poll::Ready(None);
        }
        if this.queue.is_empty() {
            for i in this.ready.drain(cx) {
                let Some(completion) = this.completions[i].as_mut() else {
                    continue;
                };
                let mut child = Context::from_waker(this.ready.waker(i));
                if Pin::new(completion).poll(&mut child).is_ready() {
                    this.completions[i] = None;
                    this.queue.push_back(i);
                }
            }
        }
        if let Some(i) = this.queue.pop_front() {
            this.remaining -= 1;
            return Poll::Ready(this.futures[i].take().map(Ok));
        }
        if let Some(deadline) = this.deadline.as_mut()
            && deadline.as_mut().poll(cx).is_ready()
        {
            this.timed_out = true;
            return Poll::Ready(Some(Err(TaskError::Unfinished {
                unfinished: this.remaining,
                total: this.futures.len(),
            })));
        }
        if this.ready.any_queued() {
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.timed_out {
            (0, Some(0))
        } else {
            (self.queue.len(), Some(self.remaining + 1))
        }
    }
}

impl<W: AsFuture> fmt::Debug for AsCompleted<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsCompleted")
            .field("total", &self.futures.len())
            .field("remaining", &self.remaining)
            .field("timed_out", &self.timed_out)
            .finish_non_exhaustive()
    }
}
