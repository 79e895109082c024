//! What a served object is to the server: the [`SharedObject`] trait, the [`Call`] a method
//! receives, and the [`Waiter`] a blocking method parks instead of blocking.
//!
//! An object is only ever touched under its own mutex, by one server thread at a time:
//! the reader thread of the connection calling it, or the timer thread expiring one of its
//! waiters, or a dying connection's thread releasing what that client held. Its methods
//! must not block: a method that would wait (a lock held by someone else, an empty queue)
//! calls [`Call::park`], keeps the returned [`Waiter`], answers through it later (from
//! another client's call, or from [`SharedObject::expire`] when its deadline passes), and
//! returns [`Reply::Parked`].

use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::time::Instant;

use serde::Serialize;
use serde::de::DeserializeOwned;

use flotilla_core::codec;

use crate::protocol::{ObjectId, RemoteError, RemoteErrorKind, Response};
use crate::server::Timers;

/// A connected client, as the server numbers them (never reused while the server runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(pub(crate) u64);

/// A parked waiter, as numbered when it parked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WaiterId(pub(crate) u64);

/// An object owned by a manager server, of a type registered by name in the server binary.
///
/// Methods are dispatched by name with codec-encoded arguments; see [`Call`]. The built-in
/// types (`dict`, `list`, `Namespace`, `Lock`, `Queue`) are written this way, and so is a
/// user type registered with [`ServerBuilder::register`](crate::ServerBuilder::register).
///
/// ```
/// use flotilla_manager::{Call, Reply, RemoteError, RemoteErrorKind, SharedObject};
///
/// struct Counter(i64);
///
/// impl SharedObject for Counter {
///     fn call(&mut self, call: &mut Call<'_>) -> Reply {
///         match call.method() {
///             "add" => match call.args::<i64>() {
///                 Ok(n) => {
///                     self.0 += n;
///                     Reply::ok(&self.0)
///                 }
///                 Err(e) => Reply::Now(Err(e)),
///             },
///             other => Reply::no_such_method(other),
///         }
///     }
/// }
/// ```
pub trait SharedObject: Send + 'static {
    /// Runs one method. Must not block: park a waiter instead.
    fn call(&mut self, call: &mut Call<'_>) -> Reply;

    /// The deadline of waiter `waiter` passed: if it is still parked, answer it (a lock's
    /// acquire answers `false`, a queue's get `None`) and forget it. Waiters already
    /// answered are unknown ids here; ignore them.
    fn expire(&mut self, waiter: WaiterId) {
        let _ = waiter;
    }

    /// `client` released its last reference to this object, or died: drop its waiters
    /// and release what it held (a lock). Called before the object itself may be freed.
    fn client_gone(&mut self, client: ClientId) {
        let _ = client;
    }
}

/// Sends the reply to one request, once; a responder dropped unanswered answers
/// [`RemoteErrorKind::Gone`], so a client never waits for a reply that will not come.
#[derive(Debug)]
pub(crate) struct Responder {
    pub(crate) request: u64,
    pub(crate) tx: Option<Sender<Response>>,
}

impl Responder {
    pub(crate) fn send(mut self, result: Result<Vec<u8>, RemoteError>) {
        self.send_inner(result);
    }

    /// Drops it without a reply: the caller answers the request itself.
    pub(crate) fn disarm(mut self) {
        self.tx = None;
    }

    fn send_inner(&mut self, result: Result<Vec<u8>, RemoteError>) {
        if let Some(tx) = self.tx.take()
            && self.request != 0
        {
            // The connection's writer is gone when this fails: the client is, too.
            let _ = tx.send(Response {
                id: self.request,
                result,
            });
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if self.tx.is_some() {
            self.send_inner(Err(RemoteError::new(
                RemoteErrorKind::Gone,
                "the request was dropped unanswered: its object was freed or the server is \
                 shutting down",
            )));
        }
    }
}

/// One method call, as the object sees it.
#[derive(Debug)]
pub struct Call<'a> {
    pub(crate) method: &'a str,
    pub(crate) args: &'a [u8],
    pub(crate) client: ClientId,
    pub(crate) object: ObjectId,
    pub(crate) deadline: Option<Instant>,
    pub(crate) responder: Option<Responder>,
    pub(crate) timers: &'a Arc<Timers>,
    /// The tickets of the proxies the caller serialized for this call.
    pub(crate) refs: &'a [crate::protocol::Ticket],
    pub(crate) shared: &'a Arc<crate::server::Shared>,
}

