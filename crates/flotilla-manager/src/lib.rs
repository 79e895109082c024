//! flotilla's manager: Python's `multiprocessing.managers` — a server process that owns
//! shared objects, used by other processes (and, over TCP with an authkey, other hosts)
//! through typed proxies.
//!
//! - [`Manager`]: Python's `SyncManager`; starts the server in a child process (any start
//!   method) on a private Unix socket and shuts it down on drop. It derefs to its
//!   [`Client`]: `manager.dict()`, `manager.list()`, `manager.namespace()`,
//!   `manager.lock()`, `manager.queue(maxsize)`.
//! - [`DictProxy`], [`ListProxy`], [`NamespaceProxy`], [`LockProxy`], [`RLockProxy`],
//!   [`SemaphoreProxy`], [`BoundedSemaphoreProxy`], [`ConditionProxy`], [`EventProxy`],
//!   [`BarrierProxy`], [`ValueProxy`], [`ArrayProxy`], [`QueueProxy`],
//!   [`JoinableQueueProxy`]: typed proxies, cheap handles over their client's one
//!   connection. Values read are copies; [`DictProxy::update_with`], [`DictProxy::add`]
//!   and [`DictProxy::setdefault`] mutate in place on the server (see the
//!   [copy rule](proxy)). [`DictProxy::set_pending`] and [`DictProxy::get_pending`]
//!   pipeline calls ([`Pending`]).
//! - Every proxy is a serde value ([`Proxy`]): passed to a pool task, a child, through a
//!   queue, it travels as a [`Token`] carrying its manager's address and authkey, holding
//!   the object alive until the receiver claims it through its process's one connection
//!   ([`Client::shared`]).
//! - [`Server`] / [`ServerBuilder`]: a server in this process ([`Server::serve_forever`],
//!   Python's `get_server().serve_forever()`), with user types registered by name
//!   ([`ServerBuilder::register`], [`SharedObject`]) and objects served by name
//!   ([`ServerBuilder::register_object`], [`Client::get`]); [`connect`]: a client of an
//!   existing server, on a Unix path or `host:port`.
//! - [`auth`] and [`wire`]: CPython's authkey handshake and framing, byte-compatible.
//! - `tls` (the `tls` feature, off by default): TLS on TCP connections, with rustls and
//!   its `ring` provider — `ServerBuilder::tls` with a certificate chain and key,
//!   `connect_tls` with the CA certificates to trust; the authkey handshake and every
//!   message run inside it. CPython's managers have no TLS.
//!
//! ```
//! use flotilla_manager::Manager;
//!
//! let manager = Manager::start().unwrap();
//! let counts = manager.dict::<String, i64>().unwrap();
//! let lock = manager.lock().unwrap();
//! {
//!     let _held = lock.guard().unwrap();
//!     let n = counts.get(&"a".into()).unwrap().unwrap_or(0);
//!     counts.set(&"a".into(), &(n + 1)).unwrap();
//! }
//! assert_eq!(counts.add(&"a".into(), 1).unwrap(), 2); // in place, no lock needed
//! ```
//!
//! # The wire, byte by byte
//!
//! A connection is a Unix or TCP stream carrying frames in CPython's
//! `multiprocessing.connection` format: a 4-byte big-endian signed length and the payload,
//! or, for payloads over 2³¹−1 bytes, `-1` and an 8-byte big-endian length ([`wire`]). The
//! reader refuses a length over its limit (64 MiB by default, 256 bytes during the
//! handshake) before allocating anything, grows its buffer only as bytes arrive, and
//! bounds every read with a timeout.
//!
//! When the server has an authkey, the connection opens with CPython 3.12+'s mutual
//! HMAC-SHA256 challenge-response ([`auth`]): the server sends
//! `#CHALLENGE#{sha256}<40 random bytes>`, the client answers
//! `{sha256}<HMAC-SHA256(key, challenge)>`, the server says `#WELCOME#` or `#FAILURE#`;
//! then the same the other way. A Python 3.12+ `multiprocessing.connection.Client` with the
//! same key passes it. One deadline (the frame timeout) bounds the whole handshake, both
//! halves together.
//!
//! With the `tls` feature and a server built with `ServerBuilder::tls`, a TCP
//! connection first runs a TLS handshake (bounded by the frame timeout), and everything
//! above, the authkey handshake included, runs inside TLS.
//!
//! After the handshake each frame holds one message encoded with flotilla's one codec
//! (`flotilla_core::codec`; never pickle): a request `{ id: u64, op }` from the client, a
//! reply `{ id, result }` from the server. Ops: `Ping`, `Create { typeid, args }`,
//! `Call { object, method, args, timeout, refs }`, `Release { object }`, `Share { object }`,
//! `Claim { ticket }`, `NumberOfObjects`, `Shutdown`, `Lookup { name }`. Requests are pipelined: a client
//! sends as many as it likes and the server answers each when it can, in any order, with
//! the request's id (id 0 asks for no reply). Nothing decoded from the wire becomes code:
//! a type is found by name among those registered in the server binary, a method by
//! name among those its type implements.
//!
//! A malformed, truncated, oversized or garbage message closes that one connection (with
//! a `tracing` warning); the server goes on serving everyone else. A method that panics
//! answers an error carrying the panic text; the server goes on.
//!
//! # References: who owns what
//!
//! - The server owns every object. Ids are a counter (never addresses, never reused).
//! - References are owned **per connection**: `Create` and `Claim` give the calling
//!   connection one, `Release` (sent when a proxy's last clone drops) takes it back, and a
//!   connection can only call objects it holds a reference to.
//! - When a connection ends — closed, killed with its process, or cut off for a bad
//!   message — its references go at once: every lock it held is released, its parked
//!   waiters are dropped, and an object no connection (and no ticket) holds is freed.
//! - A [`Token`] (from [`ObjectRef::share`]) is a reference in transit: it holds the object
//!   alive until a client claims it, in this process or another.
//! - A proxy stored in a value of a `dict`, `list` or `Namespace` (its token's ticket is in
//!   the value's bytes, and among the call's `refs`) holds its object while the value is
//!   stored; each claim of it gives a reference and leaves it for the next reader. The
//!   value overwritten, deleted or cleared lets it go; popped, it is in transit again.
//! - One [`Client`] is one connection, shared by all proxies made from it and all threads
//!   using them. A blocking call (`Lock::acquire`, `Queue::get`) parks a waiter on the
//!   server, so it holds up nothing else on the connection; its timeout runs on the server.
//! - A [`Client`] belongs to the process that connected. A forked child that uses its
//!   parent's gets [`CallError::InheritedConnection`] (sharing one socket would mix both
//!   processes' replies, CPython's gh-101320) and connects its own.
//!
//! # Threads
//!
//! The server runs one accept loop, one reader and one writer thread per connection, and
//! one timer thread; the reader writes the replies it can give at once itself. A client
//! has no reader thread on a call's path: the calling thread writes its request and reads
//! the connection itself until its reply comes (unless another waiting thread is reading,
//! which hands it over), so a call costs one write and one read on each side, as a raw
//! socket round trip. One background thread per client reads for async and timed waits,
//! and for pipelined calls nobody has read for a while. No tokio.

