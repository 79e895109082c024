//! The crate's one error enum, and the queue errors that hand back the value they could
//! not deliver (in the style of crossbeam-channel's `err.rs`).

use std::fmt;

/// What went wrong in a `flotilla-thread` operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The operating system refused to start a thread.
    #[error("could not start a thread: {0}")]
    Spawn(#[from] std::io::Error),
    /// An option was given a value it cannot take.
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),

    /// A thread name contained a NUL byte, which no operating system accepts.
    #[error("thread name {0:?} contains a NUL byte")]
    InvalidThreadName(String),

    /// The thread's target panicked; `message` is the text it panicked with.
    #[error("thread {thread:?} panicked: {message}")]
    Panicked {
        /// The name of the thread that panicked.
        thread: String,
        /// The panic message (the `&str` or `String` given to `panic!`).
        message: String,
    },

    /// A timed join ran out of time: the thread still runs (join again later).
    #[error("the thread still runs after {0:?}")]
    Timeout(std::time::Duration),

    /// The thread was joined before, and that join already handed out its value.
    #[error("thread {0:?} was already joined; its value was returned by that join")]
    AlreadyJoined(String),

    /// A thread tried to join itself, which would wait forever.
    #[error("thread {0:?} cannot join itself")]
    JoinSelf(String),

    /// A `BoundedSemaphore` was released more times than it was acquired: its value
    /// would have gone past the initial value. The value is left unchanged.
    #[error("BoundedSemaphore released too many times: its value may not exceed {bound}")]
    SemaphoreOverReleased {
        /// The semaphore's initial value, which its value may never exceed.
        bound: usize,
    },

    /// The barrier is broken: it was aborted, reset while this thread waited, or a
    /// waiter timed out. Call `Barrier::reset` to use it again.
    #[error("the barrier is broken (aborted, reset, or a waiter timed out)")]
    BrokenBarrier,
}

// ---------------------------------------------------------------------------------------
// Queue errors. A put that fails hands its item back, so nothing is lost on the error
// path; `Debug` does not print the item, so `unwrap()` works for any `T`.
// ---------------------------------------------------------------------------------------

/// A [`put`](crate::queue::GenericQueue::put) on a closed queue; holds the item back.
///
/// The twin of the process queues' `flotilla_ipc::PutError` (which has one more
/// variant, for an item that could not be encoded).
///
/// ```
/// use flotilla_thread::{PutError, Queue};
///
/// let q = Queue::new();
/// q.close();
/// assert_eq!(q.put("lost?"), Err(PutError::Closed("lost?")));
/// assert_eq!(q.put("no").unwrap_err().into_inner(), "no");
/// ```
#[derive(PartialEq, Eq, Clone, Copy)]
#[non_exhaustive]
pub enum PutError<T> {
    /// The queue is closed (or was closed while waiting); the item is handed back.
    Closed(T),
}

/// A [`try_put`](crate::queue::GenericQueue::try_put) that could not put at once.
///
/// ```
/// use flotilla_thread::{Queue, TryPutError};
///
/// let q = Queue::bounded(1);
/// q.put(1).unwrap();
/// assert_eq!(q.try_put(2), Err(TryPutError::Full(2)));
/// q.close();
/// assert_eq!(q.try_put(3), Err(TryPutError::Closed(3)));
/// ```
#[derive(PartialEq, Eq, Clone, Copy)]
pub enum TryPutError<T> {
    /// The queue is at its maxsize; the item is handed back. Python's `queue.Full`.
    Full(T),
    /// The queue is closed; the item is handed back.
    Closed(T),
}

/// A [`put_timeout`](crate::queue::GenericQueue::put_timeout) that did not put in time.
///
/// ```
/// use std::time::Duration;
/// use flotilla_thread::{PutTimeoutError, Queue};
///
/// let q = Queue::bounded(1);
/// q.put(1).unwrap();
/// let err = q.put_timeout(2, Duration::from_millis(10)).unwrap_err();
/// assert!(err.is_timeout());
/// assert_eq!(err.into_inner(), 2);
/// ```
#[derive(PartialEq, Eq, Clone, Copy)]
pub enum PutTimeoutError<T> {
    /// The queue stayed full until the timeout; the item is handed back. Python's
    /// `queue.Full`.
    Timeout(T),
    /// The queue is closed (or was closed while waiting); the item is handed back.
    Closed(T),
}

