//! Why a task produced no value: the crate's one error enum, shared by every executor.

use std::any::Any;
use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

/// Why a [`Future`](crate::Future) holds no value, or why waiting for one gave up.
///
/// Every executor in flotilla (threads, processes, the async bridge) reports task failures
/// with this type, so code that waits on futures from several executors handles one enum.
///
/// It is cheap to clone: a task's own error is kept behind an [`Arc`], so every handle to
/// a failed future can report the same failure.
///
/// # Examples
///
/// ```
/// use flotilla_core::{Future, TaskError};
///
/// let fut: Future<u32> = Future::failed(TaskError::Panicked { message: "boom".into() });
/// match fut.result() {
///     Err(TaskError::Panicked { message }) => assert_eq!(message, "boom"),
///     other => panic!("unexpected {other:?}"),
/// }
/// ```
#[derive(Clone, thiserror::Error)]
#[non_exhaustive]
pub enum TaskError {
    /// The task panicked; the panic was caught and its message kept.
    #[error("the task panicked: {message}")]
    Panicked {
        /// The panic payload when it was a string, or a placeholder.
        message: String,
    },
    /// The task returned `Err`. The error is kept as the task returned it; use
    /// [`TaskError::downcast_ref`] to get the concrete type back.
    #[error("the task failed: {0}")]
    Failed(Arc<dyn StdError + Send + Sync + 'static>),
    /// The task failed in another process; its error arrives as text.
    #[error("the task failed in another process: {message}")]
    Remote {
        /// The remote panic message or error text.
        message: String,
        /// The remote backtrace, when the other side captured one.
        backtrace: Option<String>,
    },
    /// The worker process running the task died (killed by a signal, or exited) before
    /// finishing it.
    #[error("the worker running the task died: {reason}")]
    WorkerDied {
        /// Which worker, and how it ended (the signal or exit code), in words.
        reason: String,
        /// The worker's process id.
        pid: i32,
        /// The signal that killed it, when a signal did (9 for SIGKILL).
        signal: Option<i32>,
        /// Its exit code, when it exited by itself.
        exit_code: Option<i32>,
    },
    /// The future was cancelled before its task started.
    #[error("the task was cancelled before it started")]
    Cancelled,
    /// Waiting for the result gave up before the task finished. The task itself goes on.
    #[error("timed out waiting for the task's result")]
    TimedOut,
    /// `as_completed` ran out of time with futures still unfinished.
    #[error("{unfinished} (of {total}) futures unfinished")]
    Unfinished {
        /// How many futures had not finished when the time ran out.
        unfinished: usize,
        /// How many futures were being waited for in all.
        total: usize,
    },
    /// The executor was shut down, so it took no new task, dropped a queued one, or (a
    /// terminated pool) ended one it had started.
    #[error(
        "the executor was shut down: it takes no new tasks, and a terminate ends those not finished"
    )]
    ShutDown,
    /// The executor can no longer run tasks (a failed initializer, a dead worker).
    #[error("the executor is broken: {reason}")]
    Broken {
        /// What broke it, in words a user can act on.
        reason: String,
    },
    /// The value was already moved out of this future by [`Future::into_result`]
    /// on another handle.
    ///
    /// [`Future::into_result`]: crate::Future::into_result
    #[error("the result was already taken out of this future by another handle")]
    ResultTaken,
    /// A value could not be encoded or decoded by the codec.
    #[error(transparent)]
    Codec(#[from] crate::codec::CodecError),
}

impl TaskError {
    /// Wraps an error returned by a task.
    pub fn failed<E>(error: E) -> Self
    where
        E: StdError + Send + Sync + 'static,
    {
        TaskError::Failed(Arc::new(error))
    }

    /// Builds [`TaskError::Panicked`] from a payload caught by `catch_unwind`.
    pub fn from_panic(payload: &(dyn Any + Send)) -> Self {
        TaskError::Panicked {
            message: panic_message(payload),
        }
    }

    /// When the task returned an `Err` of type `E`, that error.
    ///
    /// ```
    /// use flotilla_core::TaskError;
    ///
    /// let err = TaskError::failed(std::fmt::Error);
    /// assert!(err.downcast_ref::<std::fmt::Error>().is_some());
    /// assert!(err.downcast_ref::<std::io::Error>().is_none());
    /// ```
    pub fn downcast_ref<E: StdError + 'static>(&self) -> Option<&E> {
        match self {
            TaskError::Failed(e) => e.downcast_ref::<E>(),
            _ => None,
        }
    }

    /// True when the task ran and failed (panicked, returned `Err`, or failed remotely):
    /// what Python calls a future with an exception, and what `wait(FirstException)`
    /// stops on.
    pub fn is_task_failure(&self) -> bool {
        !matches!(
            self,
            TaskError::Cancelled
                | TaskError::TimedOut
                | TaskError::Unfinished { .. }
                | TaskError::ResultTaken
        )
    }
}

impl fmt::Debug for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskError::Panicked { message } => f
                .debug_struct("Panicked")
                .field("message", message)
                .finish(),
            TaskError::Failed(e) => f.debug_tuple("Failed").field(&format_args!("{e}")).finish(),
            TaskError::Remote { message, backtrace } => f
                .debug_struct("Remote")
                .field("message", message)
                .field("backtrace", backtrace)
                .finish(),
            TaskError::WorkerDied {
                reason,
                pid,
                signal,
                exit_code,
            } => f
                .debug_struct("WorkerDied")
                .field("reason", reason)
                .field("pid", pid)
                .field("signal", signal)
                .field("exit_code", exit_code)
                .finish(),
            TaskError::Cancelled => f.write_str("Cancelled"),
            TaskError::TimedOut => f.write_str("TimedOut"),
            TaskError::Unfinished { unfinished, total } => f
                .debug_struct("Unfinished")
                .field("unfinished", unfinished)
                .field("total", total)
                .finish(),
            TaskError::ShutDown => f.write_str("ShutDown"),
            TaskError::Broken { reason } => {
                f.debug_struct("Broken").field("reason", reason).finish()
            }
            TaskError::ResultTaken => f.write_str("ResultTaken"),
            TaskError::Codec(e) => f.debug_tuple("Codec").field(e).finish(),
        }
    }
}

/// The text of a panic payload: the `&str` or `String` passed to `panic!`, or a
/// placeholder for any other payload type.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_owned()
    }
}
