//! Typed proxies for the built-in types: cheap handles over their client's one connection.
//!
//! # The copy rule
//!
//! Every value read through a proxy is a **copy** (it crossed a socket): mutating what
//! `dict.get(k)` returned changes nothing on the server, exactly as in Python, where
//! `d['k'].append(x)` is silently lost. flotilla's spellings of that mutation run on the
//! server, atomically: [`DictProxy::update_with`] (compare-and-swap in a retry loop, for any
//! value type), [`DictProxy::add`] (an integer in place), [`DictProxy::setdefault`], and
//! [`DictProxy::compare_and_set`].
//!
//! A proxy inside a value is the exception: the copy read is a proxy to the one object
//! stored, so `d.get(k)?.append(x)` on a `DictProxy<K, ListProxy<T>>` is not lost (below).
//!
//! # Proxies as values
//!
//! A proxy serialized (a pool task's argument, a child's, an item put on a queue) is a
//! one-time claim on its object: the receiver that deserializes it gets its own reference,
//! and the object lives until then.
//!
//! A proxy stored as a value *inside* a manager `dict`, `list` or `Namespace` is different:
//! the stored value holds its object for as long as it is stored, and every read of it
//! (`get`, `values`, `to_vec`, ..., from any process) gives the reader a reference of its
//! own, a proxy to the same object. So the copy rule has one exception: what a `get`
//! returns is a copy, but a proxy in it still reaches the one shared object, and a mutation
//! through it is seen by everyone. Overwriting, deleting or clearing the value lets its
//! proxies go (their objects are freed when nothing else holds them); popping it hands
//! them to the taker, as a proxy in transit. An item of a `Queue` stays a one-time claim
//! (taken by one `get`).
//!
//! ```
//! use flotilla_manager::{DictProxy, ListProxy, Manager};
//!
//! let manager = Manager::start().unwrap();
//! let d: DictProxy<String, ListProxy<i32>> = manager.dict().unwrap();
//! d.set(&"inner".into(), &manager.list::<i32>().unwrap()).unwrap();
//! d.get(&"inner".into()).unwrap().unwrap().append(&1).unwrap(); // the stored list itself
//! d.get(&"inner".into()).unwrap().unwrap().append(&2).unwrap(); // read again: still works
//! assert_eq!(d.get(&"inner".into()).unwrap().unwrap().to_vec().unwrap(), [1, 2]);
//! ```
//!
//! Stored proxies are counted like any reference, so a value holding a proxy to its own
//! container (`d["me"] = d`) keeps it alive until the value is removed.

use std::marker::PhantomData;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use flotilla_core::codec;

use crate::client::{CallError, Client, ObjectRef, Pending, Token};

/// Encoded values inside call arguments and replies: one byte string on the wire, not
/// serde's byte-at-a-time `Vec<u8>` (the same wire bytes; see `codec::ByteBuf`).
type Bytes = flotilla_core::codec::ByteBuf;
/// Invariant in both, and Send + Sync whatever they are: a proxy holds no K or V.
type KeyValue<K, V> = fn(K, V) -> (K, V);

/// Zero: a `try_` form, which must not wait.
const NO_WAIT: Option<Duration> = Some(Duration::ZERO);

fn enc<T: Serialize + ?Sized>(v: &T) -> Result<Bytes, CallError> {
    Ok(codec::encode(v)?.into())
}

fn dec<T: DeserializeOwned>(b: &[u8]) -> Result<T, CallError> {
    Ok(codec::decode(b)?)
}

/// A typed proxy: a handle on a server object of one registered type.
///
/// Every proxy is an ordinary serde value: serializing it shares its object (a
/// [`Token`] holding the object alive in transit, with the manager's address and the
/// authkey of the connection it came from) and deserializing it in any process claims
/// that token through the process's one connection to that manager
/// ([`Client::shared`]). So proxies go as arguments to pool tasks and spawned children,
/// through queues and connections, and inside other proxies' values. Each serialized copy
/// is claimed once, except one stored in a container object, which every reader claims
/// (see [stored proxies](self#proxies-as-values)).
///
/// ```
/// use flotilla_manager::{ListProxy, Manager};
///
/// let manager = Manager::start().unwrap();
/// let list = manager.list::<u32>().unwrap();
/// let bytes = flotilla_core::codec::encode(&list).unwrap(); // what a child receives
/// let again: ListProxy<u32> = flotilla_core::codec::decode(&bytes).unwrap();
/// again.append(&7).unwrap();
/// assert_eq!(list.to_vec().unwrap(), vec![7]);
/// ```
pub trait Proxy: Sized {
    /// The type name the server knows its objects by.
    const TYPEID: &'static str;

    /// A proxy over `object`, refused when the object is of another type.
    fn from_object(object: ObjectRef) -> Result<Self, CallError>;

    /// The untyped reference underneath.
    fn object(&self) -> &ObjectRef;
}

macro_rules! proxy_common {
    ($name:ident, $typeid:literal $(, $p:ident)*) => {
        impl<$($p),*> Proxy for $name<$($p),*> {
            const TYPEID: &'static str = $typeid;

            fn from_object(object: ObjectRef) -> Result<Self, CallError> {
                Ok(Self::from_ref(object.check_type($typeid)?))
            }

            fn object(&self) -> &ObjectRef {
                &self.obj
            }
        }

        impl<$($p),*> $name<$($p),*> {
            /// The type name the server knows it by.
            pub const TYPEID: &'static str = $typeid;

            /// The untyped reference underneath.
            pub fn object(&self) -> &ObjectRef {
                &self.obj
            }

            /// A token another client (in any process) can claim with
            /// [`from_token`](Self::from_token); it keeps the object alive until then.
            pub fn share(&self) -> Result<Token, CallError> {
                self.obj.share()
            }

            /// Claims `token` through `client`: a proxy of its own for the same object.
            pub fn from_token(client: &Client, token: &Token) -> Result<Self, CallError> {
                let obj = client.claim(token)?.check_type($typeid)?;
                Ok(Self::from_ref(obj))
            }

            fn from_ref(obj: ObjectRef) -> Self {
                $name { obj, _t: PhantomData }
            }
        }

        impl<$($p),*> Clone for $name<$($p),*> {
            fn clone(&self) -> Self {
                $name { obj: self.obj.clone(), _t: PhantomData }
            }
        }

        impl<$($p),*> std::fmt::Debug for $name<$($p),*> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($name)).field("id", &self.obj.id()).finish()
            }
        }

        impl<$($p),*> Serialize for $name<$($p),*> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serialize_proxy(&self.obj, serializer)
            }
        }

        impl<'de, $($p),*> serde::Deserialize<'de> for $name<$($p),*> {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                Ok(Self::from_ref(deserialize_proxy(deserializer, $typeid)?))
            }
        }
    };
}

