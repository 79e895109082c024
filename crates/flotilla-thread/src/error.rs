//! The crate's one error enum, and the queue errors that hand back the value they could
//! not deliver (in the style of crossbeam-channel's `err.rs`).

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

    /// The thread was joined before, and that join already handed out its outcome.
    #[error("thread {0:?} was already joined; its outcome was returned by that join")]
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
