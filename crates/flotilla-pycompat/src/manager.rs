//! A Rust client of a Python `BaseManager` / `SyncManager` server: create objects by
//! typeid, call their methods through a [`Proxy`], release them when it drops.
//!
//! The protocol is CPython's (`multiprocessing/managers.py`): every request is a pickled
//! `(ident, methodname, args, kwds)` tuple; the server answers `('#RETURN', value)`,
//! `('#ERROR', exception)`, `('#PROXY', (exposed, Token))`, or `('#TRACEBACK', text)`.
//! Server calls (`create`, `decref`, `number_of_objects`, `dummy`) each use a connection
//! of their own, as Python's `dispatch` does; a proxy's method calls go over one
//! long-lived channel opened with `accept_connection`.
//!
//! References: `create` gives the caller one reference, which the [`Proxy`] holds and
//! gives back with `decref` when it drops.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use flotilla_manager::Address;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_pickle::Value;

use crate::connection::{Client, ConnectError, Connection, Options, RecvError, SendError};
use crate::pickle::{self, PickleError, PyObject, PyValue, UnpickleError};

/// A Python exception raised by a method on the server (`#ERROR`), with its class and
/// arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct PythonException {
    /// The class's module, canonical (`queue`, not `_queue`).
    pub module: String,
    /// The class's name, such as `KeyError`.
    pub name: String,
    /// The exception's `args`.
    pub args: Vec<PyValue>,
}

impl PythonException {
    /// Whether it is of class `qualified` (`"queue.Empty"`, `"KeyError"` for a builtin).
    pub fn is(&self, qualified: &str) -> bool {
        match qualified.rsplit_once('.') {
            Some((module, name)) => self.module == module && self.name == name,
            None => self.module == "builtins" && self.name == qualified,
        }
    }

    /// The first argument as text, if it is a `str` (most exceptions' message).
    pub fn message(&self) -> Option<&str> {
        self.args.first().and_then(PyValue::as_str)
    }
}

impl std::fmt::Display for PythonException {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}{:?}", self.module, self.name, self.args)
    }
}

