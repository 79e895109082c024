//! The client side of a manager connection: one connection per [`Client`], shared by every
//! proxy made from it and every thread using them, multiplexed by request id.
//!
//! A call takes the next request id, registers a one-shot slot for the reply, writes its
//! request itself under the write lock, and waits on its slot: reading the connection
//! itself when nobody else is, so a lone call costs one write and one read with no thread
//! hand-off (see `replies`). Any number of threads may have calls in flight at once
//! (pipelined). When the connection ends — the server shut down, was killed, or cut us
//! off — whoever reads fails every waiting slot with [`CallError::ManagerGone`], and every
//! later call fails with it at once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError, Weak};
use std::task::{Context, Poll};
use std::thread;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use flotilla_core::codec::{self, CodecError};

use crate::auth::{self, AuthError, AuthKey};
use crate::protocol::{ObjectId, Op, RemoteError, RemoteErrorKind, Request, Ticket};
use crate::replies::{Replies, Slot};
use crate::server::DEFAULT_FRAME_TIMEOUT;
use crate::wire::{Address, Stream};

/// Why a connection to a manager could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// Nothing accepted the connection (Python's `ConnectionRefusedError` /
    /// `FileNotFoundError`): no manager runs there.
    #[error("could not connect to the manager at {address}: {source}")]
    Io {
        /// The address.
        address: Address,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The handshake failed: a different authkey, or a peer that is not a manager.
    #[error("the manager at {address} refused us: {source}")]
    Auth {
        /// The address.
        address: Address,
        /// Why.
        source: AuthError,
    },
    /// The manager did not answer its first request.
    #[error("the manager at {address} did not answer: {source}")]
    Call {
        /// The address.
        address: Address,
        /// Why.
        source: CallError,
    },
}

/// Why a call to a manager failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// The manager is gone: shut down, killed, or the connection was cut. Every call on
    /// its proxies fails with this at once from now on.
    #[error("the manager is gone: {0}")]
    ManagerGone(String),
    /// The server refused or failed the call, with its message (the panic text when the
    /// method panicked).
    #[error("the manager failed the call: {0}")]
    Remote(#[from] RemoteError),
    /// An argument could not be encoded, or the result did not decode as the type asked
    /// (a proxy of another type than the object's values).
    #[error("{0}")]
    Codec(#[from] CodecError),
    /// A forked child used a client its parent connected. The connection belongs to the
    /// parent (sharing it would mix both processes' replies, CPython's gh-101320): connect
    /// again in the child.
    #[error(
        "this manager connection belongs to process {owner}, not to this process ({here}, \
         a fork of it): connect again here with flotilla_manager::connect"
    )]
    InheritedConnection {
        /// The process that made the connection.
        owner: u32,
        /// This process.
        here: u32,
    },
}

impl CallError {
    /// Whether this is [`CallError::ManagerGone`].
    pub fn is_manager_gone(&self) -> bool {
        matches!(self, CallError::ManagerGone(_))
    }

    /// The server's error kind, for [`CallError::Remote`].
    pub fn remote_kind(&self) -> Option<RemoteErrorKind> {
        match self {
            CallError::Remote(e) => Some(e.kind),
            _ => None,
        }
    }
}

struct Inner {
    address: Address,
    /// The key this connection proved, handed on in the tokens of shared proxies.
    authkey: Option<AuthKey>,
    /// The connection's requests and replies: who writes, who reads, and the calls
    /// waiting for their reply.
    replies: Arc<Replies>,
    next_id: AtomicU64,
    /// The process that connected: only it may use the connection.
    pid: u32,
    /// [`fork_generation`] when it connected: while it is the same, this is still the
    /// process that connected (checked on every call without asking the kernel).
    forks: Option<u64>,
    /// The stream, to shut it down when the last handle goes.
    stream: Stream,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // A forked child's copy: the socket and the background thread are its parent's.
        if std::process::id() != self.pid {
            return;
        }
        // Wakes a reader with end of file, and ends the background thread; the server
        // sees end of file and releases every reference this client still held.
        self.stream.shutdown();
        self.replies.close();
    }
}

