//! [`Future`], the handle to a task's eventual result; [`Completer`], the side an
//! executor keeps to report that result; and [`Task`], a task and its future in one
//! allocation, for executors that queue closures.
//!
//! # State machine
//!
//! One atomic byte, `state`, holds the phase in its low three bits and three flags:
//!
//! ```text
//!            set_running_or_notify_cancel            complete (completer only)
//!   PENDING ─────────────────────────────> RUNNING ──────────────────────────┐
//!      │                                                                      v
//!      │ cancel (Future or Completer) /              write outcome   FINISHED_OK
//!      │ complete of a task that never ran                ┌───────>  FINISHED_ERR
//!      └──────────────────────────────────> COMPLETING ───┘          CANCELLED
//!
//!   flags: WAITERS  someone registered in `inner` (callback, waker, watcher, sleeper)
//!          READING  a reader is cloning the outcome (under `inner`'s lock)
//!          TAKEN    the outcome was moved out (into_result, `.await`)
//!          YIELDING a blocking waiter yields its CPU to the completer (hint only)
//! ```
//!
//! The three terminal phases are final, and the outcome slot is written exactly once,
//! before the transition into one of them publishes it (with `Release`).
//!
//! `tests/loom_future.rs` checks these transitions under loom (complete against cancel,
//! a blocking wait, a callback registration, a reader and a taker); built with
//! `--cfg loom`, this module runs on loom's atomics, lock and condition variable.
//!
//! # Who touches what
//!
//! - **The phase.** PENDING → RUNNING and PENDING → COMPLETING are compare-exchanges, so
//!   a racing `cancel` and `set_running_or_notify_cancel` have exactly one winner. From
//!   RUNNING only the completing side (the one [`Completer`] or [`Task`]) can move on,
//!   so it needs no compare-exchange: it writes the outcome and flips the phase to
//!   terminal with one `fetch_xor`. From COMPLETING only the side whose
//!   compare-exchange entered it moves on, the same way. Nobody else ever changes the
//!   phase bits; others only set flags (`fetch_or`), which a compare-exchange that
//!   lost to them retries with.
//! - **The outcome slot** (`outcome`, an `UnsafeCell`). Before a terminal phase, only
//!   the side that owns the transition (RUNNING's completer, or COMPLETING's winner)
//!   touches it, and it writes it once. After, readers that clone it (`result`,
//!   `error`, `.await` by reference) hold `inner`'s lock and set READING while they
//!   read, and a taker (`into_result`, `.await` by value) moves it out only after its
//!   compare-exchange set TAKEN on a state without READING; a taker that finds READING
//!   waits for the reader on the lock. Nothing reads it after TAKEN.
//! - **The count of handles** (`refs`, in the allocation). Futures, their clones, the
//!   [`Completer`] and the [`Task`] each hold one. A new future's allocation starts with
//!   the count of the handles it is made with (two: future and completer or task), so
//!   making them takes no atomic operation; a clone adds one, a drop takes one away
//!   (`Release`) and the drop that reaches zero frees it (after an `Acquire` fence), as
//!   `Arc` does. [`Future::into_result`] on the last handle (count 1, read `Acquire`)
//!   frees it with no decrement: no other handle exists, and none can be made but from
//!   this one. The job's type is kept by a function pointer that frees the allocation as
//!   what it is, not by a fat pointer. The memory comes from the thread's blocks of
//!   future-sized slots (`slab.rs`): a burst of submissions makes one global allocation
//!   per block, not one per future.
//! - **The job slot** of a [`Task`] is touched only through the one `Task` handle,
//!   which is not `Clone`: it takes the closure out to run or drop it. Futures never
//!   touch it.
//! - **The claim** of a future made by [`Completer::claimed`] (the job slot of its
//!   allocation, read through shared references only) is a token word and the
//!   executor's [`StartClaim`]. The token goes from unbound to bound once, by the
//!   executor's compare-exchange ([`Completer::bind`]), or to revoked by a cancel's,
//!   so a cancel and a bind have exactly one winner. A cancel of a PENDING claimed
//!   future first revokes: an unbound token (the task was never handed over, and now
//!   never will be), or the bound claim through [`StartClaim::revoke`], whose
//!   compare-exchange in the executor's word races the worker's start. It moves the
//!   phase only if that succeeded (PENDING → COMPLETING, as for any cancel); if the
//!   worker won, it moves PENDING → RUNNING itself (the compare-exchange a start
//!   makes, idempotent) and returns false. The executor's relay marks the future
//!   running when it learns of the start; both transitions are the same one.
//! - **`inner`** (a mutex): `callbacks`, `wakers`, `watchers` and `sleepers` are
//!   appended to only under the lock *after* setting WAITERS and seeing (in the same
//!   `fetch_or`) that the future was not done. The terminal transition takes the lock
//!   only when the state it replaced had WAITERS: then it drains them and runs them
//!   after releasing the lock. So a task that nobody waits on for long completes with
//!   two atomic operations and no lock; no user code, waker or callback ever runs under
//!   the lock (but a reader's `Clone` does).
//! - Each `.await` (and each [`Completion`]) keeps the key of the one waker it
//!   registered, replaces it in place when polled with another waker, and removes it
//!   when dropped unfinished: an awaiting side that gives up (a `select!` that took
//!   another branch, an aborted task) leaves nothing behind in a future that lives on.
//! - The blocking waiter first spins on the state (see [`Shared::wait_done`]): a few
//!   µs while the task is PENDING, up to 40 µs once it has seen it RUNNING (its worker
//!   is then on another CPU), unless the future is relayed ([`Completer::relayed`]);
//!   then it sleeps on `cond` counted in `sleepers`. A waiter whose tasks have been
//!   completed from its own CPU after its spin failed (the scheduler put the worker
//!   beside it: `spin::waiter_yields`) sets YIELDING and yields a few times instead of
//!   spinning, then sleeps; a terminal transition that replaces YIELDING reports a
//!   wake-up ([`Task::run`] returns true), so the worker yields back. YIELDING,
//!   `finished_on` (the completer's CPU, written when someone waited) and `waiter_on`
//!   (the blocking waiter's CPU, written before YIELDING or WAITERS; a completer on
//!   that CPU tells `spin::leave_a_shared_cpu`) are hints: no transition depends on
//!   them.

