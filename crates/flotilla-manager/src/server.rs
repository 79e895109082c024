//! The manager server: a listener, one reader and one writer thread per connection, the
//! object table, the timer thread that expires parked waiters, and the reference rules.
//!
//! # Who touches what
//!
//! - The **object table** (`Shared::table`, one mutex): object ids → slots (an entry and
//!   its holder count, kept together so neither outlives the other), and the transfer
//!   tickets. Held only to look up, insert or remove; never
//!   while an object's own mutex is taken.
//! - An **object** (`Entry::object`, its own mutex): touched by the reader thread of a
//!   connection calling it, by the timer thread expiring a waiter, and by a connection's
//!   thread releasing its references. Methods never block, so the mutex is held briefly.
//! - A connection's **references** (`Conn::refs`): owned by that connection's reader
//!   thread alone, so a request can only touch objects its own connection holds.
//! - A connection's **replies** go through a channel to its writer thread, from whichever
//!   thread answers (a parked `get` is answered by another client's `put`), so no thread
//!   ever blocks writing to someone else's socket.
//!
//! # References
//!
//! An object lives while it has a holder: a connection holding at least one reference, or
//! an unclaimed transfer ticket. `Create` and `Claim` give the calling connection a
//! reference, `Release` drops one. When a connection ends — closed, killed, or cut off
//! for a malformed message — all its references go at once: each object it held first
//! hears [`SharedObject::client_gone`] (a lock it held is released, its parked waiters are
//! dropped), then loses a holder, and is freed at zero.

use std::collections::{BinaryHeap, HashMap};
use std::io::{BufReader, BufWriter, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use flotilla_core::codec;

use crate::auth::{self, AuthKey};
use crate::object::{Call, ClientId, Reply, Responder, SharedObject, WaiterId, encode_reply};
use crate::protocol::{ObjectId, Op, RemoteError, RemoteErrorKind, Request, Response, Ticket};
use crate::wire::{self, Address, DEFAULT_MAX_FRAME, FrameError, Idle, Listener, Stream};
use crate::{sync_types, types};

/// Makes an object of a registered type from its codec-encoded constructor arguments.
pub type Constructor =
    Arc<dyn Fn(&[u8]) -> Result<Box<dyn SharedObject>, RemoteError> + Send + Sync>;

/// The default bound on a stalled frame and on the handshake.
pub const DEFAULT_FRAME_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic under these mutexes happens only in an object's method, which runs inside
    // `catch_unwind` with the guard outside it, so poisoning is never a broken invariant.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Options for a [`Server`]: its address, authkey, registered types and limits.
///
/// ```
/// use flotilla_manager::{AuthKey, Server};
///
/// let dir = std::env::temp_dir().join(format!("flotilla-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let server = Server::builder(dir.join("m.sock"))
///     .authkey(AuthKey::new(b"secret".to_vec()))
///     .bind()
///     .unwrap();
/// let running = server.spawn();
/// let client = flotilla_manager::connect(running.address(), Some(&AuthKey::new(b"secret".to_vec()))).unwrap();
/// assert_eq!(client.number_of_objects().unwrap(), 0);
/// running.shutdown();
/// # std::fs::remove_dir_all(&dir).unwrap();
/// ```
pub struct ServerBuilder {
    address: Address,
    authkey: Option<AuthKey>,
    registry: HashMap<String, Constructor>,
    /// Objects made at bind and served by name: name → (typeid, encoded arguments).
    named: Vec<(String, String, Result<Vec<u8>, String>)>,
    max_frame: u64,
    frame_timeout: Duration,
    #[cfg(feature = "tls")]
    tls: Option<crate::tls::TlsServerConfig>,
}

impl std::fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("address", &self.address)
            .field("authkey", &self.authkey)
            .field("types", &self.registry.keys().collect::<Vec<_>>())
            .field("max_frame", &self.max_frame)
            .finish()
    }
}

/// Why a server could not start listening.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BindError {
    /// A TCP address other hosts can reach, without an authkey: anyone could connect.
    #[error(
        "refusing to listen on {0}, which other hosts can reach, without an authkey: \
         set one, or listen on loopback or a Unix socket"
    )]
    RemoteWithoutAuthkey(Address),
    /// TLS was asked for on a Unix socket: it applies to TCP addresses only.
    #[cfg(feature = "tls")]
    #[error("TLS applies to TCP addresses only, not the Unix socket {0}")]
    TlsNeedsTcp(Address),
    /// An object registered by name with [`ServerBuilder::register_object`] could not be
    /// made.
    #[error("could not make the object registered as `{name}`: {message}")]
    Object {
        /// The name it was registered under.
        name: String,
        /// Why.
        message: String,
    },
    /// The OS refused the socket.
    #[error("could not listen on {address}: {source}")]
    Io {
        /// The address.
        address: Address,
        /// What the OS said.
        source: std::io::Error,
    },
}

impl ServerBuilder {
    /// Sets the authkey every client must prove it holds. Without one, clients connect
    /// with no handshake (Python's `authkey=None`), which is refused on a TCP address
    /// other hosts can reach.
    pub fn authkey(mut self, key: AuthKey) -> Self {
        self.authkey = Some(key);
        self
    }

    /// Registers a type under `typeid`: clients create objects of it by that name. A
    /// built-in name (`dict`, `list`, `Namespace`, `Lock`, `Queue`) is replaced.
    pub fn register<F>(mut self, typeid: impl Into<String>, constructor: F) -> Self
    where
        F: Fn(&[u8]) -> Result<Box<dyn SharedObject>, RemoteError> + Send + Sync + 'static,
    {
        self.registry.insert(typeid.into(), Arc::new(constructor));
        self
    }

