//! The errors of the cross-process queues, in the style of crossbeam-channel's `err.rs`
//! and flotilla-thread's queues: a put that fails hands its item back, so nothing is lost
//! on the error path, and `Debug` does not print the item, so `unwrap()` works for any
//! `T`. Beyond the thread queues' outcomes there is `Failed`: the item could not be
//! encoded (or decoded), or the system refused something; it carries a [`QueueError`].

use std::fmt;

use flotilla_core::codec::CodecError;

use crate::error::{LockError, OsError};

/// Why a queue operation failed for a reason other than the queue's state (closed, full,
/// empty, timed out): what the `Failed` variants of the put and get errors hold, and what
/// [`JoinableQueue::join`](crate::JoinableQueue::join) and a queue's iterators report.
///
/// ```
/// use flotilla_ipc::{Queue, QueueBuilder, QueueError};
///
/// let q: Queue<Vec<u8>> = QueueBuilder::new().max_message(100).build().unwrap();
/// let err = q.put(vec![0; 1000]).unwrap_err();
/// assert!(matches!(err.error(), Some(QueueError::MessageTooLarge { max: 100, .. })));
/// assert_eq!(err.into_inner().len(), 1000, "the item is handed back");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// A put's item, encoded, is longer than the queue's maximum
    /// ([`QueueBuilder::max_message`](crate::QueueBuilder::max_message)); nothing was put.
    #[error("a message of {len} bytes is longer than the queue's maximum of {max}")]
    MessageTooLarge {
        /// The encoded item's length.
        len: u64,
        /// The queue's maximum.
        max: u64,
    },
    /// A put's item could not be encoded; nothing was put.
    #[error("could not encode the item (nothing was put): {0}")]
    Encode(#[source] CodecError),
    /// A get took an item that does not decode as `T`: it is gone, and the queue goes on
    /// with the next one.
    #[error("could not decode the item taken (it is dropped): {0}")]
    Decode(#[source] CodecError),
    /// The queue's shared memory holds what no put writes: a process wrote over it.
    #[error("the queue's shared memory is corrupted: {0}")]
    Corrupted(String),
    /// The operating system refused (a futex wait, the queue's mutexes, a thread).
    #[error("{op}: {source}")]
    Os {
        /// What flotilla was doing.
        op: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}

impl QueueError {
    pub(crate) fn os(op: &'static str, errno: nix::errno::Errno) -> Self {
        OsError::new(op, errno).into()
    }
}

crate::error::from_os_error!(QueueError);

impl From<LockError> for QueueError {
    /// A failure of one of the queue's mutexes, beyond the busy and timed-out outcomes
    /// the ring handles itself: an OS error.
    fn from(e: LockError) -> Self {
        OsError::mutex("queue mutex", e).into()
    }
}

impl From<QueueError> for crate::error::Error {
    fn from(e: QueueError) -> Self {
        use crate::error::Error;
        match e {
            QueueError::MessageTooLarge { len, max } => Error::MessageTooLarge { len, max },
            QueueError::Encode(c) | QueueError::Decode(c) => Error::Codec(c),
            QueueError::Corrupted(m) => {
                Error::InvalidQueue(format!("the queue's shared memory is corrupted: {m}"))
            }
            QueueError::Os { op, source } => Error::Os { op, source },
        }
    }
}

/// A [`put`](crate::Queue::put) that did not put; holds the item back.
///
/// ```
/// use flotilla_ipc::{PutError, Queue};
///
/// let q = Queue::new().unwrap();
/// q.close();
/// let err = q.put("lost?".to_string()).unwrap_err();
/// assert!(err.is_closed());
/// assert_eq!(err.into_inner(), "lost?");
/// ```
pub enum PutError<T> {
    /// The queue is closed; the item is handed back.
    Closed(T),
    /// The item could not be encoded or written (the error says why); it is handed
    /// back and the queue is as it was.
    Failed(T, QueueError),
}

/// A [`try_put`](crate::Queue::try_put) that could not put at once.
///
/// ```
/// use flotilla_ipc::{Queue, TryPutError};
///
/// let q = Queue::bounded(1).unwrap();
/// q.put(1).unwrap();
/// assert!(matches!(q.try_put(2), Err(TryPutError::Full(2))));
/// ```
pub enum TryPutError<T> {
    /// The queue is at its maxsize, its ring lacks the room, or another producer's put
    /// holds it; the item is handed back. Python's `queue.Full`.
    Full(T),
    /// The queue is closed; the item is handed back.
    Closed(T),
    /// The item could not be encoded or written; it is handed back.
    Failed(T, QueueError),
}

/// A [`put_timeout`](crate::Queue::put_timeout) that did not put in time.
///
/// ```
/// use std::time::Duration;
/// use flotilla_ipc::{PutTimeoutError, Queue};
///
/// let q = Queue::bounded(1).unwrap();
/// q.put(1).unwrap();
/// let err = q.put_timeout(2, Duration::from_millis(10)).unwrap_err();
/// assert!(err.is_timeout());
/// assert_eq!(err.into_inner(), 2);
/// ```
pub enum PutTimeoutError<T> {
    /// No room came before the timeout; the item is handed back. Python's `queue.Full`.
    Timeout(T),
    /// The queue is closed (or was closed while waiting); the item is handed back.
    Closed(T),
    /// The item could not be encoded or written; it is handed back.
    Failed(T, QueueError),
}

/// A [`get`](crate::Queue::get) that got nothing.
///
/// ```
/// use flotilla_ipc::{GetError, Queue};
///
/// let q = Queue::<u8>::new().unwrap();
/// q.put(1).unwrap();
/// q.close();
/// assert_eq!(q.get().unwrap(), 1); // what was put before close still comes out
/// assert!(matches!(q.get(), Err(GetError::Closed)));
/// ```
#[derive(Debug)]
pub enum GetError {
    /// The queue is closed and drained: no item will ever come.
    Closed,
    /// A message was taken but could not be decoded, or the system refused something.
    Failed(QueueError),
}

/// A [`try_get`](crate::Queue::try_get) that found nothing to get.
///
/// ```
/// use flotilla_ipc::{Queue, TryGetError};
///
/// let q = Queue::<u8>::new().unwrap();
/// assert!(matches!(q.try_get(), Err(TryGetError::Empty)));
/// q.close();
/// assert!(matches!(q.try_get(), Err(TryGetError::Closed)));
/// ```
#[derive(Debug)]
pub enum TryGetError {
    /// Nothing to get now (or another consumer's get holds the queue). Python's
    /// `queue.Empty`.
    Empty,
    /// The queue is closed and drained: no item will ever come.
    Closed,
    /// A message was taken but could not be decoded, or the system refused something.
    Failed(QueueError),
}

/// A [`get_timeout`](crate::Queue::get_timeout) that got nothing in time.
///
/// ```
/// use std::time::Duration;
/// use flotilla_ipc::{GetTimeoutError, Queue};
///
/// let q = Queue::<u8>::new().unwrap();
/// assert!(q.get_timeout(Duration::from_millis(10)).unwrap_err().is_timeout());
/// ```
#[derive(Debug)]
pub enum GetTimeoutError {
    /// Nothing came before the timeout. Python's `queue.Empty`.
    Timeout,
    /// The queue is closed and drained (or was closed while waiting).
    Closed,
    /// A message was taken but could not be decoded, or the system refused something.
    Failed(QueueError),
}

/// [`task_done`](crate::JoinableQueue::task_done) was called more times than items were
/// put. Python raises `ValueError` here.
///
/// ```
/// use flotilla_ipc::{JoinableQueue, TaskDoneError};
///
/// let q = JoinableQueue::new().unwrap();
/// q.put(1).unwrap();
/// assert_eq!(q.task_done(), Ok(()));
/// assert_eq!(q.task_done(), Err(TaskDoneError));
/// ```
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub struct TaskDoneError;

macro_rules! item_errors {
    ($($name:ident { $($variant:ident),* }),* $(,)?) => {$(
        impl<T> $name<T> {
            /// The item that could not be put.
            pub fn into_inner(self) -> T {
                match self {
                    $($name::$variant(item))|* => item,
                    $name::Failed(item, _) => item,
                }
            }

            /// Whether the put failed because the queue is closed.
            pub fn is_closed(&self) -> bool {
                matches!(self, $name::Closed(_))
            }

            /// The error, if the put failed for a reason other than the queue's state.
            pub fn error(&self) -> Option<&QueueError> {
                match self {
                    $name::Failed(_, e) => Some(e),
                    _ => None,
                }
            }
        }

        impl<T> fmt::Debug for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $($name::$variant(_) => f.write_str(concat!(stringify!($variant), "(..)")),)*
                    $name::Failed(_, e) => f.debug_tuple("Failed").field(&"..").field(e).finish(),
                }
            }
        }

        impl<T> std::error::Error for $name<T> {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                self.error().map(|e| e as _)
            }
        }
    )*};
}