fn serialize_proxy<S: serde::Serializer>(
    obj: &ObjectRef,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::Error;
    let token = obj
        .share()
        .map_err(|e| S::Error::custom(format!("a proxy could not be shared: {e}")))?;
    token.serialize(serializer)
}

fn deserialize_proxy<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
    typeid: &str,
) -> Result<ObjectRef, D::Error> {
    use serde::de::Error;
    let token = <Token as serde::Deserialize>::deserialize(deserializer)?;
    if token.typeid() != typeid {
        return Err(D::Error::custom(format!(
            "a proxy for a `{}` received as a proxy for a `{typeid}`",
            token.typeid()
        )));
    }
    token
        .claim()
        .map_err(|e| D::Error::custom(format!("a received proxy could not be claimed: {e}")))
}

/// A proxy for a server-side `dict` of `K` → `V`: Python's `DictProxy`.
///
/// Keys are compared by their encoding, so `K` needs no `Hash` (a float key works, as
/// in Python, bitwise). Values read are copies; see the [module docs](self) for
/// mutation in place.
///
/// ```
/// # let manager = flotilla_manager::Manager::start().unwrap();
/// let d = manager.dict::<String, i64>().unwrap();
/// d.set(&"year".into(), &2000).unwrap();
/// assert_eq!(d.add(&"year".into(), 1).unwrap(), 2001);
/// d.update_with(&"year".into(), |y| y.unwrap_or(0) * 2).unwrap();
/// assert_eq!(d.get(&"year".into()).unwrap(), Some(4002));
/// assert_eq!(d.len().unwrap(), 1);
/// ```
pub struct DictProxy<K, V> {
    obj: ObjectRef,
    _t: PhantomData<KeyValue<K, V>>,
}

proxy_common!(DictProxy, "dict", K, V);

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> DictProxy<K, V> {
    pub(crate) fn create(client: &Client) -> Result<Self, CallError> {
        Ok(Self::from_ref(
            client.create(Self::TYPEID, &Vec::<(Bytes, Bytes)>::new())?,
        ))
    }

    /// `d[key]`, or `None` when absent (a copy).
    pub fn get(&self, key: &K) -> Result<Option<V>, CallError> {
        let v: Option<Bytes> = self.obj.call("get", &enc(key)?)?;
        v.map(|b| dec(&b)).transpose()
    }

    /// `d[key] = value`.
    pub fn set(&self, key: &K, value: &V) -> Result<(), CallError> {
        self.obj.call("set", &(enc(key)?, enc(value)?))
    }

    /// [`get`](Self::get), sent without waiting, and waited for later: calls sent this way
    /// from one thread are in flight together (pipelined), go out together (see
    /// [`ObjectRef::call_pending`](crate::ObjectRef::call_pending)), and run on the server
    /// in the order sent.
    ///
    /// ```
    /// # let manager = flotilla_manager::Manager::start().unwrap();
    /// let d = manager.dict::<u32, u32>().unwrap();
    /// let sets: Vec<_> = (0..100).map(|i| d.set_pending(&i, &(i * i)).unwrap()).collect();
    /// let get = d.get_pending(&9).unwrap(); // after the sets: same connection, in order
    /// for s in sets {
    ///     s.wait().unwrap();
    /// }
    /// assert_eq!(get.wait().unwrap(), Some(81));
    /// ```
    pub fn get_pending(&self, key: &K) -> Result<Pending<Option<V>>, CallError> {
        self.obj.call_pending_with("get", &enc(key)?, None, |b| {
            let v: Option<Bytes> = dec(b)?;
            v.map(|b| dec(&b)).transpose()
        })
    }

    /// [`set`](Self::set), sent without waiting, and waited for later (see
    /// [`get_pending`](Self::get_pending)).
    pub fn set_pending(&self, key: &K, value: &V) -> Result<Pending<()>, CallError> {
        self.obj
            .call_pending_with("set", &(enc(key)?, enc(value)?), None, dec)
    }

    /// `del d[key]`: a [`KeyError`](crate::RemoteErrorKind::KeyError) when absent.
    pub fn del(&self, key: &K) -> Result<(), CallError> {
        self.obj.call("del", &enc(key)?)
    }

    /// `d.pop(key, None)`: removes and returns the value, if any.
    pub fn pop(&self, key: &K) -> Result<Option<V>, CallError> {
        let v: Option<Bytes> = self.obj.call("pop", &enc(key)?)?;
        v.map(|b| dec(&b)).transpose()
    }

    /// `len(d)`.
    pub fn len(&self) -> Result<usize, CallError> {
        let n: u64 = self.obj.call("len", &())?;
        Ok(n as usize)
    }

    /// `len(d) == 0`.
    pub fn is_empty(&self) -> Result<bool, CallError> {
        Ok(self.len()? == 0)
    }

    /// `key in d`.
    pub fn contains_key(&self, key: &K) -> Result<bool, CallError> {
        self.obj.call("contains", &enc(key)?)
    }

    /// `list(d.keys())`, in insertion order.
    pub fn keys(&self) -> Result<Vec<K>, CallError> {
        let ks: Vec<Bytes> = self.obj.call("keys", &())?;
        ks.iter().map(|b| dec(b)).collect()
    }

    /// `list(d.values())`, in insertion order.
    pub fn values(&self) -> Result<Vec<V>, CallError> {
        let vs: Vec<Bytes> = self.obj.call("values", &())?;
        vs.iter().map(|b| dec(b)).collect()
    }

    /// `list(d.items())`, in insertion order.
    pub fn items(&self) -> Result<Vec<(K, V)>, CallError> {
        let items: Vec<(Bytes, Bytes)> = self.obj.call("items", &())?;
        items.iter().map(|(k, v)| Ok((dec(k)?, dec(v)?))).collect()
    }

    /// `d.clear()`.
    pub fn clear(&self) -> Result<(), CallError> {
        self.obj.call("clear", &())
    }

    /// `d.update(items)`, in one call.
    pub fn update<'a>(
        &self,
        items: impl IntoIterator<Item = (&'a K, &'a V)>,
    ) -> Result<(), CallError>
    where
        K: 'a,
        V: 'a,
    {
        let items = items
            .into_iter()
            .map(|(k, v)| Ok((enc(k)?, enc(v)?)))
            .collect::<Result<Vec<_>, CallError>>()?;
        self.obj.call("update", &items)
    }

    /// `d.setdefault(key, default)`: the value stored at `key`, storing `default` first
    /// when there is none. Atomic on the server.
    pub fn setdefault(&self, key: &K, default: &V) -> Result<V, CallError> {
        let v: Bytes = self.obj.call("setdefault", &(enc(key)?, enc(default)?))?;
        dec(&v)
    }

    /// Sets `key` to `new` (`None`: removes it) only if its value is `expected` (`None`:
    /// absent), compared by encoding. `Ok(Ok(()))` when it did; `Ok(Err(current))` with the
    /// value found otherwise: then `new` is thrown away, and the proxies in it serialized
    /// for this call are released on the server (they were never in transit).
    pub fn compare_and_set(
        &self,
        key: &K,
        expected: Option<&V>,
        new: Option<&V>,
    ) -> Result<Result<(), Option<V>>, CallError> {
        let expected = expected.map(enc).transpose()?;
        let new = new.map(enc).transpose()?;
        let (done, current): (bool, Option<Bytes>) = self
            .obj
            .call("compare_and_set", &(enc(key)?, expected, new))?;
        if done {
            Ok(Ok(()))
        } else {
            Ok(Err(current.map(|b| dec(&b)).transpose()?))
        }
    }

    /// Replaces the value at `key` with `f(current)` atomically, whatever other clients
    /// do meanwhile, and returns the new value: the spelling of Python's lost
    /// `d[k].append(x)` is `d.update_with(&k, |v| { let mut v = v.unwrap_or_default();
    /// v.push(x); v })`.
    ///
    /// A compare-and-swap loop: `f` runs again (on the newer value) when another client
    /// changed the entry between the read and the write, so it must have no side effects.
    pub fn update_with(&self, key: &K, mut f: impl FnMut(Option<V>) -> V) -> Result<V, CallError> {
        let k = enc(key)?;
        let mut current: Option<Bytes> = self.obj.call("get", &k)?;
        loop {
            let old = current.as_deref().map(|b| dec::<V>(b)).transpose()?;
            let new = f(old);
            let new_bytes = enc(&new)?;
            let (done, found): (bool, Option<Bytes>) = self
                .obj
                .call("compare_and_set", &(&k, &current, Some(&new_bytes)))?;
            if done {
                return Ok(new);
            }
            current = found;
        }
    }
}