use std::alloc::Layout;
use std::cell::UnsafeCell;
use std::fmt;
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::ptr::NonNull;
use std::sync::{Arc, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

// The state machine's atomics, lock and condition variable: std's, or loom's when built
// with `--cfg loom` for the model in tests/loom_future.rs. (The reference count of a
// `Handle` stays std's: the model is of the state byte, not the refcount.)
#[cfg(not(loom))]
use crossbeam_utils::Backoff;
#[cfg(loom)]
use loom::sync::{
    Condvar, Mutex, MutexGuard,
    atomic::{AtomicU8, AtomicU64, Ordering},
};
#[cfg(not(loom))]
use std::sync::{
    Condvar, Mutex, MutexGuard,
    atomic::{AtomicU8, AtomicU64, Ordering},
};

use crate::deadline::Deadline;
use crate::error::TaskError;
use crate::spin::spin_for;
use crate::wait::Signal;

const PENDING: u8 = 0;
const RUNNING: u8 = 1;
const COMPLETING: u8 = 2;
const FINISHED_OK: u8 = 3;
const FINISHED_ERR: u8 = 4;
const CANCELLED: u8 = 5;
/// How long a blocking waiter spins before it parks (see [`Shared::wait_done`]): enough
/// for a trivial task on another CPU, and short, because every microsecond of it is a
/// microsecond of delay when the worker shares the waiter's CPU.
const SPIN_FOR: Duration = if cfg!(loom) {
    // Under loom a wait parks at once: the model explores interleavings, not time.
    Duration::ZERO
} else {
    Duration::from_micros(3)
};
/// How long a blocking waiter keeps spinning once it has seen the task RUNNING (see
/// [`Shared::wait_done`]): a RUNNING task's worker is on another CPU than the spinning
/// waiter, so the spin delays nobody, and a waiter that parks lets its virtual CPU halt,
/// whose wake-up costs about 50 µs on a VM. Bounded, so a long task costs its waiter at
/// most this much CPU.
const SPIN_RUNNING_FOR: Duration = if cfg!(loom) {
    Duration::ZERO
} else {
    Duration::from_micros(40)
};
#[cfg(test)]
thread_local! {
    /// How many waits of this thread spun on a RUNNING task (see [`Shared::wait_done`]).
    pub(crate) static RUNNING_SPINS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The bits of `state` that hold the phase.
const PHASE: u8 = 0b111;
/// Someone registered in `inner`: the terminal transition must take the lock.
const WAITERS: u8 = 1 << 3;
/// A reader is cloning the outcome, holding `inner`'s lock.
const READING: u8 = 1 << 4;
/// The outcome was moved out.
const TAKEN: u8 = 1 << 5;
/// A blocking waiter yields its CPU to the completer, which shares it (see
/// [`Shared::wait_done`]): the completer should yield back once it has published.
const YIELDING: u8 = 1 << 6;

fn phase(state: u8) -> u8 {
    state & PHASE
}

fn is_done(state: u8) -> bool {
    phase(state) >= FINISHED_OK
}

/// Where a [`Future`] is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Submitted, not started; it can still be cancelled.
    Pending,
    /// A worker is running the task; it can no longer be cancelled.
    Running,
    /// The task ended, with a value or a failure.
    Finished,
    /// The future was cancelled before the task started.
    Cancelled,
}

/// Which task a [`Future`] stands for: equal for every clone of a future and for its
/// [`Completer`], different for different tasks, for as long as any of them is alive.
///
/// Python's futures are hashable by identity; this is that identity, for keying maps of
/// futures or telling an executor which task is meant (`ProcessPoolExecutor::stop`).
///
/// ```
/// use flotilla_core::Completer;
///
/// let (completer, fut) = Completer::<u8>::new();
/// let (_, other) = Completer::<u8>::new();
/// assert_eq!(fut.id(), fut.clone().id());
/// assert_eq!(fut.id(), completer.id());
/// assert_ne!(fut.id(), other.id());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FutureId(usize);

/// A done callback, as given to [`Future::add_done_callback`].
type Callback<T> = Box<dyn FnOnce(&Future<T>) + Send + 'static>;

/// The waiters of a future that is not done yet, under `Shared::inner`. Boxed there on
/// first use: most futures never have a waiter that does not find them done, and a
/// small allocation is what makes a task cheap.
struct Inner<T> {
    callbacks: Vec<Callback<T>>,
    /// Registered wakers with the key their registrant keeps (see [`WakerSlot`]).
    wakers: Vec<(u64, Waker)>,
    /// The key the next waker registration gets.
    next_waker: u64,
    watchers: Vec<(Arc<Signal>, usize)>,
    /// Threads parked on `Shared::cond`.
    sleepers: usize,
}

impl<T> Default for Inner<T> {
    fn default() -> Self {
        Inner {
            callbacks: Vec::new(),
            wakers: Vec::new(),
            next_waker: 0,
            watchers: Vec::new(),
            sleepers: 0,
        }
    }
}

/// A task's outcome as a future stores it.
type Outcome<T> = Result<T, Box<TaskError>>;

/// The guard of `Shared::inner`.
type Locked<'a, T> = MutexGuard<'a, Option<Box<Inner<T>>>>;

/// One future's allocation: its [`Shared`] state, then what rides along with it:
/// nothing (`()`, for a [`Completer`]'s future), or a [`Task`]'s closure. Every handle
/// sees only the `Shared<T>` at its start (`repr(C)`); only the [`Task`], which knows
/// `J`, touches `job`, which lies wholly after it.
#[repr(C)]
struct Alloc<T, J> {
    shared: Shared<T>,
    job: J,
}

/// A future's state, at the start of its allocation ([`Alloc`]).
struct Shared<T> {
    /// The handles to it ([`Handle`]s: futures, the completer or the task).
    refs: std::sync::atomic::AtomicUsize,
    /// Drops the allocation as the `Alloc<T, J>` it is, once the last handle is gone.
    release: unsafe fn(NonNull<Shared<T>>),
    state: AtomicU8,
    /// The outcome is published by a relay of this process (a process pool's manager
    /// thread), not by the thread that runs the task: see [`Shared::wait_done`]. Set at
    /// allocation, never changed.
    relayed: bool,
    /// The allocation is an `Alloc<T, Claim>`: a [`Claim`] rides along, which
    /// [`Future::cancel`] must win (see [`Completer::claimed`]). Set at allocation, never
    /// changed.
    claimed: bool,
    inner: Mutex<Option<Box<Inner<T>>>>,
    cond: Condvar,
    /// The error is boxed so the slot is small for the usual outcome, a value.
    outcome: UnsafeCell<Option<Outcome<T>>>,
    /// The CPU the completing side published from, written when someone waited
    /// (`u32::MAX` before): a hint for the blocking waiter's spin (see
    /// [`crate::spin::waiter_yields`]), not part of the state machine.
    finished_on: std::sync::atomic::AtomicU32,
    /// The CPU a blocking waiter was on when it began to yield or sleep (`u32::MAX`
    /// before): a completer on the same CPU shares it with its waiter (see
    /// [`crate::spin::leave_a_shared_cpu`]). A hint, like `finished_on`.
    waiter_on: std::sync::atomic::AtomicU32,
}

// SAFETY: `outcome` is the only field not already `Sync`. The state machine of the
// module docs gives every access to it one owner at a time: it is written by the one
// side owning the transition to a terminal phase, then only read under `inner`'s lock
// with READING set, or moved out once by the side that set TAKEN. Values cross threads
// by those hand-offs only, hence `T: Send`, not `Sync`.
unsafe impl<T: Send> Sync for Shared<T> {}

/// A counted reference to a [`Shared`]: what `Arc<Shared<T>>` was, with what this
/// module needs and `Arc` cannot give. A task's allocation is made with its two
/// references (future and task) counted, not one plus an increment; the last handle
/// can free it without a decrement ([`Handle::release_last`]); and the job's type is
/// forgotten without a fat pointer. No weak references.
struct Handle<T> {
    ptr: NonNull<Shared<T>>,
    _owns: PhantomData<Shared<T>>,
}

// SAFETY: a handle is a shared reference to a `Shared<T>`, which is `Sync` for
// `T: Send`; the last handle, on whichever thread, drops the value and the job (which
// was `Send` when it was made: `Handle::allocate` demands it): `Send` needs no more.
unsafe impl<T: Send> Send for Handle<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for Handle<T> {}

// A handle is a pointer, as `Arc` is: nothing is ever pinned through it.
impl<T> Unpin for Handle<T> {}

impl<T> Handle<T> {
    /// A new allocation in `state`, with `outcome` and `job`, and `refs` handles to it;
    /// `relayed` says whether a relay publishes the outcome (see [`Completer::relayed`]).
    /// (`claimed` is set by [`Handle::allocate_claimed`], the one maker whose job is a
    /// [`Claim`].)
    fn allocate<J: Send>(
        refs: usize,
        state: u8,
        relayed: bool,
        outcome: Option<Outcome<T>>,
        job: J,
    ) -> NonNull<Shared<T>> {
        Self::allocate_as(refs, state, relayed, false, outcome, job)
    }

    /// A new pending, relayed allocation with `claim` riding along, and `refs` handles.
    fn allocate_claimed(refs: usize, claim: Claim) -> NonNull<Shared<T>> {
        Self::allocate_as(refs, PENDING, true, true, None, claim)
    }

    fn allocate_as<J: Send>(
        refs: usize,
        state: u8,
        relayed: bool,
        claimed: bool,
        outcome: Option<Outcome<T>>,
        job: J,
    ) -> NonNull<Shared<T>> {
        let alloc = Alloc {
            shared: Shared {
                refs: std::sync::atomic::AtomicUsize::new(refs),
                release: release::<T, J>,
                state: AtomicU8::new(state),
                relayed,
                claimed,
                inner: Mutex::new(None),
                cond: Condvar::new(),
                outcome: UnsafeCell::new(outcome),
                finished_on: std::sync::atomic::AtomicU32::new(u32::MAX),
                waiter_on: std::sync::atomic::AtomicU32::new(u32::MAX),
            },
            job,
        };
        let ptr = crate::slab::allocate(Layout::new::<Alloc<T, J>>()).cast::<Alloc<T, J>>();
        // SAFETY: fresh memory of `Alloc<T, J>`'s layout.
        unsafe { ptr.write(alloc) };
        // `shared` is at offset 0 (`repr(C)`): the pointer to the whole is one to it.
        ptr.cast()
    }

    /// Takes over one of the counted references to `ptr`.
    ///
    /// # Safety
    ///
    /// `ptr` came from [`Handle::allocate`], and the caller owns one of its counted
    /// references, which this handle now holds.
    unsafe fn adopt(ptr: NonNull<Shared<T>>) -> Self {
        Handle {
            ptr,
            _owns: PhantomData,
        }
    }

    /// A handle to a new allocation that only it refers to.
    fn alone(state: u8, outcome: Option<Outcome<T>>) -> Self {
        // SAFETY: made with one reference, which this handle holds.
        unsafe { Self::adopt(Self::allocate(1, state, false, outcome, ())) }
    }

    /// The allocation's address: the future's identity.
    fn addr(&self) -> usize {
        self.ptr.as_ptr().addr()
    }

    /// The claim riding along, for a future made by [`Completer::claimed`].
    fn claim(&self) -> Option<&Claim> {
        if !self.claimed {
            return None;
        }
        let alloc = self.ptr.cast::<Alloc<T, Claim>>();
        // SAFETY: `claimed` is set only by `allocate_claimed`, so the allocation is an
        // `Alloc<T, Claim>`, and `ptr` points to all of it (it is the allocation's own
        // pointer, cast). The claim lives as long as any handle does, and is only ever
        // reached through shared references.
        Some(unsafe { &alloc.as_ref().job })
    }

    /// For a cancel of a pending future: keeps its task from starting elsewhere, if the
    /// future is claimed (see [`Completer::claimed`]). True when the task will not start
    /// that way: the claim was revoked now or before, the future was not bound yet (then
    /// it never will be), or it has no claim (then the state byte alone decides). False
    /// when the task has started.
    fn revoke_claim(&self) -> bool {
        let Some(claim) = self.claim() else {
            return true;
        };
        // Pairs with `bind`'s release: the executor set up what `revoke` looks at
        // before it bound the token.
        let mut token = claim.token.load(Ordering::Acquire);
        loop {
            match token {
                UNBOUND => match claim.token.compare_exchange(
                    UNBOUND,
                    REVOKED,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => return true,
                    Err(now) => token = now, // bound meanwhile
                },
                REVOKED => return true,
                token => return claim.claim.revoke(token),
            }
        }
    }

    /// Whether this is the only handle left (then none can be made but from it).
    fn is_last(&self) -> bool {
        // Pairs with the `Release` decrement of every handle dropped before: what they
        // did with the allocation happened before what this handle's owner does next.
        self.refs.load(Ordering::Acquire) == 1
    }

    /// Frees the allocation of the last handle, with no atomic decrement.
    fn release_last(self) {
        debug_assert!(self.is_last());
        let ptr = self.ptr;
        std::mem::forget(self);
        // SAFETY: this was the last handle (the caller checked, and none can appear from
        // nowhere), so nobody else can reach the allocation.
        unsafe { (ptr.as_ref().release)(ptr) };
    }
}

/// Drops an `Alloc<T, J>` (outcome, and the job if still there) and frees it.
///
/// # Safety
///
/// `ptr` came from `Handle::allocate::<J>`, and no handle to it is left.
unsafe fn release<T, J>(ptr: NonNull<Shared<T>>) {
    let alloc = ptr.cast::<Alloc<T, J>>();
    // SAFETY: an `Alloc<T, J>` from `slab::allocate` (the caller vouches), now
    // unreachable: dropped once, then its memory freed with the layout it was made with.
    unsafe {
        alloc.drop_in_place();
        crate::slab::free(alloc.cast(), Layout::new::<Alloc<T, J>>());
    }
}

impl<T> Clone for Handle<T> {
    fn clone(&self) -> Self {
        // As `Arc`: a new reference needs no ordering, as the one it comes from keeps
        // the allocation alive meanwhile. Counts that would overflow abort.
        if self.refs.fetch_add(1, Ordering::Relaxed) > isize::MAX as usize {
            std::process::abort();
        }
        Handle {
            ptr: self.ptr,
            _owns: PhantomData,
        }
    }
}

impl<T> Drop for Handle<T> {
    fn drop(&mut self) {
        if self.refs.fetch_sub(1, Ordering::Release) != 1 {
            return;
        }
        // Pairs with the `Release` above of every other handle's drop.
        std::sync::atomic::fence(Ordering::Acquire);
        // SAFETY: that was the last reference: nobody else can reach the allocation.
        unsafe { (self.ptr.as_ref().release)(self.ptr) };
    }
}

impl<T> std::ops::Deref for Handle<T> {
    type Target = Shared<T>;

    fn deref(&self) -> &Shared<T> {
        // SAFETY: the allocation lives while any handle does, and begins with this
        // `Shared<T>` (see `Alloc`).
        unsafe { self.ptr.as_ref() }
    }
}

/// The eventual result of a task: Python's `concurrent.futures.Future`.
///
/// A `Future` is a cheap, cloneable handle; every clone sees the same task. It is
/// returned by an executor's `submit`, and completed by the executor through the
/// matching [`Completer`]. Its result can be waited for with a timeout
/// ([`result`](Future::result)), polled ([`done`](Future::done)), cancelled while it has
/// not started ([`cancel`](Future::cancel)), observed by callbacks
/// ([`add_done_callback`](Future::add_done_callback)), waited for together with other
/// futures ([`wait`](crate::wait()), [`as_completed`](crate::as_completed())), and
/// `.await`ed from any async code, with no runtime of its own.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use flotilla_core::{Completer, Future};
///
/// let (completer, fut) = Completer::new();
/// std::thread::spawn(move || {
///     if completer.set_running_or_notify_cancel() {
///         completer.set_result(6 * 7);
///     }
/// });
/// assert_eq!(fut.result_timeout(Duration::from_secs(10)).unwrap(), 42);
/// assert!(fut.done());
/// ```
pub struct Future<T> {
    shared: Handle<T>,
}

/// The completing side of a [`Future`], owned by whatever runs the task.
///
/// Executor authors create one with [`Completer::new`], hand the [`Future`] to the user,
/// and when the task is picked up call
/// [`set_running_or_notify_cancel`](Completer::set_running_or_notify_cancel): `false`
/// means the user cancelled it, and the task must not run. Then exactly one of
/// [`set_result`](Completer::set_result), [`set_error`](Completer::set_error) or
/// [`complete`](Completer::complete) reports how it ended.
///
/// A `Completer` dropped without completing its future (a worker died, a queue was
/// dropped) fails the future with [`TaskError::Broken`], so no waiter ever hangs on a
/// task that nobody will finish.
pub struct Completer<T> {
    shared: Handle<T>,
}

/// Where the start of a task that runs in another process is settled: see
/// [`Completer::claimed`].
///
/// The executor gives each task it hands over a claim — typically a word in memory it
/// shares with the worker, which the worker changes with one compare-exchange to start
/// the task — and binds the task's future to a token naming it
/// ([`Completer::bind`]). A cancel of the pending future calls `revoke` with that token
/// before it marks the future cancelled.
pub trait StartClaim: Send + Sync {
    /// Keeps the task named by `token` from ever starting, if it has not started: true
    /// when it never will (revoked now, or before), false when it has started.
    fn revoke(&self, token: u64) -> bool;
}

/// What rides along with a future made by [`Completer::claimed`].
struct Claim {
    claim: Arc<dyn StartClaim>,
    /// [`UNBOUND`], [`REVOKED`], or the token the executor bound.
    token: AtomicU64,
}

/// A claimed future's token before [`Completer::bind`].
const UNBOUND: u64 = 0;
/// A claimed future's token once a cancel came before [`Completer::bind`]: it will not
/// be bound.
const REVOKED: u64 = u64::MAX;

impl<T> Shared<T> {
    fn lock(&self) -> Locked<'_, T> {
        // User code never runs under this lock (a reader's `Clone` is the exception, and
        // the READING guard survives its panic), so a poisoned lock can only come from a
        // panic between consistent states; the data is still valid.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn state(&self) -> u8 {
        self.state.load(Ordering::Acquire)
    }

    /// Under `inner`'s lock (the guard proves it): tells the terminal transition that
    /// it must take the lock, and returns where to register while the future is not
    /// done. `None` means it is: nothing may be registered then, as the transition has
    /// already happened and will not look again.
    fn announce_waiter<'g>(&self, locked: &'g mut Locked<'_, T>) -> Option<&'g mut Inner<T>> {
        if is_done(self.state.fetch_or(WAITERS, Ordering::AcqRel)) {
            return None;
        }
        Some(locked.get_or_insert_with(Box::default))
    }

    /// Waits while another side is between COMPLETING and its terminal phase: a few
    /// instructions, unless that thread was preempted right there.
    fn wait_out_completing(&self) -> u8 {
        #[cfg(not(loom))]
        let backoff = Backoff::new();
        loop {
            let state = self.state();
            if phase(state) != COMPLETING {
                return state;
            }
            #[cfg(not(loom))]
            backoff.snooze();
            // loom runs its threads one at a time: a spin must let the others run.
            #[cfg(loom)]
            loom::thread::yield_now();
        }
    }

    /// Blocks until the future is done or `timeout` has passed; true when done.
    fn wait_done(&self, timeout: Option<Duration>) -> bool {
        if is_done(self.state()) {
            return true;
        }
        // From the call: the spin below is part of the wait it bounds.
        let deadline = Deadline::after(timeout);
        // Whether to learn, once it is done, where the task was completed from.
        let mut noted = false;
        if timeout != Some(Duration::ZERO) {
            // A spin catches a short task finishing on another CPU; it is bounded in
            // time, not in spin-loop hints, since one `pause` takes from 35 to 190 ns on
            // a virtual machine. Where the scheduler has put the worker on the waiter's
            // CPU (and it keeps them there for the life of the process), the worker runs
            // only once the waiter stops spinning, so a long spin is a slow mode: 50 µs
            // of spin made 50 µs round trips. And it never yields: on a CPU shared with a
            // busy process `sched_yield` took from 1 to 470 µs, as it hands over the rest
            // of a time slice, while a parked waiter that is woken runs at once. The
            // spin-then-yield this replaced (crossbeam's `Backoff::snooze`: 127 hints,
            // 4-24 µs here, then four yields) was the slow mode of issue 15.
            //
            // The short bound holds while the task is PENDING: its worker may be waiting
            // for this very CPU. Once the task is seen RUNNING, its worker is running on
            // another CPU at the same time as this waiter, so spinning on delays nobody;
            // the waiter then spins up to SPIN_RUNNING_FOR, because parking lets this
            // (virtual) CPU halt, and waking a halted vCPU took ~50 µs on this VM
            // (haltpoll with no poll time): the idle slow mode of issue 15, where a
            // trivial task finished a microsecond after its waiter had parked.
            //
            // Not for a relayed future (`Completer::relayed`): RUNNING says its worker
            // process has it, not that the thread that will complete it is running. That
            // thread (a process pool's manager) may be waiting for this very CPU, and
            // each result then cost the whole spin.
            //
            // Where the worker does share this CPU, the spin on a PENDING task cannot
            // succeed: a waiter that has seen that (`spin::waiter_yields`) yields to
            // the worker instead, with YIELDING set so that the worker yields back.
            if !cfg!(loom) && !self.relayed && crate::spin::waiter_yields() {
                self.note_waiter_cpu();
                self.state.fetch_or(YIELDING, Ordering::AcqRel);
                for _ in 0..crate::spin::WAITER_YIELDS {
                    // The yields are part of the wait its timeout bounds, as the spin is.
                    if deadline.expired() || !crate::spin::yield_once() {
                        break; // out of time, or contended: this CPU has a busy process
                    }
                    if is_done(self.state()) {
                        self.note_completer();
                        return true;
                    }
                }
                noted = true;
            } else {
                let limit = |bound: Duration| timeout.map_or(bound, |t| t.min(bound));
                let start = Instant::now();
                let mut running = false;
                spin_for(limit(SPIN_FOR), || {
                    let state = self.state();
                    running = phase(state) == RUNNING;
                    is_done(state) || running
                });
                if running && !self.relayed {
                    #[cfg(test)]
                    RUNNING_SPINS.with(|n| n.set(n.get() + 1));
                    let left = limit(SPIN_RUNNING_FOR).saturating_sub(start.elapsed());
                    spin_for(left, || is_done(self.state()));
                }
                if is_done(self.state()) {
                    crate::spin::spin_found_it();
                    return true;
                }
                // A spin that never saw the task start: its worker may share this CPU.
                noted = !running && !self.relayed;
            }
        }
        let mut locked = self.lock();
        self.note_waiter_cpu();
        if self.announce_waiter(&mut locked).is_some() {
            while !is_done(self.state()) {
                if deadline.expired() {
                    return false;
                }
                Self::sleepers(&mut locked).sleepers += 1;
                locked = park(&self.cond, locked, deadline);
                Self::sleepers(&mut locked).sleepers -= 1;
            }
        }
        drop(locked);
        if noted {
            self.note_completer();
        }
        true
    }

    /// Records the blocking waiter's CPU, before the flag that tells the completer to
    /// look at it (YIELDING, or WAITERS).
    fn note_waiter_cpu(&self) {
        if !cfg!(loom) && !self.relayed {
            self.waiter_on
                .store(crate::spin::current_cpu(), Ordering::Relaxed);
        }
    }

    /// Tells the blocking waiter's guess (`spin::waiter_yields`) which CPU the task
    /// was completed from.
    fn note_completer(&self) {
        if !cfg!(loom) {
            crate::spin::note_completer(self.finished_on.load(Ordering::Relaxed));
        }
    }

    /// The waiters of a future that has announced one (so its box exists).
    fn sleepers<'g>(locked: &'g mut Locked<'_, T>) -> &'g mut Inner<T> {
        locked.get_or_insert_with(Box::default)
    }

    /// Reads the outcome of a done future with `read`; `None` when it was taken.
    fn read<R>(&self, read: impl FnOnce(Result<&T, &TaskError>) -> R) -> Option<R> {
        // Readers exclude each other with the lock (so `T` need not be `Sync`), and a
        // taker with READING, which it waits out on the same lock.
        let _inner = self.lock();
        let before = self.state.fetch_or(READING, Ordering::Acquire);
        // Declared after the lock guard, so dropped (READING cleared) before it, even
        // when `read` panics.
        let _reading = ClearReading(&self.state);
        if before & TAKEN != 0 {
            return None;
        }
        debug_assert!(is_done(before), "only a done future's outcome is read");
        // SAFETY: the future is done (the caller waited for it, and the `Acquire` above
        // saw its `Release`), so the slot is written and nobody writes it again; TAKEN
        // is not set and cannot be while READING is (module docs, "Who touches what"),
        // and other readers are kept out by the lock.
        let outcome = unsafe { &*self.outcome.get() };
        let outcome = outcome.as_ref().expect("a done future has an outcome");
        Some(read(outcome.as_ref().map_err(|e| &**e)))
    }

    /// Moves the outcome out of a done future; [`TaskError::ResultTaken`] when another
    /// handle already did.
    fn take(&self) -> Result<T, TaskError> {
        let mut current = self.state.load(Ordering::Acquire);
        loop {
            debug_assert!(is_done(current), "only a done future's outcome is taken");
            if current & TAKEN != 0 {
                return Err(TaskError::ResultTaken);
            }
            if current & READING != 0 {
                // A reader is cloning under the lock: wait for it there.
                drop(self.lock());
                current = self.state.load(Ordering::Acquire);
                continue;
            }
            match self.state.compare_exchange_weak(
                current,
                current | TAKEN,
                Ordering::Acquire,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(now) => current = now,
            }
        }
        // SAFETY: our compare-exchange set TAKEN on a done state without READING: no
        // reader is in the slot and none will enter it, no other taker can set TAKEN
        // again, and the writer finished before the terminal phase we saw (module docs).
        let outcome = unsafe { (*self.outcome.get()).take() };
        outcome
            .expect("a done future has an outcome")
            .map_err(|e| *e)
    }
}

