//! The crate's one error enum.

/// What went wrong starting, running or joining a process.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The process is still running after the join's timeout. Join again later.
    #[error("the process is still running after {0:?}")]
    Timeout(std::time::Duration),
    /// The target panicked in the child; its message came back.
    #[error("the process's target panicked: {message}")]
    Panicked {
        /// The panic message.
        message: String,
    },
    /// The child ended with an exit code and no result (it called `exit` itself, or
    /// never got to run its target).
    #[error("the process exited with code {code} without returning a result")]
    Exited {
        /// Its exit code.
        code: i32,
    },
    /// The child was killed by a signal.
    #[error("the process was killed by signal {signal} ({name})")]
    Signaled {
        /// The signal number.
        signal: i32,
        /// Its name, such as `SIGKILL`.
        name: &'static str,
    },
    /// The child refused its task, with the reason (say, a task from a different build).
    #[error("the child refused its task: {0}")]
    Refused(String),
    /// The value was already taken by an earlier `join`.
    #[error("the process's result was already taken by an earlier join")]
    AlreadyJoined,
    /// A process cannot be started this way here.
    #[error("{0}")]
    Unsupported(String),
    /// The start method was already chosen for this program.
    #[error("the start method was already set to {0}; it can be set only once")]
    StartMethodAlreadySet(crate::StartMethod),
    /// The forkserver failed or went away.
    #[error("the forkserver failed: {0}")]
    ForkServer(String),
    /// Passing data or handles to or from the child failed.
    #[error(transparent)]
    Ipc(#[from] flotilla_ipc::Error),
    /// The operating system refused an operation.
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

/// Each of `flotilla_ipc`'s per-operation errors goes through its umbrella `Error`, so
/// `?` on a connection's send, receive or poll, a segment's or a primitive's creation,
/// works here as it does on the rest.
macro_rules! from_ipc {
    ($($ty:ty),*) => {$(
        impl From<$ty> for Error {
            fn from(e: $ty) -> Self {
                Error::Ipc(e.into())
            }
        }
    )*};
}

from_ipc!(
    flotilla_ipc::SendError,
    flotilla_ipc::RecvError,
    flotilla_ipc::RecvTimeoutError,
    flotilla_ipc::RecvIntoError,
    flotilla_ipc::PollError,
    flotilla_ipc::ShmError,
    flotilla_ipc::CreateError,
    flotilla_ipc::AccessError,
    flotilla_ipc::IndexError,
    flotilla_ipc::CopyError,
    flotilla_ipc::IndexOutOfRange,
    flotilla_ipc::LengthMismatch,
    flotilla_ipc::WaitError,
    flotilla_ipc::BarrierError,
    flotilla_ipc::ReleaseError,
    flotilla_ipc::OsError,
    flotilla_ipc::LockError,
    flotilla_ipc::FrameStartError,
    flotilla_ipc::QueueError
);