/// A [`get`](crate::queue::GenericQueue::get) on a queue that is closed and drained: no
/// item will ever come.
///
/// ```
/// use flotilla_thread::{GetError, Queue};
///
/// let q = Queue::new();
/// q.put(1).unwrap();
/// q.close();
/// assert_eq!(q.get(), Ok(1)); // what was put before close still comes out
/// assert_eq!(q.get(), Err(GetError::Closed));
/// ```
///
/// The twin of the process queues' `flotilla_ipc::GetError` (which has one more
/// variant, for an item that could not be decoded).
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
#[non_exhaustive]
pub enum GetError {
    /// The queue is closed and drained: no item will ever come.
    Closed,
}

/// A [`try_get`](crate::queue::GenericQueue::try_get) that found nothing to get.
///
/// ```
/// use flotilla_thread::{Queue, TryGetError};
///
/// let q = Queue::<u8>::new();
/// assert_eq!(q.try_get(), Err(TryGetError::Empty));
/// q.close();
/// assert_eq!(q.try_get(), Err(TryGetError::Closed));
/// ```
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum TryGetError {
    /// The queue is empty for now. Python's `queue.Empty`.
    Empty,
    /// The queue is closed and drained: no item will ever come.
    Closed,
}

/// A [`get_timeout`](crate::queue::GenericQueue::get_timeout) that got nothing in time.
///
/// ```
/// use std::time::Duration;
/// use flotilla_thread::{GetTimeoutError, Queue};
///
/// let q = Queue::<u8>::new();
/// assert_eq!(q.get_timeout(Duration::from_millis(10)), Err(GetTimeoutError::Timeout));
/// ```
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum GetTimeoutError {
    /// The queue stayed empty until the timeout. Python's `queue.Empty`.
    Timeout,
    /// The queue is closed and drained (or was closed while waiting): no item will
    /// ever come.
    Closed,
}

/// [`task_done`](crate::queue::GenericQueue::task_done) was called more times than items
/// were put. Python raises `ValueError` here.
///
/// ```
/// use flotilla_thread::{Queue, TaskDoneError};
///
/// let q = Queue::new();
/// q.put(1).unwrap();
/// assert_eq!(q.task_done(), Ok(()));
/// assert_eq!(q.task_done(), Err(TaskDoneError));
/// ```
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub struct TaskDoneError;

impl<T> PutError<T> {
    /// The item that could not be put.
    pub fn into_inner(self) -> T {
        match self {
            PutError::Closed(item) => item,
        }
    }

    /// Whether the put failed because the queue is closed (always, for a thread queue).
    pub fn is_closed(&self) -> bool {
        matches!(self, PutError::Closed(_))
    }
}

impl GetError {
    /// Whether the get failed because the queue is closed and drained (always, for a
    /// thread queue).
    pub fn is_closed(&self) -> bool {
        matches!(self, GetError::Closed)
    }
}

impl<T> TryPutError<T> {
    /// The item that could not be put.
    ///
    /// ```
    /// use flotilla_thread::TryPutError;
    ///
    /// assert_eq!(TryPutError::Full(7).into_inner(), 7);
    /// ```
    pub fn into_inner(self) -> T {
        match self {
            TryPutError::Full(item) | TryPutError::Closed(item) => item,
        }
    }

    /// Whether the put failed because the queue was full.
    ///
    /// ```
    /// use flotilla_thread::TryPutError;
    ///
    /// assert!(TryPutError::Full(()).is_full());
    /// ```
    pub fn is_full(&self) -> bool {
        matches!(self, TryPutError::Full(_))
    }

    /// Whether the put failed because the queue was closed.
    ///
    /// ```
    /// use flotilla_thread::TryPutError;
    ///
    /// assert!(TryPutError::Closed(()).is_closed());
    /// ```
    pub fn is_closed(&self) -> bool {
        matches!(self, TryPutError::Closed(_))
    }
}

impl<T> PutTimeoutError<T> {
    /// The item that could not be put.
    ///
    /// ```
    /// use flotilla_thread::PutTimeoutError;
    ///
    /// assert_eq!(PutTimeoutError::Closed(7).into_inner(), 7);
    /// ```
    pub fn into_inner(self) -> T {
        match self {
            PutTimeoutError::Timeout(item) | PutTimeoutError::Closed(item) => item,
        }
    }