impl<T> Handle<T> {
    /// Moves the future to a terminal phase with `outcome`: from PENDING, or also from
    /// RUNNING when `from_running` (only the completing side may ask that). Returns
    /// whether this call made the transition, and whether it woke anyone.
    fn finish(&self, from_running: bool, outcome: Result<T, TaskError>) -> Finished {
        let terminal = match &outcome {
            Ok(_) => FINISHED_OK,
            Err(TaskError::Cancelled) => CANCELLED,
            Err(_) => FINISHED_ERR,
        };
        let mut current = self.state.load(Ordering::Acquire);
        let from = loop {
            match phase(current) {
                PENDING => match self.state.compare_exchange_weak(
                    current,
                    (current & !PHASE) | COMPLETING,
                    Ordering::Acquire,
                    Ordering::Acquire,
                ) {
                    Ok(_) => break COMPLETING,
                    // A flag was set, or a racing cancel or start won: look again.
                    Err(now) => current = now,
                },
                RUNNING if from_running => break RUNNING,
                _ => return Finished::NotMade,
            }
        };
        // SAFETY: we own the transition out of `from` (module docs, "Who touches what":
        // our compare-exchange entered COMPLETING, or the caller is the completing side
        // of a RUNNING future), so no one else reads or writes the slot until the
        // `fetch_xor` below publishes it.
        unsafe { *self.outcome.get() = Some(outcome.map_err(Box::new)) };
        // Only the phase bits change, from `from` (which nobody else can leave) to
        // `terminal`; flags set meanwhile are kept.
        let before = self.state.fetch_xor(from ^ terminal, Ordering::AcqRel);
        if before & (WAITERS | YIELDING) != 0 {
            // Before the wake-ups: a sleeper reads it after the lock they take.
            let cpu = crate::spin::current_cpu();
            self.finished_on.store(cpu, Ordering::Relaxed);
            // The waiter wrote its CPU before the flag this swap replaced.
            if cpu != u32::MAX && self.waiter_on.load(Ordering::Relaxed) == cpu {
                crate::spin::completed_beside_waiter();
            }
        }
        if before & WAITERS != 0 {
            self.wake_waiters();
            return Finished::WokeWaiters;
        }
        if before & YIELDING != 0 {
            // That waiter is runnable on this CPU: say so, so that we yield back.
            return Finished::WokeWaiters;
        }
        Finished::Quietly
    }

