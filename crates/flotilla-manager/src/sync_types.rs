//! The synchronization types of a manager server (the rest of Python's `SyncManager`):
//! `RLock`, `Semaphore`, `BoundedSemaphore`, `Condition`, `Event`, `Barrier`, `Value`,
//! `Array`. (`JoinableQueue` is the `Queue` of `types.rs` with its joinable flag.)
//!
//! Every blocking method parks a waiter; none blocks a server thread. What a client holds
//! (an `RLock` or `Condition` it owns, semaphore permits it acquired, a place at a
//! barrier) is given back when it goes away, so a killed client never wedges the others.
//!
//! An `RLock`'s (and a `Condition`'s) owner is a client *and* a thread of it: the proxy
//! sends a number naming the calling thread, since one connection serves every thread
//! of a process.

use std::collections::{HashMap, VecDeque};

use crate::object::{Call, ClientId, Reply, SharedObject, Waiter, WaiterId};
use crate::protocol::{RemoteError, RemoteErrorKind};
use crate::types::{args, decode_ctor, sequence_call};

/// Encoded values inside call arguments and replies: one byte string on the wire, not
/// serde's byte-at-a-time `Vec<u8>` (the same wire bytes; see `codec::ByteBuf`).
type Bytes = flotilla_core::codec::ByteBuf;

/// Who owns a reentrant lock: a client and one of its threads.
type Owner = (ClientId, u64);

/// A waiter for a reentrant lock: when it gets the lock, it holds it `count` times and
/// hears `answer` (true for an acquire; a condition wait's own result otherwise).
#[derive(Debug)]
struct LockWaiter {
    waiter: Waiter,
    owner: Owner,
    count: u64,
    answer: bool,
    /// An acquire gives up at its deadline; a condition wait taking its lock back waits
    /// for it however long, as Python's does.
    expires: bool,
}

/// The reentrant lock inside an `RLock` and a `Condition`.
#[derive(Debug, Default)]
struct Reentrant {
    owner: Option<Owner>,
    count: u64,
    waiters: VecDeque<LockWaiter>,
}

impl Reentrant {
    /// `acquire` and `release`, the lock methods an `RLock` and a `Condition` share;
    /// `None` for any other method.
    fn lock_call(&mut self, call: &mut Call<'_>) -> Option<Reply> {
        let acquire = match call.method() {
            "acquire" => true,
            "release" => false,
            _ => return None,
        };
        Some(self.acquire_or_release(call, acquire))
    }

    fn acquire_or_release(&mut self, call: &mut Call<'_>, acquire: bool) -> Reply {
        let thread = args!(call, u64);
        if acquire {
            self.acquire(call, thread)
        } else if self.release(call.client(), thread) {
            Reply::ok(&())
        } else {
            not_owner("release")
        }
    }

    fn acquire(&mut self, call: &mut Call<'_>, thread: u64) -> Reply {
        let me = (call.client(), thread);
        match self.owner {
            None => {
                self.owner = Some(me);
                self.count = 1;
                Reply::ok(&true)
            }
            Some(o) if o == me => {
                self.count += 1;
                Reply::ok(&true)
            }
            Some(_) if !call.may_wait() => Reply::ok(&false),
            Some(_) => {
                self.waiters.push_back(LockWaiter {
                    waiter: call.park(),
                    owner: me,
                    count: 1,
                    answer: true,
                    expires: true,
                });
                Reply::Parked
            }
        }
    }

    fn owned_by(&self, client: ClientId, thread: u64) -> bool {
        self.owner == Some((client, thread))
    }

    /// Releases one level; false when `me` does not own it.
    fn release(&mut self, client: ClientId, thread: u64) -> bool {
        if !self.owned_by(client, thread) {
            return false;
        }
        self.count -= 1;
        if self.count == 0 {
            self.hand_over();
        }
        true
    }

    /// The lock is free: give it to the first waiter, if any.
    fn hand_over(&mut self) {
        self.owner = None;
        self.count = 0;
        if let Some(w) = self.waiters.pop_front() {
            self.owner = Some(w.owner);
            self.count = w.count;
            w.waiter.reply(&w.answer);
        }
    }

    /// A waiter's deadline passed: an acquire still waiting answers false.
    fn expire(&mut self, waiter: WaiterId) {
        if let Some(pos) = self
            .waiters
            .iter()
            .position(|w| w.waiter.id() == waiter && w.expires)
            && let Some(w) = self.waiters.remove(pos)
        {
            w.waiter.reply(&false);
        }
    }

