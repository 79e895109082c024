//! Naming a task by its function, for executors outside this crate that run this very
//! binary in other processes they start themselves (flotilla-mpi's ranks, launched by
//! `mpiexec`).
//!
//! It is the machinery of the spawn start method and the process pool, made public: a
//! task is a fn item, a fn pointer or a closure that captures nothing, named by the
//! offset of a monomorphised entry from a base function of this binary; its arguments
//! are encoded with flotilla-core's codec together with the target. Another process of
//! the *same build* (compare [`fingerprint`]s first) calls [`run`] with the offset and
//! the bytes, and gets the encoded value back.
//!
//! Handles (flotilla IPC descriptors) cannot travel this way: there is no connection to
//! carry them. Encoding one fails with the codec's message.
//!
//! ```
//! use flotilla_process::task::{self, Entry};
//!
//! fn double(x: u32) -> u32 {
//!     x * 2
//! }
//!
//! let entry = Entry::of(&double).unwrap();
//! let bytes = entry.encode_args(&21u32).unwrap();
//! // In a process of the same build (here, this one):
//! // SAFETY: the offset comes from `Entry::of` in this very binary.
//! let value = unsafe { task::run(entry.offset(), &bytes) }.unwrap();
//! assert_eq!(flotilla_core::codec::decode::<u32>(&value).unwrap(), 42);
//! ```

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::boot::{self, TaskEntry};

/// A task's function, named so that a process running this very binary can call it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry(TaskEntry);

impl Entry {
    /// The entry that calls `f` on one argument `A` and encodes its `R`; an error (why)
    /// when `f` captures data, which another process could not have.
    pub fn of<F, A, R>(f: &F) -> Result<Entry, String>
    where
        F: Fn(A) -> R + 'static,
        A: DeserializeOwned + 'static,
        R: Serialize + 'static,
    {
        boot::entry_of::<F, A, R>(f).map(Entry)
    }

    /// The entry that applies `f` to every item of a `Vec<A>` and encodes the `Vec<R>`
    /// (a chunk of a `map`).
    pub fn of_chunk<F, A, R>(f: &F) -> Result<Entry, String>
    where
        F: Fn(A) -> R + 'static,
        A: DeserializeOwned + 'static,
        R: Serialize + 'static,
    {
        boot::entry_of_chunk::<F, A, R>(f).map(Entry)
    }

    /// Like [`of`](Entry::of), for any [`Target`](crate::Target) shape: a function of
    /// several arguments gets them spread from the tuple `F::Args`.
    pub fn of_target<F, M>(f: &F) -> Result<Entry, String>
    where
        F: crate::Target<M>,
        F::Args: DeserializeOwned,
        F::Output: Serialize,
    {
        boot::entry_of_target::<F, M>(f).map(Entry)
    }

    /// Like [`of_chunk`](Entry::of_chunk), for any [`Target`](crate::Target) shape (a
    /// `starmap` chunk of tuples spread over a function of several arguments).
    pub fn of_chunk_target<F, M>(f: &F) -> Result<Entry, String>
    where
        F: crate::Target<M>,
        F::Args: DeserializeOwned,
        F::Output: Serialize,
    {
        boot::entry_of_chunk_target::<F, M>(f).map(Entry)
    }

    /// What [`run`] takes to find this entry in another process of the same build.
    pub fn offset(&self) -> u64 {
        self.0.offset as u64
    }

    /// Encodes the arguments of a call of this entry, with flotilla-core's codec (as
    /// `(target, args)`); an error when they cannot be encoded (a handle among them, say).
    pub fn encode_args<A: Serialize + ?Sized>(&self, args: &A) -> Result<Vec<u8>, String> {
        flotilla_core::codec::encode(&(self.0.target, args))
            .map_err(|e| format!("the task's arguments could not be encoded: {e}"))
    }
}

/// Calls the entry at `offset` on arguments made by [`Entry::encode_args`]: the encoded
/// value, or why the arguments or the value could not be decoded or encoded. A panic of
/// the task unwinds out of this call: catch it where the answer is sent.
///
/// # Safety
///
/// `offset` must come from [`Entry::offset`] in a process running this very binary
/// (equal [`fingerprint`]s): then the same code sits at the same offset here.
pub unsafe fn run(offset: u64, args: &[u8]) -> Result<Vec<u8>, String> {
    let offset = usize::try_from(offset).map_err(|_| format!("bad entry offset {offset}"))?;
    // SAFETY: per this function's contract, the offset was made by `entry_of` or
    // `entry_of_chunk` in a process of this very build.
    let entry = unsafe { boot::entry_at(offset) };
    let (value, fds) = entry(args, Vec::new())?;
    if !fds.is_empty() {
        return Err(format!(
            "the task's value holds {} handle(s) (descriptors), which cannot leave this process here",
            fds.len()
        ));
    }
    Ok(value)
}

/// A fingerprint of this program's build (its GNU build-id, or a hash of its bytes, and
/// flotilla's version): two processes may exchange [`Entry`] offsets only when theirs
/// are equal.
pub fn fingerprint() -> u64 {
    boot::fingerprint()
}