/// A connection to a manager server, shared by every proxy made from it.
///
/// Cheap to clone (one connection underneath). Made by [`connect`] or
/// [`Manager::client`](crate::Manager::client).
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

/// Connects to the manager at `address`, proving we hold `authkey` (and checking the
/// server does): Python's `BaseManager(address, authkey).connect()`.
///
/// ```no_run
/// use flotilla_manager::{AuthKey, connect};
///
/// let client = connect(&"127.0.0.1:50000".parse().unwrap(), Some(&AuthKey::new(b"abc".to_vec()))).unwrap();
/// let queue = client.queue::<String>(0).unwrap();
/// queue.put(&"hello".to_string()).unwrap();
/// ```
pub fn connect(address: &Address, authkey: Option<&AuthKey>) -> Result<Client, ConnectError> {
    Client::connect_with(address, authkey, DEFAULT_FRAME_TIMEOUT)
}

/// [`connect`] over TLS (the `tls` feature), trusting the certificates of `tls`: to a
/// server built with [`ServerBuilder::tls`](crate::ServerBuilder::tls) on a TCP address.
/// The TLS handshake comes first (a failure is [`ConnectError::Io`], saying TLS failed),
/// then the authkey handshake inside it. See [`crate::tls`] for an example.
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub fn connect_tls(
    address: &Address,
    authkey: Option<&AuthKey>,
    tls: &crate::tls::TlsClientConfig,
) -> Result<Client, ConnectError> {
    Client::connect_full(address, authkey, DEFAULT_FRAME_TIMEOUT, Some(tls))
}

impl Client {
    pub(crate) fn connect_with(
        address: &Address,
        authkey: Option<&AuthKey>,
        timeout: Duration,
    ) -> Result<Client, ConnectError> {
        Client::connect_full(
            address,
            authkey,
            timeout,
            #[cfg(feature = "tls")]
            None,
        )
    }

