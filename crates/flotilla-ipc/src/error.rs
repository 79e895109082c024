//! The crate's errors: one type per area or operation, each holding only the variants
//! its calls can report, and the umbrella [`Error`] that each converts into (so `?`
//! gathers them in a caller that does not care which).

use flotilla_core::codec::CodecError;

/// What went wrong in an IPC operation: the umbrella every per-operation error of this
/// crate converts into ([`SendError`], [`RecvError`], [`ShmError`], [`CreateError`],
/// [`AccessError`], [`LockError`], [`QueueError`](crate::QueueError), ...), for a caller
/// that gathers them with `?`. No function of this crate returns it itself.
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

/// Why [`FrameWriter::start`](crate::FrameWriter::start) refused a frame; nothing was
/// loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameStartError {
    /// The previous frame is not all sent yet: send it out with
    /// [`Connection::try_send_frame`](crate::Connection::try_send_frame) first.
    #[error("the previous frame is still being sent")]
    InProgress,
    /// More descriptors than one message carries.
    #[error("cannot send these OS handles: {0}")]
    HandlesNotSupported(&'static str),
}

impl From<FrameStartError> for Error {
    fn from(e: FrameStartError) -> Self {
        match e {
            FrameStartError::InProgress => {
                Error::Malformed("the previous frame is still being sent".into())
            }
            FrameStartError::HandlesNotSupported(why) => Error::HandlesNotSupported(why),
        }
    }
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

/// Why a [`Condition`](crate::Condition) wait
/// ([`ConditionGuard::wait`](crate::ConditionGuard::wait) and its timed and predicate
/// forms) failed. Either way the wait is over.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WaitError {
    /// Taking the lock back, this process found that its holder had died holding it:
    /// the guard holds the lock again, and the data it protects may be half-updated.
    #[error("the previous holder of the condition's lock died while holding it")]
    OwnerDied,
    /// The lock could not be taken back.
    #[error("{op}: {source}")]
    Os {
        /// What flotilla was doing.
        op: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}

impl From<WaitError> for Error {
    fn from(e: WaitError) -> Self {
        match e {
            WaitError::OwnerDied => Error::OwnerDied,
            WaitError::Os { op, source } => Error::Os { op, source },
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

/// `From<OsError>` for error types whose `Os { op, source }` variant carries an OS
/// failure, so an [`OsError`] converts into each with `?` or `.into()`.
macro_rules! from_os_error {
    ($($ty:ty),* $(,)?) => {$(
        impl From<OsError> for $ty {
            fn from(e: OsError) -> Self {
                Self::Os {
                    op: e.op,
                    source: e.source,
                }
            }
        }
    )*};
}
pub(crate) use from_os_error;

from_os_error!(
    Error,
    BarrierError,
    WaitError,
    LockError,
    ShmError,
    CreateError,
    AccessError,
);

/// An operating-system failure, for the operations that can fail in no other way (a
/// futex wait or wake on a shared [`Value`](crate::Value), making a pipe, a barrier's
/// bookkeeping mutex).
#[derive(Debug, thiserror::Error)]
#[error("{op}: {source}")]
pub struct OsError {
    /// What flotilla was doing.
    pub op: &'static str,
    /// The OS error.
    pub source: std::io::Error,
}

impl OsError {
    pub(crate) fn new(op: &'static str, errno: nix::errno::Errno) -> Self {
        OsError {
            op,
            source: std::io::Error::from(errno),
        }
    }

    /// A failure of a process-shared mutex waited on without limit by its only user on
    /// this thread, where only an OS error can happen; anything else is kept as an OS
    /// error of kind `Other` rather than lost.
    pub(crate) fn mutex(op: &'static str, e: LockError) -> Self {
        match e {
            LockError::Os { op, source } => OsError { op, source },
            other => OsError {
                op,
                source: std::io::Error::other(other.to_string()),
            },
        }
    }
}

/// Why a lock was not acquired: what [`AcquireError::Failed`](crate::AcquireError::Failed)
/// holds, for a [`Lock`](crate::Lock), [`RLock`](crate::RLock),
/// [`Condition`](crate::Condition), or the lock of a [`Value`](crate::Value) or
/// [`Array`](crate::Array).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// `try_acquire` found the lock held by someone else.
    #[error("the lock is held by another thread or process")]
    WouldBlock,
    /// This thread already holds this `Lock`, which is not recursive: acquiring it again
    /// would wait forever. Use an `RLock` to acquire a lock more than once.
    #[error("this thread already holds the lock; a Lock is not recursive (use an RLock)")]
    WouldDeadlock,
    /// The lock was not free within the timeout.
    #[error("timed out after {0:?} waiting for the lock")]
    Timeout(std::time::Duration),
    /// The `Value` or `Array` was made raw, without a lock, so it has no locked section.
    #[error("this shared value was made raw, without a lock")]
    NoLock,
    /// The operating system reported an error.
    #[error("{op}: {source}")]
    Os {
        /// What flotilla was doing.
        op: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}

impl LockError {
    pub(crate) fn os(op: &'static str, errno: nix::errno::Errno) -> Self {
        OsError::new(op, errno).into()
    }
}

impl From<LockError> for Error {
    fn from(e: LockError) -> Self {
        match e {
            LockError::WouldBlock => Error::WouldBlock,
            LockError::WouldDeadlock => Error::WouldDeadlock,
            LockError::Timeout(d) => Error::Timeout(d),
            LockError::NoLock => Error::NoLock,
            LockError::Os { op, source } => Error::Os { op, source },
        }
    }
}

/// Why a [`SharedMemory`](crate::SharedMemory) operation failed: making, opening,
/// reading, writing or unlinking a segment.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShmError {
    /// The size asked for cannot be a segment's: 0, or beyond what a file can hold (or,
    /// for a segment received from another process, beyond what its file holds).
    #[error("a segment of {size} bytes: {problem}")]
    InvalidSize {
        /// The size asked for.
        size: usize,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The name is not a valid segment name (empty, holding a `/` past its first
    /// character or a NUL, longer than 255 bytes, or `.`/`..`).
    #[error("the segment name {name:?} {problem}")]
    InvalidName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// No segment has this name ([`open`](crate::SharedMemory::open), or
    /// [`unlink`](crate::SharedMemory::unlink) of a name someone else unlinked).
    #[error("no shared memory segment is named {name:?}")]
    NotFound {
        /// The name, without its leading slash.
        name: String,
    },
    /// [`create`](crate::SharedMemory::create) found the name taken.
    #[error("a shared memory segment named {name:?} already exists")]
    AlreadyExists {
        /// The name, without its leading slash.
        name: String,
    },
    /// [`open`](crate::SharedMemory::open) found a segment of size 0: its creator has
    /// not sized it (yet).
    #[error("the segment {name:?} has size 0: its creator has not sized it")]
    Unsized {
        /// The name, without its leading slash.
        name: String,
    },
    /// A range of bytes past the end of the segment; nothing was read or written.
    #[error("bytes {offset}..{end} are out of range for a segment of {size} bytes")]
    OutOfBounds {
        /// Where the range starts.
        offset: usize,
        /// Where it ends (exclusive); `usize::MAX` if that overflowed.
        end: usize,
        /// The segment's size.
        size: usize,
    },
    /// [`unlink`](crate::SharedMemory::unlink) of an anonymous segment, which has no
    /// name.
    #[error("an anonymous segment has no name to unlink")]
    Anonymous,
    /// [`unlink`](crate::SharedMemory::unlink) found the name naming another segment
    /// (someone unlinked this one and made a new one under its name), and left it alone.
    #[error("the name {name:?} now names a different segment; it was left alone")]
    NameReused {
        /// The name, without its leading slash.
        name: String,
    },
    /// The operating system refused (the memory, a mapping, a descriptor).
    #[error("{op}: {source}")]
    Os {
        /// What flotilla was doing.
        op: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}

impl ShmError {
    pub(crate) fn os(op: &'static str, errno: nix::errno::Errno) -> Self {
        OsError::new(op, errno).into()
    }
}

/// Why making a shared primitive failed: a [`Lock`](crate::Lock) or
/// [`RLock`](crate::RLock), a semaphore, [`Event`](crate::Event),
/// [`Condition`](crate::Condition) or [`Barrier`](crate::Barrier), a
/// [`Value`](crate::Value) or [`Array`](crate::Array), a [`Queue`](crate::Queue),
/// [`JoinableQueue`](crate::JoinableQueue) or [`SimpleQueue`](crate::SimpleQueue).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CreateError {
    /// An argument outside what the primitive supports: a semaphore value or a number of
    /// barrier parties beyond 32 bits, an array too large to address, a queue's ring
    /// beyond 2 GiB.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The operating system refused the shared memory or the process-shared mutex.
    #[error("{op}: {source}")]
    Os {
        /// What flotilla was doing.
        op: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}

impl CreateError {
    /// A new anonymous segment's failure: a size it cannot have is the caller's invalid
    /// argument, anything else the system's refusal. (Name, range and receipt errors
    /// cannot come from `SharedMemory::new`; they are kept as arguments, with their
    /// message, rather than lost.)
    pub(crate) fn shm(e: ShmError) -> Self {
        match e {
            ShmError::Os { op, source } => CreateError::Os { op, source },
            other => CreateError::InvalidArgument(other.to_string()),
        }
    }
}

/// Why an access to a locked [`Value`](crate::Value) or [`Array`](crate::Array) under
/// its lock (`get`, `set`, `to_vec`) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AccessError {
    /// A holder of the lock died holding it, and nobody has marked the data recovered
    /// since (see [When a lock holder dies](crate::Value#when-a-lock-holder-dies)): the
    /// data may be half-updated. Nothing was read or written; the lock is released.
    #[error(
        "the previous holder of the lock died while holding it; the data is not marked recovered"
    )]
    OwnerDied,
    /// The lock failed.
    #[error("{op}: {source}")]
    Os {
        /// What flotilla was doing.
        op: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}

/// An index past the end of a shared [`Array`](crate::Array): what
/// [`ArrayGuard::get`](crate::ArrayGuard::get) and `set` report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("index {index} is out of range for a shared array of length {len}")]
pub struct IndexOutOfRange {
    /// The index asked for.
    pub index: usize,
    /// The array's length.
    pub len: usize,
}

/// A slice given to fill a shared [`Array`](crate::Array) that does not have the array's
/// length: what [`ArrayGuard::copy_from_slice`](crate::ArrayGuard::copy_from_slice)
/// reports. Nothing was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the slice has {got} elements but the shared array has {len}")]
pub struct LengthMismatch {
    /// The slice's length.
    pub got: usize,
    /// The array's length.
    pub len: usize,
}

/// Why [`Array::get`](crate::Array::get) or [`Array::set`](crate::Array::set) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IndexError {
    /// The index is past the end; the lock was not taken.
    #[error(transparent)]
    OutOfRange(#[from] IndexOutOfRange),
    /// The access under the lock failed.
    #[error(transparent)]
    Access(#[from] AccessError),
}

/// Why [`Array::copy_from_slice`](crate::Array::copy_from_slice) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CopyError {
    /// The slice does not have the array's length; nothing was written.
    #[error(transparent)]
    LengthMismatch(#[from] LengthMismatch),
    /// The access under the lock failed.
    #[error(transparent)]
    Access(#[from] AccessError),
}

impl From<ShmError> for Error {
    fn from(e: ShmError) -> Self {
        use nix::errno::Errno;
        match e {
            ShmError::OutOfBounds { offset, end, size } => Error::OutOfBounds { offset, end, size },
            ShmError::NotFound { .. } => Error::os("shm_open", Errno::ENOENT),
            ShmError::AlreadyExists { .. } => Error::os("shm_open", Errno::EEXIST),
            ShmError::Os { op, source } => Error::Os { op, source },
            other => Error::InvalidSegment(other.to_string()),
        }
    }
}

impl From<CreateError> for Error {
    fn from(e: CreateError) -> Self {
        match e {
            CreateError::InvalidArgument(m) => Error::InvalidArgument(m),
            CreateError::Os { op, source } => Error::Os { op, source },
        }
    }
}

impl From<AccessError> for Error {
    fn from(e: AccessError) -> Self {
        match e {
            AccessError::OwnerDied => Error::OwnerDied,
            AccessError::Os { op, source } => Error::Os { op, source },
        }
    }
}

impl From<IndexOutOfRange> for Error {
    fn from(e: IndexOutOfRange) -> Self {
        Error::IndexOutOfRange {
            index: e.index,
            len: e.len,
        }
    }
}

impl From<LengthMismatch> for Error {
    fn from(e: LengthMismatch) -> Self {
        Error::LengthMismatch {
            got: e.got,
            len: e.len,
        }
    }
}

impl From<IndexError> for Error {
    fn from(e: IndexError) -> Self {
        match e {
            IndexError::OutOfRange(e) => e.into(),
            IndexError::Access(e) => e.into(),
        }
    }
}

impl From<CopyError> for Error {
    fn from(e: CopyError) -> Self {
        match e {
            CopyError::LengthMismatch(e) => e.into(),
            CopyError::Access(e) => e.into(),
        }
    }
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

    #[allow(dead_code)]
    fn shm(e: ShmError) {
        match e {
            ShmError::InvalidSize { .. }
            | ShmError::InvalidName { .. }
            | ShmError::NotFound { .. }
            | ShmError::AlreadyExists { .. }
            | ShmError::Unsized { .. }
            | ShmError::OutOfBounds { .. }
            | ShmError::Anonymous
            | ShmError::NameReused { .. }
            | ShmError::Os { .. } => {}
        }
    }

    #[allow(dead_code)]
    fn create(e: CreateError) {
        match e {
            CreateError::InvalidArgument(_) | CreateError::Os { .. } => {}
        }
    }

    #[allow(dead_code)]
    fn access(e: AccessError) {
        match e {
            AccessError::OwnerDied | AccessError::Os { .. } => {}
        }
    }

    #[allow(dead_code)]
    fn index(e: IndexError) {
        match e {
            IndexError::OutOfRange(IndexOutOfRange { .. }) | IndexError::Access(_) => {}
        }
    }

    #[allow(dead_code)]
    fn copy(e: CopyError) {
        match e {
            CopyError::LengthMismatch(LengthMismatch { .. }) | CopyError::Access(_) => {}
        }
    }

    #[allow(dead_code)]
    fn wait(e: WaitError) {
        match e {
            WaitError::OwnerDied | WaitError::Os { .. } => {}
        }
    }

    #[allow(dead_code)]
    fn frame_start(e: FrameStartError) {
        match e {
            FrameStartError::InProgress | FrameStartError::HandlesNotSupported(_) => {}
        }
    }

    #[allow(dead_code)]
    fn lock(e: LockError) {
        match e {
            LockError::WouldBlock
            | LockError::WouldDeadlock
            | LockError::Timeout(_)
            | LockError::NoLock
            | LockError::Os { .. } => {}
        }
    }

    #[allow(dead_code)]
    fn queue(e: crate::queue::QueueError) {
        use crate::queue::QueueError;
        match e {
            QueueError::MessageTooLarge { .. }
            | QueueError::Encode(_)
            | QueueError::Decode(_)
            | QueueError::Corrupted(_)
            | QueueError::Os { .. } => {}
        }
    }

    #[allow(dead_code)]
    fn os(e: OsError) {
        let OsError { op: _, source: _ } = e;
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
