//! flotilla's events carry the process they happened in: every event any flotilla crate
//! emits goes through [`event!`](crate::event), whose parent is a span
//! `flotilla.process{name, pid}` naming this process ("MainProcess", "Process-3",
//! "PoolWorker-1", ...) as Python's logging records carry `processName`.
//!
//! The name is set by flotilla-process when a child starts (and is "MainProcess" before
//! that); the pid is read afresh for every event, so a forked child that has not been
//! renamed yet still reports its own pid. A user's own events in a process target are
//! inside the same span too: the child enters [`process_span`] around the target.
//!
//! Nothing here takes a lock: an event may be emitted in a forked child whose parent had
//! other threads, where a lock held by one of them would never be released.

use std::sync::atomic::{AtomicPtr, Ordering};

/// This process's name for logs; null means "MainProcess".
static NAME: AtomicPtr<String> = AtomicPtr::new(std::ptr::null_mut());

/// Sets this process's name, as logs and [`process_span`] show it. Called by
/// flotilla-process when a child process starts; a program has no need to call it.
///
/// ```
/// flotilla_core::log::set_process_name("Worker-7");
/// assert_eq!(flotilla_core::log::process_name(), "Worker-7");
/// ```
pub fn set_process_name(name: &str) {
    if process_name() == name {
        return;
    }
    // Leaked on purpose: a process is renamed once or twice in its life, and a reader
    // may hold the old name while it is replaced (no lock, see the module doc).
    let new = Box::into_raw(Box::new(name.to_owned()));
    NAME.store(new, Ordering::Release);
}

/// [`set_process_name`] in a fork child, without allocating: the name moves into a
/// static slot. In a fork child each first allocation copies the allocator's pages.
///
/// # Safety
///
/// The calling process runs one thread (a fork child that has started none), so
/// nothing reads the slot while it is written.
#[doc(hidden)]
pub unsafe fn set_process_name_in_fork_child(name: String) {
    let slot = FORK_CHILD_NAME.0.get();
    // SAFETY: one thread, the caller vouches. Whatever the slot held (the name of the
    // process this one was forked from, if that was a fork child too) is overwritten,
    // not dropped: a `&'static str` taken from it before points at its bytes, which are
    // never freed.
    unsafe { slot.write(std::mem::MaybeUninit::new(name)) };
    NAME.store(slot.cast(), Ordering::Release);
}

/// The slot of [`set_process_name_in_fork_child`].
struct ForkChildName(std::cell::UnsafeCell<std::mem::MaybeUninit<String>>);

// SAFETY: written only by `set_process_name_in_fork_child`, in a process with one
// thread; read through `NAME` after its `Release` store.
unsafe impl Sync for ForkChildName {}

static FORK_CHILD_NAME: ForkChildName =
    ForkChildName(std::cell::UnsafeCell::new(std::mem::MaybeUninit::uninit()));

/// This process's name for logs: "MainProcess" unless flotilla-process named it.
pub fn process_name() -> &'static str {
    let name = NAME.load(Ordering::Acquire);
    if name.is_null() {
        "MainProcess"
    } else {
        // SAFETY: every non-null pointer stored in NAME came from `Box::into_raw` in
        // `set_process_name` or is the static slot of `set_process_name_in_fork_child`;
        // neither is ever freed, so it stays valid for 'static.
        unsafe { (*name).as_str() }
    }
}

/// The span `flotilla.process{name, pid}` of this process: the parent of every flotilla
/// event, and what a child enters around its target so that the target's own events
/// name the process too.
pub fn process_span() -> tracing::Span {
    tracing::info_span!(
        target: "flotilla",
        "flotilla.process",
        name = process_name(),
        pid = std::process::id()
    )
}

/// Emits a `tracing` event at `level` under this process's
/// [`process_span`](crate::log::process_span): the one way flotilla's crates log.
///
/// ```
/// flotilla_core::event!(flotilla_core::log::Level::DEBUG, workers = 4, "pool started");
/// ```
#[macro_export]
macro_rules! event {
    ($level:expr, $($rest:tt)+) => {
        $crate::log::__tracing::event!(
            target: "flotilla",
            parent: &$crate::log::process_span(),
            $level,
            $($rest)+
        )
    };
}

/// The levels [`event!`](crate::event) takes: `tracing`'s.
pub use tracing::Level;

#[doc(hidden)]
pub use tracing as __tracing;