    fn client_gone(&mut self, client: ClientId) {
        self.waiters.retain(|w| w.owner.0 != client);
        if self.owner.is_some_and(|o| o.0 == client) {
            flotilla_core::event!(
                flotilla_core::log::Level::DEBUG,
                ?client,
                "releasing a reentrant lock held by a client that went away"
            );
            self.hand_over();
        }
    }
}

fn not_owner(what: &str) -> Reply {
    Reply::err(
        RemoteErrorKind::RuntimeError,
        format!("cannot {what} un-acquired lock"),
    )
}

/// An `RLock`: reentrant, owned by one thread of one client, released when that client
/// goes away.
#[derive(Debug, Default)]
pub(crate) struct RLock {
    lock: Reentrant,
}

impl RLock {
    pub(crate) fn create(args: &[u8]) -> Result<Box<dyn SharedObject>, RemoteError> {
        decode_ctor::<()>("RLock", args)?;
        Ok(Box::new(RLock::default()))
    }
}

impl SharedObject for RLock {
    fn call(&mut self, call: &mut Call<'_>) -> Reply {
        if let Some(reply) = self.lock.lock_call(call) {
            return reply;
        }
        match call.method() {
            "count" => Reply::ok(&self.lock.count),
            other => Reply::no_such_method(other),
        }
    }

    fn expire(&mut self, waiter: WaiterId) {
        self.lock.expire(waiter);
    }

    fn client_gone(&mut self, client: ClientId) {
        self.lock.client_gone(client);
    }
}

/// A `Condition` over its own reentrant lock (Python's default, `RLock`).
#[derive(Debug, Default)]
pub(crate) struct Condition {
    lock: Reentrant,
    /// Waiting for a notify: the waiter, its owner, and the lock count to restore.
    waiting: VecDeque<(Waiter, Owner, u64)>,
}

impl Condition {
    pub(crate) fn create(args: &[u8]) -> Result<Box<dyn SharedObject>, RemoteError> {
        decode_ctor::<()>("Condition", args)?;
        Ok(Box::new(Condition::default()))
    }

    /// Moves up to `n` waiters from the condition to the lock's queue; they answer
    /// `answer` once they have the lock again.
    fn wake(&mut self, n: usize, answer: bool) {
        for _ in 0..n {
            let Some((waiter, owner, count)) = self.waiting.pop_front() else {
                break;
            };
            self.requeue(waiter, owner, count, answer);
        }
    }

    fn requeue(&mut self, waiter: Waiter, owner: Owner, count: u64, answer: bool) {
        if self.lock.owner.is_none() {
            self.lock.owner = Some(owner);
            self.lock.count = count;
            waiter.reply(&answer);
        } else {
            self.lock.waiters.push_back(LockWaiter {
                waiter,
                owner,
                count,
                answer,
                expires: false,
            });
        }
    }
}

impl SharedObject for Condition {
    fn call(&mut self, call: &mut Call<'_>) -> Reply {
        if let Some(reply) = self.lock.lock_call(call) {
            return reply;
        }
        match call.method() {
            "wait" => {
                let thread = args!(call, u64);
                if !self.lock.owned_by(call.client(), thread) {
                    return not_owner("wait on");
                }
                let owner = (call.client(), thread);
                let count = self.lock.count;
                // Releases the lock entirely, whatever its depth, and waits.
                self.lock.hand_over();
                if call.may_wait() {
                    let waiter = call.park();
                    self.waiting.push_back((waiter, owner, count));
                } else {
                    // A zero timeout: re-acquire at once, answering false.
                    let waiter = call.park();
                    self.requeue(waiter, owner, count, false);
                }
                Reply::Parked
            }
            "notify" => {
                let (thread, n) = args!(call, (u64, u64));
                if !self.lock.owned_by(call.client(), thread) {
                    return not_owner("notify on");
                }
                self.wake(usize::try_from(n).unwrap_or(usize::MAX), true);
                Reply::ok(&())
            }
            "notify_all" => {
                let thread = args!(call, u64);
                if !self.lock.owned_by(call.client(), thread) {
                    return not_owner("notify on");
                }
                self.wake(self.waiting.len(), true);
                Reply::ok(&())
            }
            other => Reply::no_such_method(other),
        }
    }

    fn expire(&mut self, waiter: WaiterId) {
        // A wait whose deadline passed goes back for the lock, answering false.
        if let Some(pos) = self.waiting.iter().position(|(w, _, _)| w.id() == waiter) {
            if let Some((w, owner, count)) = self.waiting.remove(pos) {
                self.requeue(w, owner, count, false);
            }
            return;
        }
        self.lock.expire(waiter);
    }