#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(not(target_os = "linux"))]
compile_error!("flotilla-manager supports Linux only, as flotilla-process and flotilla-ipc do.");

/// The README's example, compiled and run as a doctest so it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

pub mod auth;
mod client;
mod manager;
mod object;
mod protocol;
pub mod proxy;
mod replies;
mod server;
mod sync_types;
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub mod tls;
mod types;
pub mod wire;

pub use crate::auth::{AuthError, AuthKey};
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub use crate::client::connect_tls;
pub use crate::client::{
    CallError, ClaimError, Client, ConnectError, ObjectRef, Pending, Token, WaitTimeoutError,
    connect,
};
pub use crate::manager::{Manager, ManagerBuilder, StartError};
pub use crate::object::{Call, ClientId, Reply, SharedObject, Waiter, WaiterId};
pub use crate::protocol::{RemoteError, RemoteErrorKind};
pub use crate::proxy::{
    ArrayProxy, BarrierProxy, BoundedSemaphoreProxy, ConditionProxy, DictProxy, EventProxy,
    JoinableQueueProxy, ListProxy, LockProxy, LockProxyGuard, NamespaceProxy, Proxy, ProxyGuard,
    QueueProxy, RLockProxy, SemaphoreProxy, ValueProxy,
};
pub use crate::server::{
    BindError, Constructor, DEFAULT_FRAME_TIMEOUT, RunningServer, Server, ServerBuilder,
};
pub use crate::wire::{Address, AddressParseError, FrameError};

