//! [`gather()`]: await many futures at once, results in input order: Python's
//! `asyncio.gather`, with [`Gather::return_exceptions`] for `return_exceptions=True`.

use std::fmt;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::ready::ReadySet;

/// The children of a gather and their outputs, polled through a [`ReadySet`].
///
/// The children share one pinned allocation rather than a box each: a gather of n
/// futures allocates once for its children, not n times.
struct Join<F: Future> {
    /// A child is replaced by `None`, in place, when it finishes.
    children: Pin<Box<[Option<F>]>>,
    outputs: Vec<Option<F::Output>>,
    ready: ReadySet,
    remaining: usize,
}

// Nothing of a Join is ever pinned in place: the children are pinned in their boxed
// slice, which does not move with the Join; the outputs are plain values moved out by
// value.
impl<F: Future> Unpin for Join<F> {}

/// Child `i`'s slot of `children`, pinned.
fn slot<F>(children: &mut Pin<Box<[Option<F>]>>, i: usize) -> Pin<&mut Option<F>> {
    // SAFETY: the slice's elements are structurally pinned. The boxed slice is never
    // resized or reordered, and nothing moves a child out of it: this projection is the
    // only access to a slot, and a slot is only polled or `set` (which drops the old
    // child in place) through the `Pin` it returns.
    unsafe { children.as_mut().map_unchecked_mut(|slots| &mut slots[i]) }
}

impl<F: Future> Join<F> {
    fn new(futures: impl IntoIterator<Item = F>) -> Self {
        let children: Box<[Option<F>]> = futures.into_iter().map(Some).collect();
        let children = Box::into_pin(children);
        let n = children.len();
        Join {
            outputs: (0..n).map(|_| None).collect(),
            ready: ReadySet::new(n),
            children,
            remaining: n,
        }
    }

    /// Polls the children that woke. Ready(None) once all are done, Ready(Some(i)) as
    /// soon as child `i` finishes with an output that `stop` accepts.
    fn poll_children(
        &mut self,
        cx: &mut Context<'_>,
        stop: impl Fn(&F::Output) -> bool,
    ) -> Poll<Option<usize>> {
        for i in self.ready.drain(cx) {
            let mut slot = slot(&mut self.children, i);
            let Some(child) = slot.as_mut().as_pin_mut() else {
                continue;
            };
            if let Poll::Ready(output) = child.poll(&mut Context::from_waker(self.ready.waker(i))) {
                // Dropped at once, where it lies: a finished child holds nothing worth
                // keeping.
                slot.set(None);
                self.remaining -= 1;
                let stopping = stop(&output);
                self.outputs[i] = Some(output);
                if stopping {
                    return Poll::Ready(Some(i));
                }
            }
        }
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        if self.ready.any_queued() {
            // Woken while we polled: come back rather than loop here, so one busy child
            // cannot keep this poll from returning to the runtime.
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }

    fn take_outputs(&mut self) -> impl Iterator<Item = F::Output> + '_ {
        self.outputs
            .iter_mut()
            .map(|o| o.take().expect("every child finished"))
    }
}

/// Awaits every future in `futures` concurrently and returns their values in input
/// order, or the first failure (in order of completion): Python's `asyncio.gather`.
///
/// The futures run concurrently within the task that awaits the gather (no task is
/// spawned), each polled only when it is woken. On the first failure the gather
/// returns it and drops the others: a dropped [`Task`](crate::Task) cancels its work,
/// which is Rust's usual fail-fast (Python lets the others run on; to get that,
/// [`detach`](crate::Task::detach) them, or use
/// [`return_exceptions`](Gather::return_exceptions), which waits for all).
/// Dropping the gather drops every future it holds, as cancelling a Python gather
/// cancels its children.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use flotilla_async::{gather, to_thread};
///
/// let squares = gather((1..=4u64).map(|n| to_thread(move || n * n))).await;
/// assert_eq!(squares.unwrap(), [1, 4, 9, 16]);
/// # }
/// ```
pub fn gather<I, T, E>(futures: I) -> Gather<<I::Item as IntoFuture>::IntoFuture>
where
    I: IntoIterator,
    I::Item: IntoFuture<Output = Result<T, E>>,
{
    Gather {
        join: Join::new(futures.into_iter().map(IntoFuture::into_future)),
    }
}

/// The future returned by [`gather()`].
#[must_use = "futures do nothing unless awaited"]
pub struct Gather<F: Future> {
    join: Join<F>,
}

impl<F, T, E> Gather<F>
where
    F: Future<Output = Result<T, E>>,
{
    /// Waits for every future and returns each outcome, failures included, in input
    /// order: Python's `gather(..., return_exceptions=True)`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use flotilla_async::{gather, to_thread};
    ///
    /// let outcomes = gather([
    ///     to_thread(|| 1),
    ///     to_thread(|| panic!("the second one fails")),
    ///     to_thread(|| 3),
    /// ])
    /// .return_exceptions()
    /// .await;
    /// assert_eq!(*outcomes[0].as_ref().unwrap(), 1);
    /// assert!(outcomes[1].as_ref().unwrap_err().to_string().contains("second one"));
    /// assert_eq!(*outcomes[2].as_ref().unwrap(), 3);
    /// # }
    /// ```
    pub fn return_exceptions(self) -> GatherAll<F> {
        GatherAll { join: self.join }
    }
}

impl<F, T, E> Future for Gather<F>
where
    F: Future<Output = Result<T, E>>,
{
    type Output = Result<Vec<T>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let join = &mut self.get_mut().join;
        match std::task::ready!(join.poll_children(cx, Result::is_err)) {
            Some(failed) => {
                let error = join.outputs[failed].take().and_then(Result::err);
                Poll::Ready(Err(error.expect("the stop predicate saw an Err")))
            }
            None => Poll::Ready(join.take_outputs().collect()),
        }
    }
}

/// The future returned by [`Gather::return_exceptions`]: every outcome, in input order.
#[must_use = "futures do nothing unless awaited"]
pub struct GatherAll<F: Future> {
    join: Join<F>,
}

impl<F: Future> Future for GatherAll<F> {
    type Output = Vec<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let join = &mut self.get_mut().join;
        std::task::ready!(join.poll_children(cx, |_| false));
        Poll::Ready(join.take_outputs().collect())
    }
}

impl<F: Future> fmt::Debug for Gather<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gather")
            .field("total", &self.join.children.len())
            .field("remaining", &self.join.remaining)
            .finish()
    }
}

impl<F: Future> fmt::Debug for GatherAll<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GatherAll")
            .field("total", &self.join.children.len())
            .field("remaining", &self.join.remaining)
            .finish()
    }
}
