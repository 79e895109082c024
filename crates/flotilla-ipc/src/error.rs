//! The crate's one error enum.

use flotilla_core::codec::CodecError;

/// What went wrong in an IPC operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The other end was closed (or its process died): nothing more will arrive, or
    /// nothing sent will be read.
    #[error("end of file: the other end of the connection is closed")]
    Eof,
    /// The other end closed (or its process died) in the middle of a frame: `got` of
    /// the `expected` bytes of the frame's `part` (`"header"` or `"payload"`) arrived.
    /// What did arrive is dropped, with any descriptors that came with it.
    #[error(
        "truncated frame: {got} of {expected} bytes of its {part} arrived before the other end closed"
    )]
    TruncatedFrame {
        /// Which part of the frame was cut short: `"header"` or `"payload"`.
        part: &'static str,
        /// The bytes of that part that arrived.
        got: u64,
        /// The bytes that part has (16 for a header; the declared length for a payload).
        expected: u64,
    },
    /// No memory could be had for an incoming frame of `len` bytes (within the
    /// connection's maximum, which allowed it). Memory is taken as the bytes arrive, so
    /// only a frame that really is that long can cause this. The connection is now
    /// closed: the rest of the frame is still in the stream.
    #[error("no memory for a frame of {len} bytes (the connection is now closed)")]
    FrameAllocation {
        /// The length the frame declared.
        len: u64,
    },
    /// This end was closed with `close()`.
    #[error("the connection was closed on this side")]
    Closed,
    /// Nothing arrived within the timeout.
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// A frame declared a length beyond the connection's maximum. It was refused before
    /// anything was allocated, and the connection is closed: its stream can no longer be
    /// trusted.
    #[error("refused a frame of {len} bytes: the maximum is {max} (the connection is now closed)")]
    FrameTooLarge {
        /// The length the frame declared.
        len: u64,
        /// The connection's maximum.
        max: u64,
    },
    /// The stream held something that is not a frame; the connection is now closed.
    #[error("malformed input: {0} (the connection is now closed)")]
    Malformed(String),
    /// A simplex pipe end was used in the direction it does not support.
    #[error("this end of a simplex pipe is {0}")]
    WrongDirection(&'static str),
    /// The message holds OS handles (file descriptors) but the route cannot carry them.
    #[error("cannot send OS handles here: {0}")]
    HandlesNotSupported(&'static str),
    /// `recv_bytes_into` was given a buffer too small for the message; the message was
    /// consumed and is returned whole.
    #[error("the buffer holds {capacity} bytes but the message has {}", .message.len())]
    BufferTooSmall {
        /// The buffer's size.
        capacity: usize,
        /// The message, so nothing is lost.
        message: Vec<u8>,
    },
    /// `try_acquire` found the lock held by someone else.
    #[error("the lock is held by another thread or process")]
    WouldBlock,
    /// This thread already holds this `Lock`, which is not recursive: acquiring it again
    /// would wait forever. Use an `RLock` to acquire a lock more than once.
    #[error("this thread already holds the lock; a Lock is not recursive (use an RLock)")]
    WouldDeadlock,
    /// The previous holder of a lock died holding it. Returned by `?` on an
    /// `AcquireError::OwnerDied`, whose guard was then dropped (the lock is released and
    /// usable); match on the `AcquireError` instead to repair the data under the lock.
    /// Also returned by every locked accessor of a shared `Value` or `Array` whose lock
    /// holder died, until a guard's `mark_recovered` says the data is repaired.
    #[error("the previous holder of the lock died while holding it")]
    OwnerDied,
    /// The `Value` or `Array` was made raw, without a lock, so it has no locked section.
    #[error("this shared value was made raw, without a lock")]
    NoLock,
    /// An index past the end of a shared `Array`.
    #[error("index {index} is out of range for a shared array of length {len}")]
    IndexOutOfRange {
        /// The index asked for.
        index: usize,
        /// The array's length.
        len: usize,
    },
    /// A slice given to fill a shared `Array` does not have the array's length.
    #[error("the slice has {got} elements but the shared array has {len}")]
    LengthMismatch {
        /// The slice's length.
        got: usize,
        /// The array's length.
        len: usize,
    },
    /// A range of bytes past the end of a shared memory segment.
    #[error("bytes {offset}..{end} are out of range for a segment of {size} bytes")]
    OutOfBounds {
        /// Where the range starts.
        offset: usize,
        /// Where it ends (exclusive); may have overflowed to `usize::MAX`.
        end: usize,
        /// The segment's size.
        size: usize,
    },
    /// A shared memory segment could not be made, opened or received as asked: an empty
    /// size, a malformed name, or a received segment that does not hold what its type
    /// says.
    #[error("shared memory: {0}")]
    InvalidSegment(String),
    /// A queue could not be made or received as asked (a bad option, a segment that
    /// holds no queue or one of another message type), or its shared memory was found
    /// corrupted.
    #[error("queue: {0}")]
    InvalidQueue(String),
    /// A message, encoded, is longer than the queue's maximum; nothing was put.
    #[error("a message of {len} bytes is longer than the queue's maximum of {max}")]
    MessageTooLarge {
        /// The encoded message's length.
        len: u64,
        /// The queue's maximum.
        max: u64,
    },
    /// A `BoundedSemaphore` was released more times than it was acquired (or a
    /// `Semaphore` past its largest value): the value is left unchanged.
    #[error("semaphore released too many times: its value may not exceed {bound}")]
    SemaphoreOverReleased {
        /// The largest value the semaphore may hold.
        bound: usize,
    },
    /// The barrier is broken: aborted, reset while this process waited, a waiter timed
    /// out, or a participant died inside it. `Barrier::reset` makes it usable again.
    #[error("the barrier is broken (aborted, reset, a waiter timed out or died)")]
    BrokenBarrier,
    /// An argument outside what the primitive supports (a semaphore value or a number of
    /// barrier parties beyond 32 bits).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A value could not be encoded or decoded.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The operating system reported an error.
    #[error("{op}: {source}")]
    Os {
        /// What flotilla was doing.
        op: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn os(op: &'static str, errno: nix::errno::Errno) -> Self {
        Error::Os {
            op,
            source: std::io::Error::from(errno),
        }
    }
}

/// Why [`Connection::send`](crate::Connection::send) (and the other sends) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The other end is closed or its process died (`EPIPE`, `ECONNRESET`): nothing sent
    /// will be read. No `SIGPIPE` is raised. Make a new connection to go on.
    #[error("the other end of the connection is closed: nothing sent will be read")]
    Disconnected,
    /// A simplex pipe end was used in the direction it does not support (this is the
    /// read-only end).
    #[error("this end of a simplex pipe is {0}: send on the other end")]
    WrongDirection(&'static str),
    /// The message holds OS handles (file descriptors) but the route cannot carry them.
    #[error("cannot send OS handles here: {0}")]
    HandlesNotSupported(&'static str),
    /// The value could not be encoded; nothing was sent.
    #[error("could not encode the message (nothing was sent): {0}")]
    Encode(#[source] CodecError),
    /// The operating system reported another error.
    #[error("{op}: {source}")]
    Os {
        /// What flotilla was doing.
        op: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}

impl SendError {
    pub(crate) fn os(op: &'static str, errno: nix::errno::Errno) -> Self {
        match errno {
            nix::errno::Errno::EPIPE | nix::errno::Errno::ECONNRESET => SendError::Disconnected,
            errno => SendError::Os {
                op,
                source: std::io::Error::from(errno),
            },
        }
    }
}

/// Why [`Connection::recv`](crate::Connection::recv) (and the other untimed receives)
/// failed. A receive with a timeout returns [`RecvTimeoutError`], which adds the timeout.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecvError {
    /// The other end was closed (or its process died) between frames: nothing more will
    /// arrive.
    #[error("end of file: the other end of the connection is closed")]
    Disconnected,
    /// The other end closed (or its process died) in the middle of a frame: `got` of
    /// the `expected` bytes of the frame's `part` (`"header"` or `"payload"`) arrived.
    /// What did arrive is dropped, with any descriptors that came with it.
    #[error(
        "truncated frame: {got} of {expected} bytes of its {part} arrived before the other end closed"
    )]
    Truncated {
        /// Which part of the frame was cut short: `"header"` or `"payload"`.
        part: &'static str,
        /// The bytes of that part that arrived.
        got: u64,
        /// The bytes that part has (16 for a header; the declared length for a payload).
        expected: u64,
    },
    /// A frame declared a length beyond the connection's maximum. It was refused before
    /// anything was allocated, and the connection is closed: its stream can no longer be
    /// trusted. Raise the maximum with `set_max_frame` if such frames are expected.
    #[error("refused a frame of {len} bytes: the maximum is {max} (the connection is now closed)")]
    TooLarge {
        /// The length the frame declared.
        len: u64,
        /// The connection's maximum.
        max: u64,
    },
    /// No memory could be had for an incoming frame of `len` bytes (within the
    /// connection's maximum, which allowed it). Memory is taken as the bytes arrive, so
    /// only a frame that really is that long can cause this. The connection is now
    /// closed: the rest of the frame is still in the stream.
    #[error("no memory for a frame of {len} bytes (the connection is now closed)")]
    NoMemory {
        /// The length the frame declared.
        len: u64,
    },
    /// The stream held something that is not a frame; the connection is now closed.
    #[error("malformed input: {0} (the connection is now closed)")]
    Malformed(String),
    /// This end was closed, after bad input made its stream untrustworthy.
    #[error("the connection was closed on this side after bad input")]
    Closed,
    /// A simplex pipe end was used in the direction it does not support (this is the
    /// write-only end).
    #[error("this end of a simplex pipe is {0}: receive on the other end")]
    WrongDirection(&'static str),
    /// A whole frame arrived but does not decode as the type asked for; the stream is
    /// still in step, and the next frame may be received.
    #[error("could not decode the message: {0}")]
    Decode(#[source] CodecError),
    /// The operating system reported another error.
    #[error("{op}: {source}")]
    Os {
        /// What flotilla was doing.
        op: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}

impl RecvError {
    pub(crate) fn os(op: &'static str, errno: nix::errno::Errno) -> Self {
        RecvError::Os {
            op,
            source: std::io::Error::from(errno),
        }
    }
}

/// Why a receive with a timeout ([`Connection::recv_timeout`](crate::Connection::recv_timeout)
/// and the like) failed: the timeout, or what an untimed receive can report.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecvTimeoutError {
    /// No whole message arrived within the timeout. What arrived of a frame is kept for
    /// the next receive: try again.
    #[error("timed out after {0:?} with no whole message")]
    Timeout(std::time::Duration),
    /// The receive failed.
    #[error(transparent)]
    Recv(#[from] RecvError),
}

/// Why [`Connection::recv_bytes_into`](crate::Connection::recv_bytes_into) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecvIntoError {
    /// The buffer is too small for the message; the message was consumed and is returned
    /// whole, so nothing is lost.
    #[error("the buffer holds {capacity} bytes but the message has {}", .message.len())]
    BufferTooSmall {
        /// The buffer's size.
        capacity: usize,
        /// The message, so nothing is lost.
        message: Vec<u8>,
    },
    /// The receive failed.
    #[error(transparent)]
    Recv(#[from] RecvError),
}

/// Why [`Connection::poll`](crate::Connection::poll) or [`wait`](crate::wait) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PollError {
    /// `poll` on the write-only end of a simplex pipe, which never receives.
    #[error("this end of a simplex pipe is {0}: poll the other end")]
    WrongDirection(&'static str),
    /// The operating system reported an error.
    #[error("{op}: {source}")]
    Os {
        /// What flotilla was doing.
        op: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}

impl From<SendError> for Error {
    fn from(e: SendError) -> Self {
        match e {
            SendError::Disconnected => Error::Eof,
            SendError::WrongDirection(d) => Error::WrongDirection(d),
            SendError::HandlesNotSupported(s) => Error::HandlesNotSupported(s),
            SendError::Encode(c) => Error::Codec(c),
            SendError::Os { op, source } => Error::Os { op, source },
        }
    }
}

impl From<RecvError> for Error {
    fn from(e: RecvError) -> Self {
        match e {
            RecvError::Disconnected => Error::Eof,
            RecvError::Truncated {
                part,
                got,
                expected,
            } => Error::TruncatedFrame {
                part,
                got,
                expected,
            },
            RecvError::TooLarge { len, max } => Error::FrameTooLarge { len, max },
            RecvError::NoMemory { len } => Error::FrameAllocation { len },
            RecvError::Malformed(m) => Error::Malformed(m),
            RecvError::Closed => Error::Closed,
            RecvError::WrongDirection(d) => Error::WrongDirection(d),
            RecvError::Decode(c) => Error::Codec(c),
            RecvError::Os { op, source } => Error::Os { op, source },
        }
    }
}

impl From<RecvTimeoutError> for Error {
    fn from(e: RecvTimeoutError) -> Self {
        match e {
            RecvTimeoutError::Timeout(d) => Error::Timeout(d),
            RecvTimeoutError::Recv(e) => e.into(),
        }
    }
}

impl From<RecvIntoError> for Error {
    fn from(e: RecvIntoError) -> Self {
        match e {
            RecvIntoError::BufferTooSmall { capacity, message } => {
                Error::BufferTooSmall { capacity, message }
            }
            RecvIntoError::Recv(e) => e.into(),
        }
    }
}

impl From<PollError> for Error {
    fn from(e: PollError) -> Self {
        match e {
            PollError::WrongDirection(d) => Error::WrongDirection(d),
            PollError::Os { op, source } => Error::Os { op, source },
        }
    }
}

/// Why [`Barrier::wait`](crate::Barrier::wait) or
/// [`wait_timeout`](crate::Barrier::wait_timeout) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BarrierError {
    /// The barrier is broken: aborted, reset while this process waited, a waiter timed
    /// out (a timeout breaks the barrier for everyone, as in Python), or a participant
    /// died inside it. [`Barrier::reset`](crate::Barrier::reset) makes it usable again.
    #[error(
        "the barrier is broken (aborted, reset, a waiter timed out or died); reset it to use it again"
    )]
    Broken,
    /// The barrier's process-shared mutex failed.
    #[error("{op}: {source}")]
    Os {
        /// What flotilla was doing.
        op: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}

impl BarrierError {
    /// A failure of the barrier's mutex, as a barrier wait reports it.
    pub(crate) fn mutex(e: Error) -> Self {
        match e {
            Error::Os { op, source } => BarrierError::Os { op, source },
            other => BarrierError::Os {
                op: "barrier mutex",
                source: std::io::Error::other(other),
            },
        }
    }
}

/// Why a semaphore's `release` failed; the value is then unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReleaseError {
    /// A `BoundedSemaphore` was released more times than it was acquired (or a
    /// `Semaphore` past `u32::MAX`): Python's `ValueError`. Release only what was
    /// acquired.
    #[error("semaphore released too many times: its value may not exceed {bound}")]
    OverReleased {
        /// The largest value the semaphore may hold.
        bound: usize,
    },
}

impl From<BarrierError> for Error {
    fn from(e: BarrierError) -> Self {
        match e {
            BarrierError::Broken => Error::BrokenBarrier,
            BarrierError::Os { op, source } => Error::Os { op, source },
        }
    }
}

impl From<ReleaseError> for Error {
    fn from(e: ReleaseError) -> Self {
        match e {
            ReleaseError::OverReleased { bound } => Error::SemaphoreOverReleased { bound },
        }
    }
}

#[cfg(test)]
mod tests {
    //! Exhaustive matches, without a wildcard: a variant added to one of these types
    //! fails to compile here, so that adding one is a decision, made with its docs.

    use super::*;

    #[allow(dead_code)]
    fn send(e: SendError) {
        match e {
            SendError::Disconnected
            | SendError::WrongDirection(_)
            | SendError::HandlesNotSupported(_)
            | SendError::Encode(_)
            | SendError::Os { .. } => {}
        }
    }

    #[allow(dead_code)]
    fn recv(e: RecvError) {
        match e {
            RecvError::Disconnected
            | RecvError::Truncated { .. }
            | RecvError::TooLarge { .. }
            | RecvError::NoMemory { .. }
            | RecvError::Malformed(_)
            | RecvError::Closed
            | RecvError::WrongDirection(_)
            | RecvError::Decode(_)
            | RecvError::Os { .. } => {}
        }
    }

    #[allow(dead_code)]
    fn recv_timeout(e: RecvTimeoutError) {
        match e {
            RecvTimeoutError::Timeout(_) | RecvTimeoutError::Recv(_) => {}
        }
    }

    #[allow(dead_code)]
    fn recv_into(e: RecvIntoError) {
        match e {
            RecvIntoError::BufferTooSmall { .. } | RecvIntoError::Recv(_) => {}
        }
    }

    #[allow(dead_code)]
    fn poll(e: PollError) {
        match e {
            PollError::WrongDirection(_) | PollError::Os { .. } => {}
        }
    }

    #[allow(dead_code)]
    fn barrier(e: BarrierError) {
        match e {
            BarrierError::Broken | BarrierError::Os { .. } => {}
        }
    }

    #[allow(dead_code)]
    fn release(e: ReleaseError) {
        match e {
            ReleaseError::OverReleased { .. } => {}
        }
    }

    #[test]
    fn os_errors_map_to_what_they_mean() {
        use nix::errno::Errno;
        assert!(matches!(
            SendError::os("send", Errno::EPIPE),
            SendError::Disconnected
        ));
        assert!(matches!(
            SendError::os("send", Errno::ECONNRESET),
            SendError::Disconnected
        ));
        assert!(matches!(
            SendError::os("send", Errno::EAGAIN),
            SendError::Os { op: "send", .. }
        ));
        // The umbrella keeps its old names for the same faults.
        assert!(matches!(Error::from(RecvError::Disconnected), Error::Eof));
        assert!(matches!(
            Error::from(BarrierError::Broken),
            Error::BrokenBarrier
        ));
    }
}