    /// After the terminal transition of a future with WAITERS: wakes the sleepers and
    /// runs what was registered, outside the lock.
    fn wake_waiters(&self) {
        let mut locked = self.lock();
        // WAITERS is set only by a registrant that then created the box.
        let inner = locked.get_or_insert_with(Box::default);
        // The box stays: a sleeper still counts itself out of it when it wakes.
        let callbacks = std::mem::take(&mut inner.callbacks);
        let wakers = std::mem::take(&mut inner.wakers);
        let watchers = std::mem::take(&mut inner.watchers);
        let sleepers = inner.sleepers > 0;
        drop(locked);

        if sleepers {
            self.cond.notify_all();
        }
        for (signal, index) in watchers {
            signal.fire(index);
        }
        for (_, waker) in wakers {
            waker.wake();
        }
        if !callbacks.is_empty() {
            let fut = Future {
                shared: self.clone(),
            };
            for callback in callbacks {
                fut.run_callback(callback);
            }
        }
    }
}

/// Sleeps on `cond` until woken or `deadline`, the lock released meanwhile.
#[cfg(not(loom))]
fn park<'a, T>(cond: &Condvar, locked: Locked<'a, T>, deadline: Deadline) -> Locked<'a, T> {
    deadline.wait(cond, locked)
}

/// Under loom: sleeps on `cond` until woken (the model waits without timeouts).
#[cfg(loom)]
fn park<'a, T>(cond: &Condvar, locked: Locked<'a, T>, _deadline: Deadline) -> Locked<'a, T> {
    cond.wait(locked).unwrap_or_else(PoisonError::into_inner)
}

/// A clone of a done future's outcome.
fn clone_outcome<T: Clone>(outcome: Result<&T, &TaskError>) -> Result<T, TaskError> {
    outcome.cloned().map_err(TaskError::clone)
}

/// Clears READING when a reader is done with the outcome, even by a panic.
struct ClearReading<'a>(&'a AtomicU8);

impl Drop for ClearReading<'_> {
    fn drop(&mut self) {
        self.0.fetch_and(!READING, Ordering::Release);
    }
}

