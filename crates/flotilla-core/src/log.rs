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
    // SAFETY: one thread, the caller vouches, and nothing holds a reference into the
    // slot: `process_name` lends the bytes of a name, which are never freed, not the
    // `String` in the slot.
    let slot = unsafe { FORK_CHILD_NAME.put(name) };
    NAME.store(slot, Ordering::Release);
}

/// Where [`set_process_name_in_fork_child`] puts the name.
static FORK_CHILD_NAME: crate::fork_slot::ForkSlot<String> = crate::fork_slot::ForkSlot::new();

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