/// Why a call to a Python manager failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// The method raised this exception on the server.
    #[error("the Python method raised {0}")]
    Exception(PythonException),
    /// The method raised an exception of a class outside the allow-list: its name is
    /// known, its arguments were not read (reading them could run code).
    #[error("the Python method raised {module}.{name} (a class outside the allow-list)")]
    UnknownException {
        /// The class's module.
        module: String,
        /// The class's name.
        name: String,
    },
    /// The server could not run the request (`#TRACEBACK`, `#UNSERIALIZABLE`): an
    /// unknown object or method, a result it could not pickle. Python's `RemoteError`.
    #[error("the manager reported an error:\n{0}")]
    Remote(String),
    /// The manager could not be reached or the handshake failed.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The request could not be sent.
    #[error("sending the request failed: {0}")]
    Send(#[from] SendError),
    /// The reply did not come (in time), or was refused.
    #[error("receiving the reply failed: {0}")]
    Recv(#[from] RecvError),
    /// The arguments could not be pickled.
    #[error(transparent)]
    Pickle(#[from] PickleError),
    /// The reply's value does not fit the type asked for.
    #[error(transparent)]
    Unpickle(#[from] UnpickleError),
    /// The reply is not one the protocol allows.
    #[error("protocol error: {0}")]
    Protocol(String),
}

impl CallError {
    /// The Python exception, if the method raised one (allow-listed or not), as
    /// `module.name`.
    pub fn exception_class(&self) -> Option<String> {
        match self {
            CallError::Exception(e) => Some(format!("{}.{}", e.module, e.name)),
            CallError::UnknownException { module, name } => Some(format!("{module}.{name}")),
            _ => None,
        }
    }
}

/// A reply, decoded: its kind and value.
enum Reply {
    Return(PyValue),
    Proxy(PyValue),
}

/// Reads a reply frame's pickle into a [`Reply`] or the error it carries.
fn decode_reply(bytes: &[u8]) -> Result<Reply, CallError> {
    let value = match pickle::decode(bytes) {
        Ok(v) => v,
        // An exception of a class off the allow-list: say which, read nothing of it.
        // The reply's kind is the first thing pickled (after at most PROTO, FRAME, MARK
        // and the string's own header), so it sits in the first bytes.
        Err(UnpickleError::Refused { module, name })
            if bytes[..bytes.len().min(32)]
                .windows(6)
                .any(|w| w == b"#ERROR") =>
        {
            return Err(CallError::UnknownException { module, name });
        }
        Err(e) => return Err(e.into()),
    };
    let PyValue::Tuple(mut parts) = value else {
        return Err(CallError::Protocol("a reply that is not a tuple".into()));
    };
    if parts.len() != 2 {
        return Err(CallError::Protocol(format!(
            "a reply of {} items",
            parts.len()
        )));
    }
    let payload = parts.pop().expect("two items");
    let kind = parts.pop().expect("two items");
    match kind.as_str() {
        Some("#RETURN") => Ok(Reply::Return(payload)),
        Some("#PROXY") => Ok(Reply::Proxy(payload)),
        Some("#ERROR") => match payload {
            PyValue::Object(PyObject { class, args, .. }) => {
                Err(CallError::Exception(PythonException {
                    module: class.module.to_owned(),
                    name: class.name.to_owned(),
                    args,
                }))
            }
            other => Err(CallError::Protocol(format!("#ERROR carrying {other:?}"))),
        },
        Some("#TRACEBACK") | Some("#UNSERIALIZABLE") => Err(CallError::Remote(
            payload.as_str().unwrap_or("(no text)").to_owned(),
        )),
        _ => Err(CallError::Protocol(format!("unknown reply kind {kind:?}"))),
    }
}

/// Turns serde arguments (a tuple, a `Vec`, `()`) into a Python tuple.
fn args_tuple<A: Serialize + ?Sized>(args: &A) -> Result<Vec<Value>, CallError> {
    match pickle::to_serde_value(args)? {
        Value::Tuple(v) | Value::List(v) => Ok(v),
        Value::None => Ok(Vec::new()),
        other => Ok(vec![other]),
    }
}

fn request(ident: Option<&str>, method: &str, args: Vec<Value>) -> Value {
    Value::Tuple(vec![
        ident.map_or(Value::None, |i| Value::String(i.to_owned())),
        Value::String(method.to_owned()),
        Value::Tuple(args),
        Value::Dict(Default::default()),
    ])
}

/// Sends one request and reads its reply, waiting at most `timeout`.
fn exchange(
    conn: &mut Connection,
    req: &Value,
    timeout: Option<Duration>,
) -> Result<Reply, CallError> {
    conn.send_value(req)?;
    let bytes = conn.recv_bytes_timeout(timeout.unwrap_or(Duration::MAX))?;
    decode_reply(&bytes)
}

/// A client of a Python manager server: Python's `BaseManager(address, authkey).connect()`.
///
/// ```no_run
/// use std::time::Duration;
/// use flotilla_pycompat::{ManagerClient, Options};
///
/// // Python: QueueManager.register('get_queue', callable=lambda: q);
/// //         QueueManager(address=('127.0.0.1', 50000), authkey=b'abc').get_server().serve_forever()
/// let manager = ManagerClient::connect(
///     &"127.0.0.1:50000".parse().unwrap(),
///     Options::new().authkey(b"abc"),
/// )
/// .unwrap();
/// let queue = manager.queue("get_queue", &()).unwrap();
/// queue.put(&"from Rust").unwrap();
/// let item: String = queue.get_timeout(Duration::from_secs(1)).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct ManagerClient {
    address: Address,
    client: Client,
    options: Options,
}

impl ManagerClient {
    /// Connects to the manager at `address` and checks it answers (Python's
    /// `manager.connect()`: a handshake and a `dummy` call).
    pub fn connect(address: &Address, options: Options) -> Result<Self, CallError> {
        let manager = ManagerClient {
            address: address.clone(),
            client: Client::new(options.clone()),
            options,
        };
        manager.dispatch("dummy", Vec::new())?;
        Ok(manager)
    }

    /// The manager's address.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// One server call on a connection of its own.
    fn dispatch(&self, method: &str, args: Vec<Value>) -> Result<PyValue, CallError> {
        let mut conn = self.client.connect(&self.address)?;
        match exchange(
            &mut conn,
            &request(None, method, args),
            Some(self.options.get_timeout()),
        )? {
            Reply::Return(v) => Ok(v),
            Reply::Proxy(_) => Err(CallError::Protocol(format!("{method} answered #PROXY"))),
        }
    }

    /// Creates (or, for a callable returning a shared object, gets) an object of the
    /// registered `typeid` with these arguments, and a proxy to it: Python's
    /// `manager.get_queue()` for `register('get_queue', ...)`.
    pub fn create<A: Serialize + ?Sized>(
        &self,
        typeid: &str,
        args: &A,
    ) -> Result<Proxy, CallError> {
        let mut all = vec![Value::String(typeid.to_owned())];
        all.extend(args_tuple(args)?);
        let reply = self.dispatch("create", all)?;
        let (ident, exposed): (String, Option<Vec<String>>) = pickle::from_value(reply)?;
        Ok(Proxy::new(
            self.clone(),
            typeid.to_owned(),
            ident,
            exposed.unwrap_or_default(),
        ))
    }

    /// [`create`](Self::create), as a queue.
    pub fn queue<A: Serialize + ?Sized>(
        &self,
        typeid: &str,
        args: &A,
    ) -> Result<QueueProxy, CallError> {
        self.create(typeid, args).map(QueueProxy)
    }

    /// [`create`](Self::create), as a dict.
    pub fn dict<A: Serialize + ?Sized>(
        &self,
        typeid: &str,
        args: &A,
    ) -> Result<DictProxy, CallError> {
        self.create(typeid, args).map(DictProxy)
    }

    /// How many objects the server holds (Python's `manager._number_of_objects()`).
    pub fn number_of_objects(&self) -> Result<usize, CallError> {
        Ok(pickle::from_value(
            self.dispatch("number_of_objects", Vec::new())?,
        )?)
    }

    /// Asks the server to stop (Python's `manager.shutdown()` for a server it started).
    pub fn shutdown(&self) -> Result<(), CallError> {
        self.dispatch("shutdown", Vec::new()).map(drop)
    }
}

/// A reference to an object in a Python manager, and the channel its calls go over.
/// Dropping it releases the reference (`decref`).
#[derive(Debug)]
pub struct Proxy {
    manager: ManagerClient,
    typeid: String,
    ident: String,
    exposed: Vec<String>,
    /// The method channel, opened on first use; dropped after a call that failed half-way.
    channel: Mutex<Option<Connection>>,
}

impl Proxy {
    fn new(manager: ManagerClient, typeid: String, ident: String, exposed: Vec<String>) -> Self {
        Proxy {
            manager,
            typeid,
            ident,
            exposed,
            channel: Mutex::new(None),
        }
    }

    /// The typeid it was created with.
    pub fn typeid(&self) -> &str {
        &self.typeid
    }

    /// The object's id on the server.
    pub fn ident(&self) -> &str {
        &self.ident
    }

    /// The methods the server lets callers use.
    pub fn exposed(&self) -> &[String] {
        &self.exposed
    }

    /// Calls `method` with `args` (a tuple such as `(1, "a")`, or `()`), waiting at most
    /// the [`Options::timeout`], and reads the result into `R`: Python's
    /// `proxy._callmethod(method, args)`.
    pub fn call<R: DeserializeOwned, A: Serialize + ?Sized>(
        &self,
        method: &str,
        args: &A,
    ) -> Result<R, CallError> {
        let timeout = self.manager.options.get_timeout();
        let value = self.call_value_timeout(method, args_tuple(args)?, timeout)?;
        Ok(pickle::from_value(value)?)
    }

    /// Calls `method`, waiting as long as it takes for the reply, and returns the
    /// result as a [`PyValue`].
    pub fn call_value(&self, method: &str, args: Vec<Value>) -> Result<PyValue, CallError> {
        self.call_value_within(method, args, None)
    }

    /// Like [`call_value`](Self::call_value), waiting at most `timeout` for the reply.
    pub fn call_value_timeout(
        &self,
        method: &str,
        args: Vec<Value>,
        timeout: Duration,
    ) -> Result<PyValue, CallError> {
        self.call_value_within(method, args, Some(timeout))
    }

    fn call_value_within(
        &self,
        method: &str,
        args: Vec<Value>,
        timeout: Option<Duration>,
    ) -> Result<PyValue, CallError> {
        match self.exchange(method, args, timeout)? {
            Reply::Return(v) => Ok(v),
            Reply::Proxy(_) => Err(CallError::Protocol(format!(
                "{method} returns a proxy: use call_proxy"
            ))),
        }
    }

    /// Calls a method whose result the server shares as a new object (`#PROXY`, such
    /// as a dict's `__iter__`), and returns a proxy to it.
    pub fn call_proxy<A: Serialize + ?Sized>(
        &self,
        method: &str,
        args: &A,
    ) -> Result<Proxy, CallError> {
        let timeout = self.manager.options.get_timeout();
        match self.exchange(method, args_tuple(args)?, Some(timeout))? {
            Reply::Proxy(PyValue::Tuple(parts)) => {
                let [exposed, PyValue::Object(token)] = <[PyValue; 2]>::try_from(parts)
                    .map_err(|_| CallError::Protocol("a #PROXY reply of the wrong shape".into()))?
                else {
                    return Err(CallError::Protocol("a #PROXY reply without a Token".into()));
                };
                let exposed: Option<Vec<String>> = pickle::from_value(exposed)?;
                let state = token.state.map(|s| *s).unwrap_or(PyValue::None);
                let (typeid, _address, ident): (String, serde::de::IgnoredAny, String) =
                    pickle::from_value(state)?;
                Ok(Proxy::new(
                    self.manager.clone(),
                    typeid,
                    ident,
                    exposed.unwrap_or_default(),
                ))
            }
            Reply::Proxy(_) => Err(CallError::Protocol(
                "a #PROXY reply of the wrong shape".into(),
            )),
            Reply::Return(_) => Err(CallError::Protocol(format!(
                "{method} did not return a proxy"
            ))),
        }
    }

    fn exchange(
        &self,
        method: &str,
        args: Vec<Value>,
        timeout: Option<Duration>,
    ) -> Result<Reply, CallError> {
        let mut channel = self.channel.lock().unwrap_or_else(PoisonError::into_inner);
        if channel.is_none() {
            let mut conn = self.manager.client.connect(&self.manager.address)?;
            let name = Value::String(format!("flotilla-pycompat-{}", std::process::id()));
            match exchange(
                &mut conn,
                &request(None, "accept_connection", vec![name]),
                Some(self.manager.options.get_timeout()),
            )? {
                Reply::Return(_) => {}
                Reply::Proxy(_) => {
                    return Err(CallError::Protocol(
                        "accept_connection answered #PROXY".into(),
                    ));
                }
            }
            *channel = Some(conn);
        }
        let conn = channel.as_mut().expect("opened above");
        let res = exchange(conn, &request(Some(&self.ident), method, args), timeout);
        if matches!(res, Err(CallError::Send(_) | CallError::Recv(_))) {
            // The reply may still come: this channel is out of step, so the next call
            // opens another.
            *channel = None;
        }
        res
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // Close the channel first, so the server's thread for it ends.
        drop(self.channel.get_mut().map(Option::take));
        let ident = Value::String(self.ident.clone());
        if let Err(e) = self.manager.dispatch("decref", vec![ident]) {
            flotilla_core::event!(
                flotilla_core::log::Level::DEBUG,
                "decref of Python manager object {} failed: {e}",
                self.ident
            );
        }
    }
}

/// A proxy to a Python `queue.Queue` (a `SyncManager`'s `Queue()` or a registered
/// queue): `put`, `get` with a timeout, `qsize`.
#[derive(Debug)]
pub struct QueueProxy(pub Proxy);

impl QueueProxy {
    /// Puts `item` (Python's `q.put(item)`).
    pub fn put<T: Serialize + ?Sized>(&self, item: &T) -> Result<(), CallError> {
        let item = pickle::to_serde_value(item)?;
        let timeout = self.0.manager.options.get_timeout();
        self.0
            .call_value_timeout("put", vec![item], timeout)
            .map(drop)
    }

    /// Takes an item, waiting as long as it takes: Python's `q.get()`.
    pub fn get<T: DeserializeOwned>(&self) -> Result<T, CallError> {
        self.get_within(None)
    }

    /// Takes an item, waiting at most `timeout` on the server: Python's
    /// `q.get(True, timeout)`. An empty queue at the deadline is
    /// [`CallError::Exception`] of class `queue.Empty`.
    pub fn get_timeout<T: DeserializeOwned>(&self, timeout: Duration) -> Result<T, CallError> {
        self.get_within(Some(timeout))
    }

    fn get_within<T: DeserializeOwned>(&self, timeout: Option<Duration>) -> Result<T, CallError> {
        let seconds = timeout.map_or(Value::None, |t| Value::F64(t.as_secs_f64()));
        // The reply comes after the server's wait, plus the time a call may take.
        let wait = timeout.map(|t| t + self.0.manager.options.get_timeout());
        let value = self
            .0
            .call_value_within("get", vec![Value::Bool(true), seconds], wait)?;
        Ok(pickle::from_value(value)?)
    }

    /// The approximate number of items (Python's `q.qsize()`).
    pub fn qsize(&self) -> Result<usize, CallError> {
        self.0.call("qsize", &())
    }
}

/// A proxy to a Python `dict` (a `SyncManager`'s `dict()` or a registered one).
#[derive(Debug)]
pub struct DictProxy(pub Proxy);

impl DictProxy {
    /// The value at `key`, or `None` (Python's `d.get(key)`).
    pub fn get<K: Serialize + ?Sized, V: DeserializeOwned>(
        &self,
        key: &K,
    ) -> Result<Option<V>, CallError> {
        let key = pickle::to_serde_value(key)?;
        let timeout = self.0.manager.options.get_timeout();
        let value = self.0.call_value_timeout("get", vec![key], timeout)?;
        Ok(pickle::from_value(value)?)
    }

    /// Sets `key` to `value` (Python's `d[key] = value`).
    pub fn set<K: Serialize + ?Sized, V: Serialize + ?Sized>(
        &self,
        key: &K,
        value: &V,
    ) -> Result<(), CallError> {
        let (key, value) = (pickle::to_serde_value(key)?, pickle::to_serde_value(value)?);
        let timeout = self.0.manager.options.get_timeout();
        self.0
            .call_value_timeout("__setitem__", vec![key, value], timeout)
            .map(drop)
    }

    /// The keys (Python's `d.keys()`, which a manager sends as a list).
    pub fn keys<K: DeserializeOwned>(&self) -> Result<Vec<K>, CallError> {
        self.0.call("keys", &())
    }

    /// The number of items (Python's `len(d)`).
    pub fn len(&self) -> Result<usize, CallError> {
        self.0.call("__len__", &())
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> Result<bool, CallError> {
        Ok(self.len()? == 0)
    }
}
