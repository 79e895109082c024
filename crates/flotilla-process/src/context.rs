//! Start methods and contexts: how a new process begins, chosen per [`Context`] or once
//! for the whole program.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;
use crate::state::START_METHOD;

/// How a new process begins: Python's three start methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StartMethod {
    /// A fork of the calling process: fastest; the child sees a copy of the parent's
    /// memory, so its target may be any closure. Unsafe in spirit when the parent runs
    /// other threads (see `ProcessBuilder::start`).
    Fork,
    /// A fresh execution of the program's binary: the slowest to start, and the
    /// cleanest; the child shares nothing but what is passed to it.
    Spawn,
    /// A fork of a clean server process that was itself spawned on first use: nearly as
    /// clean as spawn, and much faster after the first start. The default on Linux, as
    /// in Python 3.14.
    ForkServer,
}

impl StartMethod {
    /// All three, in Python's order.
    pub const ALL: [StartMethod; 3] = [
        StartMethod::Fork,
        StartMethod::Spawn,
        StartMethod::ForkServer,
    ];

    /// Python's name for it: `fork`, `spawn` or `forkserver`.
    pub fn as_str(self) -> &'static str {
        match self {
            StartMethod::Fork => "fork",
            StartMethod::Spawn => "spawn",
            StartMethod::ForkServer => "forkserver",
        }
    }
}

impl fmt::Display for StartMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StartMethod {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        StartMethod::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| {
                Error::Unsupported(format!(
                    "unknown start method {s:?}: use fork, spawn or forkserver"
                ))
            })
    }
}

/// Processes started one way: Python's `multiprocessing` context.
///
/// ```
/// use flotilla_process::{StartMethod, get_context};
///
/// let ctx = get_context(Some(StartMethod::Spawn));
/// assert_eq!(ctx.start_method(), StartMethod::Spawn);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Context {
    method: StartMethod,
}

impl Context {
    /// The start method of this context.
    pub fn start_method(&self) -> StartMethod {
        self.method
    }

    pub(crate) fn default_context() -> Context {
        get_context(None)
    }
}

/// A context for `method`, or for the program's start method when `None`.
pub fn get_context(method: Option<StartMethod>) -> Context {
    Context {
        method: method.unwrap_or_else(get_start_method),
    }
}

/// Sets the program's start method. It can be set once, and only before it was first
/// used; after that this is an error, as in Python.
///
/// ```
/// use flotilla_process::{StartMethod, get_start_method, set_start_method};
///
/// set_start_method(StartMethod::Spawn).unwrap();
/// assert_eq!(get_start_method(), StartMethod::Spawn);
/// assert!(set_start_method(StartMethod::Fork).is_err());
/// ```
pub fn set_start_method(method: StartMethod) -> Result<(), Error> {
    START_METHOD
        .set(method)
        .map_err(|_| Error::StartMethodAlreadySet(get_start_method()))
}

/// The program's start method: the one set with [`set_start_method`], or the default
/// (forkserver), which this call fixes.
pub fn get_start_method() -> StartMethod {
    *START_METHOD.get_or_init(|| StartMethod::ForkServer)
}