    /// Makes one object of the registered type `typeid` (built in or registered) from
    /// `args` when the server binds, and serves it under `name`: every client that asks
    /// for `name` ([`Client::get`](crate::Client::get)) gets a proxy for that same object.
    /// Python's `BaseManager.register("get_queue", callable=lambda: queue)`. The server
    /// holds it for as long as it runs.
    ///
    /// ```
    /// use flotilla_manager::{AuthKey, QueueProxy, Server, connect};
    ///
    /// let key = AuthKey::new(b"abc".to_vec());
    /// let server = Server::builder("127.0.0.1:0".parse::<flotilla_manager::Address>().unwrap())
    ///     .authkey(key.clone())
    ///     .register_object("get_task_queue", "Queue", &0u64)
    ///     .bind()
    ///     .unwrap()
    ///     .spawn();
    /// let a = connect(server.address(), Some(&key)).unwrap();
    /// let b = connect(server.address(), Some(&key)).unwrap();
    /// a.get::<QueueProxy<String>>("get_task_queue").unwrap().put(&"hi".into()).unwrap();
    /// assert_eq!(b.get::<QueueProxy<String>>("get_task_queue").unwrap().get().unwrap(), "hi");
    /// ```
    pub fn register_object<A: serde::Serialize + ?Sized>(
        mut self,
        name: impl Into<String>,
        typeid: impl Into<String>,
        args: &A,
    ) -> Self {
        let args = codec::encode(args).map_err(|e| e.to_string());
        self.named.push((name.into(), typeid.into(), args));
        self
    }

    /// The largest frame accepted from a client, checked before allocating. Default
    /// [`DEFAULT_MAX_FRAME`].
    pub fn max_frame(mut self, bytes: u64) -> Self {
        self.max_frame = bytes;
        self
    }

