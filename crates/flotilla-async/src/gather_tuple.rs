//! [`gather!`](crate::gather!): `asyncio.gather(a, b, c)` over futures of different value
//! types, awaited as one tuple.
//!
//! [`gather`](crate::gather()) takes any number of futures of one type. Python's
//! `gather(fetch_user(), fetch_orders())` mixes types freely; in Rust that is a tuple: the
//! macro hands a tuple of up to eight futures to [`gather_tuple`], whose future polls
//! each child when it is woken and yields `Ok((a, b, c))` or the first `Err`.
//!
//! Each child is boxed once (a handful of small allocations for a handful of futures);
//! the many-futures case, where that would matter, is `gather` over an iterator.

use std::fmt;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::task::{Context, Poll};

/// Awaits every future of a tuple concurrently; `Ok` with their values as a tuple, in
/// the same order, or the first failure (in order of completion), which drops the
/// others, as [`gather`](crate::gather()) does.
///
/// Every future's output is a `Result` with the same error type (a [`Task`](crate::Task)'s
/// is `Result<T, TaskError>`, whatever `T`). [`gather!`](crate::gather!) is the short
/// spelling.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use flotilla_async::{gather_tuple, to_thread};
///
/// let (name, age) = gather_tuple((to_thread(|| "Ada".to_string()), to_thread(|| 36u32)))
///     .await
///     .unwrap();
/// assert_eq!((name.as_str(), age), ("Ada", 36));
/// # }
/// ```
pub fn gather_tuple<T: IntoGatherTuple>(futures: T) -> GatherTuple<T::Children> {
    GatherTuple {
        children: futures.into_children(),
    }
}

/// `asyncio.gather(a, b, ...)` for futures of different value types: `gather!(a, b, c)`
/// is [`gather_tuple((a, b, c))`](gather_tuple), a future of `Result<(A, B, C), E>`.
///
/// From one to eight futures, each `IntoFuture<Output = Result<_, E>>` with one `E`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use flotilla_async::{gather, to_thread};
///
/// let (count, words, ok) = gather!(
///     to_thread(|| 3usize),
///     to_thread(|| vec!["a", "b"]),
///     to_thread(|| true),
/// )
/// .await
/// .unwrap();
/// assert_eq!((count, words.len(), ok), (3, 2, true));
///
/// // The first failure is the gather's, and the others are dropped (cancelled).
/// let failed = gather!(to_thread(|| 1), to_thread(|| -> u8 { panic!("no") })).await;
/// assert!(failed.unwrap_err().to_string().contains("no"));
/// # }
/// ```
#[macro_export]
macro_rules! gather {
    ($($future:expr),+ $(,)?) => {
        $crate::gather_tuple(($($future,)+))
    };
}

/// A tuple of futures that [`gather_tuple`] can await as one: tuples of one to eight
/// `IntoFuture`s whose outputs are `Result`s with the same error type.
///
/// Implemented by flotilla for those tuples only; the trait exists to name them.
pub trait IntoGatherTuple {
    /// The running children: what [`GatherTuple`] polls.
    type Children: Children;

    /// Turns each element into its future.
    fn into_children(self) -> Self::Children;
}

/// The running children of a [`GatherTuple`]. Sealed: flotilla implements it for the
/// tuples [`IntoGatherTuple`] produces.
pub trait Children: sealed::Sealed {
    /// The tuple of values on success.
    type Output;
    /// The error shared by every child.
    type Error;

    #[doc(hidden)]
    fn poll_children(&mut self, cx: &mut Context<'_>) -> Poll<Result<Self::Output, Self::Error>>;
}

mod sealed {
    pub trait Sealed {}
}

/// A future whose output is a `Result`: the bound that names its value and error types.
pub trait TryOutput {
    /// The value on success.
    type Ok;
    /// The error.
    type Err;

    /// The output as a `Result`.
    fn into_result(self) -> Result<Self::Ok, Self::Err>;
}

impl<T, E> TryOutput for Result<T, E> {
    type Ok = T;
    type Err = E;
    fn into_result(self) -> Result<T, E> {
        self
    }
}

/// One child of a tuple gather: running, or finished with its value (taken once all are
/// done).
#[doc(hidden)]
pub enum Child<F: Future>
where
    F::Output: TryOutput,
{
    Running(Pin<Box<F>>),
    Done(Option<<F::Output as TryOutput>::Ok>),
}

impl<F: Future> Child<F>
where
    F::Output: TryOutput,
{
    fn new(future: F) -> Self {
        Child::Running(Box::pin(future))
    }

    /// `Ready(Ok)` once the child has its value, `Ready(Err)` when it failed.
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), <F::Output as TryOutput>::Err>> {
        let Child::Running(future) = self else {
            return Poll::Ready(Ok(()));
        };
        let output = std::task::ready!(future.as_mut().poll(cx));
        match output.into_result() {
            Ok(value) => {
                // Dropped at once: a finished child holds nothing worth keeping.
                *self = Child::Done(Some(value));
                Poll::Ready(Ok(()))
            }
            Err(error) => {
                *self = Child::Done(None);
                Poll::Ready(Err(error))
            }
        }
    }

    fn take(&mut self) -> <F::Output as TryOutput>::Ok {
        match self {
            Child::Done(value) => value.take().expect("a child's value is taken once"),
            Child::Running(_) => unreachable!("taken only once every child is done"),
        }
    }
}