impl<K: Serialize + DeserializeOwned> DictProxy<K, i64> {
    /// `d[key] += delta` in place on the server (from 0 when absent), returning the new
    /// value: a counter with no lock and no lost update.
    pub fn add(&self, key: &K, delta: i64) -> Result<i64, CallError> {
        self.obj.call("add_int", &(enc(key)?, delta, 0i64))
    }
}

/// A proxy for a server-side `list` of `T`: Python's `ListProxy`. Indexes follow Python
/// (negative counts from the end); reads are copies.
///
/// ```
/// # let manager = flotilla_manager::Manager::start().unwrap();
/// let l = manager.list::<u32>().unwrap();
/// l.extend(&[0, 1, 2]).unwrap();
/// l.append(&3).unwrap();
/// assert_eq!(l.get(-1).unwrap(), 3);
/// assert_eq!(l.pop(None).unwrap(), 3);
/// assert_eq!(l.to_vec().unwrap(), vec![0, 1, 2]);
/// ```
pub struct ListProxy<T> {
    obj: ObjectRef,
    _t: PhantomData<fn(T) -> T>,
}

proxy_common!(ListProxy, "list", T);

impl<T: Serialize + DeserializeOwned> ListProxy<T> {
    pub(crate) fn create(client: &Client) -> Result<Self, CallError> {
        Ok(Self::from_ref(
            client.create(Self::TYPEID, &Vec::<Bytes>::new())?,
        ))
    }

    /// `l.append(item)`; returns the new length.
    pub fn append(&self, item: &T) -> Result<usize, CallError> {
        let n: u64 = self.obj.call("append", &enc(item)?)?;
        Ok(n as usize)
    }

    /// `l.extend(items)`, in one call; returns the new length.
    pub fn extend<'a>(&self, items: impl IntoIterator<Item = &'a T>) -> Result<usize, CallError>
    where
        T: 'a,
    {
        let items = items.into_iter().map(enc).collect::<Result<Vec<_>, _>>()?;
        let n: u64 = self.obj.call("extend", &items)?;
        Ok(n as usize)
    }

    /// `l[index]` (a copy); an [`IndexError`](crate::RemoteErrorKind::IndexError) out of
    /// range.
    pub fn get(&self, index: i64) -> Result<T, CallError> {
        let b: Bytes = self.obj.call("get", &index)?;
        dec(&b)
    }

    /// `l[index] = item`.
    pub fn set(&self, index: i64, item: &T) -> Result<(), CallError> {
        self.obj.call("set", &(index, enc(item)?))
    }

    /// `l.insert(index, item)`.
    pub fn insert(&self, index: i64, item: &T) -> Result<(), CallError> {
        self.obj.call("insert", &(index, enc(item)?))
    }

    /// `l.pop(index)` (`None`: the last).
    pub fn pop(&self, index: Option<i64>) -> Result<T, CallError> {
        let b: Bytes = self.obj.call("pop", &index)?;
        dec(&b)
    }

    /// `len(l)`.
    pub fn len(&self) -> Result<usize, CallError> {
        let n: u64 = self.obj.call("len", &())?;
        Ok(n as usize)
    }

    /// `len(l) == 0`.
    pub fn is_empty(&self) -> Result<bool, CallError> {
        Ok(self.len()? == 0)
    }

    /// `l[:]`: a copy of the whole list.
    pub fn to_vec(&self) -> Result<Vec<T>, CallError> {
        let items: Vec<Bytes> = self.obj.call("to_vec", &())?;
        items.iter().map(|b| dec(b)).collect()
    }

    /// `l.reverse()`.
    pub fn reverse(&self) -> Result<(), CallError> {
        self.obj.call("reverse", &())
    }

    /// `l.clear()`.
    pub fn clear(&self) -> Result<(), CallError> {
        self.obj.call("clear", &())
    }
}

/// A proxy for a server-side `Namespace`: attributes by name, each of any serde type.
///
/// ```
/// # let manager = flotilla_manager::Manager::start().unwrap();
/// let ns = manager.namespace().unwrap();
/// ns.set("x", &10u8).unwrap();
/// assert_eq!(ns.get::<u8>("x").unwrap(), 10);
/// assert!(ns.get::<u8>("y").is_err()); // AttributeError
/// ```
pub struct NamespaceProxy {
    obj: ObjectRef,
    _t: PhantomData<()>,
}