    /// How long a frame (or the handshake) may stall before the connection is closed.
    /// Default [`DEFAULT_FRAME_TIMEOUT`].
    pub fn frame_timeout(mut self, timeout: Duration) -> Self {
        self.frame_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// Serves every connection over TLS with this certificate and key (the `tls`
    /// feature; TCP addresses only): the TLS handshake comes first, then the authkey
    /// handshake and every message inside it. A client must use
    /// [`connect_tls`](crate::connect_tls); a plain one is refused. See [`crate::tls`].
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls(mut self, config: crate::tls::TlsServerConfig) -> Self {
        self.tls = Some(config);
        self
    }

    /// Binds the listener.
    pub fn bind(self) -> Result<Server, BindError> {
        if self.authkey.is_none() && self.address.is_remote() {
            return Err(BindError::RemoteWithoutAuthkey(self.address));
        }
        #[cfg(feature = "tls")]
        if self.tls.is_some() && matches!(self.address, Address::Unix(_)) {
            return Err(BindError::TlsNeedsTcp(self.address));
        }
        let io = |source| BindError::Io {
            address: self.address.clone(),
            source,
        };
        let mut table = Table::default();
        for (name, typeid, args) in self.named {
            let object = args
                .and_then(|args| {
                    let ctor = self
                        .registry
                        .get(&typeid)
                        .ok_or_else(|| format!("no type `{typeid}` is registered"))?;
                    catch_unwind(AssertUnwindSafe(|| ctor(&args)))
                        .map_err(|p| flotilla_core::panic_message(&*p))?
                        .map_err(|e| e.to_string())
                })
                .map_err(|message| BindError::Object {
                    name: name.clone(),
                    message,
                })?;
            let id = table.insert(typeid, object);
            table.named.insert(name, id);
        }
        let listener = Listener::bind(&self.address).map_err(io)?;
        let address = listener.local_address(&self.address).map_err(io)?;
        let waker = listener.try_clone().map_err(io)?;
        let shared = Arc::new(Shared {
            address: address.clone(),
            authkey: self.authkey,
            registry: self.registry,
            max_frame: self.max_frame,
            frame_timeout: self.frame_timeout,
            #[cfg(feature = "tls")]
            tls: self.tls,
            table: Mutex::new(table),
            timers: Arc::new(Timers::default()),
            stopping: AtomicBool::new(false),
            waker,
            conns: Mutex::new(HashMap::new()),
            next_client: AtomicU64::new(1),
            stopped: (Mutex::new(false), Condvar::new()),
        });
        Ok(Server { listener, shared })
    }
}

/// A bound manager server, not yet serving: Python's `BaseManager.get_server()`.
///
/// [`serve_forever`](Self::serve_forever) serves in this thread until a client asks it
/// to shut down; [`spawn`](Self::spawn) serves on a background thread.
#[derive(Debug)]
pub struct Server {
    listener: Listener,
    shared: Arc<Shared>,
}

impl Server {
    /// A server for `address` with the built-in types registered.
    pub fn builder(address: impl Into<Address>) -> ServerBuilder {
        let mut registry: HashMap<String, Constructor> = HashMap::new();
        registry.insert("dict".into(), Arc::new(types::Dict::create));
        registry.insert("list".into(), Arc::new(types::List::create));
        registry.insert("Namespace".into(), Arc::new(types::Namespace::create));
        registry.insert("Lock".into(), Arc::new(types::Lock::create));
        registry.insert("Queue".into(), Arc::new(types::Queue::create));
        registry.insert(
            "JoinableQueue".into(),
            Arc::new(types::Queue::create_joinable),
        );
        registry.insert("RLock".into(), Arc::new(sync_types::RLock::create));
        registry.insert("Semaphore".into(), Arc::new(sync_types::Semaphore::create));
        registry.insert(
            "BoundedSemaphore".into(),
            Arc::new(sync_types::Semaphore::create_bounded),
        );
        registry.insert("Condition".into(), Arc::new(sync_types::Condition::create));
        registry.insert("Event".into(), Arc::new(sync_types::Event::create));
        registry.insert("Barrier".into(), Arc::new(sync_types::Barrier::create));
        registry.insert("Value".into(), Arc::new(sync_types::Value::create));
        registry.insert("Array".into(), Arc::new(sync_types::Array::create));
        ServerBuilder {
            address: address.into(),
            authkey: None,
            registry,
            named: Vec::new(),
            max_frame: DEFAULT_MAX_FRAME,
            frame_timeout: DEFAULT_FRAME_TIMEOUT,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// The address it listens on (for TCP port 0, with the port the OS chose).
    pub fn address(&self) -> &Address {
        &self.shared.address
    }

    /// Serves until a client sends a shutdown request (or [`RunningServer::shutdown`]),
    /// then closes every connection, after their queued replies are written.
    pub fn serve_forever(self) {
        let Server { listener, shared } = self;
        let timer = {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name("manager-timers".into())
                .spawn(move || shared.timers.run(&shared))
                .ok()
        };
        let mut handles: Vec<JoinHandle<()>> = Vec::new();
        flotilla_core::event!(flotilla_core::log::Level::DEBUG, address = %shared.address, "manager server serving");
        while !shared.stopping.load(Ordering::SeqCst) {
            let stream = match listener.accept() {
                Ok(s) => s,
                Err(e) => {
                    if shared.stopping.load(Ordering::SeqCst) {
                        break;
                    }
                    flotilla_core::event!(flotilla_core::log::Level::WARN, error = %e, "manager: accept failed");
                    thread::sleep(Duration::from_millis(10));
                    continue;
                }
            };
            if shared.stopping.load(Ordering::SeqCst) {
                break;
            }
            handles.retain(|h| !h.is_finished());
            let shared2 = Arc::clone(&shared);
            match thread::Builder::new()
                .name("manager-conn".into())
                .spawn(move || serve_connection(&shared2, stream))
            {
                Ok(h) => handles.push(h),
                Err(e) => {
                    flotilla_core::event!(flotilla_core::log::Level::ERROR, error = %e, "manager: no thread for a connection")
                }
            }
        }
        drop(listener);
        if let Address::Unix(path) = &shared.address {
            // Our own socket file; gone already is fine.
            let _ = std::fs::remove_file(path);
        }
        // Stop reading: every reader sees end of file, releases its client's references
        // and lets its writer drain the replies already queued.
        for stream in lock(&shared.conns).values() {
            stream.shutdown_read();
        }
        for h in handles {
            let _ = h.join();
        }
        // Parked calls still in the table answer "gone" as they are dropped.
        let objects = std::mem::take(&mut lock(&shared.table).objects);
        drop(objects);
        shared.timers.stop();
        if let Some(t) = timer {
            let _ = t.join();
        }
        let (done, cv) = &shared.stopped;
        *lock(done) = true;
        cv.notify_all();
        flotilla_core::event!(flotilla_core::log::Level::DEBUG, address = %shared.address, "manager server stopped");
    }

    /// Serves on a background thread.
    pub fn spawn(self) -> RunningServer {
        let shared = Arc::clone(&self.shared);
        let thread = thread::Builder::new()
            .name("manager-server".into())
            .spawn(move || self.serve_forever())
            .expect("a thread for the manager server");
        RunningServer {
            shared,
            thread: Some(thread),
        }
    }
}

/// A server serving on a background thread; dropping it shuts it down.
#[derive(Debug)]
pub struct RunningServer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl RunningServer {
    /// The address it listens on.
    pub fn address(&self) -> &Address {
        &self.shared.address
    }

    /// Stops it and waits for it to finish.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.shared.request_stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What the server's threads share.
pub(crate) struct Shared {
    address: Address,
    authkey: Option<AuthKey>,
    registry: HashMap<String, Constructor>,
    max_frame: u64,
    frame_timeout: Duration,
    #[cfg(feature = "tls")]
    tls: Option<crate::tls::TlsServerConfig>,
    table: Mutex<Table>,
    timers: Arc<Timers>,
    stopping: AtomicBool,
    /// A second handle on the listening socket, to wake the accept loop.
    waker: Listener,
    /// Every open connection's stream, to stop them at shutdown.
    conns: Mutex<HashMap<ClientId, Stream>>,
    next_client: AtomicU64,
    stopped: (Mutex<bool>, Condvar),
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Asks the accept loop to stop, and wakes it with a connection of our own.
    fn request_stop(&self) {
        if self.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        self.waker.wake_accept();
        let wake = match &self.address {
            Address::Tcp(addr) if addr.ip().is_unspecified() => {
                let mut a = *addr;
                a.set_ip(if addr.is_ipv4() {
                    std::net::Ipv4Addr::LOCALHOST.into()
                } else {
                    std::net::Ipv6Addr::LOCALHOST.into()
                });
                Address::Tcp(a)
            }
            other => other.clone(),
        };
        // Refused means the loop is not in accept: it sees the flag on its own.
        let _ = Stream::connect(&wake, Duration::from_secs(5));
    }
}

#[derive(Default)]
struct Table {
    objects: HashMap<ObjectId, Slot>,
    tickets: HashMap<Ticket, TicketEntry>,
    /// Objects served by name; the server itself is one of their holders.
    named: HashMap<String, ObjectId>,
    next_id: ObjectId,
}

impl Table {
    /// Adds an object with one holder (its creator); returns its id.
    fn insert(&mut self, typeid: String, object: Box<dyn SharedObject>) -> ObjectId {
        self.next_id += 1;
        let id = self.next_id;
        self.objects.insert(
            id,
            Slot {
                entry: Arc::new(Entry {
                    typeid,
                    object: Mutex::new(object),
                }),
                holders: 1,
            },
        );
        id
    }

    /// One more holder of `id`, if it is still there.
    fn add_holder(&mut self, id: ObjectId) {
        if let Some(slot) = self.objects.get_mut(&id) {
            slot.holders += 1;
        }
    }

    /// The type name of `id`, if it is still there.
    fn typeid(&self, id: ObjectId) -> Option<String> {
        self.objects.get(&id).map(|slot| slot.entry.typeid.clone())
    }
}

/// A ticket's object, and how many stored values keep it ([`Stored`]): while any does,
/// claiming it gives a reference and leaves it; else it is in transit, claimed once. Either
/// way it holds one holder of its object until it goes.
struct TicketEntry {
    object: ObjectId,
    stored: usize,
}

/// A value stored in a container object (a `dict`'s value, a `list`'s item, a
/// `Namespace`'s attribute), with the proxies it holds: the objects of the tickets found
/// in its bytes, kept alive while it is stored, so every reader of the value can claim
/// them (each gets a reference of its own). Dropping it (overwritten, deleted, cleared,
/// its container freed) lets them go; [`into_transit`](Self::into_transit) (a value
/// popped) hands them to the one who takes the value, as a proxy in transit.
///
/// Serialized as its bytes alone, as one byte string (see `codec::bytes`).
#[derive(Debug, Default)]
pub(crate) struct Stored {
    pub(crate) bytes: Vec<u8>,
    tickets: Vec<Ticket>,
    shared: std::sync::Weak<Shared>,
}

impl serde::Serialize for Stored {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        flotilla_core::codec::bytes::serialize(&self.bytes, s)
    }
}

impl Stored {
    /// Bytes holding no proxy.
    pub(crate) fn plain(bytes: impl Into<Vec<u8>>) -> Self {
        Stored {
            bytes: bytes.into(),
            tickets: Vec::new(),
            shared: std::sync::Weak::new(),
        }
    }

    /// `bytes`, keeping the objects of those of `candidates` found in them (tickets still
    /// in this server's table).
    pub(crate) fn keep(
        bytes: impl Into<Vec<u8>>,
        candidates: &[Ticket],
        shared: &Arc<Shared>,
    ) -> Self {
        let bytes = bytes.into();
        let found: Vec<Ticket> = candidates
            .iter()
            .filter(|t| bytes.windows(t.len()).any(|w| w == &t[..]))
            .copied()
            .collect();
        if found.is_empty() {
            return Stored::plain(bytes);
        }
        let mut table = lock(&shared.table);
        let tickets = found
            .into_iter()
            .filter(|t| match table.tickets.get_mut(t) {
                Some(entry) => {
                    entry.stored += 1;
                    true
                }
                None => false,
            })
            .collect();
        Stored {
            bytes,
            tickets,
            shared: Arc::downgrade(shared),
        }
    }

    /// The bytes, for a caller taking the value away: the proxies in it become proxies in
    /// transit (each claimed once), unless another stored value keeps them.
    pub(crate) fn into_transit(mut self) -> flotilla_core::codec::ByteBuf {
        self.unkeep(false);
        std::mem::take(&mut self.bytes).into()
    }

    /// Lets this value's tickets go: each kept by no other stored value is dropped with
    /// its hold (`drop_unkept`), or left in transit.
    fn unkeep(&mut self, drop_unkept: bool) {
        let tickets = std::mem::take(&mut self.tickets);
        if tickets.is_empty() {
            return;
        }
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        let mut gone = Vec::new();
        {
            let mut table = lock(&shared.table);
            for t in tickets {
                if let Some(entry) = table.tickets.get_mut(&t) {
                    entry.stored = entry.stored.saturating_sub(1);
                    if entry.stored == 0 && drop_unkept {
                        gone.push(entry.object);
                        table.tickets.remove(&t);
                    }
                }
            }
        }
        // Outside the table's lock: a freed object's drop takes it.
        for object in gone {
            shared.drop_holder(object);
        }
    }
}

impl Drop for Stored {
    fn drop(&mut self) {
        self.unkeep(true);
    }
}

/// An object in the table, with its holder count: connections holding a reference, plus
/// unclaimed tickets (plus the server itself for an object served by name). The object
/// leaves the table with its count, when that reaches zero.
struct Slot {
    entry: Arc<Entry>,
    holders: usize,
}

struct Entry {
    typeid: String,
    object: Mutex<Box<dyn SharedObject>>,
}

impl Shared {
    fn entry(&self, id: ObjectId) -> Option<Arc<Entry>> {
        lock(&self.table)
            .objects
            .get(&id)
            .map(|slot| Arc::clone(&slot.entry))
    }

    /// Drops one holder of `id`, freeing the object at zero.
    fn drop_holder(&self, id: ObjectId) {
        let freed = {
            let mut table = lock(&self.table);
            match table.objects.get_mut(&id) {
                Some(slot) if slot.holders > 1 => {
                    slot.holders -= 1;
                    None
                }
                Some(_) => table.objects.remove(&id),
                None => None,
            }
        };
        // Dropped outside the table's lock: dropping parked waiters sends replies.
        drop(freed);
    }
}

/// A parked waiter's deadline, earliest first.
type Deadline = std::cmp::Reverse<(Instant, ObjectId, u64)>;

/// The deadlines of parked waiters, expired by one thread.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    state: Mutex<TimerState>,
    cv: Condvar,
    next: AtomicU64,
}

#[derive(Debug, Default)]
struct TimerState {
    /// Pending deadlines, earliest first; some may be of waiters answered already.
    heap: BinaryHeap<Deadline>,
    /// The waiters with a deadline not yet answered.
    live: std::collections::HashSet<u64>,
    stop: bool,
}

impl Timers {
    pub(crate) fn next_waiter(&self) -> WaiterId {
        WaiterId(self.next.fetch_add(1, Ordering::Relaxed) + 1)
    }