    fn client_gone(&mut self, client: ClientId) {
        self.waiting.retain(|(_, o, _)| o.0 != client);
        self.lock.client_gone(client);
    }
}

/// A `Semaphore` (and, with `bound`, a `BoundedSemaphore`). Permits a client acquired and
/// still holds are given back when it goes away.
#[derive(Debug, Default)]
pub(crate) struct Semaphore {
    value: u64,
    /// A `BoundedSemaphore`'s initial value, which releases may not exceed.
    bound: Option<u64>,
    waiters: VecDeque<Waiter>,
    /// Permits each client holds.
    held: HashMap<ClientId, u64>,
}

impl Semaphore {
    pub(crate) fn create(args: &[u8]) -> Result<Box<dyn SharedObject>, RemoteError> {
        let value: u64 = decode_ctor("Semaphore", args)?;
        Ok(Box::new(Semaphore {
            value,
            ..Semaphore::default()
        }))
    }

    pub(crate) fn create_bounded(args: &[u8]) -> Result<Box<dyn SharedObject>, RemoteError> {
        let value: u64 = decode_ctor("BoundedSemaphore", args)?;
        Ok(Box::new(Semaphore {
            value,
            bound: Some(value),
            ..Semaphore::default()
        }))
    }

    /// One permit comes back: to the first waiter, or to the pool.
    fn give_back(&mut self) {
        if let Some(w) = self.waiters.pop_front() {
            *self.held.entry(w.client()).or_insert(0) += 1;
            w.reply(&true);
        } else {
            self.value += 1;
        }
    }

    /// `client` released a permit: it no longer holds one (or, released for another
    /// client, as Python allows, that one no longer does).
    fn debit(&mut self, client: ClientId) {
        let who = if self.held.contains_key(&client) {
            Some(client)
        } else {
            self.held.keys().min().copied()
        };
        if let Some(who) = who
            && let Some(n) = self.held.get_mut(&who)
        {
            *n -= 1;
            if *n == 0 {
                self.held.remove(&who);
            }
        }
    }
}

impl SharedObject for Semaphore {
    fn call(&mut self, call: &mut Call<'_>) -> Reply {
        match call.method() {
            "acquire" => {
                if self.value > 0 {
                    self.value -= 1;
                    *self.held.entry(call.client()).or_insert(0) += 1;
                    Reply::ok(&true)
                } else if !call.may_wait() {
                    Reply::ok(&false)
                } else {
                    self.waiters.push_back(call.park());
                    Reply::Parked
                }
            }
            "release" => {
                let n = args!(call, u64);
                if let Some(bound) = self.bound
                    && self.value.saturating_add(n) > bound
                {
                    return Reply::err(
                        RemoteErrorKind::ValueError,
                        "Semaphore released too many times",
                    );
                }
                for _ in 0..n {
                    self.debit(call.client());
                    self.give_back();
                }
                Reply::ok(&())
            }
            "value" => Reply::ok(&self.value),
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
        if let Some(n) = self.held.remove(&client) {
            flotilla_core::event!(
                flotilla_core::log::Level::DEBUG,
                ?client,
                permits = n,
                "returning the semaphore permits of a client that went away"
            );
            for _ in 0..n {
                self.give_back();
            }
        }
    }
}

/// An `Event`.
#[derive(Debug, Default)]
pub(crate) struct Event {
    flag: bool,
    waiters: Vec<Waiter>,
}

impl Event {
    pub(crate) fn create(args: &[u8]) -> Result<Box<dyn SharedObject>, RemoteError> {
        decode_ctor::<()>("Event", args)?;
        Ok(Box::new(Event::default()))
    }
}

impl SharedObject for Event {
    fn call(&mut self, call: &mut Call<'_>) -> Reply {
        match call.method() {
            "set" => {
                self.flag = true;
                for w in self.waiters.drain(..) {
                    w.reply(&true);
                }
                Reply::ok(&())
            }
            "clear" => {
                self.flag = false;
                Reply::ok(&())
            }
            "is_set" => Reply::ok(&self.flag),
            "wait" => {
                if self.flag {
                    Reply::ok(&true)
                } else if !call.may_wait() {
                    Reply::ok(&false)
                } else {
                    self.waiters.push(call.park());
                    Reply::Parked
                }
            }
            other => Reply::no_such_method(other),
        }
    }

