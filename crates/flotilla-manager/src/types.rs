//! The built-in container types of a manager server: `dict`, `list`, `Namespace`, `Lock`,
//! `Queue` and `JoinableQueue` (the synchronization types are in `sync_types.rs`).
//!
//! Keys and values are opaque codec-encoded bytes: the server never decodes user data,
//! except where an operation needs a known shape (`dict.add_int` reads an `i64`). Two keys
//! are the same key when their encodings are equal, which for the usual key types (integers,
//! strings, tuples of them) is equality; for floats it is bitwise (`-0.0` and `0.0`
//! differ).
//!
//! Each type's methods, their arguments and results, are listed in its `call`; the typed
//! proxies in `proxy.rs` are the only callers and spell them out.

use std::collections::{BTreeMap, HashMap, VecDeque};

use flotilla_core::codec;

use crate::object::{Call, ClientId, Reply, SharedObject, Waiter, WaiterId};
use crate::protocol::{RemoteError, RemoteErrorKind};
use crate::server::Stored;

/// Encoded values inside call arguments and replies: one byte string on the wire, not
/// serde's byte-at-a-time `Vec<u8>` (the same wire bytes; see `codec::ByteBuf`).
type Bytes = flotilla_core::codec::ByteBuf;

/// Unwraps decoded arguments or answers the decoding error.
macro_rules! args {
    ($call:expr, $t:ty) => {
        match $call.args::<$t>() {
            Ok(a) => a,
            Err(e) => return Reply::Now(Err(e)),
        }
    };
}
pub(crate) use args;

/// A `dict`: insertion-ordered, as Python's.
#[derive(Debug, Default)]
pub(crate) struct Dict {
    /// Entries in insertion order, by sequence number.
    entries: BTreeMap<u64, (Bytes, Stored)>,
    /// Each key's sequence number.
    index: HashMap<Bytes, u64>,
    next: u64,
}

impl Dict {
    pub(crate) fn create(args: &[u8]) -> Result<Box<dyn SharedObject>, RemoteError> {
        let items: Vec<(Bytes, Bytes)> = decode_ctor("dict", args)?;
        let mut d = Dict::default();
        for (k, v) in items {
            d.insert(k, Stored::plain(v));
        }
        Ok(Box::new(d))
    }

    fn get(&self, key: &[u8]) -> Option<&Stored> {
        self.index.get(key).map(|seq| &self.entries[seq].1)
    }

    /// Stores `value` under `key` (the value it replaces is dropped, with its proxies).
    fn insert(&mut self, key: Bytes, value: Stored) {
        match self.index.get(&key) {
            Some(seq) => {
                if let Some(entry) = self.entries.get_mut(seq) {
                    entry.1 = value;
                }
            }
            None => {
                let seq = self.next;
                self.next += 1;
                self.index.insert(key.clone(), seq);
                self.entries.insert(seq, (key, value));
            }
        }
    }

    fn remove(&mut self, key: &[u8]) -> Option<Stored> {
        let seq = self.index.remove(key)?;
        self.entries.remove(&seq).map(|(_, v)| v)
    }
}

fn key_error() -> Reply {
    Reply::err(RemoteErrorKind::KeyError, "no such key in the dict")
}