proxy_common!(NamespaceProxy, "Namespace");

impl NamespaceProxy {
    pub(crate) fn create(client: &Client) -> Result<Self, CallError> {
        Ok(Self::from_ref(
            client.create(Self::TYPEID, &Vec::<(String, Bytes)>::new())?,
        ))
    }

    /// `ns.name` (a copy); an [`AttributeError`](crate::RemoteErrorKind::AttributeError)
    /// when unset.
    pub fn get<T: DeserializeOwned>(&self, name: &str) -> Result<T, CallError> {
        let b: Bytes = self.obj.call("get", name)?;
        dec(&b)
    }

    /// `ns.name = value`.
    pub fn set<T: Serialize + ?Sized>(&self, name: &str, value: &T) -> Result<(), CallError> {
        self.obj.call("set", &(name, enc(value)?))
    }

    /// `del ns.name`.
    pub fn del(&self, name: &str) -> Result<(), CallError> {
        self.obj.call("del", name)
    }

    /// The names set, sorted.
    pub fn names(&self) -> Result<Vec<String>, CallError> {
        self.obj.call("names", &())
    }
}

/// A proxy for a server-side `Lock`: Python's `threading.Lock` through a manager.
///
/// A waiting `acquire` parks on the server, so other calls of the same client go on. The
/// lock is released by the server when the client holding it goes away (its connection
/// closes, or its process dies), or drops its last proxy for it.
///
/// ```
/// use std::time::Duration;
/// # let manager = flotilla_manager::Manager::start().unwrap();
/// let lock = manager.lock().unwrap();
/// lock.acquire().unwrap();
/// assert!(!lock.try_acquire().unwrap());
/// assert!(!lock.acquire_timeout(Duration::from_millis(10)).unwrap());
/// lock.release().unwrap();
/// {
///     let _guard = lock.guard().unwrap();
///     assert!(lock.locked().unwrap());
/// }
/// assert!(!lock.locked().unwrap());
/// ```
pub struct LockProxy {
    obj: ObjectRef,
    _t: PhantomData<()>,
}

proxy_common!(LockProxy, "Lock");

impl LockProxy {
    pub(crate) fn create(client: &Client) -> Result<Self, CallError> {
        Ok(Self::from_ref(client.create(Self::TYPEID, &())?))
    }

    /// Waits for the lock, as long as it takes: Python's `acquire()`.
    pub fn acquire(&self) -> Result<(), CallError> {
        self.obj.call::<(), bool>("acquire", &()).map(drop)
    }

    /// Waits up to `timeout` for the lock; true when acquired.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool, CallError> {
        self.obj.call_timeout("acquire", &(), timeout)
    }

    /// Acquires the lock if it is free, without waiting.
    pub fn try_acquire(&self) -> Result<bool, CallError> {
        self.obj.call_within("acquire", &(), NO_WAIT)
    }

    /// Releases it (any client may, as with Python's `Lock`); a
    /// [`RuntimeError`](crate::RemoteErrorKind::RuntimeError) when it is not locked.
    pub fn release(&self) -> Result<(), CallError> {
        self.obj.call("release", &())
    }

    /// Whether someone holds it.
    pub fn locked(&self) -> Result<bool, CallError> {
        self.obj.call("locked", &())
    }

    /// Acquires it and returns a guard that releases it on drop: Python's `with lock:`.
    pub fn guard(&self) -> Result<LockProxyGuard<'_>, CallError> {
        self.acquire()?;
        Ok(LockProxyGuard { lock: self })
    }

    /// Acquires it (up to `timeout`) and returns a guard that releases it on drop.
    /// `Ok(None)` when the timeout passed.
    pub fn guard_timeout(
        &self,
        timeout: Duration,
    ) -> Result<Option<LockProxyGuard<'_>>, CallError> {
        Ok(self
            .acquire_timeout(timeout)?
            .then_some(LockProxyGuard { lock: self }))
    }
}

/// Holds a [`LockProxy`]'s lock; releases it when dropped.
#[derive(Debug)]
#[must_use = "the lock is released when the guard is dropped"]
pub struct LockProxyGuard<'a> {
    lock: &'a LockProxy,
}

impl Drop for LockProxyGuard<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.lock.release() {
            // A manager gone has released it already.
            flotilla_core::event!(flotilla_core::log::Level::DEBUG, error = %e, "manager lock guard: release failed");
        }
    }
}

/// A proxy for a server-side FIFO `Queue` of `T`: Python's `manager.Queue()`. A waiting
/// `get` or `put` parks on the server.
///
/// ```
/// use std::time::Duration;
/// # let manager = flotilla_manager::Manager::start().unwrap();
/// let q = manager.queue::<String>(0).unwrap();
/// q.put(&"a".into()).unwrap();
/// assert_eq!(q.get().unwrap(), "a");
/// assert_eq!(q.get_timeout(Duration::from_millis(10)).unwrap(), None);
/// assert_eq!(q.try_get().unwrap(), None);
/// ```
pub struct QueueProxy<T> {
    obj: ObjectRef,
    _t: PhantomData<fn(T) -> T>,
}

proxy_common!(QueueProxy, "Queue", T);