    pub(crate) fn add(&self, deadline: Instant, object: ObjectId, waiter: WaiterId) {
        let mut g = lock(&self.state);
        let earliest = g.heap.peek().is_none_or(|e| deadline < e.0.0);
        g.heap.push(std::cmp::Reverse((deadline, object, waiter.0)));
        g.live.insert(waiter.0);
        if earliest {
            self.cv.notify_one();
        }
    }

    /// `waiter` was answered (or dropped) before its deadline: its entry is dead, and the
    /// heap is rebuilt without the dead ones once they outnumber the live ones, so calls
    /// answered early (a long timeout, a quick answer) do not pile up until their
    /// deadlines.
    pub(crate) fn cancel(&self, waiter: WaiterId) {
        let mut g = lock(&self.state);
        if !g.live.remove(&waiter.0) {
            return;
        }
        if g.live.is_empty() {
            g.heap.clear();
        } else if g.heap.len() > 2 * g.live.len() + 64 {
            let state = &mut *g;
            let live = &state.live;
            state.heap.retain(|e| live.contains(&e.0.2));
        }
    }

    /// How many deadlines are queued (for the tests).
    pub(crate) fn queued(&self) -> usize {
        lock(&self.state).heap.len()
    }

    fn stop(&self) {
        lock(&self.state).stop = true;
        self.cv.notify_one();
    }