    /// Whether the put failed because the timeout passed with the queue still full.
    ///
    /// ```
    /// use flotilla_thread::PutTimeoutError;
    ///
    /// assert!(PutTimeoutError::Timeout(()).is_timeout());
    /// ```
    pub fn is_timeout(&self) -> bool {
        matches!(self, PutTimeoutError::Timeout(_))
    }

    /// Whether the put failed because the queue was closed.
    ///
    /// ```
    /// use flotilla_thread::PutTimeoutError;
    ///
    /// assert!(PutTimeoutError::Closed(()).is_closed());
    /// ```
    pub fn is_closed(&self) -> bool {
        matches!(self, PutTimeoutError::Closed(_))
    }
}

impl TryGetError {
    /// Whether the queue was merely empty (an item may still come).
    ///
    /// ```
    /// use flotilla_thread::TryGetError;
    ///
    /// assert!(TryGetError::Empty.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        matches!(self, TryGetError::Empty)
    }

    /// Whether the queue is closed and drained (no item will ever come).
    ///
    /// ```
    /// use flotilla_thread::TryGetError;
    ///
    /// assert!(TryGetError::Closed.is_closed());
    /// ```
    pub fn is_closed(&self) -> bool {
        matches!(self, TryGetError::Closed)
    }
}

impl GetTimeoutError {
    /// Whether the timeout passed with the queue still empty (an item may still come).
    ///
    /// ```
    /// use flotilla_thread::GetTimeoutError;
    ///
    /// assert!(GetTimeoutError::Timeout.is_timeout());
    /// ```
    pub fn is_timeout(&self) -> bool {
        matches!(self, GetTimeoutError::Timeout)
    }

    /// Whether the queue is closed and drained (no item will ever come).
    ///
    /// ```
    /// use flotilla_thread::GetTimeoutError;
    ///
    /// assert!(GetTimeoutError::Closed.is_closed());
    /// ```
    pub fn is_closed(&self) -> bool {
        matches!(self, GetTimeoutError::Closed)
    }
}

impl<T> From<PutError<T>> for TryPutError<T> {
    fn from(err: PutError<T>) -> Self {
        TryPutError::Closed(err.into_inner())
    }
}

impl<T> From<PutError<T>> for PutTimeoutError<T> {
    fn from(err: PutError<T>) -> Self {
        PutTimeoutError::Closed(err.into_inner())
    }
}

impl From<GetError> for TryGetError {
    fn from(_: GetError) -> Self {
        TryGetError::Closed
    }
}

impl From<GetError> for GetTimeoutError {
    fn from(_: GetError) -> Self {
        GetTimeoutError::Closed
    }
}

impl<T> fmt::Debug for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PutError { .. }")
    }
}

impl<T> fmt::Debug for TryPutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryPutError::Full(_) => f.write_str("Full(..)"),
            TryPutError::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

impl<T> fmt::Debug for PutTimeoutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PutTimeoutError::Timeout(_) => f.write_str("Timeout(..)"),
            PutTimeoutError::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

impl<T> fmt::Display for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("putting on a closed queue")
    }
}

impl<T> fmt::Display for TryPutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryPutError::Full(_) => f.write_str("putting on a full queue"),
            TryPutError::Closed(_) => f.write_str("putting on a closed queue"),
        }
    }
}

impl<T> fmt::Display for PutTimeoutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PutTimeoutError::Timeout(_) => f.write_str("timed out putting on a full queue"),
            PutTimeoutError::Closed(_) => f.write_str("putting on a closed queue"),
        }
    }
}

impl fmt::Display for GetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("getting from a closed and empty queue")
    }
}

impl fmt::Display for TryGetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryGetError::Empty => f.write_str("getting from an empty queue"),
            TryGetError::Closed => f.write_str("getting from a closed and empty queue"),
        }
    }
}

impl fmt::Display for GetTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GetTimeoutError::Timeout => f.write_str("timed out getting from an empty queue"),
            GetTimeoutError::Closed => f.write_str("getting from a closed and empty queue"),
        }
    }
}

impl fmt::Display for TaskDoneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("task_done() called more times than items were put")
    }
}

impl<T> std::error::Error for PutError<T> {}
impl<T> std::error::Error for TryPutError<T> {}
impl<T> std::error::Error for PutTimeoutError<T> {}
impl std::error::Error for GetError {}
impl std::error::Error for TryGetError {}
impl std::error::Error for GetTimeoutError {}
impl std::error::Error for TaskDoneError {}