/// The methods of a queue, shared by [`QueueProxy`] and [`JoinableQueueProxy`].
macro_rules! queue_methods {
    () => {
        /// Puts `item`, waiting for ever while the queue is full.
        pub fn put(&self, item: &T) -> Result<(), CallError> {
            let _: bool = self.obj.call("put", &enc(item)?)?;
            Ok(())
        }

        /// Puts `item`, waiting up to `timeout` while the queue is full; false when the
        /// timeout passed (the item was not put).
        pub fn put_timeout(&self, item: &T, timeout: Duration) -> Result<bool, CallError> {
            self.obj.call_timeout("put", &enc(item)?, timeout)
        }

        /// Puts `item` if there is room, without waiting.
        pub fn try_put(&self, item: &T) -> Result<bool, CallError> {
            self.obj.call_within("put", &enc(item)?, NO_WAIT)
        }

        /// Takes the first item, waiting for ever for one.
        pub fn get(&self) -> Result<T, CallError> {
            loop {
                if let Some(item) = self.get_within(None)? {
                    return Ok(item);
                }
            }
        }

        /// Takes the first item, waiting up to `timeout`; `None` when the timeout passed.
        pub fn get_timeout(&self, timeout: Duration) -> Result<Option<T>, CallError> {
            self.get_within(Some(timeout))
        }

        /// Takes the first item if there is one, without waiting.
        pub fn try_get(&self) -> Result<Option<T>, CallError> {
            self.get_within(NO_WAIT)
        }

        /// The body of the `get` forms; `None` waits without limit.
        fn get_within(&self, timeout: Option<Duration>) -> Result<Option<T>, CallError> {
            let b: Option<Bytes> = self.obj.call_within("get", &(), timeout)?;
            b.map(|b| dec(&b)).transpose()
        }

        /// [`get`](Self::get), without waiting: wait for it with [`Pending::wait`], or
        /// `.await` it from async code, which blocks no thread while the get is parked on
        /// the server. It answers `Some(item)`.
        pub fn get_pending(&self) -> Result<Pending<Option<T>>, CallError> {
            self.get_pending_within(None)
        }

        /// [`get_timeout`](Self::get_timeout), without waiting (see
        /// [`get_pending`](Self::get_pending)); `None` when the timeout passed.
        pub fn get_pending_timeout(
            &self,
            timeout: Duration,
        ) -> Result<Pending<Option<T>>, CallError> {
            self.get_pending_within(Some(timeout))
        }

        fn get_pending_within(
            &self,
            timeout: Option<Duration>,
        ) -> Result<Pending<Option<T>>, CallError> {
            self.obj.call_pending_with("get", &(), timeout, |b| {
                let v: Option<Bytes> = dec(b)?;
                v.map(|b| dec(&b)).transpose()
            })
        }

        /// [`put`](Self::put), without waiting (see [`get_pending`](Self::get_pending)); it
        /// answers true.
        pub fn put_pending(&self, item: &T) -> Result<Pending<bool>, CallError> {
            self.obj.call_pending_with("put", &enc(item)?, None, dec)
        }

        /// [`put_timeout`](Self::put_timeout), without waiting (see
        /// [`get_pending`](Self::get_pending)); true when put.
        pub fn put_pending_timeout(
            &self,
            item: &T,
            timeout: Duration,
        ) -> Result<Pending<bool>, CallError> {
            self.obj
                .call_pending_with("put", &enc(item)?, Some(timeout), dec)
        }

        /// The number of items (approximate, as in Python: others may put or get meanwhile).
        pub fn qsize(&self) -> Result<usize, CallError> {
            let n: u64 = self.obj.call("qsize", &())?;
            Ok(n as usize)
        }

        /// Whether it is empty (approximate).
        pub fn empty(&self) -> Result<bool, CallError> {
            self.obj.call("empty", &())
        }

        /// Whether it is full (approximate).
        pub fn full(&self) -> Result<bool, CallError> {
            self.obj.call("full", &())
        }
    };
}

impl<T: Serialize + DeserializeOwned> QueueProxy<T> {
    pub(crate) fn create(client: &Client, maxsize: usize) -> Result<Self, CallError> {
        Ok(Self::from_ref(
            client.create(Self::TYPEID, &(maxsize as u64))?,
        ))
    }

    queue_methods!();
}

impl Client {
    /// A proxy for the object the server program registered under `name` with
    /// [`ServerBuilder::register_object`](crate::ServerBuilder::register_object): Python's
    /// `m.get_queue()` after `register("get_queue")`. Every client asking gets the same
    /// object. A [`NoSuchName`](crate::RemoteErrorKind::NoSuchName) error when nothing is
    /// registered so, a [`BadArguments`](crate::RemoteErrorKind::BadArguments) one when it
    /// is not a `P`.
    pub fn get<P: Proxy>(&self, name: &str) -> Result<P, CallError> {
        P::from_object(self.lookup(name)?)
    }

    /// A new server-side `dict`: Python's `manager.dict()`.
    pub fn dict<K, V>(&self) -> Result<DictProxy<K, V>, CallError>
    where
        K: Serialize + DeserializeOwned,
        V: Serialize + DeserializeOwned,
    {
        DictProxy::create(self)
    }

    /// A new server-side `list`: Python's `manager.list()`.
    pub fn list<T: Serialize + DeserializeOwned>(&self) -> Result<ListProxy<T>, CallError> {
        ListProxy::create(self)
    }

    /// A new server-side `Namespace`: Python's `manager.Namespace()`.
    pub fn namespace(&self) -> Result<NamespaceProxy, CallError> {
        NamespaceProxy::create(self)
    }

    /// A new server-side `Lock`: Python's `manager.Lock()`.
    pub fn lock(&self) -> Result<LockProxy, CallError> {
        LockProxy::create(self)
    }

    /// A new server-side FIFO `Queue` holding at most `maxsize` items (0: unbounded):
    /// Python's `manager.Queue(maxsize)`.
    pub fn queue<T: Serialize + DeserializeOwned>(
        &self,
        maxsize: usize,
    ) -> Result<QueueProxy<T>, CallError> {
        QueueProxy::create(self, maxsize)
    }
}

/// A number naming the calling thread, unique in this process: the owner of an `RLock` or
/// `Condition` is one thread of one client, as in Python.
fn this_thread() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static ID: u64 = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    ID.with(|id| *id)
}

/// Releases its lock (an `RLock`, a `Condition`, a semaphore permit) when dropped.
#[derive(Debug)]
#[must_use = "the lock is released when the guard is dropped"]
pub struct ProxyGuard<'a> {
    obj: &'a ObjectRef,
    release_args: Bytes,
}

impl Drop for ProxyGuard<'_> {
    fn drop(&mut self) {
        let r: Result<(), CallError> =
            self.obj
                .call_encoded("release", self.release_args.clone().into_vec(), None);
        if let Err(e) = r {
            // A manager gone has released it already.
            flotilla_core::event!(flotilla_core::log::Level::DEBUG, error = %e, "manager guard: release failed");
        }
    }
}

/// A proxy for a server-side `RLock`: reentrant, owned by the thread that acquired it
/// (one thread of one process), released by the server when that client goes away.
///
/// ```
/// # let manager = flotilla_manager::Manager::start().unwrap();
/// let lock = manager.rlock().unwrap();
/// lock.acquire().unwrap();
/// lock.acquire().unwrap(); // again, by the same thread
/// lock.release().unwrap();
/// lock.release().unwrap();
/// assert!(lock.release().is_err()); // RuntimeError: not acquired
/// ```
pub struct RLockProxy {
    obj: ObjectRef,
    _t: PhantomData<()>,
}

proxy_common!(RLockProxy, "RLock");