    fn run(&self, shared: &Shared) {
        let mut g = lock(&self.state);
        loop {
            if g.stop {
                return;
            }
            let now = Instant::now();
            match g.heap.peek() {
                Some(e) if e.0.0 <= now => {
                    let std::cmp::Reverse((_, object, waiter)) = g.heap.pop().expect("peeked");
                    if !g.live.remove(&waiter) {
                        // Answered already.
                        continue;
                    }
                    drop(g);
                    if let Some(entry) = shared.entry(object) {
                        let mut obj = lock(&entry.object);
                        if let Err(p) =
                            catch_unwind(AssertUnwindSafe(|| obj.expire(WaiterId(waiter))))
                        {
                            flotilla_core::event!(
                                flotilla_core::log::Level::ERROR,
                                panic = flotilla_core::panic_message(&*p),
                                "manager: expire panicked"
                            );
                        }
                    }
                    g = lock(&self.state);
                }
                Some(e) => {
                    let wait = e.0.0 - now;
                    g = self
                        .cv
                        .wait_timeout(g, wait)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
                None => g = self.cv.wait(g).unwrap_or_else(PoisonError::into_inner),
            }
        }
    }
}

impl Stream {
    fn shutdown_read(&self) {
        let _ = match self {
            Stream::Unix(s) => s.shutdown(std::net::Shutdown::Read),
            Stream::Tcp(s) => s.shutdown(std::net::Shutdown::Read),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.socket().shutdown(std::net::Shutdown::Read),
        };
    }
}

/// One connection: handshake, then requests until end of file or a malformed message.
fn serve_connection(shared: &Arc<Shared>, mut stream: Stream) {
    let client = ClientId(shared.next_client.fetch_add(1, Ordering::Relaxed));
    if let Err(e) = stream
        .set_read_timeout(Some(shared.frame_timeout))
        .and_then(|()| stream.set_write_timeout(Some(shared.frame_timeout)))
    {
        flotilla_core::event!(flotilla_core::log::Level::WARN, error = %e, "manager: could not set socket timeouts");
        return;
    }
    // Registered before the handshake, so a stopping server can cut a slow one short.
    let Ok(registered) = stream.try_clone() else {
        return;
    };
    lock(&shared.conns).insert(client, registered);
    let _unregister = Unregister { shared, client };
    if shared.stopping.load(Ordering::SeqCst) {
        return;
    }
    // One deadline for the whole handshake of the connection: TLS's and the authkey's.
    let deadline = flotilla_core::Deadline::after(Some(shared.frame_timeout));
    #[cfg(feature = "tls")]
    if let (Some(tls), Stream::Tcp(tcp)) = (&shared.tls, &stream) {
        // The TLS handshake, on the connection's thread, so a slow one holds up no
        // other.
        let tcp = match tcp.try_clone() {
            Ok(tcp) => tcp,
            Err(e) => {
                flotilla_core::event!(flotilla_core::log::Level::WARN, error = %e, "manager: could not set up TLS for a connection; closing it");
                return;
            }
        };
        stream = match crate::tls::TlsStream::server(tcp, tls, deadline) {
            Ok(s) => Stream::Tls(s),
            Err(e) => {
                if !shared.stopping.load(Ordering::SeqCst) {
                    flotilla_core::event!(flotilla_core::log::Level::WARN, error = %e, "manager: a client failed the TLS handshake; closing it");
                }
                return;
            }
        };
    }
    if let Some(key) = &shared.authkey
        && let Err(e) = auth::server_handshake(&mut stream, key, deadline, shared.frame_timeout)
    {
        if !shared.stopping.load(Ordering::SeqCst) {
            flotilla_core::event!(flotilla_core::log::Level::WARN, error = %e, "manager: a client failed the handshake; closing it");
        }
        return;
    }
    let (tx, rx) = channel::<Response>();
    let out = match stream.try_clone() {
        Ok(w) => Arc::new(Mutex::new(BufWriter::with_capacity(64 * 1024, w))),
        Err(e) => {
            flotilla_core::event!(flotilla_core::log::Level::ERROR, error = %e, "manager: no writer for a connection; closing it");
            return;
        }
    };
    let writer = {
        let out = Arc::clone(&out);
        thread::Builder::new()
            .name("manager-writer".into())
            .spawn(move || write_replies(&out, rx))
    };
    let writer = match writer {
        Ok(w) => w,
        Err(e) => {
            flotilla_core::event!(flotilla_core::log::Level::ERROR, error = %e, "manager: no writer for a connection; closing it");
            return;
        }
    };
    let mut conn = Conn {
        shared,
        client,
        refs: HashMap::new(),
        tx,
        out,
        encoded: Vec::new(),
        write_failed: false,
    };
    let mut reader = BufReader::with_capacity(64 * 1024, stream);
    loop {
        reader.get_ref().poll_briefly(reader.buffer());
        let frame = match wire::read_frame(
            &mut reader,
            shared.max_frame,
            Idle::Forever,
            shared.frame_timeout,
        ) {
            Ok(f) => f,
            Err(FrameError::Closed) => break,
            Err(e) => {
                flotilla_core::event!(flotilla_core::log::Level::WARN, error = %e, "manager: closing a connection after a bad frame");
                break;
            }
        };
        let request: Request = match codec::decode_with_limit(&frame, shared.max_frame) {
            Ok(r) => r,
            Err(e) => {
                flotilla_core::event!(flotilla_core::log::Level::WARN, error = %e, "manager: closing a connection after a malformed message");
                break;
            }
        };
        let stop = conn.handle(request);
        // Replies go out in one write once no whole request is waiting already: a
        // pipelining client's burst is answered in a burst.
        if stop || !wire::holds_whole_frame(reader.buffer()) {
            conn.flush();
        }
        if stop || conn.write_failed {
            break;
        }
    }
    conn.release_all();
    // The writer sends what is queued, then ends at this mark, even while an object
    // still keeps a waiter of this connection (a user type that never drops it): its
    // reply could not reach anyone now.
    let _ = conn.tx.send(END_OF_REPLIES);
    drop(conn);
    let _ = writer.join();
    reader.get_ref().shutdown();
}

/// Takes a connection off the server's list when its thread ends, however it ends.
struct Unregister<'a> {
    shared: &'a Shared,
    client: ClientId,
}

impl Drop for Unregister<'_> {
    fn drop(&mut self) {
        lock(&self.shared.conns).remove(&self.client);
    }
}

/// Writes the replies answered by other threads (a parked call answered by another
/// client's call, or expired), several per write when they queue up. The connection's own
/// reader writes its immediate replies itself, into the same buffer.
fn write_replies(out: &Mutex<BufWriter<Stream>>, rx: Receiver<Response>) {
    let mut buf = Vec::new();
    while let Ok(first) = rx.recv() {
        let mut out = lock(out);
        let mut next = Some(first);
        while let Some(resp) = next {
            if resp.id == END_OF_REPLIES.id {
                let _ = out.flush();
                return;
            }
            if !encode_response(&mut buf, &resp) {
                return;
            }
            if let Err(e) = wire::write_frame_unflushed(&mut *out, &buf) {
                let stream = out.get_ref().try_clone();
                drop(out);
                return cut_off(stream.ok().as_ref(), rx, &e);
            }
            next = rx.try_recv().ok();
        }
        if let Err(e) = out.flush() {
            let stream = out.get_ref().try_clone();
            drop(out);
            return cut_off(stream.ok().as_ref(), rx, &e);
        }
    }
}

/// The writer thread's last message: id 0, which no reply has (it means "no reply").
const END_OF_REPLIES: Response = Response {
    id: 0,
    result: Ok(Vec::new()),
};

/// Encodes `resp` into `buf` (an error reply when its value cannot be); false when not
/// even that encodes.
fn encode_response(buf: &mut Vec<u8>, resp: &Response) -> bool {
    buf.clear();
    if let Err(e) = codec::encode_into(buf, resp) {
        flotilla_core::event!(flotilla_core::log::Level::ERROR, error = %e, "manager: a reply could not be encoded");
        let fallback = Response {
            id: resp.id,
            result: Err(RemoteError::new(RemoteErrorKind::ValueError, e.to_string())),
        };
        buf.clear();
        return codec::encode_into(buf, &fallback).is_ok();
    }
    true
}

/// A client that does not take its replies (for the frame timeout) or whose socket failed:
/// close the connection, so its reader stops taking requests and releases its references,
/// and drop the replies still coming.
fn cut_off(stream: Option<&Stream>, rx: Receiver<Response>, error: &std::io::Error) {
    flotilla_core::event!(flotilla_core::log::Level::WARN, error = %error, "manager: a client stopped taking its replies; closing it");
    if let Some(stream) = stream {
        stream.shutdown();
    }
    for _ in rx {}
}

/// A connection's state, owned by its reader thread.
struct Conn<'a> {
    shared: &'a Arc<Shared>,
    client: ClientId,
    /// This connection's references: object id → count.
    refs: HashMap<ObjectId, u64>,
    tx: std::sync::mpsc::Sender<Response>,
    /// The connection's buffered writer, shared with its writer thread.
    out: Arc<Mutex<BufWriter<Stream>>>,
    /// A reusable buffer for encoding replies.
    encoded: Vec<u8>,
    /// A write failed: the connection is closing.
    write_failed: bool,
}