item_errors! {
    PutError { Closed },
    TryPutError { Full, Closed },
    PutTimeoutError { Timeout, Closed },
}

impl<T> TryPutError<T> {
    /// Whether the put failed because there was no room at once.
    pub fn is_full(&self) -> bool {
        matches!(self, TryPutError::Full(_))
    }
}

impl<T> PutTimeoutError<T> {
    /// Whether the put failed because no room came in time.
    pub fn is_timeout(&self) -> bool {
        matches!(self, PutTimeoutError::Timeout(_))
    }
}

impl GetError {
    /// Whether the queue is closed and drained.
    pub fn is_closed(&self) -> bool {
        matches!(self, GetError::Closed)
    }
}

impl TryGetError {
    /// Whether there was merely nothing to get now.
    pub fn is_empty(&self) -> bool {
        matches!(self, TryGetError::Empty)
    }

    /// Whether the queue is closed and drained.
    pub fn is_closed(&self) -> bool {
        matches!(self, TryGetError::Closed)
    }
}

impl GetTimeoutError {
    /// Whether nothing came before the timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(self, GetTimeoutError::Timeout)
    }

    /// Whether the queue is closed and drained.
    pub fn is_closed(&self) -> bool {
        matches!(self, GetTimeoutError::Closed)
    }
}