    fn expire(&mut self, waiter: WaiterId) {
        if let Some(pos) = self.waiters.iter().position(|w| w.id() == waiter) {
            self.waiters.swap_remove(pos).reply(&self.flag);
        }
    }

    fn client_gone(&mut self, client: ClientId) {
        self.waiters.retain(|w| w.client() != client);
    }
}

/// A `Barrier` of `parties`. A wait that times out, a waiting client that goes away, and
/// `abort` break it: every waiter (and every later wait, until `reset`) fails with
/// [`RemoteErrorKind::BrokenBarrier`].
#[derive(Debug, Default)]
pub(crate) struct Barrier {
    parties: u64,
    waiters: Vec<Waiter>,
    broken: bool,
}

fn broken() -> RemoteError {
    RemoteError::new(RemoteErrorKind::BrokenBarrier, "the barrier is broken")
}

impl Barrier {
    pub(crate) fn create(args: &[u8]) -> Result<Box<dyn SharedObject>, RemoteError> {
        let parties: u64 = decode_ctor("Barrier", args)?;
        if parties == 0 {
            return Err(RemoteError::new(
                RemoteErrorKind::ValueError,
                "a barrier needs at least one party",
            ));
        }
        Ok(Box::new(Barrier {
            parties,
            ..Barrier::default()
        }))
    }

    fn break_it(&mut self) {
        self.broken = true;
        for w in self.waiters.drain(..) {
            w.fail(broken());
        }
    }
}

impl SharedObject for Barrier {
    fn call(&mut self, call: &mut Call<'_>) -> Reply {
        match call.method() {
            "wait" => {
                if self.broken {
                    return Reply::Now(Err(broken()));
                }
                let index = self.waiters.len() as u64;
                if index + 1 == self.parties {
                    // The last to arrive passes everyone: each hears its arrival index.
                    for (i, w) in self.waiters.drain(..).enumerate() {
                        w.reply(&(i as u64));
                    }
                    Reply::ok(&index)
                } else if !call.may_wait() {
                    self.break_it();
                    Reply::Now(Err(broken()))
                } else {
                    self.waiters.push(call.park());
                    Reply::Parked
                }
            }
            "abort" => {
                self.break_it();
                Reply::ok(&())
            }
            "reset" => {
                self.break_it();
                self.broken = false;
                Reply::ok(&())
            }
            "parties" => Reply::ok(&self.parties),
            "n_waiting" => Reply::ok(&(self.waiters.len() as u64)),
            "broken" => Reply::ok(&self.broken),
            other => Reply::no_such_method(other),
        }
    }

    fn expire(&mut self, waiter: WaiterId) {
        if self.waiters.iter().any(|w| w.id() == waiter) {
            self.break_it();
        }
    }

    fn client_gone(&mut self, client: ClientId) {
        if self.waiters.iter().any(|w| w.client() == client) {
            self.waiters.retain(|w| w.client() != client);
            self.break_it();
        }
    }
}

/// A `Value`: one value, read and written whole.
#[derive(Debug, Default)]
pub(crate) struct Value {
    value: Bytes,
}

impl Value {
    pub(crate) fn create(args: &[u8]) -> Result<Box<dyn SharedObject>, RemoteError> {
        let value: Bytes = decode_ctor("Value", args)?;
        Ok(Box::new(Value { value }))
    }
}

impl SharedObject for Value {
    fn call(&mut self, call: &mut Call<'_>) -> Reply {
        match call.method() {
            "get" => Reply::ok(&self.value),
            "set" => {
                self.value = args!(call, Bytes);
                Reply::ok(&())
            }
            "compare_and_set" => {
                let (expected, new) = args!(call, (Bytes, Bytes));
                if self.value == expected {
                    self.value = new;
                    Reply::ok(&(true, None::<Bytes>))
                } else {
                    Reply::ok(&(false, Some(&self.value)))
                }
            }
            other => Reply::no_such_method(other),
        }
    }
}

/// An `Array`: a fixed number of values, each read and written whole.
#[derive(Debug, Default)]
pub(crate) struct Array {
    items: Vec<Bytes>,
}

impl Array {
    pub(crate) fn create(args: &[u8]) -> Result<Box<dyn SharedObject>, RemoteError> {
        let items: Vec<Bytes> = decode_ctor("Array", args)?;
        Ok(Box::new(Array { items }))
    }
}

impl SharedObject for Array {
    fn call(&mut self, call: &mut Call<'_>) -> Reply {
        // An Array is a list of fixed length: only the methods that keep the length.
        sequence_call("array", &mut self.items, call.method(), call)
    }
}