impl SharedObject for Dict {
    fn call(&mut self, call: &mut Call<'_>) -> Reply {
        match call.method() {
            "get" => {
                let key = args!(call, Bytes);
                Reply::ok(&self.get(&key))
            }
            "set" => {
                let (key, value) = args!(call, (Bytes, Bytes));
                self.insert(key, call.keep(value));
                Reply::ok(&())
            }
            "del" => {
                let key = args!(call, Bytes);
                match self.remove(&key) {
                    Some(_) => Reply::ok(&()),
                    None => key_error(),
                }
            }
            "pop" => {
                let key = args!(call, Bytes);
                Reply::ok(&self.remove(&key).map(Stored::into_transit))
            }
            "len" => Reply::ok(&(self.index.len() as u64)),
            "contains" => {
                let key = args!(call, Bytes);
                Reply::ok(&self.index.contains_key(&key))
            }
            "keys" => Reply::ok(&self.entries.values().map(|e| &e.0).collect::<Vec<_>>()),
            "values" => Reply::ok(&self.entries.values().map(|e| &e.1).collect::<Vec<_>>()),
            "items" => Reply::ok(&self.entries.values().collect::<Vec<_>>()),
            "clear" => {
                self.entries.clear();
                self.index.clear();
                Reply::ok(&())
            }
            "update" => {
                let items = args!(call, Vec<(Bytes, Bytes)>);
                for (k, v) in items {
                    self.insert(k, call.keep(v));
                }
                Reply::ok(&())
            }
            "setdefault" => {
                let (key, default) = args!(call, (Bytes, Bytes));
                if let Some(v) = self.get(&key) {
                    return Reply::ok(v);
                }
                let reply = Reply::ok(&default);
                self.insert(key, call.keep(default));
                reply
            }
            "compare_and_set" => {
                let (key, expected, new) = args!(call, (Bytes, Option<Bytes>, Option<Bytes>));
                let current = self.get(&key);
                if current.map(|c| &c.bytes[..]) != expected.as_deref().map(|e| &e[..]) {
                    let reply = Reply::ok(&(false, current));
                    // The refused value is thrown away, and with it the proxies serialized
                    // for it (a retrying `update_with` serializes them anew): kept and let
                    // go at once, their tickets go unless a stored value keeps them too.
                    if let Some(v) = new {
                        drop(call.keep(v));
                    }
                    return reply;
                }
                match new {
                    Some(v) => self.insert(key, call.keep(v)),
                    None => {
                        self.remove(&key);
                    }
                }
                Reply::ok(&(true, None::<Bytes>))
            }
            "add_int" => {
                let (key, delta, default) = args!(call, (Bytes, i64, i64));
                let current = match self.get(&key) {
                    None => default,
                    Some(stored) => match codec::decode::<i64>(&stored.bytes) {
                        Ok(n) => n,
                        Err(e) => {
                            return Reply::err(
                                RemoteErrorKind::ValueError,
                                format!("add_int: the stored value is not an i64 ({e})"),
                            );
                        }
                    },
                };
                let Some(sum) = current.checked_add(delta) else {
                    return Reply::err(
                        RemoteErrorKind::ValueError,
                        format!("add_int: {current} + {delta} overflows an i64"),
                    );
                };
                match codec::encode(&sum) {
                    Ok(bytes) => {
                        self.insert(key, Stored::plain(bytes));
                        Reply::ok(&sum)
                    }
                    Err(e) => Reply::err(RemoteErrorKind::ValueError, e.to_string()),
                }
            }
            other => Reply::no_such_method(other),
        }
    }
}

/// A `list`.
#[derive(Debug, Default)]
pub(crate) struct List {
    items: Vec<Stored>,
}

impl List {
    pub(crate) fn create(args: &[u8]) -> Result<Box<dyn SharedObject>, RemoteError> {
        let items: Vec<Bytes> = decode_ctor("list", args)?;
        Ok(Box::new(List {
            items: items.into_iter().map(Stored::plain).collect(),
        }))
    }

    fn index(&self, i: i64) -> Result<usize, Reply> {
        py_index("list", i, self.items.len())
    }
}