/// The methods of a reentrant lock owned by the calling thread, shared by
/// [`RLockProxy`] and [`ConditionProxy`] (whose underlying lock is one).
macro_rules! reentrant_lock_methods {
    () => {
        /// Waits for the lock, as long as it takes (at once when this thread holds it
        /// already): Python's `acquire()`.
        pub fn acquire(&self) -> Result<(), CallError> {
            self.acquire_within(None).map(drop)
        }

        /// Waits up to `timeout` for the lock; true when acquired (at once when this
        /// thread holds it already).
        pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool, CallError> {
            self.acquire_within(Some(timeout))
        }

        /// Acquires it if free (or this thread's), without waiting.
        pub fn try_acquire(&self) -> Result<bool, CallError> {
            self.acquire_within(NO_WAIT)
        }

        fn acquire_within(&self, timeout: Option<Duration>) -> Result<bool, CallError> {
            self.obj.call_within("acquire", &this_thread(), timeout)
        }

        /// Releases one level; a [`RuntimeError`](crate::RemoteErrorKind::RuntimeError)
        /// when this thread does not hold it.
        pub fn release(&self) -> Result<(), CallError> {
            self.obj.call("release", &this_thread())
        }

        /// Acquires it and returns a guard releasing it on drop: Python's `with lock:`.
        pub fn guard(&self) -> Result<ProxyGuard<'_>, CallError> {
            self.acquire()?;
            Ok(ProxyGuard {
                obj: &self.obj,
                release_args: enc(&this_thread()).unwrap_or_default(),
            })
        }

        /// Acquires it (up to `timeout`) and returns a guard releasing it on drop.
        /// `Ok(None)` when the timeout passed.
        pub fn guard_timeout(
            &self,
            timeout: Duration,
        ) -> Result<Option<ProxyGuard<'_>>, CallError> {
            Ok(self.acquire_timeout(timeout)?.then(|| ProxyGuard {
                obj: &self.obj,
                release_args: enc(&this_thread()).unwrap_or_default(),
            }))
        }
    };
}

impl RLockProxy {
    reentrant_lock_methods!();
}

/// The methods of a semaphore, shared by [`SemaphoreProxy`] and
/// [`BoundedSemaphoreProxy`].
macro_rules! semaphore_methods {
    () => {
        /// Waits for a permit, as long as it takes: Python's `acquire()`.
        pub fn acquire(&self) -> Result<(), CallError> {
            self.acquire_within(None).map(drop)
        }

        /// Waits up to `timeout` for a permit; true when acquired.
        pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool, CallError> {
            self.acquire_within(Some(timeout))
        }

        /// Takes a permit if one is free, without waiting.
        pub fn try_acquire(&self) -> Result<bool, CallError> {
            self.acquire_within(NO_WAIT)
        }

        fn acquire_within(&self, timeout: Option<Duration>) -> Result<bool, CallError> {
            self.obj.call_within("acquire", &(), timeout)
        }

        /// Gives back `n` permits (Python's `release(n)`).
        pub fn release(&self, n: u64) -> Result<(), CallError> {
            self.obj.call("release", &n)
        }

        /// The free permits now (approximate: others may take or give meanwhile).
        pub fn value(&self) -> Result<u64, CallError> {
            self.obj.call("value", &())
        }

        /// Takes a permit and returns a guard giving it back on drop.
        pub fn guard(&self) -> Result<ProxyGuard<'_>, CallError> {
            self.acquire()?;
            Ok(ProxyGuard {
                obj: &self.obj,
                release_args: enc(&1u64).unwrap_or_default(),
            })
        }

        /// Takes a permit (up to `timeout`) and returns a guard giving it back on drop.
        /// `Ok(None)` when the timeout passed.
        pub fn guard_timeout(
            &self,
            timeout: Duration,
        ) -> Result<Option<ProxyGuard<'_>>, CallError> {
            Ok(self.acquire_timeout(timeout)?.then(|| ProxyGuard {
                obj: &self.obj,
                release_args: enc(&1u64).unwrap_or_default(),
            }))
        }
    };
}

/// A proxy for a server-side `Semaphore`. Permits a client holds are given back by the
/// server when it goes away.
///
/// ```
/// # let manager = flotilla_manager::Manager::start().unwrap();
/// let sem = manager.semaphore(2).unwrap();
/// sem.acquire().unwrap();
/// assert!(sem.try_acquire().unwrap());
/// assert!(!sem.try_acquire().unwrap());
/// sem.release(2).unwrap();
/// assert_eq!(sem.value().unwrap(), 2);
/// ```
pub struct SemaphoreProxy {
    obj: ObjectRef,
    _t: PhantomData<()>,
}

proxy_common!(SemaphoreProxy, "Semaphore");

impl SemaphoreProxy {
    semaphore_methods!();
}

/// A proxy for a server-side `BoundedSemaphore`: a release past the initial value is a
/// [`ValueError`](crate::RemoteErrorKind::ValueError).
///
/// ```
/// # let manager = flotilla_manager::Manager::start().unwrap();
/// let sem = manager.bounded_semaphore(1).unwrap();
/// assert!(sem.release(1).is_err()); // released too many times
/// ```
pub struct BoundedSemaphoreProxy {
    obj: ObjectRef,
    _t: PhantomData<()>,
}

proxy_common!(BoundedSemaphoreProxy, "BoundedSemaphore");

impl BoundedSemaphoreProxy {
    semaphore_methods!();
}

/// A proxy for a server-side `Condition` (over its own reentrant lock, Python's default).
/// A `wait` releases the lock and parks on the server; a notified waiter takes the lock
/// back before it returns.
///
/// ```
/// use std::time::Duration;
/// # let manager = flotilla_manager::Manager::start().unwrap();
/// let cond = manager.condition().unwrap();
/// let _held = cond.guard().unwrap();
/// assert!(!cond.wait_timeout(Duration::from_millis(10)).unwrap()); // nobody notified
/// cond.notify_all().unwrap();
/// ```
pub struct ConditionProxy {
    obj: ObjectRef,
    _t: PhantomData<()>,
}

proxy_common!(ConditionProxy, "Condition");

impl ConditionProxy {
    reentrant_lock_methods!();

    /// Releases the lock, waits for a notify, and takes the lock back: Python's
    /// `wait()`. The caller must hold the lock (else a
    /// [`RuntimeError`](crate::RemoteErrorKind::RuntimeError)).
    pub fn wait(&self) -> Result<(), CallError> {
        self.wait_within(None).map(drop)
    }

