//! The manager's messages after the handshake: requests carrying a request id, replies
//! carrying the same id, both encoded with flotilla's one codec inside a frame.
//!
//! A client may send many requests before reading any reply (pipelining); the server may
//! answer them in any order (a parked `Queue::get` answers late), and the id pairs them.
//! Request id 0 asks for no reply (releases, sent from `Drop`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// An object's id on its server: a counter, never an address, and never reused while the
/// server runs.
pub(crate) type ObjectId = u64;

/// A request from a client.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Request {
    /// Chosen by the client; 0 means "send no reply".
    pub(crate) id: u64,
    pub(crate) op: Op,
}

/// What a request asks.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Op {
    /// Nothing: checks the server answers (Python's `dummy`).
    Ping,
    /// A new object of a registered type; the reply is its [`ObjectId`], and the calling
    /// connection holds the one reference.
    Create { typeid: String, args: Vec<u8> },
    /// A method of an object the calling connection holds. `timeout` bounds a blocking
    /// method on the server (None: no bound). `refs`: the tickets of the proxies
    /// serialized into `args`; a method that stores a value holding one of them keeps
    /// that proxy's object alive while the value is stored (a stored proxy).
    Call {
        object: ObjectId,
        method: String,
        args: Vec<u8>,
        timeout: Option<Duration>,
        refs: Vec<Ticket>,
    },
    /// Drops one of the calling connection's references to `object`.
    Release { object: ObjectId },
    /// Makes a transfer ticket for `object` (the ticket holds a reference of its own until
    /// claimed); the reply is the [`Ticket`].
    Share { object: ObjectId },
    /// Turns a ticket into a reference of the calling connection; the reply is
    /// `(ObjectId, typeid)`.
    Claim { ticket: Ticket },
    /// How many objects the server holds (Python's `number_of_objects`).
    NumberOfObjects,
    /// Stop the server once this request is answered.
    Shutdown,
    /// A reference to the object the server program registered under `name`
    /// (Python's `BaseManager.register("get_queue", callable)` then `m.get_queue()`); the
    /// reply is `(ObjectId, typeid)`.
    Lookup { name: String },
}

/// A transfer ticket: 128 random bits naming a reference in transit.
pub(crate) type Ticket = [u8; 16];

/// A reply.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Response {
    pub(crate) id: u64,
    pub(crate) result: Result<Vec<u8>, RemoteError>,
}

/// An error the server reports for one request; the connection goes on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct RemoteError {
    /// What kind of failure.
    pub kind: RemoteErrorKind,
    /// The server's message.
    pub message: String,
}

impl RemoteError {
    /// An error of `kind` saying `message`.
    pub fn new(kind: RemoteErrorKind, message: impl Into<String>) -> Self {
        RemoteError {
            kind,
            message: message.into(),
        }
    }
}

/// The kinds of [`RemoteError`], named after the Python exception each stands for where
/// there is one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum RemoteErrorKind {
    /// No object of that id is held by this connection.
    NoSuchObject,
    /// No type of that name is registered on the server.
    NoSuchType,
    /// The object has no method of that name.
    NoSuchMethod,
    /// The arguments did not decode as the method's.
    BadArguments,
    /// Python's `KeyError`.
    KeyError,
    /// Python's `IndexError`.
    IndexError,
    /// Python's `AttributeError` (a `Namespace` without that name).
    AttributeError,
    /// Python's `ValueError` (e.g. a stored value of another type than the operation
    /// needs).
    ValueError,
    /// Python's `RuntimeError` (e.g. releasing an unlocked lock).
    RuntimeError,
    /// The method panicked; the message is the panic's. The server goes on.
    Panicked,
    /// The request was not answered because its object went away or the server is
    /// shutting down.
    Gone,
    /// The ticket is unknown or was claimed already.
    BadTicket,
    /// No object is registered under that name on the server.
    NoSuchName,
    /// Python's `BrokenBarrierError`: the barrier was aborted, or a wait timed out, or a
    /// waiting client went away.
    BrokenBarrier,
}

impl std::fmt::Display for RemoteErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}
