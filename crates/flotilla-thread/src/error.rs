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
}