    /// Like [`wait`](Self::wait), waiting up to `timeout` for the notify; true when
    /// notified.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool, CallError> {
        self.wait_within(Some(timeout))
    }

    fn wait_within(&self, timeout: Option<Duration>) -> Result<bool, CallError> {
        self.obj.call_within("wait", &this_thread(), timeout)
    }

    /// Waits until `predicate()` is true. The predicate runs in this process, with the
    /// lock held.
    pub fn wait_for(&self, predicate: impl FnMut() -> bool) -> Result<(), CallError> {
        self.wait_for_within(predicate, None).map(drop)
    }

    /// Waits until `predicate()` is true, up to `timeout`; returns its last value.
    pub fn wait_for_timeout(
        &self,
        predicate: impl FnMut() -> bool,
        timeout: Duration,
    ) -> Result<bool, CallError> {
        self.wait_for_within(predicate, Some(timeout))
    }

    fn wait_for_within(
        &self,
        mut predicate: impl FnMut() -> bool,
        timeout: Option<Duration>,
    ) -> Result<bool, CallError> {
        let deadline = flotilla_core::Deadline::after(timeout);
        loop {
            if predicate() {
                return Ok(true);
            }
            if deadline.expired() {
                return Ok(false);
            }
            self.wait_within(deadline.remaining())?;
        }
    }

    /// Wakes up to `n` waiters. The caller must hold the lock.
    pub fn notify(&self, n: u64) -> Result<(), CallError> {
        self.obj.call("notify", &(this_thread(), n))
    }

    /// Wakes every waiter. The caller must hold the lock.
    pub fn notify_all(&self) -> Result<(), CallError> {
        self.obj.call("notify_all", &this_thread())
    }
}

/// A proxy for a server-side `Event`.
///
/// ```
/// use std::time::Duration;
/// # let manager = flotilla_manager::Manager::start().unwrap();
/// let event = manager.event().unwrap();
/// assert!(!event.wait_timeout(Duration::from_millis(10)).unwrap());
/// event.set().unwrap();
/// assert!(event.is_set().unwrap());
/// event.wait().unwrap(); // set: returns at once
/// ```
pub struct EventProxy {
    obj: ObjectRef,
    _t: PhantomData<()>,
}

proxy_common!(EventProxy, "Event");

impl EventProxy {
    /// Sets the flag, waking every waiter.
    pub fn set(&self) -> Result<(), CallError> {
        self.obj.call("set", &())
    }

    /// Clears the flag.
    pub fn clear(&self) -> Result<(), CallError> {
        self.obj.call("clear", &())
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> Result<bool, CallError> {
        self.obj.call("is_set", &())
    }

    /// Waits for the flag, as long as it takes: Python's `wait()`.
    pub fn wait(&self) -> Result<(), CallError> {
        self.obj.call::<(), bool>("wait", &()).map(drop)
    }

    /// Waits up to `timeout` for the flag; returns it.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool, CallError> {
        self.obj.call_timeout("wait", &(), timeout)
    }
}

/// A proxy for a server-side `Barrier`. A wait that times out, `abort`, or a waiting client
/// going away break it: every waiter gets a
/// [`BrokenBarrier`](crate::RemoteErrorKind::BrokenBarrier) error, until `reset`.
///
/// ```
/// # let manager = flotilla_manager::Manager::start().unwrap();
/// let barrier = manager.barrier(1).unwrap();
/// assert_eq!(barrier.wait().unwrap(), 0);
/// assert_eq!(barrier.parties().unwrap(), 1);
/// ```
pub struct BarrierProxy {
    obj: ObjectRef,
    _t: PhantomData<()>,
}

proxy_common!(BarrierProxy, "Barrier");

impl BarrierProxy {
    /// Waits until all parties wait (or the barrier's own timeout passes); returns this
    /// party's arrival index (0 to parties − 1).
    pub fn wait(&self) -> Result<u64, CallError> {
        self.obj.call("wait", &())
    }

    /// Like [`wait`](Self::wait), giving up (and breaking the barrier) after `timeout`.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<u64, CallError> {
        self.obj.call_timeout("wait", &(), timeout)
    }

    /// Breaks it: every waiter, and every later wait until [`reset`](Self::reset), fails.
    pub fn abort(&self) -> Result<(), CallError> {
        self.obj.call("abort", &())
    }

    /// Breaks it for those waiting now, then makes it usable again.
    pub fn reset(&self) -> Result<(), CallError> {
        self.obj.call("reset", &())
    }

    /// How many parties it needs.
    pub fn parties(&self) -> Result<u64, CallError> {
        self.obj.call("parties", &())
    }

    /// How many wait now.
    pub fn n_waiting(&self) -> Result<u64, CallError> {
        self.obj.call("n_waiting", &())
    }

    /// Whether it is broken.
    pub fn broken(&self) -> Result<bool, CallError> {
        self.obj.call("broken", &())
    }
}

/// A proxy for a server-side `Value` of `T`: Python's `manager.Value(typecode, value)`.
/// Reads are copies; [`update_with`](Self::update_with) changes it atomically.
///
/// ```
/// # let manager = flotilla_manager::Manager::start().unwrap();
/// let v = manager.value(&1.5f64).unwrap();
/// v.set(&2.5).unwrap();
/// assert_eq!(v.update_with(|x| x * 2.0).unwrap(), 5.0);
/// assert_eq!(v.get().unwrap(), 5.0);
/// ```
pub struct ValueProxy<T> {
    obj: ObjectRef,
    _t: PhantomData<fn(T) -> T>,
}

proxy_common!(ValueProxy, "Value", T);

impl<T: Serialize + DeserializeOwned> ValueProxy<T> {
    /// The value (a copy).
    pub fn get(&self) -> Result<T, CallError> {
        let b: Bytes = self.obj.call("get", &())?;
        dec(&b)
    }

    /// Replaces the value.
    pub fn set(&self, value: &T) -> Result<(), CallError> {
        self.obj.call("set", &enc(value)?)
    }

    /// Replaces the value with `f(current)` atomically, whatever other clients do meanwhile
    /// (a compare-and-swap loop: `f` may run again, so it must have no side effects), and
    /// returns the new value.
    pub fn update_with(&self, mut f: impl FnMut(T) -> T) -> Result<T, CallError> {
        let mut current: Bytes = self.obj.call("get", &())?;
        loop {
            let new = f(dec(&current)?);
            let (done, found): (bool, Option<Bytes>) =
                self.obj.call("compare_and_set", &(&current, enc(&new)?))?;
            match found {
                _ if done => return Ok(new),
                Some(found) => current = found,
                None => current = self.obj.call("get", &())?,
            }
        }
    }
}