/// An item of a sequence: plain bytes (an `Array`'s), or a [`Stored`] value (a `list`'s,
/// which may hold proxies).
pub(crate) trait Item: serde::Serialize {
    /// `bytes` from `call`'s arguments, as an item to store.
    fn from_call(bytes: Bytes, call: &Call<'_>) -> Self;
}

impl Item for Bytes {
    fn from_call(bytes: Bytes, _: &Call<'_>) -> Self {
        bytes
    }
}

impl Item for Stored {
    fn from_call(bytes: Bytes, call: &Call<'_>) -> Self {
        call.keep(bytes)
    }
}

/// The methods a `list` and an `Array` share: `len`, `get`, `set` (Python's index rules)
/// and `to_vec`; any other is `no_such_method`.
pub(crate) fn sequence_call<T: Item>(
    what: &str,
    items: &mut [T],
    method: &str,
    call: &Call<'_>,
) -> Reply {
    match method {
        "len" => Reply::ok(&(items.len() as u64)),
        "get" => {
            let i = args!(call, i64);
            match py_index(what, i, items.len()) {
                Ok(j) => Reply::ok(&items[j]),
                Err(r) => r,
            }
        }
        "set" => {
            let (i, item) = args!(call, (i64, Bytes));
            match py_index(what, i, items.len()) {
                Ok(j) => {
                    items[j] = T::from_call(item, call);
                    Reply::ok(&())
                }
                Err(r) => r,
            }
        }
        "to_vec" => Reply::ok(&items),
        other => Reply::no_such_method(other),
    }
}

/// Index `i` of a sequence of `len` items by Python's rules (negative counts from the
/// end), or the `IndexError` a `what` (`list`, `array`) answers.
pub(crate) fn py_index(what: &str, i: i64, len: usize) -> Result<usize, Reply> {
    let len = len as i64;
    let j = if i < 0 { i + len } else { i };
    if (0..len).contains(&j) {
        Ok(j as usize)
    } else {
        Err(Reply::err(
            RemoteErrorKind::IndexError,
            format!("{what} index {i} out of range (len {len})"),
        ))
    }
}

impl SharedObject for List {
    fn call(&mut self, call: &mut Call<'_>) -> Reply {
        match call.method() {
            "append" => {
                let item = args!(call, Bytes);
                self.items.push(call.keep(item));
                Reply::ok(&(self.items.len() as u64))
            }
            "extend" => {
                let items = args!(call, Vec<Bytes>);
                self.items.extend(items.into_iter().map(|i| call.keep(i)));
                Reply::ok(&(self.items.len() as u64))
            }
            "insert" => {
                let (i, item) = args!(call, (i64, Bytes));
                // Python's insert clamps instead of failing.
                let len = self.items.len() as i64;
                let j = if i < 0 { (i + len).max(0) } else { i.min(len) };
                self.items.insert(j as usize, call.keep(item));
                Reply::ok(&())
            }
            "pop" => {
                let i = args!(call, Option<i64>);
                if self.items.is_empty() {
                    return Reply::err(RemoteErrorKind::IndexError, "pop from empty list");
                }
                match self.index(i.unwrap_or(-1)) {
                    Ok(j) => Reply::ok(&self.items.remove(j).into_transit()),
                    Err(r) => r,
                }
            }
            "clear" => {
                self.items.clear();
                Reply::ok(&())
            }
            "reverse" => {
                self.items.reverse();
                Reply::ok(&())
            }
            other => sequence_call("list", &mut self.items, other, call),
        }
    }
}

/// A `Namespace`: attributes by name.
#[derive(Debug, Default)]
pub(crate) struct Namespace {
    attrs: BTreeMap<String, Stored>,
}

impl Namespace {
    pub(crate) fn create(args: &[u8]) -> Result<Box<dyn SharedObject>, RemoteError> {
        let attrs: Vec<(String, Bytes)> = decode_ctor("Namespace", args)?;
        Ok(Box::new(Namespace {
            attrs: attrs
                .into_iter()
                .map(|(k, v)| (k, Stored::plain(v)))
                .collect(),
        }))
    }
}

impl SharedObject for Namespace {
    fn call(&mut self, call: &mut Call<'_>) -> Reply {
        match call.method() {
            "get" => {
                let name = args!(call, String);
                match self.attrs.get(&name) {
                    Some(v) => Reply::ok(v),
                    None => Reply::err(
                        RemoteErrorKind::AttributeError,
                        format!("'Namespace' object has no attribute '{name}'"),
                    ),
                }
            }
            "set" => {
                let (name, value) = args!(call, (String, Bytes));
                self.attrs.insert(name, call.keep(value));
                Reply::ok(&())
            }
            "del" => {
                let name = args!(call, String);
                match self.attrs.remove(&name) {
                    Some(_) => Reply::ok(&()),
                    None => Reply::err(
                        RemoteErrorKind::AttributeError,
                        format!("'Namespace' object has no attribute '{name}'"),
                    ),
                }
            }
            "names" => Reply::ok(&self.attrs.keys().collect::<Vec<_>>()),
            other => Reply::no_such_method(other),
        }
    }
}

/// A `Lock`: not reentrant, releasable by any client (as Python's `threading.Lock`), and
/// released when the client holding it goes away.
#[derive(Debug, Default)]
pub(crate) struct Lock {
    holder: Option<ClientId>,
    waiters: VecDeque<Waiter>,
}

impl Lock {
    pub(crate) fn create(args: &[u8]) -> Result<Box<dyn SharedObject>, RemoteError> {
        decode_ctor::<()>("Lock", args)?;
        Ok(Box::new(Lock::default()))
    }

    /// Hands the lock to the first waiter, or unlocks it.
    fn release(&mut self) {
        self.holder = None;
        if let Some(w) = self.waiters.pop_front() {
            self.holder = Some(w.client());
            w.reply(&true);
        }
    }
}

impl SharedObject for Lock {
    fn call(&mut self, call: &mut Call<'_>) -> Reply {
        match call.method() {
            "acquire" => {
                if self.holder.is_none() {
                    self.holder = Some(call.client());
                    Reply::ok(&true)
                } else if !call.may_wait() {
                    Reply::ok(&false)
                } else {
                    self.waiters.push_back(call.park());
                    Reply::Parked
                }
            }
            "release" => {
                if self.holder.is_none() {
                    return Reply::err(RemoteErrorKind::RuntimeError, "release unlocked lock");
                }
                self.release();
                Reply::ok(&())
            }
            "locked" => Reply::ok(&self.holder.is_some()),
            other => Reply::no_such_method(other),
        }
    }

    fn expire(&mut self, waiter: WaiterId) {
        if let Some(pos) = self.waiters.iter().position(|w| w.id() == waiter)
            && let Some(w) = self.waiters.remove(pos)
        {
            w.reply(&false);
        }
    }