impl<T> Future<T> {
    /// A future that is already finished with `value`.
    ///
    /// ```
    /// let fut = flotilla_core::Future::ready("done");
    /// assert_eq!(fut.result().unwrap(), "done");
    /// ```
    pub fn ready(value: T) -> Self {
        Future {
            shared: Handle::alone(FINISHED_OK, Some(Ok(value))),
        }
    }

    /// A future that is already finished with `error` (or cancelled, when `error` is
    /// [`TaskError::Cancelled`]).
    pub fn failed(error: TaskError) -> Self {
        let state = match error {
            TaskError::Cancelled => CANCELLED,
            _ => FINISHED_ERR,
        };
        Future {
            shared: Handle::alone(state, Some(Err(Box::new(error)))),
        }
    }

    /// Which task this future stands for; see [`FutureId`].
    pub fn id(&self) -> FutureId {
        FutureId(self.shared.addr())
    }

    /// Where the future is in its life.
    pub fn state(&self) -> State {
        match phase(self.shared.state()) {
            // COMPLETING from PENDING: still pending until its outcome is published.
            PENDING | COMPLETING => State::Pending,
            RUNNING => State::Running,
            CANCELLED => State::Cancelled,
            _ => State::Finished,
        }
    }

    /// True once the task finished or the future was cancelled.
    pub fn done(&self) -> bool {
        is_done(self.shared.state())
    }

    /// True while a worker is running the task.
    pub fn running(&self) -> bool {
        phase(self.shared.state()) == RUNNING
    }

    /// True when the future was cancelled before its task started.
    pub fn cancelled(&self) -> bool {
        phase(self.shared.state()) == CANCELLED
    }

    /// True when the task has finished with a failure: it panicked, returned `Err`, or
    /// was lost with its worker — what Python calls a done future with an exception,
    /// and what [`ReturnWhen::FirstException`](crate::ReturnWhen) stops on. False while
    /// it runs, after a success, and after a cancellation. Never waits.
    ///
    /// ```
    /// use flotilla_core::{Future, TaskError};
    ///
    /// assert!(Future::<u8>::failed(TaskError::ShutDown).is_failed());
    /// assert!(!Future::<u8>::failed(TaskError::Cancelled).is_failed());
    /// assert!(!Future::ready(1).is_failed());
    /// ```
    pub fn is_failed(&self) -> bool {
        phase(self.shared.state()) == FINISHED_ERR
    }

    /// Cancels the task if it has not started yet.
    ///
    /// Returns true when the future is (now or already) cancelled, false when the task is
    /// running or finished, as Python's `Future.cancel`. To stop a task that is already
    /// running, give it a [`CancelToken`](crate::CancelToken) to check.
    ///
    /// ```
    /// use flotilla_core::{Completer, TaskError};
    ///
    /// let (completer, fut) = Completer::<()>::new();
    /// assert!(fut.cancel());
    /// assert!(!completer.set_running_or_notify_cancel()); // the executor skips it
    /// assert!(matches!(fut.result(), Err(TaskError::Cancelled)));
    /// ```
    pub fn cancel(&self) -> bool {
        loop {
            match phase(self.shared.state()) {
                CANCELLED => return true,
                PENDING => {
                    if !self.shared.revoke_claim() {
                        // Its worker elsewhere took the claim: it runs, whether or not the
                        // relay has said so yet. Say so now (a no-op if it did).
                        self.shared.set_running();
                        continue;
                    }
                    if self.shared.finish(false, Err(TaskError::Cancelled)) != Finished::NotMade {
                        return true;
                    }
                    // Lost to a start, another cancel or a completion: look again.
                }
                COMPLETING => {
                    return phase(self.shared.wait_out_completing()) == CANCELLED;
                }
                _ => return false,
            }
        }
    }

    /// Blocks until the future is done and returns a clone of the value: Python's
    /// `Future.result()`.
    ///
    /// Fails with the task's failure or [`TaskError::Cancelled`]; never with
    /// [`TaskError::TimedOut`], which only [`result_timeout`](Future::result_timeout)
    /// returns. The clone is made under the future's internal lock: keep `Clone` impls
    /// cheap and non-blocking. For values that are not `Clone`, use
    /// [`into_result`](Future::into_result).
    ///
    /// ```
    /// assert_eq!(flotilla_core::Future::ready(7).result().unwrap(), 7);
    /// ```
    pub fn result(&self) -> Result<T, TaskError>
    where
        T: Clone,
    {
        self.result_within(None)
    }

    /// Like [`result`](Future::result), but gives up after `timeout` with
    /// [`TaskError::TimedOut`] (the task goes on): Python's `Future.result(timeout)`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use flotilla_core::{Completer, TaskError};
    ///
    /// let (completer, fut) = Completer::<u8>::new();
    /// assert!(matches!(fut.result_timeout(Duration::from_millis(1)), Err(TaskError::TimedOut)));
    /// completer.set_result(1);
    /// assert_eq!(fut.result_timeout(Duration::from_secs(60)).unwrap(), 1);
    /// ```
    pub fn result_timeout(&self, timeout: Duration) -> Result<T, TaskError>
    where
        T: Clone,
    {
        self.result_within(Some(timeout))
    }

    /// The body of [`result`](Future::result) and [`result_timeout`](Future::result_timeout);
    /// `None` waits without limit.
    fn result_within(&self, timeout: Option<Duration>) -> Result<T, TaskError>
    where
        T: Clone,
    {
        if !self.shared.wait_done(timeout) {
            return Err(TaskError::TimedOut);
        }
        self.shared
            .read(clone_outcome)
            .unwrap_or(Err(TaskError::ResultTaken))
    }

    /// Blocks until the future is done and moves the value out of it.
    ///
    /// Needs no `Clone`. Other handles to the same future keep seeing it as done, but
    /// `result` on them then fails with [`TaskError::ResultTaken`]. Never fails with
    /// [`TaskError::TimedOut`]: that is
    /// [`into_result_timeout`](Future::into_result_timeout)'s.
    ///
    /// ```
    /// let fut = flotilla_core::Future::ready(vec![1, 2, 3]);
    /// assert_eq!(fut.into_result().unwrap(), vec![1, 2, 3]);
    /// ```
    pub fn into_result(self) -> Result<T, TaskError> {
        self.into_result_within(None)
    }

    /// Like [`into_result`](Future::into_result), but gives up after `timeout` with
    /// [`TaskError::TimedOut`]. Then nothing is taken, but the handle is consumed: keep a
    /// clone if you want to wait again.
    pub fn into_result_timeout(self, timeout: Duration) -> Result<T, TaskError> {
        self.into_result_within(Some(timeout))
    }

    /// The body of [`into_result`](Future::into_result) and its timed form; `None` waits
    /// without limit.
    fn into_result_within(self, timeout: Option<Duration>) -> Result<T, TaskError> {
        if !self.shared.wait_done(timeout) {
            return Err(TaskError::TimedOut);
        }
        if self.shared.is_last() {
            // SAFETY: this is the last handle (the usual case: the completing side and
            // the other clones have let go; `is_last` ordered what they did before this),
            // so no other thread can reach the slot any more; the future is done, so it
            // was written (module docs, "Who touches what"). Nothing needs keeping out,
            // so TAKEN need not be set: the allocation goes with this handle.
            let outcome = unsafe { (*self.shared.outcome.get()).take() };
            // Freed with no atomic decrement: nobody else can count.
            self.shared.release_last();
            return outcome.map_or(Err(TaskError::ResultTaken), |o| o.map_err(|e| *e));
        }
        self.shared.take()
    }

    /// Blocks until the future is done and returns how the task failed, or `None` when
    /// it succeeded: Python's `Future.exception()`.
    ///
    /// Like Python, a cancelled future is an error of the call itself
    /// ([`TaskError::Cancelled`]), not the task's failure.
    ///
    /// ```
    /// use flotilla_core::{Future, TaskError};
    ///
    /// assert!(Future::ready(1).error().unwrap().is_none());
    /// let failed = Future::<i32>::failed(TaskError::Panicked { message: "no".into() });
    /// assert!(matches!(failed.error(), Ok(Some(TaskError::Panicked { .. }))));
    /// ```
    #[doc(alias = "exception")]
    pub fn error(&self) -> Result<Option<TaskError>, TaskError> {
        self.error_within(None)
    }

    /// Like [`error`](Future::error), but gives up after `timeout` with
    /// [`TaskError::TimedOut`] (an error of the call, as in Python's
    /// `Future.exception(timeout)`).
    pub fn error_timeout(&self, timeout: Duration) -> Result<Option<TaskError>, TaskError> {
        self.error_within(Some(timeout))
    }

    /// The body of [`error`](Future::error) and [`error_timeout`](Future::error_timeout).
    fn error_within(&self, timeout: Option<Duration>) -> Result<Option<TaskError>, TaskError> {
        if !self.shared.wait_done(timeout) {
            return Err(TaskError::TimedOut);
        }
        self.shared
            .read(|outcome| match outcome {
                Ok(_) => Ok(None),
                Err(TaskError::Cancelled) => Err(TaskError::Cancelled),
                Err(e) => Ok(Some(e.clone())),
            })
            .unwrap_or(Err(TaskError::ResultTaken))
    }