    /// Connects, over TLS when `tls` is given.
    pub(crate) fn connect_full(
        address: &Address,
        authkey: Option<&AuthKey>,
        timeout: Duration,
        #[cfg(feature = "tls")] tls: Option<&crate::tls::TlsClientConfig>,
    ) -> Result<Client, ConnectError> {
        let io = |source| ConnectError::Io {
            address: address.clone(),
            source,
        };
        let mut stream = Stream::connect(address, timeout).map_err(io)?;
        stream.set_read_timeout(Some(timeout)).map_err(io)?;
        stream.set_write_timeout(Some(timeout)).map_err(io)?;
        // One deadline for the whole handshake: TLS's and the authkey's.
        let deadline = flotilla_core::Deadline::after(Some(timeout));
        #[cfg(feature = "tls")]
        if let Some(tls) = tls {
            let Stream::Tcp(tcp) = stream else {
                return Err(io(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "TLS applies to TCP addresses only, not a Unix socket",
                )));
            };
            let ip = tcp.peer_addr().map_err(io)?.ip();
            stream =
                Stream::Tls(crate::tls::TlsStream::client(tcp, tls, ip, deadline).map_err(io)?);
        }
        if let Some(key) = authkey {
            auth::client_handshake(&mut stream, key, deadline, timeout).map_err(|source| {
                ConnectError::Auth {
                    address: address.clone(),
                    source,
                }
            })?;
        }
        let reader = stream.try_clone().map_err(io)?;
        let writer = stream.try_clone().map_err(io)?;
        let replies = Replies::new(reader, writer, address.clone(), timeout);
        let inner = Arc::new(Inner {
            address: address.clone(),
            authkey: authkey.cloned(),
            replies: Arc::clone(&replies),
            next_id: AtomicU64::new(1),
            pid: std::process::id(),
            forks: fork_generation(),
            stream,
        });
        let background = Arc::clone(&replies);
        let spawned = thread::Builder::new()
            .name("manager-client".into())
            .spawn(move || background.background());
        if let Err(e) = spawned {
            replies.close();
            return Err(io(e));
        }
        let client = Client { inner };
        client
            .request(Op::Ping)
            .map_err(|source| ConnectError::Call {
                address: address.clone(),
                source,
            })?;
        remember(&client);
        Ok(client)
    }

    /// This process's connection to the manager at `address` with `authkey`: one already
    /// open (made by [`connect`], a [`Manager`](crate::Manager), or an earlier call) when
    /// there is one, else a new one, remembered for the next call. Proxies received from
    /// other processes connect through this, so a process keeps one connection per
    /// manager however many proxies it receives.
    pub fn shared(address: &Address, authkey: Option<&AuthKey>) -> Result<Client, ConnectError> {
        if let Some(client) = recall(address, authkey) {
            return Ok(client);
        }
        Client::connect_with(address, authkey, DEFAULT_FRAME_TIMEOUT)
    }

    /// The manager's address.
    pub fn address(&self) -> &Address {
        &self.inner.address
    }

    /// Whether the connection is known to be dead (a call would fail with
    /// [`CallError::ManagerGone`]).
    pub fn is_gone(&self) -> bool {
        self.inner.replies.is_gone(&self.inner.stream)
    }

    /// Sends `op` at once, with a slot for its reply unless `expect_reply` is false.
    fn send(&self, op: Op, expect_reply: bool) -> Result<Option<Slot>, CallError> {
        self.send_with(op, expect_reply, true)
    }

    /// Refuses a forked child the connection its parent made. Checked first, before any
    /// lock: in a forked child the locks may be held by threads that do not exist there.
    fn owned_here(&self) -> Result<(), CallError> {
        if self.inner.forks.is_some() && fork_generation() == self.inner.forks {
            return Ok(());
        }
        let pid = std::process::id();
        if pid == self.inner.pid {
            Ok(())
        } else {
            Err(CallError::InheritedConnection {
                owner: self.inner.pid,
                here: pid,
            })
        }
    }

    /// [`send`](Self::send), or with `now` false left in the buffer for the next flush (a
    /// pipelined call; see [`Replies::write`]).
    fn send_with(&self, op: Op, expect_reply: bool, now: bool) -> Result<Option<Slot>, CallError> {
        self.owned_here()?;
        let id = if expect_reply {
            self.inner.next_id.fetch_add(1, Ordering::Relaxed)
        } else {
            0
        };
        let bytes = codec::encode(&Request { id, op })?;
        let rx = if expect_reply {
            Some(self.inner.replies.register(id)?)
        } else {
            None
        };
        self.inner.replies.write(&bytes, now)?;
        Ok(rx)
    }

    /// Sends `op` and waits for its reply's bytes.
    fn request(&self, op: Op) -> Result<Vec<u8>, CallError> {
        let rx = self.send(op, true)?.expect("a reply was asked for");
        self.inner.replies.wait(&rx)
    }

    fn request_decoded<R: DeserializeOwned>(&self, op: Op) -> Result<R, CallError> {
        let bytes = self.request(op)?;
        Ok(codec::decode(&bytes)?)
    }

    /// How many objects the server holds: Python's `number_of_objects` (a debugging aid).
    pub fn number_of_objects(&self) -> Result<u64, CallError> {
        self.request_decoded(Op::NumberOfObjects)
    }

    /// Asks the server to stop once it has answered this, waiting for its answer.
    pub fn shutdown_server(&self) -> Result<(), CallError> {
        self.shutdown_server_within(None)
    }

    /// Like [`shutdown_server`](Self::shutdown_server), waiting up to `timeout` for the
    /// answer; a server that does not answer in time is reported as
    /// [`CallError::ManagerGone`].
    pub fn shutdown_server_timeout(&self, timeout: Duration) -> Result<(), CallError> {
        self.shutdown_server_within(Some(timeout))
    }

    fn shutdown_server_within(&self, timeout: Option<Duration>) -> Result<(), CallError> {
        let rx = self
            .send(Op::Shutdown, true)?
            .expect("a reply was asked for");
        let reply = match timeout {
            None => Some(self.inner.replies.wait(&rx)),
            Some(t) => self.inner.replies.wait_timeout(&rx, t),
        };
        let reply = reply.ok_or_else(|| {
            CallError::ManagerGone(format!(
                "the manager at {} did not answer the shutdown request within {timeout:?}",
                self.inner.address
            ))
        })?;
        Ok(codec::decode(&reply?)?)
    }

    /// Creates an object of the registered type `typeid` with constructor arguments
    /// `args`, and returns this client's reference to it. The typed constructors
    /// ([`dict`](Self::dict), ...) are built on this; use it with [`ObjectRef::call`] for
    /// a type registered by the server program.
    pub fn create<A: Serialize + ?Sized>(
        &self,
        typeid: &str,
        args: &A,
    ) -> Result<ObjectRef, CallError> {
        let args = codec::encode(args)?;
        let id: ObjectId = self.request_decoded(Op::Create {
            typeid: typeid.to_owned(),
            args,
        })?;
        Ok(ObjectRef::new(self.clone(), id, typeid.to_owned()))
    }

    /// A reference to the object registered under `name` on the server (see
    /// [`Client::get`] for the typed form).
    pub fn lookup(&self, name: &str) -> Result<ObjectRef, CallError> {
        let (id, typeid): (ObjectId, String) = self.request_decoded(Op::Lookup {
            name: name.to_owned(),
        })?;
        Ok(ObjectRef::new(self.clone(), id, typeid))
    }

    /// Claims a [`Token`] made by [`ObjectRef::share`] (here or in another process):
    /// this client gets its own reference, and the token is spent.
    pub fn claim(&self, token: &Token) -> Result<ObjectRef, CallError> {
        let (id, typeid): (ObjectId, String) = self.request_decoded(Op::Claim {
            ticket: token.ticket,
        })?;
        Ok(ObjectRef::new(self.clone(), id, typeid))
    }
}