/// A proxy for a server-side `Array` of `T`: Python's `manager.Array(typecode, seq)`, a
/// fixed length; indexes as Python's (negative from the end); reads are copies.
///
/// ```
/// # let manager = flotilla_manager::Manager::start().unwrap();
/// let a = manager.array(&[1u8, 2, 3]).unwrap();
/// a.set(-1, &9).unwrap();
/// assert_eq!(a.to_vec().unwrap(), vec![1, 2, 9]);
/// assert!(a.get(3).is_err()); // IndexError
/// ```
pub struct ArrayProxy<T> {
    obj: ObjectRef,
    _t: PhantomData<fn(T) -> T>,
}

proxy_common!(ArrayProxy, "Array", T);

impl<T: Serialize + DeserializeOwned> ArrayProxy<T> {
    /// `a[index]` (a copy).
    pub fn get(&self, index: i64) -> Result<T, CallError> {
        let b: Bytes = self.obj.call("get", &index)?;
        dec(&b)
    }

    /// `a[index] = item`.
    pub fn set(&self, index: i64, item: &T) -> Result<(), CallError> {
        self.obj.call("set", &(index, enc(item)?))
    }

    /// `len(a)`.
    pub fn len(&self) -> Result<usize, CallError> {
        let n: u64 = self.obj.call("len", &())?;
        Ok(n as usize)
    }

    /// `len(a) == 0`.
    pub fn is_empty(&self) -> Result<bool, CallError> {
        Ok(self.len()? == 0)
    }

    /// `a[:]`: a copy of the whole array.
    pub fn to_vec(&self) -> Result<Vec<T>, CallError> {
        let items: Vec<Bytes> = self.obj.call("to_vec", &())?;
        items.iter().map(|b| dec(b)).collect()
    }
}

/// A proxy for a server-side `JoinableQueue` of `T`: a [`QueueProxy`]'s methods, plus
/// `task_done` and `join`.
///
/// ```
/// use std::time::Duration;
/// # let manager = flotilla_manager::Manager::start().unwrap();
/// let q = manager.joinable_queue::<u32>(0).unwrap();
/// q.put(&1).unwrap();
/// assert!(!q.join_timeout(Duration::from_millis(10)).unwrap()); // one unfinished
/// assert_eq!(q.get().unwrap(), 1);
/// q.task_done().unwrap();
/// q.join().unwrap();
/// ```
pub struct JoinableQueueProxy<T> {
    obj: ObjectRef,
    _t: PhantomData<fn(T) -> T>,
}

proxy_common!(JoinableQueueProxy, "JoinableQueue", T);

impl<T: Serialize + DeserializeOwned> JoinableQueueProxy<T> {
    queue_methods!();

    /// Marks one item taken as done; a [`ValueError`](crate::RemoteErrorKind::ValueError)
    /// when called more times than items were put.
    pub fn task_done(&self) -> Result<(), CallError> {
        self.obj.call("task_done", &())
    }

    /// Waits until every item put is marked done: Python's `join()`.
    pub fn join(&self) -> Result<(), CallError> {
        self.obj.call::<(), bool>("join", &()).map(drop)
    }

    /// Waits up to `timeout` until every item put is marked done; true when it is.
    pub fn join_timeout(&self, timeout: Duration) -> Result<bool, CallError> {
        self.obj.call_timeout("join", &(), timeout)
    }
}

impl Client {
    /// A new server-side `RLock`: Python's `manager.RLock()`.
    pub fn rlock(&self) -> Result<RLockProxy, CallError> {
        Ok(RLockProxy::from_ref(self.create(RLockProxy::TYPEID, &())?))
    }

    /// A new server-side `Semaphore` of `value` permits: Python's `manager.Semaphore(value)`.
    pub fn semaphore(&self, value: u64) -> Result<SemaphoreProxy, CallError> {
        Ok(SemaphoreProxy::from_ref(
            self.create(SemaphoreProxy::TYPEID, &value)?,
        ))
    }

    /// A new server-side `BoundedSemaphore`: Python's `manager.BoundedSemaphore(value)`.
    pub fn bounded_semaphore(&self, value: u64) -> Result<BoundedSemaphoreProxy, CallError> {
        Ok(BoundedSemaphoreProxy::from_ref(
            self.create(BoundedSemaphoreProxy::TYPEID, &value)?,
        ))
    }

    /// A new server-side `Condition`: Python's `manager.Condition()`.
    pub fn condition(&self) -> Result<ConditionProxy, CallError> {
        Ok(ConditionProxy::from_ref(
            self.create(ConditionProxy::TYPEID, &())?,
        ))
    }

    /// A new server-side `Event`: Python's `manager.Event()`.
    pub fn event(&self) -> Result<EventProxy, CallError> {
        Ok(EventProxy::from_ref(self.create(EventProxy::TYPEID, &())?))
    }

    /// A new server-side `Barrier` of `parties`: Python's `manager.Barrier(parties)`.
    pub fn barrier(&self, parties: u64) -> Result<BarrierProxy, CallError> {
        Ok(BarrierProxy::from_ref(
            self.create(BarrierProxy::TYPEID, &parties)?,
        ))
    }

    /// A new server-side `Value` holding `value`: Python's `manager.Value(typecode, value)`.
    pub fn value<T: Serialize + DeserializeOwned>(
        &self,
        value: &T,
    ) -> Result<ValueProxy<T>, CallError> {
        Ok(ValueProxy::from_ref(
            self.create(ValueProxy::<T>::TYPEID, &enc(value)?)?,
        ))
    }

    /// A new server-side `Array` of `items`: Python's `manager.Array(typecode, items)`.
    pub fn array<T: Serialize + DeserializeOwned>(
        &self,
        items: &[T],
    ) -> Result<ArrayProxy<T>, CallError> {
        let items = items.iter().map(enc).collect::<Result<Vec<_>, _>>()?;
        Ok(ArrayProxy::from_ref(
            self.create(ArrayProxy::<T>::TYPEID, &items)?,
        ))
    }

    /// A new server-side `JoinableQueue` of at most `maxsize` items (0: unbounded):
    /// Python's `manager.JoinableQueue(maxsize)`.
    pub fn joinable_queue<T: Serialize + DeserializeOwned>(
        &self,
        maxsize: usize,
    ) -> Result<JoinableQueueProxy<T>, CallError> {
        Ok(JoinableQueueProxy::from_ref(self.create(
            JoinableQueueProxy::<T>::TYPEID,
            &(maxsize as u64),
        )?))
    }
}
