//! The process-wide state of flotilla-process, in one place: who this process is, its
//! live children, the name counter, the chosen start method, the forkserver and the
//! shared-memory name tracker.
//!
//! It sits behind one mutex that a forked child must not inherit locked: another thread
//! of the parent may have held it at the moment of the fork, and that thread does not
//! exist in the child. So the mutex is reached through an atomic pointer, and a forked
//! child replaces it with a fresh one before running any code of ours or the user's
//! ([`reset_after_fork`]); the parent's copy is leaked in the child, never touched.

use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use flotilla_core::fork_slot::ForkSlot;

use crate::child::Child;
use crate::forkserver::ForkServer;

/// A process's name and pid, as `current_process()` and `parent_process()` give them.
///
/// Plain serde data, so a child can send it back (to say who did what).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct ProcessInfo {
    /// The process's name: `MainProcess` for the first, `Process-N` by default for
    /// children.
    pub name: String,
    /// Its process id.
    pub pid: i32,
}

pub(crate) struct State {
    pub(crate) identity: ProcessInfo,
    pub(crate) parent: Option<ProcessInfo>,
    /// Started children not yet known to be reaped.
    pub(crate) children: Vec<Arc<Child>>,
    /// How many children this process has named, for `Process-N`.
    pub(crate) counter: usize,
    pub(crate) forkserver: Option<Arc<ForkServer>>,
    /// The shared-memory name tracker, once a named segment was made.
    pub(crate) tracker: Option<crate::tracker::Tracker>,
    pub(crate) exit_hook: bool,
}

static STATE: AtomicPtr<Mutex<State>> = AtomicPtr::new(std::ptr::null_mut());

/// The state, created on first use with this process as `MainProcess`.
pub(crate) fn lock() -> MutexGuard<'static, State> {
    let mut ptr = STATE.load(Ordering::Acquire);
    if ptr.is_null() {
        let fresh = Box::into_raw(Box::new(Mutex::new(State::new(
            ProcessInfo {
                name: "MainProcess".into(),
                pid: std::process::id() as i32,
            },
            None,
        ))));
        match STATE.compare_exchange(
            std::ptr::null_mut(),
            fresh,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => ptr = fresh,
            Err(current) => {
                // SAFETY: `fresh` came from Box::into_raw above and was never shared.
                drop(unsafe { Box::from_raw(fresh) });
                ptr = current;
            }
        }
    }
    // SAFETY: the pointer came from Box::into_raw and is never freed: a replaced state
    // is leaked (see `reset_after_fork`), so the reference is valid for 'static.
    let state: &'static Mutex<State> = unsafe { &*ptr };
    // No user code runs under this lock, so poisoning can only follow a bug of ours
    // between two consistent states.
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl State {
    fn new(identity: ProcessInfo, parent: Option<ProcessInfo>) -> Self {
        State {
            identity,
            parent,
            children: Vec::new(),
            counter: 0,
            forkserver: None,
            tracker: None,
            exit_hook: false,
        }
    }
}

/// In a new child: forget the parent's state (without touching its possibly locked
/// mutex) and start afresh as `identity`, child of `parent`.
///
/// Async-signal-safety: allocates (glibc's malloc is fork-safe) and stores an atomic.
pub(crate) fn reset_after_fork(identity: ProcessInfo, parent: ProcessInfo) {
    // What `ps`, `top` and /proc show: "PoolWorker-3" rather than the binary's name
    // (or "exe", for a child started through /proc/self/exe).
    crate::sys::set_process_name(&identity.name);
    flotilla_core::log::set_process_name(&identity.name);
    let fresh = Box::into_raw(Box::new(Mutex::new(State::new(identity, Some(parent)))));
    // The old state is leaked on purpose: its mutex may be held by a thread that does
    // not exist in this process.
    STATE.store(fresh, Ordering::Release);
}

/// [`reset_after_fork`] for a fork child, allocating nothing: in a fork child, each
/// first allocation copies the allocator's pages, and these were the child's only ones
/// before its target ran. The state goes into a static slot, and `log_name`, a copy of
/// the name its parent made before the fork, becomes the name in logs.
///
/// # Safety
///
/// Called in a fork child before it starts any thread: nothing else reads or holds the
/// state while it is replaced.
pub(crate) unsafe fn reset_in_fork_child(
    identity: ProcessInfo,
    parent: ProcessInfo,
    log_name: String,
) {
    crate::sys::set_process_name(&identity.name);
    // SAFETY: one thread, the caller vouches.
    unsafe { flotilla_core::log::set_process_name_in_fork_child(log_name) };
    // SAFETY: one thread, the caller vouches, so nobody holds a guard of the state the
    // slot may hold (this process's parent's, if that was a fork child too): it is
    // overwritten, not dropped, as `reset_after_fork` leaks the old state.
    let slot = unsafe { FORK_CHILD_STATE.put(Mutex::new(State::new(identity, Some(parent)))) };
    STATE.store(slot, Ordering::Release);
}

/// Where [`reset_in_fork_child`] puts the state.
static FORK_CHILD_STATE: ForkSlot<Mutex<State>> = ForkSlot::new();

/// This process's name and pid.
pub fn current_process() -> ProcessInfo {
    lock().identity.clone()
}

/// The process that started this one, when flotilla started it.
pub fn parent_process() -> Option<ProcessInfo> {
    lock().parent.clone()
}

/// The number of CPUs this process may use.
pub fn cpu_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The start method chosen for this program, fixed at first use.
pub(crate) static START_METHOD: OnceLock<crate::StartMethod> = OnceLock::new();