/// Open connections of this process, by address and key, for [`Client::shared`]. Weak:
/// a connection closes when its last user drops it, remembered or not.
type Remembered = Vec<(u32, Address, Option<AuthKey>, Weak<Inner>)>;

static CLIENTS: Mutex<Remembered> = Mutex::new(Vec::new());

/// The remembered connections, unless the lock stays taken: in a child forked while
/// another thread held it, it stays taken for ever, and a cache is not worth a hang
/// (the caller connects afresh instead).
fn remembered() -> Option<MutexGuard<'static, Remembered>> {
    for _ in 0..1000 {
        match CLIENTS.try_lock() {
            Ok(g) => return Some(g),
            Err(TryLockError::Poisoned(p)) => return Some(p.into_inner()),
            Err(TryLockError::WouldBlock) => thread::yield_now(),
        }
    }
    None
}

/// How many forks separate this process from the one that first connected a client: a
/// child forked from a process that has one counts one more than its parent at the fork.
static FORKS: AtomicU64 = AtomicU64::new(0);

extern "C" fn count_fork() {
    FORKS.fetch_add(1, Ordering::Relaxed);
}

/// This process's fork generation ([`FORKS`]), `None` when forks cannot be counted (then
/// pids are compared). The first call registers the counting in forked children, so a
/// client records it after registering, and every fork after that is counted (`fork()`
/// runs the handlers; flotilla-process forks through it).
fn fork_generation() -> Option<u64> {
    static REGISTERED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let registered = *REGISTERED.get_or_init(|| {
        // SAFETY: `count_fork` only increments an atomic, which is async-signal-safe, as a
        // handler run in a forked child of a multithreaded process must be; it is a plain
        // `extern "C" fn` that lives as long as the process.
        unsafe { nix::libc::pthread_atfork(None, None, Some(count_fork)) == 0 }
    });
    registered.then(|| FORKS.load(Ordering::Relaxed))
}

fn remember(client: &Client) {
    let pid = std::process::id();
    let Some(mut clients) = remembered() else {
        return;
    };
    // Forgets the dead, and what a forked child inherited from its parent.
    clients.retain(|(owner, _, _, weak)| *owner == pid && weak.strong_count() > 0);
    clients.push((
        pid,
        client.inner.address.clone(),
        client.inner.authkey.clone(),
        Arc::downgrade(&client.inner),
    ));
}

fn recall(address: &Address, authkey: Option<&AuthKey>) -> Option<Client> {
    let pid = std::process::id();
    remembered()?
        .iter()
        .filter(|(owner, a, k, _)| *owner == pid && a == address && k.as_ref() == authkey)
        .filter_map(|(_, _, _, weak)| weak.upgrade())
        .map(|inner| Client { inner })
        .find(|c| !c.is_gone())
}