impl<T> fmt::Display for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PutError::Closed(_) => f.write_str("putting on a closed queue"),
            PutError::Failed(_, e) => write!(f, "could not put on the queue: {e}"),
        }
    }
}

impl<T> fmt::Display for TryPutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryPutError::Full(_) => f.write_str("putting on a full queue"),
            TryPutError::Closed(_) => f.write_str("putting on a closed queue"),
            TryPutError::Failed(_, e) => write!(f, "could not put on the queue: {e}"),
        }
    }
}

impl<T> fmt::Display for PutTimeoutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PutTimeoutError::Timeout(_) => f.write_str("timed out putting on a full queue"),
            PutTimeoutError::Closed(_) => f.write_str("putting on a closed queue"),
            PutTimeoutError::Failed(_, e) => write!(f, "could not put on the queue: {e}"),
        }
    }
}

impl fmt::Display for GetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GetError::Closed => f.write_str("getting from a closed and empty queue"),
            GetError::Failed(e) => write!(f, "could not get from the queue: {e}"),
        }
    }
}

impl fmt::Display for TryGetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryGetError::Empty => f.write_str("getting from an empty queue"),
            TryGetError::Closed => f.write_str("getting from a closed and empty queue"),
            TryGetError::Failed(e) => write!(f, "could not get from the queue: {e}"),
        }
    }
}

impl fmt::Display for GetTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GetTimeoutError::Timeout => f.write_str("timed out getting from an empty queue"),
            GetTimeoutError::Closed => f.write_str("getting from a closed and empty queue"),
            GetTimeoutError::Failed(e) => write!(f, "could not get from the queue: {e}"),
        }
    }
}

impl fmt::Display for TaskDoneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("task_done() called more times than items were put")
    }
}

impl std::error::Error for GetError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            GetError::Failed(e) => Some(e),
            GetError::Closed => None,
        }
    }
}

impl std::error::Error for TryGetError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TryGetError::Failed(e) => Some(e),
            _ => None,
        }
    }
}

impl std::error::Error for GetTimeoutError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            GetTimeoutError::Failed(e) => Some(e),
            _ => None,
        }
    }
}

impl std::error::Error for TaskDoneError {}