    fn client_gone(&mut self, client: ClientId) {
        self.waiters.retain(|w| w.client() != client);
        if self.holder == Some(client) {
            flotilla_core::event!(
                flotilla_core::log::Level::DEBUG,
                ?client,
                "releasing a lock held by a client that went away"
            );
            self.release();
        }
    }
}

/// A `Queue`: FIFO, optionally bounded; blocked `get`s and `put`s park on the server.
#[derive(Debug, Default)]
pub(crate) struct Queue {
    items: VecDeque<Bytes>,
    /// 0: unbounded, as Python's `maxsize=0`.
    maxsize: usize,
    getters: VecDeque<Waiter>,
    putters: VecDeque<(Waiter, Bytes)>,
    /// A `JoinableQueue`: `task_done` and `join` are its methods.
    joinable: bool,
    /// Items put and not yet marked done.
    unfinished: u64,
    joiners: Vec<Waiter>,
}

impl Queue {
    pub(crate) fn create(args: &[u8]) -> Result<Box<dyn SharedObject>, RemoteError> {
        let maxsize: u64 = decode_ctor("Queue", args)?;
        Ok(Box::new(Queue {
            maxsize: usize::try_from(maxsize).unwrap_or(usize::MAX),
            ..Queue::default()
        }))
    }

    pub(crate) fn create_joinable(args: &[u8]) -> Result<Box<dyn SharedObject>, RemoteError> {
        let maxsize: u64 = decode_ctor("JoinableQueue", args)?;
        Ok(Box::new(Queue {
            maxsize: usize::try_from(maxsize).unwrap_or(usize::MAX),
            joinable: true,
            ..Queue::default()
        }))
    }

    fn full(&self) -> bool {
        self.maxsize != 0 && self.items.len() >= self.maxsize
    }
}

impl SharedObject for Queue {
    fn call(&mut self, call: &mut Call<'_>) -> Reply {
        match call.method() {
            "put" => {
                let item = args!(call, Bytes);
                if let Some(getter) = self.getters.pop_front() {
                    self.unfinished += 1;
                    getter.reply(&Some(item));
                    Reply::ok(&true)
                } else if !self.full() {
                    self.unfinished += 1;
                    self.items.push_back(item);
                    Reply::ok(&true)
                } else if !call.may_wait() {
                    Reply::ok(&false)
                } else {
                    // Counted as unfinished when it goes in.
                    self.putters.push_back((call.park(), item));
                    Reply::Parked
                }
            }
            "task_done" if self.joinable => {
                if self.unfinished == 0 {
                    return Reply::err(
                        RemoteErrorKind::ValueError,
                        "task_done() called too many times",
                    );
                }
                self.unfinished -= 1;
                if self.unfinished == 0 {
                    for w in self.joiners.drain(..) {
                        w.reply(&true);
                    }
                }
                Reply::ok(&())
            }
            "join" if self.joinable => {
                if self.unfinished == 0 {
                    Reply::ok(&true)
                } else if !call.may_wait() {
                    Reply::ok(&false)
                } else {
                    self.joiners.push(call.park());
                    Reply::Parked
                }
            }
            "unfinished" if self.joinable => Reply::ok(&self.unfinished),
            "get" => {
                if let Some(item) = self.items.pop_front() {
                    if let Some((putter, parked)) = self.putters.pop_front() {
                        self.unfinished += 1;
                        self.items.push_back(parked);
                        putter.reply(&true);
                    }
                    Reply::ok(&Some(item))
                } else if !call.may_wait() {
                    Reply::ok(&None::<Bytes>)
                } else {
                    self.getters.push_back(call.park());
                    Reply::Parked
                }
            }
            "qsize" => Reply::ok(&(self.items.len() as u64)),
            "empty" => Reply::ok(&self.items.is_empty()),
            "full" => Reply::ok(&self.full()),
            other => Reply::no_such_method(other),
        }
    }

    fn expire(&mut self, waiter: WaiterId) {
        if let Some(pos) = self.getters.iter().position(|w| w.id() == waiter) {
            if let Some(w) = self.getters.remove(pos) {
                w.reply(&None::<Bytes>);
            }
        } else if let Some(pos) = self.putters.iter().position(|(w, _)| w.id() == waiter) {
            if let Some((w, _)) = self.putters.remove(pos) {
                w.reply(&false);
            }
        } else if let Some(pos) = self.joiners.iter().position(|w| w.id() == waiter) {
            self.joiners.swap_remove(pos).reply(&false);
        }
    }

    fn client_gone(&mut self, client: ClientId) {
        self.getters.retain(|w| w.client() != client);
        self.putters.retain(|(w, _)| w.client() != client);
        self.joiners.retain(|w| w.client() != client);
    }
}

pub(crate) fn decode_ctor<T: serde::de::DeserializeOwned>(
    typeid: &str,
    args: &[u8],
) -> Result<T, RemoteError> {
    codec::decode(args).map_err(|e| {
        RemoteError::new(
            RemoteErrorKind::BadArguments,
            format!("the arguments of `{typeid}`: {e}"),
        )
    })
}