/// This client's reference to one server object. Dropping the last clone releases it.
#[derive(Debug)]
struct RefInner {
    client: Client,
    id: ObjectId,
    typeid: String,
}

impl Drop for RefInner {
    fn drop(&mut self) {
        // No reply wanted; a dead manager has nothing left to release.
        let _ = self.client.send(Op::Release { object: self.id }, false);
    }
}

/// A client's reference to an object on the server: the untyped core of every proxy.
/// Cheap to clone; the reference is released when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct ObjectRef {
    inner: Arc<RefInner>,
}

/// A transferable claim on an object: made by [`ObjectRef::share`], spent by
/// [`Client::claim`] or [`Token::claim`]. Until claimed it keeps the object alive.
///
/// It carries, on purpose, what the receiver needs to reach the object: the manager's
/// address and the authkey of the connection that shared it (never "whatever key the
/// receiving process has", CPython's bpo-7503 trap). Whoever holds a token can use the
/// object: hand it only to processes you would hand the key to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Token {
    ticket: Ticket,
    typeid: String,
    address: Address,
    authkey: Option<AuthKey>,
}

impl Token {
    /// The type of the object it names.
    pub fn typeid(&self) -> &str {
        &self.typeid
    }

    /// The address of the manager owning the object.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// Claims the object through this process's connection to its manager
    /// ([`Client::shared`]: an open one, or a new one made with the token's address and
    /// key).
    pub fn claim(&self) -> Result<ObjectRef, ClaimError> {
        let client = Client::shared(&self.address, self.authkey.as_ref())?;
        Ok(client.claim(self)?)
    }
}

/// Why a [`Token`] (a proxy received from another process) could not be claimed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClaimError {
    /// Its manager could not be reached.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// Its manager refused the claim (spent already, or the object is of another type).
    #[error(transparent)]
    Call(#[from] CallError),
}

impl ObjectRef {
    fn new(client: Client, id: ObjectId, typeid: String) -> Self {
        ObjectRef {
            inner: Arc::new(RefInner { client, id, typeid }),
        }
    }

    /// The object's id on its server.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// The object's registered type.
    pub fn typeid(&self) -> &str {
        &self.inner.typeid
    }