    /// Blocks until the future is done.
    pub fn wait(&self) {
        self.shared.wait_done(None);
    }

    /// Blocks until the future is done or `timeout` passes; true when it is done.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.shared.wait_done(Some(timeout))
    }

    /// The body of [`wait`](Future::wait) and [`wait_timeout`](Future::wait_timeout);
    /// `None` waits without limit.
    pub(crate) fn wait_within(&self, timeout: Option<Duration>) -> bool {
        self.shared.wait_done(timeout)
    }

    /// Calls `callback` with this future once it is done: at once, on this thread, when
    /// it already is; otherwise on the thread that completes or cancels it.
    ///
    /// Callbacks run in the order they were added. A callback that panics is reported
    /// through `tracing` and changes nothing else: the future keeps its outcome, the
    /// other callbacks still run, and the worker that completed it lives on.
    ///
    /// ```
    /// use std::sync::mpsc;
    /// use flotilla_core::Future;
    ///
    /// let (tx, rx) = mpsc::channel();
    /// Future::ready(42).add_done_callback(move |f| tx.send(f.result().unwrap()).unwrap());
    /// assert_eq!(rx.recv().unwrap(), 42);
    /// ```
    pub fn add_done_callback<F>(&self, callback: F)
    where
        F: FnOnce(&Future<T>) + Send + 'static,
    {
        let callback: Callback<T> = Box::new(callback);
        if !self.done() {
            let mut locked = self.shared.lock();
            if let Some(inner) = self.shared.announce_waiter(&mut locked) {
                inner.callbacks.push(callback);
                return;
            }
        }
        self.run_callback(callback);
    }

    fn run_callback(&self, callback: Callback<T>) {
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| callback(self))) {
            crate::event!(crate::log::Level::ERROR,
                panic = %crate::error::panic_message(&*payload),
                "a done callback panicked; the future and its executor are unaffected"
            );
        }
    }

    /// Registers `signal` to be fired with `index` when the future is done; false (and
    /// nothing registered) when it already is.
    pub(crate) fn watch(&self, signal: &Arc<Signal>, index: usize) -> bool {
        let mut locked = self.shared.lock();
        let Some(inner) = self.shared.announce_waiter(&mut locked) else {
            return false;
        };
        inner.watchers.push((Arc::clone(signal), index));
        true
    }

    pub(crate) fn unwatch(&self, signal: &Arc<Signal>) {
        if self.done() {
            // The terminal transition drains the watchers.
            return;
        }
        if let Some(inner) = self.shared.lock().as_mut() {
            inner.watchers.retain(|(s, _)| !Arc::ptr_eq(s, signal));
        }
    }

    /// Whether a blocking waiter yielded its CPU for the completer (the YIELDING flag),
    /// or, with `set`, says one does.
    #[cfg(test)]
    pub(crate) fn yielding_waiter(&self, set: bool) -> bool {
        if set {
            self.shared.state.fetch_or(YIELDING, Ordering::AcqRel);
        }
        self.shared.state() & YIELDING != 0
    }

    /// Whether a blocking waiter, waker, callback or watcher registered itself (the
    /// WAITERS flag): after a `wait`, whether the waiter parked instead of spinning.
    #[cfg(test)]
    pub(crate) fn parked_waiter_registered(&self) -> bool {
        self.shared.state() & WAITERS != 0
    }

    #[cfg(test)]
    pub(crate) fn watcher_count(&self) -> usize {
        self.shared.lock().as_ref().map_or(0, |i| i.watchers.len())
    }

    #[cfg(test)]
    pub(crate) fn sleeper_count(&self) -> usize {
        self.shared.lock().as_ref().map_or(0, |i| i.sleepers)
    }
}

// A panic anywhere leaves a future consistent: the outcome is published only by a
// complete transition, and a reader's READING flag is cleared by a guard. So handles stay
// usable across `catch_unwind`, as they were when all the state sat in a `Mutex`.
impl<T> std::panic::UnwindSafe for Future<T> {}
impl<T> std::panic::RefUnwindSafe for Future<T> {}
impl<T> std::panic::UnwindSafe for Completer<T> {}
impl<T> std::panic::RefUnwindSafe for Completer<T> {}

impl<T> Clone for Future<T> {
    fn clone(&self) -> Self {
        Future {
            shared: self.shared.clone(),
        }
    }
}

impl<T> fmt::Debug for Future<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Future")
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl<T> Shared<T> {
    /// PENDING → RUNNING unless cancelled; see [`Completer::set_running_or_notify_cancel`].
    fn set_running(&self) -> bool {
        let mut current = self.state.load(Ordering::Acquire);
        loop {
            match phase(current) {
                PENDING => match self.state.compare_exchange_weak(
                    current,
                    (current & !PHASE) | RUNNING,
                    Ordering::Acquire,
                    Ordering::Acquire,
                ) {
                    Ok(_) => return true,
                    Err(now) => current = now,
                },
                RUNNING => return true,
                // COMPLETING here is a cancel in progress: the completing side is the
                // caller, and it is not completing.
                _ => return false,
            }
        }
    }
}

impl<T> Handle<T> {
    /// The completing side's last word when it was never given one: fails a future that
    /// is not done yet with [`TaskError::Broken`].
    fn abandon(&self) {
        // The usual case, a completed task, needs nothing more. A racing cancel after
        // this check is settled by `finish`'s compare-exchange.
        if is_done(self.state.load(Ordering::Acquire)) {
            return;
        }
        self.finish(
            true,
            Err(TaskError::Broken {
                reason: "the task was dropped by its executor without being completed".into(),
            }),
        );
    }
}

impl<T> Completer<T> {
    /// A new pending future and the completer that will finish it.
    pub fn new() -> (Completer<T>, Future<T>) {
        Self::make(false)
    }

    /// [`Completer::new`], for an executor whose tasks run elsewhere (another process,
    /// another host) and whose outcomes a thread of this process relays: a process
    /// pool's manager thread, which reads a worker's answer and completes the future.
    ///
    /// The difference is in how long a blocking wait on the future spins before it
    /// sleeps. A waiter on an ordinary future that it has seen running keeps spinning
    /// for a while (up to 40 µs), since the thread that will complete it is running on
    /// another CPU. A relay thread may instead be waiting for the waiter's CPU, which
    /// the spin holds: with a process pool on two CPUs, a caller collecting results
    /// that way spent 40 µs per result, and ran three times slower, whenever the
    /// scheduler had put it beside the manager thread. A relayed future's waiter spins
    /// only as briefly as for a task not yet started (3 µs).
    ///
    /// ```
    /// use flotilla_core::Completer;
    ///
    /// let (completer, fut) = Completer::relayed();
    /// let relay = std::thread::spawn(move || {
    ///     if completer.set_running_or_notify_cancel() {
    ///         // ...the answer arrives from another process...
    ///         completer.set_result("done");
    ///     }
    /// });
    /// assert_eq!(fut.into_result().unwrap(), "done");
    /// relay.join().unwrap();
    /// ```
    pub fn relayed() -> (Completer<T>, Future<T>) {
        Self::make(true)
    }

    fn make(relayed: bool) -> (Completer<T>, Future<T>) {
        Self::adopt_pair(Handle::allocate(2, PENDING, relayed, None, ()))
    }

    /// The completer and future of an allocation made with two references.
    fn adopt_pair(ptr: NonNull<Shared<T>>) -> (Completer<T>, Future<T>) {
        // SAFETY: made with two references: one for each of these handles.
        let (completer, future) = unsafe { (Handle::adopt(ptr), Handle::adopt(ptr)) };
        (Completer { shared: completer }, Future { shared: future })
    }

    /// [`Completer::relayed`], for a task that starts in another process without a word
    /// to this one: its worker takes a claim to start it, and [`Future::cancel`] must
    /// take the claim first (through `claim`'s [`revoke`](StartClaim::revoke)), so that
    /// exactly one of them wins with no message between the processes.
    ///
    /// The executor [`bind`](Completer::bind)s the future to its token when it hands the
    /// task over; until then a cancel needs no claim. Once a cancel finds the task
    /// started, the future is running, whether or not the relay has said so yet.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// use flotilla_core::{Completer, StartClaim};
    ///
    /// /// One word for task 1: 0 queued, 1 started (by the worker), 2 revoked.
    /// struct Word(AtomicU64);
    ///
    /// impl StartClaim for Word {
    ///     fn revoke(&self, _token: u64) -> bool {
    ///         match self.0.compare_exchange(0, 2, Ordering::AcqRel, Ordering::Acquire) {
    ///             Ok(_) | Err(2) => true,
    ///             Err(_) => false,
    ///         }
    ///     }
    /// }
    ///
    /// let word = Arc::new(Word(AtomicU64::new(0)));
    /// let (completer, fut) = Completer::<u8>::claimed(word.clone());
    /// assert!(completer.bind(1));
    /// // The worker takes the word: the task has started.
    /// word.0.store(1, Ordering::Release);
    /// assert!(!fut.cancel());
    /// assert!(fut.running());
    /// completer.set_result(3);
    /// assert_eq!(fut.result().unwrap(), 3);
    /// ```
    pub fn claimed(claim: Arc<dyn StartClaim>) -> (Completer<T>, Future<T>) {
        let claim = Claim {
            claim,
            token: AtomicU64::new(UNBOUND),
        };
        Self::adopt_pair(Handle::allocate_claimed(2, claim))
    }