impl<F: Future> fmt::Debug for Child<F>
where
    F::Output: TryOutput,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Child::Running(_) => "Running",
            Child::Done(_) => "Done",
        })
    }
}

macro_rules! tuple_gather {
    ($F1:ident $i1:tt $(, $F:ident $i:tt)*) => {
        impl<$F1: IntoFuture $(, $F: IntoFuture)*> IntoGatherTuple for ($F1, $($F,)*)
        where
            $F1::Output: TryOutput,
            $($F::Output: TryOutput<Err = <$F1::Output as TryOutput>::Err>,)*
        {
            type Children = (Child<$F1::IntoFuture>, $(Child<$F::IntoFuture>,)*);

            fn into_children(self) -> Self::Children {
                (Child::new(self.$i1.into_future()), $(Child::new(self.$i.into_future()),)*)
            }
        }

        impl<$F1: Future $(, $F: Future)*> sealed::Sealed for (Child<$F1>, $(Child<$F>,)*)
        where
            $F1::Output: TryOutput,
            $($F::Output: TryOutput,)*
        {
        }

        impl<$F1: Future $(, $F: Future)*> Children for (Child<$F1>, $(Child<$F>,)*)
        where
            $F1::Output: TryOutput,
            $($F::Output: TryOutput<Err = <$F1::Output as TryOutput>::Err>,)*
        {
            type Output = (
                <$F1::Output as TryOutput>::Ok,
                $(<$F::Output as TryOutput>::Ok,)*
            );
            type Error = <$F1::Output as TryOutput>::Err;

            fn poll_children(
                &mut self,
                cx: &mut Context<'_>,
            ) -> Poll<Result<Self::Output, Self::Error>> {
                // Every child is polled on every wake: at most eight, and only the ones
                // still running do any work.
                let mut pending = false;
                match self.$i1.poll(cx) {
                    Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                    Poll::Ready(Ok(())) => {}
                    Poll::Pending => pending = true,
                }
                $(
                    match self.$i.poll(cx) {
                        Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                        Poll::Ready(Ok(())) => {}
                        Poll::Pending => pending = true,
                    }
                )*
                if pending {
                    return Poll::Pending;
                }
                Poll::Ready(Ok((self.$i1.take(), $(self.$i.take(),)*)))
            }
        }
    };
}

tuple_gather!(A 0);
tuple_gather!(A 0, B 1);
tuple_gather!(A 0, B 1, C 2);
tuple_gather!(A 0, B 1, C 2, D 3);
tuple_gather!(A 0, B 1, C 2, D 3, E 4);
tuple_gather!(A 0, B 1, C 2, D 3, E 4, F 5);
tuple_gather!(A 0, B 1, C 2, D 3, E 4, F 5, G 6);
tuple_gather!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7);

/// The future returned by [`gather_tuple`] and [`gather!`](crate::gather!).
#[must_use = "futures do nothing unless awaited"]
pub struct GatherTuple<C> {
    children: C,
}

// The children are boxed and pinned there; the tuple of boxes moves freely.
impl<C> Unpin for GatherTuple<C> {}

impl<C: Children> Future for GatherTuple<C> {
    type Output = Result<C::Output, C::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.get_mut().children.poll_children(cx)
    }
}

impl<C> fmt::Debug for GatherTuple<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GatherTuple").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    }

    #[test]
    fn values_of_different_types_come_back_in_order_whatever_finishes_first() {
        runtime().block_on(async {
            let slow = async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok::<_, String>("slow")
            };
            let quick = async { Ok::<_, String>(7u8) };
            let list = async { Ok::<_, String>(vec![1.5f64]) };
            assert_eq!(
                gather!(slow, quick, list).await,
                Ok(("slow", 7u8, vec![1.5]))
            );
            assert_eq!(gather!(async { Ok::<_, ()>(1) }).await, Ok((1,)));
        });
    }

    #[test]
    fn the_first_failure_wins_and_drops_the_children_still_running() {
        struct SetOnDrop(Arc<AtomicBool>);
        impl Drop for SetOnDrop {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        runtime().block_on(async {
            let dropped = Arc::new(AtomicBool::new(false));
            let guard = SetOnDrop(dropped.clone());
            let never = async move {
                let _guard = guard;
                std::future::pending::<()>().await;
                Ok::<u32, &str>(0)
            };
            let fails = async {
                tokio::time::sleep(Duration::from_millis(10)).await;
                Err::<String, _>("second")
            };
            let first = async { Err::<(), _>("first, but later") };
            let fut = gather!(never, fails);
            let outcome = tokio::time::timeout(Duration::from_secs(30), fut)
                .await
                .expect("a failure ends the gather");
            assert_eq!(outcome, Err("second"));
            assert!(
                dropped.load(Ordering::SeqCst),
                "the running child was dropped"
            );
            assert_eq!(gather!(first).await, Err("first, but later"));
        });
    }

    #[test]
    fn eight_children_of_eight_types() {
        runtime().block_on(async {
            let r = gather!(
                async { Ok::<_, ()>(1u8) },
                async { Ok(2u16) },
                async { Ok(3u32) },
                async { Ok(4u64) },
                async { Ok('5') },
                async { Ok("6") },
                async { Ok(7.0f32) },
                async { Ok(Some(8)) },
            )
            .await;
            assert_eq!(r, Ok((1, 2, 3, 4, '5', "6", 7.0, Some(8))));
        });
    }
}
