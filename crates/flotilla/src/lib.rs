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
//! [`ThreadPoolExecutor`](futures::ThreadPoolExecutor), the [`Executor`](futures::Executor)
//! trait, [`TaskError`](futures::TaskError), and [`CancelToken`](futures::CancelToken) for
//! stopping tasks that already run.
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
//! let (done, not_done) = wait(&futures, None, ReturnWhen::AllCompleted);
//! assert_eq!((done.len(), not_done.len()), (4, 0));
//! assert_eq!(futures[3].result(None)?, 24);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#[doc(inline)]
pub use flotilla_core::codec;

/// The README's examples, compiled and run as doctests so the tour stays true.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;

/// Python's `concurrent.futures`: futures, waiting on them, and executors.
pub mod futures {
    #[doc(inline)]
    pub use flotilla_core::{
        AsCompleted, CancelToken, Completer, Executor, Future, ResultFuture, ResultRefFuture,
        ReturnWhen, State, TaskError, Waitable, as_completed, panic_message, wait,
    };

    #[cfg(feature = "thread")]
    #[doc(inline)]
    pub use flotilla_thread::{Map, ThreadPoolExecutor, ThreadPoolExecutorBuilder};
}

/// The names most programs use, for a glob import.
pub mod prelude {
    #[doc(no_inline)]
    pub use crate::futures::{Future, ReturnWhen, TaskError, as_completed, wait};

    #[cfg(feature = "thread")]
    #[doc(no_inline)]
    pub use crate::futures::ThreadPoolExecutor;
}
