//! Logging across processes: Python's `multiprocessing.log_to_stderr`, and a setup
//! function that runs in every spawned and forkserver child before its task.
//!
//! A spawned or forkserver child runs its task before `main` (see `boot`), so a tracing
//! subscriber that `main` installs never exists there: without help, a `tracing::info!`
//! in a process target goes nowhere. Two settings travel with every task instead, in the
//! bootstrap message:
//!
//! - the level given to [`log_to_stderr`]: the child installs the same stderr
//!   subscriber before its task (as Python's children inherit `log_to_stderr`);
//! - the function given to [`set_worker_setup`]: the child calls it before its task, to
//!   install the program's own subscriber (or anything else per-process). It is named
//!   by its offset in this binary, like a task, so it must be a plain `fn()`.
//!
//! A fork child needs neither: it is a copy of its parent, subscriber included.
//!
//! Every flotilla event, and every event of a process target, sits in the span
//! `flotilla.process{name, pid}` (see `flotilla_core::log`), so the output names the
//! process each line came from.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

/// The levels [`log_to_stderr`] takes: `tracing`'s.
pub use tracing::Level;

/// The level of [`log_to_stderr`], 0 when it was not called.
static STDERR_LEVEL: AtomicU8 = AtomicU8::new(0);

/// The offset of [`set_worker_setup`]'s function from `boot`'s base, plus one; 0: none.
static SETUP: AtomicUsize = AtomicUsize::new(0);

/// Sends flotilla's events (and every other `tracing` event) at `level` and above to
/// standard error, in this process and in every child it starts from now on: Python's
/// `multiprocessing.log_to_stderr(level)`.
///
/// Each line names its process: `flotilla.process{name="Process-1" pid=4242}: ...`.
/// Returns false, and changes nothing here, when this process already has a global
/// `tracing` subscriber (children still get the stderr one).
///
/// ```
/// use flotilla_process::log::{Level, log_to_stderr};
///
/// log_to_stderr(Level::INFO);
/// ```
pub fn log_to_stderr(level: Level) -> bool {
    STDERR_LEVEL.store(level_code(level), Ordering::Relaxed);
    install_stderr(level)
}

/// Runs `setup` in every spawn and forkserver child started from now on (pool workers
/// included), before its task: the place to install the program's own `tracing`
/// subscriber, which `main` never gets to do in those children. Python has no
/// equivalent; its children re-import the main module instead.
///
/// `setup` is named by its place in this binary, as a process target is, so it must be
/// a plain function. A fork child does not run it: it already has what its parent set
/// up. A panic in `setup` fails the child's task with that panic.
///
/// ```
/// fn install_subscriber() {
///     // e.g. tracing_subscriber::fmt().with_writer(std::io::stderr).init();
/// }
///
/// flotilla_process::log::set_worker_setup(install_subscriber);
/// ```
pub fn set_worker_setup(setup: fn()) {
    let offset = crate::boot::offset_of_fn(setup);
    SETUP.store(offset.wrapping_add(1), Ordering::Relaxed);
}

/// What a new spawn or forkserver child must set up: the stderr level and the setup
/// function's offset, as the bootstrap message carries them.
pub(crate) fn for_child() -> (u8, usize) {
    (
        STDERR_LEVEL.load(Ordering::Relaxed),
        SETUP.load(Ordering::Relaxed),
    )
}

/// In a new spawn or forkserver child, before its task: installs what its parent asked
/// for.
///
/// # Safety
///
/// `setup` must come from [`for_child`] in a process running this very binary (the
/// fingerprint matched).
pub(crate) unsafe fn apply_in_child(stderr_level: u8, setup: usize) {
    if let Some(level) = code_level(stderr_level) {
        STDERR_LEVEL.store(stderr_level, Ordering::Relaxed);
        install_stderr(level);
    }
    if setup != 0 {
        SETUP.store(setup, Ordering::Relaxed);
        // SAFETY: per this function's contract, the offset names a `fn()` of this binary.
        let setup = unsafe { crate::boot::fn_at(setup.wrapping_sub(1)) };
        setup();
    }
}

fn install_stderr(level: Level) -> bool {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_ansi(false)
        .try_init()
        .is_ok()
}

fn level_code(level: Level) -> u8 {
    match level {
        Level::ERROR => 1,
        Level::WARN => 2,
        Level::INFO => 3,
        Level::DEBUG => 4,
        Level::TRACE => 5,
    }
}

fn code_level(code: u8) -> Option<Level> {
    Some(match code {
        1 => Level::ERROR,
        2 => Level::WARN,
        3 => Level::INFO,
        4 => Level::DEBUG,
        5 => Level::TRACE,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_survive_their_code() {
        for level in [
            Level::ERROR,
            Level::WARN,
            Level::INFO,
            Level::DEBUG,
            Level::TRACE,
        ] {
            assert_eq!(code_level(level_code(level)), Some(level));
        }
        assert_eq!(code_level(0), None);
    }
}