    /// The client it belongs to.
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// Calls `method` with `args` (a tuple for several) and decodes its result as `R`.
    /// A blocking method on the server may wait for ever; the call itself returns when
    /// the server answers, or at once with [`CallError::ManagerGone`] when the manager
    /// goes away.
    pub fn call<A: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        method: &str,
        args: &A,
    ) -> Result<R, CallError> {
        self.call_within(method, args, None)
    }

    /// Like [`call`](Self::call), with `timeout` bounding a blocking method on the
    /// server (how it reports the timeout is the method's: `acquire` answers false, a
    /// queue's `get` nothing).
    pub fn call_timeout<A: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        method: &str,
        args: &A,
        timeout: Duration,
    ) -> Result<R, CallError> {
        self.call_within(method, args, Some(timeout))
    }

    /// The body of [`call`](Self::call) and [`call_timeout`](Self::call_timeout); `None`
    /// lets the server wait without limit.
    pub(crate) fn call_within<A: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        method: &str,
        args: &A,
        timeout: Option<Duration>,
    ) -> Result<R, CallError> {
        self.call_encoded(method, codec::encode(args)?, timeout)
    }

    /// [`call`](Self::call) with arguments already encoded.
    pub(crate) fn call_encoded<R: DeserializeOwned>(
        &self,
        method: &str,
        args: Vec<u8>,
        timeout: Option<Duration>,
    ) -> Result<R, CallError> {
        self.inner.client.request_decoded(Op::Call {
            object: self.inner.id,
            method: method.to_owned(),
            args,
            timeout,
            refs: take_shared(),
        })
    }

    /// Sends a call of `method` and returns at once: the reply is waited for with
    /// [`Pending::wait`], and decoded with `decode`. Any number of calls may be in flight
    /// on one connection (pipelined); the server runs each connection's calls in the order
    /// sent.
    pub(crate) fn call_pending_with<A: Serialize + ?Sized, T>(
        &self,
        method: &str,
        args: &A,
        timeout: Option<Duration>,
        decode: fn(&[u8]) -> Result<T, CallError>,
    ) -> Result<Pending<T>, CallError> {
        let rx = self
            .inner
            .client
            .send_with(
                Op::Call {
                    object: self.inner.id,
                    method: method.to_owned(),
                    // Encoded first, so the tickets of proxies in them are taken after.
                    args: codec::encode(args)?,
                    timeout,
                    refs: take_shared(),
                },
                true,
                false,
            )?
            .expect("a reply was asked for");
        Ok(Pending {
            rx,
            decode,
            client: self.inner.client.clone(),
        })
    }

    /// [`call`](Self::call) without waiting: the reply is waited for with [`Pending::wait`]
    /// or awaited (it is a `Future`, so async code blocks no thread on it). Calls sent so
    /// from one thread are in flight together and run on the server in the order sent.
    ///
    /// Pipelined requests are written into the connection's buffer and go out together:
    /// with the next call that waits, when a pending call is waited for, awaited or
    /// dropped, when 16 KiB of them queue up, or at the latest about 10 ms later (the
    /// client's background thread sends what it finds left twice in a row).
    pub fn call_pending<A: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        method: &str,
        args: &A,
    ) -> Result<Pending<R>, CallError> {
        self.call_pending_with(method, args, None, |b| Ok(codec::decode(b)?))
    }

    /// [`call_timeout`](Self::call_timeout), without waiting (see
    /// [`call_pending`](Self::call_pending)).
    pub fn call_pending_timeout<A: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        method: &str,
        args: &A,
        timeout: Duration,
    ) -> Result<Pending<R>, CallError> {
        self.call_pending_with(method, args, Some(timeout), |b| Ok(codec::decode(b)?))
    }

    /// Makes a [`Token`] another client (in any process) can [`claim`](Client::claim).
    pub fn share(&self) -> Result<Token, CallError> {
        let ticket: Ticket = self.inner.client.request_decoded(Op::Share {
            object: self.inner.id,
        })?;
        let client = &self.inner.client.inner;
        note_shared(ticket);
        Ok(Token {
            ticket,
            typeid: self.inner.typeid.clone(),
            address: client.address.clone(),
            authkey: client.authkey.clone(),
        })
    }

    pub(crate) fn check_type(self, typeid: &str) -> Result<ObjectRef, CallError> {
        if self.inner.typeid == typeid {
            Ok(self)
        } else {
            Err(CallError::Remote(RemoteError::new(
                RemoteErrorKind::BadArguments,
                format!("the object is a `{}`, not a `{typeid}`", self.inner.typeid),
            )))
        }
    }
}

thread_local! {
    /// The tickets this thread made (a proxy serialized, into a call's arguments or
    /// anywhere else) since its last call: sent with its next call, so the server can keep
    /// the proxies a stored value holds (those whose ticket is in the value's bytes).
    static SHARED: std::cell::RefCell<Vec<Ticket>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// At most this many tickets wait for a call: the oldest, made for something else than a
/// call's arguments, go first.
const SHARED_MAX: usize = 256;

fn note_shared(ticket: Ticket) {
    let _ = SHARED.try_with(|s| {
        let mut s = s.borrow_mut();
        if s.len() >= SHARED_MAX {
            s.remove(0);
        }
        s.push(ticket);
    });
}

/// The tickets made since the last call (usually none: no allocation then).
fn take_shared() -> Vec<Ticket> {
    SHARED
        .try_with(|s| std::mem::take(&mut *s.borrow_mut()))
        .unwrap_or_default()
}

/// A call sent and not yet answered (made by the `*_pending` methods of the proxies, such
/// as [`DictProxy::set_pending`](crate::DictProxy::set_pending)): send many, then wait for
/// each, and the round trips overlap instead of adding up.
#[must_use = "a pending call's result (or error) is known only by waiting for it"]
pub struct Pending<T> {
    rx: Slot,
    decode: fn(&[u8]) -> Result<T, CallError>,
    client: Client,
}

impl<T> std::fmt::Debug for Pending<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending").finish_non_exhaustive()
    }
}