impl Conn<'_> {
    /// Answers request `id` from this (the reader) thread, into the buffer; sent at the
    /// next [`flush`](Self::flush). Request id 0 asks for no reply.
    fn reply(&mut self, id: u64, result: Result<Vec<u8>, RemoteError>) {
        if id == 0 || self.write_failed {
            return;
        }
        let resp = Response { id, result };
        if !encode_response(&mut self.encoded, &resp) {
            return;
        }
        if let Err(e) = wire::write_frame_unflushed(&mut *lock(&self.out), &self.encoded) {
            flotilla_core::event!(flotilla_core::log::Level::WARN, error = %e, "manager: a client stopped taking its replies; closing it");
            self.write_failed = true;
        }
    }

    /// Sends the buffered replies.
    fn flush(&mut self) {
        if !self.write_failed
            && let Err(e) = lock(&self.out).flush()
        {
            flotilla_core::event!(flotilla_core::log::Level::WARN, error = %e, "manager: a client stopped taking its replies; closing it");
            self.write_failed = true;
        }
    }

    fn responder(&self, id: u64) -> Responder {
        Responder {
            request: id,
            tx: Some(self.tx.clone()),
        }
    }

    /// Handles one request; true when the server should stop after it.
    fn handle(&mut self, request: Request) -> bool {
        let Request { id, op } = request;
        let mut stop = false;
        let result = match op {
            Op::Ping => encode_reply(&()),
            Op::NumberOfObjects => encode_reply(&(lock(&self.shared.table).objects.len() as u64)),
            Op::Shutdown => {
                stop = true;
                encode_reply(&())
            }
            Op::Create { typeid, args } => self.create(&typeid, &args),
            Op::Release { object } => self.release(object),
            Op::Share { object } => self.share(object),
            Op::Claim { ticket } => self.claim(ticket),
            Op::Lookup { name } => self.lookup(&name),
            Op::Call {
                object,
                method,
                args,
                timeout,
                refs,
            } => {
                self.call(id, object, &method, &args, timeout, &refs);
                return false;
            }
        };
        self.reply(id, result);
        if stop {
            flotilla_core::event!(
                flotilla_core::log::Level::DEBUG,
                "manager: shutdown requested"
            );
            self.shared.request_stop();
        }
        stop
    }

    fn no_such_object(object: ObjectId) -> RemoteError {
        RemoteError::new(
            RemoteErrorKind::NoSuchObject,
            format!("this connection holds no object {object}"),
        )
    }

    fn create(&mut self, typeid: &str, args: &[u8]) -> Result<Vec<u8>, RemoteError> {
        let Some(ctor) = self.shared.registry.get(typeid) else {
            return Err(RemoteError::new(
                RemoteErrorKind::NoSuchType,
                format!("no type `{typeid}` is registered on this server"),
            ));
        };
        let object = catch_unwind(AssertUnwindSafe(|| ctor(args))).map_err(|p| {
            RemoteError::new(RemoteErrorKind::Panicked, flotilla_core::panic_message(&*p))
        })??;
        let id = lock(&self.shared.table).insert(typeid.to_owned(), object);
        self.refs.insert(id, 1);
        encode_reply(&id)
    }

    fn lookup(&mut self, name: &str) -> Result<Vec<u8>, RemoteError> {
        let (object, typeid) = {
            let mut table = lock(&self.shared.table);
            let found = table
                .named
                .get(name)
                .and_then(|id| Some((*id, table.typeid(*id)?)));
            let Some((object, typeid)) = found else {
                return Err(RemoteError::new(
                    RemoteErrorKind::NoSuchName,
                    format!("no object is registered as `{name}` on this server"),
                ));
            };
            if !self.refs.contains_key(&object) {
                table.add_holder(object);
            }
            (object, typeid)
        };
        *self.refs.entry(object).or_insert(0) += 1;
        encode_reply(&(object, typeid))
    }

    fn release(&mut self, object: ObjectId) -> Result<Vec<u8>, RemoteError> {
        let Some(n) = self.refs.get_mut(&object) else {
            return Err(Self::no_such_object(object));
        };
        *n -= 1;
        if *n == 0 {
            self.refs.remove(&object);
            self.let_go(object);
        }
        encode_reply(&())
    }

    /// This connection holds no more references to `object`.
    fn let_go(&self, object: ObjectId) {
        if let Some(entry) = self.shared.entry(object) {
            let mut obj = lock(&entry.object);
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| obj.client_gone(self.client))) {
                flotilla_core::event!(
                    flotilla_core::log::Level::ERROR,
                    panic = flotilla_core::panic_message(&*p),
                    "manager: client_gone panicked"
                );
            }
        }
        self.shared.drop_holder(object);
    }

    fn release_all(&mut self) {
        for object in std::mem::take(&mut self.refs).into_keys() {
            self.let_go(object);
        }
    }

    fn share(&mut self, object: ObjectId) -> Result<Vec<u8>, RemoteError> {
        if !self.refs.contains_key(&object) {
            return Err(Self::no_such_object(object));
        }
        let mut ticket: Ticket = [0; 16];
        getrandom::fill(&mut ticket).map_err(|e| {
            RemoteError::new(RemoteErrorKind::RuntimeError, format!("no randomness: {e}"))
        })?;
        let mut table = lock(&self.shared.table);
        table
            .tickets
            .insert(ticket, TicketEntry { object, stored: 0 });
        table.add_holder(object);
        encode_reply(&ticket)
    }

    fn claim(&mut self, ticket: Ticket) -> Result<Vec<u8>, RemoteError> {
        let (object, typeid) = {
            let mut table = lock(&self.shared.table);
            let Some(entry) = table.tickets.get(&ticket) else {
                return Err(RemoteError::new(
                    RemoteErrorKind::BadTicket,
                    "no such ticket: it was claimed already, or never made by this server",
                ));
            };
            let (object, stored) = (entry.object, entry.stored);
            let typeid = table.typeid(object).unwrap_or_default();
            if stored > 0 {
                // A proxy stored in a value: the ticket stays (with its hold) for the
                // value's next reader, and this connection gets a reference of its own.
                if !self.refs.contains_key(&object) {
                    table.add_holder(object);
                }
            } else if self.refs.contains_key(&object) {
                table.tickets.remove(&ticket);
                // This connection is a holder already (so the count stays above zero):
                // the ticket's hold goes.
                if let Some(slot) = table.objects.get_mut(&object) {
                    slot.holders -= 1;
                }
            } else {
                table.tickets.remove(&ticket);
            }
            (object, typeid)
        };
        *self.refs.entry(object).or_insert(0) += 1;
        encode_reply(&(object, typeid))
    }

    fn call(
        &mut self,
        id: u64,
        object: ObjectId,
        method: &str,
        args: &[u8],
        timeout: Option<Duration>,
        refs: &[Ticket],
    ) {
        let responder = self.responder(id);
        let entry = if self.refs.contains_key(&object) {
            self.shared.entry(object)
        } else {
            None
        };
        let Some(entry) = entry else {
            responder.disarm();
            return self.reply(id, Err(Self::no_such_object(object)));
        };
        let now = Instant::now();
        // An absurd timeout is "no deadline" rather than an overflow.
        let deadline = timeout.and_then(|t| now.checked_add(t));
        let mut call = Call {
            method,
            args,
            client: self.client,
            object,
            deadline,
            responder: Some(responder),
            timers: &self.shared.timers,
            refs,
            shared: self.shared,
        };
        let outcome = {
            let mut obj = lock(&entry.object);
            catch_unwind(AssertUnwindSafe(|| obj.call(&mut call)))
        };
        let responder = call.responder.take();
        match (outcome, responder) {
            (Ok(Reply::Now(result)), Some(r)) => {
                r.disarm();
                self.reply(id, result);
            }
            (Ok(Reply::Parked), None) => {}
            (Err(p), Some(r)) => {
                let text = flotilla_core::panic_message(&*p);
                flotilla_core::event!(flotilla_core::log::Level::ERROR, method, panic = %text, "manager: a method panicked");
                r.send(Err(RemoteError::new(
                    RemoteErrorKind::Panicked,
                    format!("`{method}` panicked: {text}"),
                )));
            }
            (Err(p), None) => {
                flotilla_core::event!(
                    flotilla_core::log::Level::ERROR,
                    method,
                    panic = flotilla_core::panic_message(&*p),
                    "manager: a method panicked after parking"
                );
            }
            (Ok(Reply::Parked), Some(r)) => r.send(Err(RemoteError::new(
                RemoteErrorKind::RuntimeError,
                format!("`{method}` said it parked but kept no waiter"),
            ))),
            (Ok(Reply::Now(_)), None) => {
                flotilla_core::event!(
                    flotilla_core::log::Level::ERROR,
                    method,
                    "manager: a method parked a waiter and also answered"
                );
            }
        }
    }
}

#[doc(hidden)]
/// Decodes `bytes` as the server decodes a request frame's payload (for the fuzz test).
pub fn decode_request_for_tests(bytes: &[u8]) -> Result<(), String> {
    codec::decode_with_limit::<Request>(bytes, DEFAULT_MAX_FRAME)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

impl RunningServer {
    #[doc(hidden)]
    /// How many waiter deadlines the timer thread has queued (for flotilla's tests).
    pub fn queued_deadlines(&self) -> usize {
        self.shared.timers.queued()
    }

    /// Waits until the server has stopped (after a client's shutdown request), up to
    /// `timeout`; true if it has.
    pub fn wait_stopped(&self, timeout: Duration) -> bool {
        let (done, cv) = &self.shared.stopped;
        let g = lock(done);
        let (g, _) = cv
            .wait_timeout_while(g, timeout, |d| !*d)
            .unwrap_or_else(PoisonError::into_inner);
        *g
    }
}