    /// Binds a future made by [`claimed`](Completer::claimed) to `token`, its task's
    /// claim, which a cancel from now on must [`revoke`](StartClaim::revoke): call it
    /// once the worker can take the claim, before the task can reach the worker. False
    /// when the future was cancelled first: then the task must not be handed over.
    ///
    /// A future is bound once: binding it again to another token returns false. A
    /// future made without a claim has nothing to bind: true unless it was cancelled.
    ///
    /// # Panics
    ///
    /// If `token` is 0 or `u64::MAX`, which stand for "not bound yet" and "cancelled
    /// before it was bound".
    pub fn bind(&self, token: u64) -> bool {
        assert!(
            token != UNBOUND && token != REVOKED,
            "a claim's token is neither 0 nor u64::MAX"
        );
        let Some(claim) = self.shared.claim() else {
            return !self.is_cancelled();
        };
        // Release: what `revoke` will look at was set up before (see `revoke_claim`).
        match claim
            .token
            .compare_exchange(UNBOUND, token, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => true,
            Err(bound) => bound == token,
        }
    }

    /// Marks the future running, unless it was cancelled: then returns false, and the
    /// task must not run. Python's `Future.set_running_or_notify_cancel`.
    ///
    /// Call it once, when a worker picks the task up; after it returns true,
    /// [`Future::cancel`] no longer succeeds.
    pub fn set_running_or_notify_cancel(&self) -> bool {
        self.shared.set_running()
    }

    /// Which task this completer finishes: its future's [`Future::id`].
    pub fn id(&self) -> FutureId {
        FutureId(self.shared.addr())
    }

    /// True when the user cancelled the future before it started.
    pub fn is_cancelled(&self) -> bool {
        phase(self.shared.state()) == CANCELLED
    }

    /// Finishes the future with `value`.
    pub fn set_result(self, value: T) {
        self.complete(Ok(value));
    }

    /// Finishes the future with a failure.
    pub fn set_error(self, error: TaskError) {
        self.complete(Err(error));
    }

    /// Finishes the future with `outcome`. Does nothing if it was cancelled meanwhile.
    pub fn complete(self, outcome: Result<T, TaskError>) {
        self.shared.finish(true, outcome);
        // Drop now finds the future done and releases this side's reference, nothing more.
    }

    /// Cancels a future whose task will never run (an executor shutting down with
    /// `cancel_futures`). Does nothing if the task already started.
    pub fn cancel(self) {
        self.shared.finish(false, Err(TaskError::Cancelled));
        // Whether or not that happened, the task will not run: drop fails a running one
        // rather than leave it pending.
        drop(self);
    }

    /// Runs a task for this future: marks it running (skipping it if it was cancelled),
    /// runs `task`, catches a panic, and completes the future with the outcome.
    ///
    /// ```
    /// use flotilla_core::Completer;
    ///
    /// let (completer, fut) = Completer::new();
    /// completer.run(|| -> u8 { panic!("bad input") });
    /// assert!(fut.result().unwrap_err().to_string().contains("bad input"));
    /// ```
    pub fn run<F>(self, task: F)
    where
        F: FnOnce() -> T,
    {
        if self.set_running_or_notify_cancel() {
            let outcome =
                catch_unwind(AssertUnwindSafe(task)).map_err(|p| TaskError::from_panic(&*p));
            self.complete(outcome);
        }
    }

    /// Like [`run`](Completer::run), for a task that reports failure by returning `Err`.
    pub fn run_fallible<F, E>(self, task: F)
    where
        F: FnOnce() -> Result<T, E>,
        E: std::error::Error + Send + Sync + 'static,
    {
        if self.set_running_or_notify_cancel() {
            let outcome = match catch_unwind(AssertUnwindSafe(task)) {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(e)) => Err(TaskError::failed(e)),
                Err(p) => Err(TaskError::from_panic(&*p)),
            };
            self.complete(outcome);
        }
    }
}

impl<T> Drop for Completer<T> {
    fn drop(&mut self) {
        self.shared.abandon();
    }
}

impl<T> fmt::Debug for Completer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Completer")
            .field(
                "state",
                &Future {
                    shared: self.shared.clone(),
                }
                .state(),
            )
            .finish_non_exhaustive()
    }
}

/// What a call of [`Handle::finish`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Finished {
    /// Nothing: the future had left the phase it was to be finished from.
    NotMade,
    /// Made the future terminal; nobody was waiting.
    Quietly,
    /// Made the future terminal, and woke or ran what was registered on it.
    WokeWaiters,
}

/// A task's closure, in its future's allocation (an `Alloc<T, JobSlot<F>>`): taken out
/// once, through the one [`Task`].
struct JobSlot<F>(UnsafeCell<Option<F>>);

/// What a [`Task`] does with its allocation, for the value and closure types it was
/// made with: each takes over the task's reference.
struct TaskVTable {
    run: unsafe fn(NonNull<()>, &dyn Fn()) -> bool,
    fail: unsafe fn(NonNull<()>, TaskError),
    cancel: unsafe fn(NonNull<()>),
    abandon: unsafe fn(NonNull<()>),
}

/// The [`TaskVTable`] of a task of value `T` and closure `F`.
struct TaskOps<T, F>(PhantomData<(T, F)>);

impl<T, F> TaskOps<T, F>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, TaskError> + Send + 'static,
{
    const VTABLE: TaskVTable = TaskVTable {
        run: Self::run,
        fail: Self::fail,
        cancel: Self::cancel,
        abandon: Self::abandon,
    };

    /// The task's handle, and its closure taken out of the job slot.
    ///
    /// # Safety
    ///
    /// `ptr` is a [`Task`]'s, made by `Task::new::<T, F>`; the caller hands over the
    /// task's reference, once.
    unsafe fn open(ptr: NonNull<()>) -> (Handle<T>, Option<F>) {
        let alloc = ptr.cast::<Alloc<T, JobSlot<F>>>().as_ptr();
        // SAFETY: the allocation is an `Alloc<T, JobSlot<F>>` (the caller vouches), alive
        // while the task's reference is; its job slot is touched only through the one
        // `Task` (module docs, "Who touches what"), and this is that task's one call.
        let job = unsafe { (*(*alloc).job.0.get()).take() };
        // SAFETY: the task's reference, handed over.
        (unsafe { Handle::adopt(ptr.cast()) }, job)
    }

    /// # Safety
    ///
    /// As [`TaskOps::open`].
    unsafe fn run(ptr: NonNull<()>, before_publish: &dyn Fn()) -> bool {
        // SAFETY: passed on from the caller.
        let (shared, job) = unsafe { Self::open(ptr) };
        let Some(job) = job.filter(|_| shared.set_running()) else {
            before_publish();
            return false;
        };
        let outcome = match catch_unwind(AssertUnwindSafe(job)) {
            Ok(outcome) => outcome,
            Err(payload) => Err(TaskError::from_panic(&*payload)),
        };
        before_publish();
        shared.finish(true, outcome) == Finished::WokeWaiters
    }

    /// # Safety
    ///
    /// As [`TaskOps::open`].
    unsafe fn fail(ptr: NonNull<()>, error: TaskError) {
        // SAFETY: passed on from the caller.
        let (shared, job) = unsafe { Self::open(ptr) };
        shared.finish(true, Err(error));
        drop(job);
    }

    /// # Safety
    ///
    /// As [`TaskOps::open`].
    unsafe fn cancel(ptr: NonNull<()>) {
        // SAFETY: passed on from the caller.
        let (shared, job) = unsafe { Self::open(ptr) };
        shared.finish(false, Err(TaskError::Cancelled));
        shared.abandon();
        drop(job);
    }

    /// # Safety
    ///
    /// As [`TaskOps::open`].
    unsafe fn abandon(ptr: NonNull<()>) {
        // SAFETY: passed on from the caller.
        let (shared, job) = unsafe { Self::open(ptr) };
        shared.abandon();
        drop(job);
    }
}

/// A task and its [`Future`] in one allocation: what an executor that queues closures
/// puts in its queue, instead of a [`Completer`] and a boxed closure.
///
/// [`Task::new`] makes the pair; the executor queues the `Task` and hands out the
/// `Future`. A worker then calls [`run`](Task::run) (which skips a task the user
/// cancelled), or the executor [`cancel`](Task::cancel)s or [`fail`](Task::fail)s one
/// that will never run. A `Task` dropped without any of these (its queue was dropped)
/// fails its future with [`TaskError::Broken`], like a dropped [`Completer`]; the
/// closure is dropped as soon as it is known that it will not run.
///
/// ```
/// use flotilla_core::{Task, TaskError};
///
/// let (task, fut) = Task::new(|| Ok::<_, TaskError>(6 * 7));
/// std::thread::spawn(move || task.run(&|| {})).join().unwrap();
/// assert_eq!(fut.result().unwrap(), 42);
///
/// let (task, fut) = Task::new(|| -> Result<u8, TaskError> { unreachable!() });
/// assert!(fut.cancel());
/// task.run(&|| {}); // skipped: it was cancelled
/// assert!(fut.cancelled());
/// ```
pub struct Task {
    /// The allocation (an `Alloc<T, JobSlot<F>>`, holding one counted reference) and
    /// what to do with it; `None` once a consuming method took it; `Drop` abandons what
    /// is left.
    raw: Option<(NonNull<()>, &'static TaskVTable)>,
}

// SAFETY: `Task::new` demands `T: Send` and `F: Send`, and a task only moves them to
// the thread that runs, fails, cancels or drops it; through `&Task` only the address is
// read.
unsafe impl Send for Task {}
// SAFETY: as above.
unsafe impl Sync for Task {}

impl Task {
    /// A pending task running `job`, and its future.
    pub fn new<T, F>(job: F) -> (Task, Future<T>)
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T, TaskError> + Send + 'static,
    {
        let job = JobSlot(UnsafeCell::new(Some(job)));
        let ptr = Handle::<T>::allocate(2, PENDING, false, None, job);
        // SAFETY: made with two references: the future's, and the task's, kept raw.
        let shared = unsafe { Handle::adopt(ptr) };
        let fut = Future { shared };
        let task = Task {
            raw: Some((ptr.cast(), &TaskOps::<T, F>::VTABLE)),
        };
        (task, fut)
    }