impl Call<'_> {
    /// The method's name.
    pub fn method(&self) -> &str {
        self.method
    }

    /// The arguments, decoded as `T` (a tuple for several); a
    /// [`RemoteErrorKind::BadArguments`] error when they are not a `T`.
    pub fn args<T: DeserializeOwned>(&self) -> Result<T, RemoteError> {
        codec::decode(self.args).map_err(|e| {
            RemoteError::new(
                RemoteErrorKind::BadArguments,
                format!("the arguments of `{}`: {e}", self.method),
            )
        })
    }

    /// `bytes` (a value from the arguments) as a value to store, keeping alive the objects
    /// of the proxies serialized in it while it is stored.
    pub(crate) fn keep(&self, bytes: Vec<u8>) -> crate::server::Stored {
        crate::server::Stored::keep(bytes, self.refs, self.shared)
    }

    /// The client making the call.
    pub fn client(&self) -> ClientId {
        self.client
    }

    /// Whether the caller allows waiting at all: false when its timeout has already passed
    /// (a `try_` form sends a zero timeout).
    pub fn may_wait(&self) -> bool {
        self.deadline.is_none_or(|d| Instant::now() < d)
    }

    /// Parks this call: the reply is sent later, through the returned waiter. The waiter
    /// expires ([`SharedObject::expire`]) at the caller's deadline, if it has one. Return
    /// [`Reply::Parked`] after this.
    ///
    /// # Panics
    ///
    /// When called twice for one call.
    pub fn park(&mut self) -> Waiter {
        let responder = self.responder.take().expect("a call parks once");
        let id = self.timers.next_waiter();
        let timers = self.deadline.map(|deadline| {
            self.timers.add(deadline, self.object, id);
            Arc::clone(self.timers)
        });
        Waiter {
            id,
            client: self.client,
            responder: Some(responder),
            timers,
        }
    }
}

/// A parked call, answered later with [`Waiter::reply`]. Dropping it unanswered answers a
/// [`RemoteErrorKind::Gone`] error.
#[derive(Debug)]
pub struct Waiter {
    id: WaiterId,
    client: ClientId,
    /// `None` once answered.
    responder: Option<Responder>,
    /// The timers holding its deadline, if it has one.
    timers: Option<Arc<Timers>>,
}

impl Drop for Waiter {
    fn drop(&mut self) {
        // Answered (or dropped, which answers `Gone`): its deadline is of no use now.
        if let Some(timers) = self.timers.take() {
            timers.cancel(self.id);
        }
    }
}

impl Waiter {
    /// Its id, as [`SharedObject::expire`] names it.
    pub fn id(&self) -> WaiterId {
        self.id
    }

    /// The client waiting.
    pub fn client(&self) -> ClientId {
        self.client
    }

    /// Answers the parked call with `value`.
    pub fn reply<T: Serialize + ?Sized>(mut self, value: &T) {
        if let Some(r) = self.responder.take() {
            r.send(encode_reply(value));
        }
    }

    /// Answers the parked call with an error.
    pub fn fail(mut self, error: RemoteError) {
        if let Some(r) = self.responder.take() {
            r.send(Err(error));
        }
    }
}

/// What a method did.
#[derive(Debug)]
pub enum Reply {
    /// Answered at once: the encoded value, or an error.
    Now(Result<Vec<u8>, RemoteError>),
    /// Parked a waiter, which will answer.
    Parked,
}

impl Reply {
    /// Answers `value`, encoded.
    pub fn ok<T: Serialize + ?Sized>(value: &T) -> Reply {
        Reply::Now(encode_reply(value))
    }

    /// Answers an error of `kind` saying `message`.
    pub fn err(kind: RemoteErrorKind, message: impl Into<String>) -> Reply {
        Reply::Now(Err(RemoteError::new(kind, message)))
    }

    /// Answers that there is no method `name`.
    pub fn no_such_method(name: &str) -> Reply {
        Reply::err(
            RemoteErrorKind::NoSuchMethod,
            format!("no method `{name}` on this object"),
        )
    }
}

pub(crate) fn encode_reply<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, RemoteError> {
    codec::encode(value).map_err(|e| {
        RemoteError::new(
            RemoteErrorKind::ValueError,
            format!("the result could not be encoded: {e}"),
        )
    })
}
