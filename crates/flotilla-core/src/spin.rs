//! Polling before blocking: the policy of flotilla's waits for another process (a
//! connection's `recv`, `poll` and `wait`, the manager's reads).
//!
//! A thread that blocks lets its CPU go idle, and on a virtual machine whose idle vCPUs
//! halt at once (haltpoll with `guest_halt_poll_ns` 0, as on the VMs flotilla is
//! measured on) waking it costs 50-120 µs. Two threads or processes that take turns,
//! each blocking while the other works, pay that twice per exchange, and a short spin
//! that runs out while the other side is being woken keeps them in that slow mode for
//! good (issue 15). So a wait first looks for its event for up to [`POLL_FOR`],
//! yielding the CPU between looks: the yield lets a peer that shares this CPU run (a
//! spin that does not yield kept such a peer off the CPU for the whole spin, 105 µs per
//! round trip). A yield that takes [`CONTENDED_YIELD`] or more gave the CPU to a busy
//! process for its time slice, and would do so again at every look: the thread then
//! blocks at once for a pause that starts at 5 ms and doubles, up to 1 s, while that
//! goes on; a look that finds its event starts the pause over.
//!
//! A wait for a thread of the same process spins instead ([`spin_for`], no yield): a
//! future's blocking waiter, a thread pool's idle worker. There the peer is a thread
//! that the scheduler keeps on another CPU, and under a busy process per CPU the
//! yielding policy stopped the pool's polls and cost 5.6 µs per round trip against
//! 0.75.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// How long a wait looks for its event before it blocks.
pub const POLL_FOR: Duration = Duration::from_micros(50);

/// A yield that took this long gave the CPU to a busy process for its time slice (0.75
/// to 3 ms). Shorter stalls are not that: on an idle VM about one yield in fifty took
/// 20-120 µs (the host running something else), and counting those stopped the looks
/// that cure the slow mode for most of a run.
pub const CONTENDED_YIELD: Duration = Duration::from_micros(500);

const MIN_PAUSE: Duration = Duration::from_millis(5);
const MAX_PAUSE: Duration = Duration::from_secs(1);

thread_local! {
    /// Until when this thread's waits block at once.
    static PAUSED_UNTIL: Cell<Option<Instant>> = const { Cell::new(None) };
    /// The pause the next contended yield starts.
    static NEXT_PAUSE: Cell<Duration> = const { Cell::new(MIN_PAUSE) };
}

/// Looks for an event with `ready` for up to `limit` (at most [`POLL_FOR`] is
/// sensible), yielding the CPU between looks; whether it came. Looks once, without
/// yielding, while this thread is paused after a contended yield. `ready` must not
/// block.
///
/// ```
/// use std::time::Duration;
/// use flotilla_core::spin::poll_for;
///
/// let mut looks = 0;
/// let came = poll_for(Duration::from_secs(1), || { looks += 1; looks == 3 });
/// // It came on the third look, unless a yield on the way handed the CPU to a busy
/// // process for its time slice: then the wait gave up early, to block instead.
/// assert!(came || flotilla_core::spin::paused());
/// assert!(!poll_for(Duration::ZERO, || false));
/// ```
pub fn poll_for(limit: Duration, mut ready: impl FnMut() -> bool) -> bool {
    if ready() {
        return true;
    }
    if paused() {
        return false;
    }
    let start = Instant::now();
    while start.elapsed() < limit {
        let before = Instant::now();
        std::thread::yield_now();
        if before.elapsed() >= CONTENDED_YIELD {
            let pause = NEXT_PAUSE.get();
            PAUSED_UNTIL.set(Some(Instant::now() + pause));
            NEXT_PAUSE.set((2 * pause).min(MAX_PAUSE));
            return false;
        }
        if ready() {
            NEXT_PAUSE.set(MIN_PAUSE);
            return true;
        }
    }
    false
}

/// Looks for an event with `ready` for up to `limit`, spinning on the CPU without
/// yielding it; whether it came. Looks once for a `limit` of zero. The bound is in
/// time, not in spin-loop hints, since one `pause` takes from 35 to 190 ns on a virtual
/// machine.
///
/// ```
/// use std::time::Duration;
/// use flotilla_core::spin::spin_for;
///
/// let mut looks = 0;
/// assert!(spin_for(Duration::from_secs(1), || { looks += 1; looks == 3 }));
/// assert!(!spin_for(Duration::ZERO, || false));
/// ```
pub fn spin_for(limit: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if ready() {
            return true;
        }
        if start.elapsed() >= limit {
            return false;
        }
        for _ in 0..8 {
            std::hint::spin_loop();
        }
    }
}

/// Whether this thread's waits block at once now, after a contended yield.
pub fn paused() -> bool {
    match PAUSED_UNTIL.get() {
        None => false,
        Some(until) if Instant::now() >= until => {
            PAUSED_UNTIL.set(None);
            false
        }
        Some(_) => true,
    }
}

/// Ends this thread's pause (for tests that need a thread to poll).
#[doc(hidden)]
pub fn unpause() {
    PAUSED_UNTIL.set(None);
    NEXT_PAUSE.set(MIN_PAUSE);
}