impl<T> Drop for Pending<T> {
    fn drop(&mut self) {
        // A call dropped unwaited still goes (a fire-and-forget `put_pending`); never from
        // a forked child, whose buffer is a copy of its parent's.
        if self.client.owned_here().is_ok() {
            let _ = self.client.inner.replies.flush();
        }
    }
}

impl<T> Pending<T> {
    /// Waits for the reply (at once [`CallError::ManagerGone`] when the manager goes).
    pub fn wait(self) -> Result<T, CallError> {
        self.wait_within(None).unwrap_or_else(|| {
            Err(CallError::ManagerGone(
                "an untimed wait ended without a reply".into(),
            ))
        })
    }

    /// Waits up to `timeout` for the reply. When it has not come by then, the call is
    /// handed back still in flight ([`WaitTimeoutError::Timeout`]): wait for it again, or
    /// drop it (the server still runs it; its reply is then thrown away). This bounds only
    /// the client's wait; the `*_pending_timeout` forms of the proxies also bound the
    /// server's.
    ///
    /// ```
    /// use std::time::Duration;
    /// use flotilla_manager::WaitTimeoutError;
    /// # let manager = flotilla_manager::Manager::start().unwrap();
    /// let q = manager.queue::<u32>(0).unwrap();
    /// let get = q.get_pending().unwrap(); // parked on the server: the queue is empty
    /// let Err(WaitTimeoutError::Timeout(get)) = get.wait_timeout(Duration::from_millis(20))
    /// else {
    ///     panic!("an empty queue's get answered")
    /// };
    /// q.put(&5).unwrap();
    /// assert_eq!(get.wait().unwrap(), Some(5));
    /// ```
    pub fn wait_timeout(self, timeout: Duration) -> Result<T, WaitTimeoutError<T>> {
        match self.wait_within(Some(timeout)) {
            Some(answer) => answer.map_err(WaitTimeoutError::Call),
            None => Err(WaitTimeoutError::Timeout(self)),
        }
    }

    /// The body of [`wait`](Self::wait) and [`wait_timeout`](Self::wait_timeout): `None`
    /// when `timeout` passed first (never for `None`).
    fn wait_within(&self, timeout: Option<Duration>) -> Option<Result<T, CallError>> {
        if let Err(e) = self.client.owned_here() {
            return Some(Err(e));
        }
        let replies = &self.client.inner.replies;
        let answer = match timeout {
            None => replies.wait(&self.rx),
            Some(t) => replies.wait_timeout(&self.rx, t)?,
        };
        Some(answer.and_then(|bytes| (self.decode)(&bytes)))
    }
}

/// Why [`Pending::wait_timeout`] returned without a value.
#[derive(thiserror::Error)]
pub enum WaitTimeoutError<T> {
    /// No reply within the timeout: the call, still in flight, handed back.
    #[error("no reply from the manager within the timeout")]
    Timeout(Pending<T>),
    /// The call failed, as [`Pending::wait`] would have.
    #[error(transparent)]
    Call(#[from] CallError),
}

impl<T> std::fmt::Debug for WaitTimeoutError<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WaitTimeoutError::Timeout(p) => f.debug_tuple("Timeout").field(p).finish(),
            WaitTimeoutError::Call(e) => f.debug_tuple("Call").field(e).finish(),
        }
    }
}

/// Awaiting a pending call in async code (tokio or any executor) blocks no thread: the
/// thread reading the connection (a waiting one, or the client's background thread) wakes
/// the task when the reply comes.
///
/// ```
/// # let manager = flotilla_manager::Manager::start().unwrap();
/// let d = manager.dict::<u32, String>().unwrap();
/// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// let got = rt.block_on(async {
///     d.set_pending(&1, &"one".into())?.await?;
///     d.get_pending(&1)?.await
/// });
/// assert_eq!(got.unwrap().as_deref(), Some("one"));
/// ```
impl<T> std::future::Future for Pending<T> {
    type Output = Result<T, CallError>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Err(e) = this.client.owned_here() {
            return Poll::Ready(Err(e));
        }
        this.client
            .inner
            .replies
            .poll(&this.rx, cx)
            .map(|answer| (this.decode)(&answer?))
    }
}