/// Hooks for flotilla's own tests, to reach internals a correct program need not. Not
/// part of the API: hidden from the docs, and may change at any time.
#[doc(hidden)]
pub mod testing {
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    pub use crate::server::decode_request_for_tests as decode_request;
    use crate::wire::Stream;
    use crate::{AuthError, AuthKey};

    /// The client's half of the handshake on a raw stream.
    pub fn client_handshake(s: UnixStream, key: &AuthKey, t: Duration) -> Result<(), AuthError> {
        let mut s = Stream::Unix(s);
        s.set_read_timeout(Some(t))
            .map_err(|e| AuthError::Frame(e.into()))?;
        crate::auth::client_handshake(&mut s, key, flotilla_core::Deadline::after(Some(t)), t)
    }

    /// The server's half of the handshake on a raw stream.
    pub fn server_handshake(s: UnixStream, key: &AuthKey, t: Duration) -> Result<(), AuthError> {
        let mut s = Stream::Unix(s);
        s.set_read_timeout(Some(t))
            .map_err(|e| AuthError::Frame(e.into()))?;
        crate::auth::server_handshake(&mut s, key, flotilla_core::Deadline::after(Some(t)), t)
    }

    /// [`crate::connect`] with a chosen timeout (for the handshake and every frame).
    pub fn connect_with_timeout(
        address: &crate::Address,
        key: Option<&AuthKey>,
        t: Duration,
    ) -> Result<crate::Client, crate::ConnectError> {
        crate::Client::connect_with(address, key, t)
    }

    /// Encodes a request as a client would, for tests that speak the protocol by hand:
    /// `op` is `"ping"` or `"number_of_objects"`.
    pub fn encode_request(id: u64, op: &str) -> Vec<u8> {
        use crate::protocol::{Op, Request};
        let op = match op {
            "ping" => Op::Ping,
            _ => Op::NumberOfObjects,
        };
        flotilla_core::codec::encode(&Request { id, op }).expect("a request encodes")
    }

    /// One encoded request of every kind, for fuzzing from valid messages.
    pub fn sample_requests() -> Vec<Vec<u8>> {
        use crate::protocol::{Op, Request};
        let ops = [
            Op::Ping,
            Op::Create {
                typeid: "dict".into(),
                args: vec![0],
            },
            Op::Call {
                object: 1,
                method: "set".into(),
                args: vec![1, 2, 3],
                timeout: Some(Duration::from_millis(1500)),
                refs: vec![[9; 16]],
            },
            Op::Release { object: 1 },
            Op::Share { object: 1 },
            Op::Claim { ticket: [7; 16] },
            Op::NumberOfObjects,
            Op::Shutdown,
            Op::Lookup {
                name: "get_queue".into(),
            },
        ];
        ops.into_iter()
            .enumerate()
            .map(|(i, op)| {
                flotilla_core::codec::encode(&Request {
                    id: i as u64 + 1,
                    op,
                })
                .expect("a request encodes")
            })
            .collect()
    }

    /// Decodes a reply to `number_of_objects`: its id and the count.
    pub fn decode_count_reply(bytes: &[u8]) -> Result<(u64, u64), String> {
        let r: crate::protocol::Response =
            flotilla_core::codec::decode(bytes).map_err(|e| e.to_string())?;
        let payload = r.result.map_err(|e| e.to_string())?;
        let n: u64 = flotilla_core::codec::decode(&payload).map_err(|e| e.to_string())?;
        Ok((r.id, n))
    }
}