    /// Which task this is: its future's [`Future::id`].
    pub fn id(&self) -> FutureId {
        let (ptr, _) = self.raw.expect("taken only by consuming methods");
        FutureId(ptr.as_ptr().addr())
    }

    fn into_raw(mut self) -> (NonNull<()>, &'static TaskVTable) {
        self.raw
            .take()
            .expect("only consuming methods and drop take it")
    }

    /// Runs the task unless its future was cancelled, catches a panic, and completes the
    /// future. `before_publish` is called once the task's code has returned (or was
    /// skipped), before the outcome is published to waiters: a pool that marks its
    /// worker idle there lets a caller that submits again on seeing the result find
    /// that worker.
    ///
    /// Returns whether publishing the outcome woke anyone: a thread blocked on the
    /// future, an awaiting task's waker, a callback or a `wait`, or a waiter that was
    /// yielding its CPU to this thread. A worker that goes on
    /// polling for work should then let a woken thread that shares its CPU run (see
    /// [`crate::spin::yield_to_woken`]).
    pub fn run(self, before_publish: &dyn Fn()) -> bool {
        let (ptr, ops) = self.into_raw();
        // SAFETY: the task's pointer and its own table, its reference handed over once.
        unsafe { (ops.run)(ptr, before_publish) }
    }

    /// Fails a task that will never run with `error` (a broken pool).
    pub fn fail(self, error: TaskError) {
        let (ptr, ops) = self.into_raw();
        // SAFETY: as in `run`.
        unsafe { (ops.fail)(ptr, error) };
    }

    /// Cancels a task that will never run (an executor shutting down with
    /// `cancel_futures`).
    pub fn cancel(self) {
        let (ptr, ops) = self.into_raw();
        // SAFETY: as in `run`.
        unsafe { (ops.cancel)(ptr) };
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        if let Some((ptr, ops)) = self.raw.take() {
            // SAFETY: as in `run`.
            unsafe { (ops.abandon)(ptr) };
        }
    }
}

impl fmt::Debug for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Task")
            .field("id", &self.raw.map(|(ptr, _)| ptr.as_ptr().addr()))
            .finish_non_exhaustive()
    }
}

/// The `.await` form of a [`Future`], moving the value out like
/// [`Future::into_result`].
///
/// Needs no async runtime: completion wakes whatever waker polled it last.
///
/// ```
/// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     // A minimal executor, so the example needs no runtime.
/// #     use std::task::{Context, Poll, Waker};
/// #     let mut f = std::pin::pin!(f);
/// #     let mut cx = Context::from_waker(Waker::noop());
/// #     loop { if let Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; } std::thread::yield_now(); }
/// # }
/// let fut = flotilla_core::Future::ready(7);
/// assert_eq!(block_on(async { fut.await }).unwrap(), 7);
/// ```
#[must_use = "futures do nothing unless awaited"]
pub struct ResultFuture<T> {
    fut: Future<T>,
    slot: WakerSlot,
}

/// The `.await` form of a `&Future`, cloning the value like [`Future::result`].
#[must_use = "futures do nothing unless awaited"]
pub struct ResultRefFuture<'a, T> {
    fut: &'a Future<T>,
    slot: WakerSlot,
}

/// A std future that resolves once a [`Future`] is done, without taking or cloning its
/// value: [`Future::completion`].
///
/// Dropping it before then removes its waker from the future, so giving up on a wait
/// (a `select!` that took another branch, a timeout) leaves nothing behind.
///
/// ```
/// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     use std::task::{Context, Poll, Waker};
/// #     let mut f = std::pin::pin!(f);
/// #     let mut cx = Context::from_waker(Waker::noop());
/// #     loop { if let Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; } std::thread::yield_now(); }
/// # }
/// use flotilla_core::Completer;
///
/// let (completer, fut) = Completer::<String>::new();
/// std::thread::spawn(move || completer.set_result("not cloned".to_owned()));
/// block_on(fut.completion());
/// assert!(fut.done());
/// ```
#[must_use = "futures do nothing unless awaited"]
pub struct Completion<T> {
    fut: Future<T>,
    slot: WakerSlot,
}

/// The key of the one waker an awaiting side has registered with a future, if any.
#[derive(Debug, Default)]
struct WakerSlot(Option<u64>);

impl<T> Future<T> {
    /// Registers `cx`'s waker under `slot` unless the future is done; reads the outcome
    /// with `read` when it is.
    fn poll_with<R>(
        &self,
        cx: &mut Context<'_>,
        slot: &mut WakerSlot,
        read: impl FnOnce(&Shared<T>) -> R,
    ) -> Poll<R> {
        if !self.done() {
            let mut locked = self.shared.lock();
            if let Some(inner) = self.shared.announce_waiter(&mut locked) {
                let registered = slot
                    .0
                    .and_then(|key| inner.wakers.iter_mut().find(|(k, _)| *k == key));
                match registered {
                    Some((_, waker)) => {
                        if !waker.will_wake(cx.waker()) {
                            waker.clone_from(cx.waker());
                        }
                    }
                    None => {
                        let key = inner.next_waker;
                        inner.next_waker += 1;
                        inner.wakers.push((key, cx.waker().clone()));
                        slot.0 = Some(key);
                    }
                }
                return Poll::Pending;
            }
        }
        // The terminal transition drains the wakers, ours included.
        slot.0 = None;
        Poll::Ready(read(&self.shared))
    }

    /// Removes the waker registered under `slot`, if it is still there.
    fn forget_waker(&self, slot: &mut WakerSlot) {
        if let Some(key) = slot.0.take() {
            if self.done() {
                return; // the terminal transition already drained it
            }
            if let Some(inner) = self.shared.lock().as_mut() {
                inner.wakers.retain(|(k, _)| *k != key);
            }
        }
    }

    /// A std future that resolves once this future is done, leaving its value in place
    /// (for [`result`](Future::result) or another `.await`): what an async `wait` over
    /// many futures needs. See [`Completion`].
    pub fn completion(&self) -> Completion<T> {
        Completion {
            fut: self.clone(),
            slot: WakerSlot::default(),
        }
    }

    #[cfg(test)]
    pub(crate) fn waker_count(&self) -> usize {
        self.shared.lock().as_ref().map_or(0, |i| i.wakers.len())
    }
}

impl<T> std::future::Future for ResultFuture<T> {
    type Output = Result<T, TaskError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        this.fut.poll_with(cx, &mut this.slot, Shared::take)
    }
}

impl<T: Clone> std::future::Future for ResultRefFuture<'_, T> {
    type Output = Result<T, TaskError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        this.fut.poll_with(cx, &mut this.slot, |shared| {
            shared
                .read(clone_outcome)
                .unwrap_or(Err(TaskError::ResultTaken))
        })
    }
}

impl<T> std::future::Future for Completion<T> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        this.fut.poll_with(cx, &mut this.slot, |_| ())
    }
}

impl<T> Drop for ResultFuture<T> {
    fn drop(&mut self) {
        self.fut.forget_waker(&mut self.slot);
    }
}

impl<T> Drop for ResultRefFuture<'_, T> {
    fn drop(&mut self) {
        self.fut.forget_waker(&mut self.slot);
    }
}

impl<T> Drop for Completion<T> {
    fn drop(&mut self) {
        self.fut.forget_waker(&mut self.slot);
    }
}

impl<T> std::future::IntoFuture for Future<T> {
    type Output = Result<T, TaskError>;
    type IntoFuture = ResultFuture<T>;

    fn into_future(self) -> ResultFuture<T> {
        ResultFuture {
            fut: self,
            slot: WakerSlot::default(),
        }
    }
}

impl<'a, T: Clone> std::future::IntoFuture for &'a Future<T> {
    type Output = Result<T, TaskError>;
    type IntoFuture = ResultRefFuture<'a, T>;

    fn into_future(self) -> ResultRefFuture<'a, T> {
        ResultRefFuture {
            fut: self,
            slot: WakerSlot::default(),
        }
    }
}

impl<T> fmt::Debug for Completion<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Completion").field(&self.fut).finish()
    }
}

impl<T> fmt::Debug for ResultFuture<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ResultFuture").field(&self.fut).finish()
    }
}

impl<T> fmt::Debug for ResultRefFuture<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ResultRefFuture").field(self.fut).finish()
    }
}
