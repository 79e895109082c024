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
//! process for its time slice, and would do so again at every look: the thread's CPU is
//! contended, and for a pause that starts at 5 ms and doubles, up to 1 s, while that
//! goes on, its waits stop yielding (a look that finds its event starts the pause
//! over).
//!
//! During a pause a wait spins instead, without yielding, for up to
//! [`CONTENDED_SPIN`], then blocks. With a busy process on every CPU, where the two
//! sides of a connection had been put on different CPUs (and the scheduler keeps them
//! there), blocking made every wake-up wait for the woken side to preempt its CPU's busy
//! process: 45 µs per round trip, for a raw socket pair as well, against 4.5 µs with
//! the spin. Where the two sides share a CPU the spin cannot see its event, since the
//! peer that would send it is kept off the CPU by the spin itself (each spin then adds
//! its whole length to a round trip): so after [`FAILED_SPINS`] spins in a row that
//! found nothing, the thread's waits block at once, for a time that starts at 5 ms and
//! doubles, up to 1 s, while spins keep failing; a spin that finds its event starts
//! that over. A peer that is slow to answer looks the same, and is treated the same.
//!
//! A wait for a thread of the same process spins instead ([`spin_for`], no yield): a
//! future's blocking waiter, a thread pool's idle worker. There the peer is a thread
//! that the scheduler keeps on another CPU, and under a busy process per CPU the
//! yielding policy stopped the pool's polls and cost 5.6 µs per round trip against
//! 0.75. The pool's worker uses [`spin_unless_contended`], which keeps the pause's
//! rule for spins, and [`yield_to_woken`] after a completion that woke a thread (which
//! the scheduler may have put on the worker's CPU).
//!
//! Where the scheduler has put a future's waiter and the worker completing it on one
//! CPU, the waiter's spin cannot see the task finish: the worker needs that CPU. A
//! waiter that has seen that happen (its spin failed, and its task was completed from
//! its own CPU) yields to the worker instead of spinning, for [`WAITER_YIELDS`] yields,
//! then sleeps; the worker, told so by the future, yields back after completing
//! (`waiter_yields`; a spin once in [`PROBE_EVERY`] waits checks that the guess still
//! holds, and a paused thread does not yield). With a busy process on every CPU, a
//! thread-pool round trip in that placement took 7.8 µs by sleeping and waking, 3 µs
//! this way. Better still is not to share the CPU: a pool worker that completes a task
//! whose waiter yields or sleeps on the worker's own CPU moves itself to another CPU
//! ([`leave_a_shared_cpu`]), and round trips take 0.45 µs.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// How many yields a blocking waiter that suspects its completer shares its CPU makes
/// before it sleeps (see the module docs): a trivial task runs within one; two cover a
/// worker that first finishes its own yield.
pub const WAITER_YIELDS: u32 = 3;

/// A waiter that suspects its completer shares its CPU spins anyway once in this many
/// waits, to see whether that still holds (a spin that finds its task done ends the
/// suspicion).
pub const PROBE_EVERY: u32 = 32;

/// How long a wait looks for its event before it blocks.
pub const POLL_FOR: Duration = Duration::from_micros(50);

/// A yield that took this long gave the CPU to a busy process for its time slice (0.75
/// to 3 ms). Shorter stalls are not that: on an idle VM about one yield in fifty took
/// 20-120 µs (the host running something else), and counting those stopped the looks
/// that cure the slow mode for most of a run.
pub const CONTENDED_YIELD: Duration = Duration::from_micros(500);

/// How long a wait spins, without yielding, while its thread is paused after a
/// contended yield. 10 µs let one round trip in twenty of a connection under load miss
/// the answer (the peer took longer to be scheduled); 20 µs, one in four hundred.
pub const CONTENDED_SPIN: Duration = Duration::from_micros(20);

/// Spins in a row that found nothing, after which a paused thread's waits block at
/// once. One failed spin is also what a peer that was preempted mid-answer costs; a
/// run of them is a peer that needs this CPU, or one that is slow to answer.
pub const FAILED_SPINS: u32 = 3;

const MIN_PAUSE: Duration = Duration::from_millis(5);
const MAX_PAUSE: Duration = Duration::from_secs(1);

/// A stop that lasts [`MIN_PAUSE`] when started, twice as long each time it is started
/// again, up to [`MAX_PAUSE`], until [`reset`](Self::reset).
struct Backoff {
    /// Until when it is on.
    until: Cell<Option<Instant>>,
    /// How long the next start lasts.
    next: Cell<Duration>,
}

impl Backoff {
    const fn new() -> Backoff {
        Backoff {
            until: Cell::new(None),
            next: Cell::new(MIN_PAUSE),
        }
    }

    /// Whether it is on now (one that ran out is forgotten).
    fn on(&self) -> bool {
        match self.until.get() {
            None => false,
            Some(until) if Instant::now() >= until => {
                self.until.set(None);
                false
            }
            Some(_) => true,
        }
    }

    /// Starts it, for twice as long as the last start.
    fn start(&self) {
        let length = self.next.get();
        self.until.set(Some(Instant::now() + length));
        self.next.set((2 * length).min(MAX_PAUSE));
    }

    /// The next start lasts [`MIN_PAUSE`] again.
    fn reset(&self) {
        self.next.set(MIN_PAUSE);
    }

    /// Off, and reset.
    fn clear(&self) {
        self.until.set(None);
        self.reset();
    }
}

thread_local! {
    /// While on, this thread's waits do not yield (its CPU is contended): started by a
    /// contended yield, reset by a look that finds its event.
    static PAUSE: Backoff = const { Backoff::new() };
    /// While on, this thread's paused waits block at once, without spinning: started by
    /// a run of failed spins, reset by a spin that finds its event.
    static SPINS_OFF: Backoff = const { Backoff::new() };
    /// Spins in a row, during a pause, that found nothing.
    static SPINS_FAILED: Cell<u32> = const { Cell::new(0) };
    /// A blocking waiter's guess that the threads completing its futures share its
    /// CPU: 0 when it does not suspect so, else the waits since it suspects so (see
    /// [`waiter_yields`]).
    static SHARED_CPU: Cell<u32> = const { Cell::new(0) };
}

/// The CPU this thread runs on now; `u32::MAX` when the system cannot say.
pub(crate) fn current_cpu() -> u32 {
    // SAFETY: sched_getcpu takes nothing and only returns a number.
    let cpu = unsafe { libc::sched_getcpu() };
    u32::try_from(cpu).unwrap_or(u32::MAX)
}

/// For a blocking waiter on a future of this process, before it spins: whether to
/// yield its CPU to the thread that will complete the future, rather than spin on it.
///
/// A spin cannot see a task finish when the worker that runs it shares the waiter's
/// CPU (the scheduler put them together; under a busy process per CPU, one placement in
/// several): the worker runs only once the waiter stops spinning, and a waiter that
/// then sleeps pays a futex wake and two context switches per task (7.9 µs per
/// thread-pool round trip against 2.1 for crossbeam's yielding receive). So a waiter
/// that has seen its last task completed from its own CPU after its spin failed
/// ([`note_completer`]) yields instead, and the completer, told so, yields back. The
/// guess is probed once in [`PROBE_EVERY`] waits with a spin, and none of this happens
/// while the thread is paused after a contended yield (a yield would hand a busy
/// process its time slice).
pub(crate) fn waiter_yields() -> bool {
    let waits = SHARED_CPU.get();
    if waits == 0 || paused() {
        return false;
    }
    if waits >= PROBE_EVERY {
        SHARED_CPU.set(1);
        return false;
    }
    SHARED_CPU.set(waits + 1);
    true
}

/// A blocking waiter's spin found its task done: the completer runs beside it, on
/// another CPU.
pub(crate) fn spin_found_it() {
    SHARED_CPU.set(0);
}

/// A blocking waiter that did not see its task done by spinning saw it done now,
/// completed from CPU `completer` (`u32::MAX`: not known): whether that is this
/// thread's CPU decides the guess of [`waiter_yields`].
pub(crate) fn note_completer(completer: u32) {
    let shared = completer != u32::MAX && completer == current_cpu();
    if !shared {
        SHARED_CPU.set(0);
    } else if SHARED_CPU.get() == 0 {
        SHARED_CPU.set(1);
    }
}

thread_local! {
    /// This thread has just completed a future whose blocking waiter was yielding or
    /// sleeping on this same CPU (see [`leave_a_shared_cpu`]).
    static COMPLETED_BESIDE_WAITER: Cell<bool> = const { Cell::new(false) };
    /// When this thread last moved off a CPU it shared with a waiter.
    static LAST_MOVE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Notes that this thread completed a future whose blocking waiter was on its CPU.
pub(crate) fn completed_beside_waiter() {
    COMPLETED_BESIDE_WAITER.set(true);
}

/// How often, at most, a worker moves off a CPU it shares with its waiter.
pub const MOVE_EVERY: Duration = Duration::from_millis(2);

/// For a pool's worker thread, after it ran a task: if the task's blocking waiter was
/// yielding or sleeping on this thread's CPU (they share it), moves this thread to
/// another CPU it may run on, at most once per [`MOVE_EVERY`]; whether it moved.
///
/// Two threads that hand work back and forth on one CPU pay two context switches per
/// hand-off (3 µs per thread-pool round trip under a busy process per CPU) where on two
/// CPUs they pay none (0.45 µs), and the scheduler, which put them together, keeps
/// them there for the life of the process. So the worker — the pool's own thread, never
/// the caller's — leaves: it narrows its affinity to the CPUs it may use but this one,
/// which moves it at once, then widens it back to what it was, so that the scheduler
/// stays free to place it. A thread that may use only this CPU stays.
pub fn leave_a_shared_cpu() -> bool {
    if !COMPLETED_BESIDE_WAITER.replace(false) {
        return false;
    }
    let now = Instant::now();
    if LAST_MOVE
        .get()
        .is_some_and(|last| now.saturating_duration_since(last) < MOVE_EVERY)
    {
        return false;
    }
    LAST_MOVE.set(Some(now));
    move_off(current_cpu())
}

/// Moves this thread off `cpu`, keeping its affinity as it was; whether it moved.
fn move_off(cpu: u32) -> bool {
    let Ok(cpu) = usize::try_from(cpu) else {
        return false;
    };
    // SAFETY: a zeroed cpu_set_t is an empty set, a valid value.
    let mut allowed: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: pid 0 is this thread; `allowed` is a cpu_set_t of `size` bytes.
    if unsafe { libc::sched_getaffinity(0, size, &mut allowed) } != 0 {
        return false;
    }
    if cpu >= libc::CPU_SETSIZE as usize {
        return false;
    }
    let mut elsewhere = allowed;
    // SAFETY: `cpu` is below CPU_SETSIZE, the set's capacity.
    unsafe { libc::CPU_CLR(cpu, &mut elsewhere) };
    // SAFETY: reads a valid set.
    if unsafe { libc::CPU_COUNT(&elsewhere) } == 0 {
        return false; // this CPU is the only one it may use
    }
    // SAFETY: pid 0 is this thread; both sets are valid cpu_set_t values of `size`
    // bytes. The first call moves the thread off `cpu` before it returns; the second
    // gives it back the CPUs it had.
    unsafe {
        if libc::sched_setaffinity(0, size, &elsewhere) != 0 {
            return false;
        }
        libc::sched_setaffinity(0, size, &allowed) == 0
    }
}

/// Looks for an event with `ready` for up to `limit` (at most [`POLL_FOR`] is
/// sensible), yielding the CPU between looks; whether it came. While this thread is
/// paused after a contended yield it spins instead, without yielding, for up to
/// [`CONTENDED_SPIN`] (and at most `limit`), or looks just once while such spins keep
/// failing (see the module docs). `ready` must not block.
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
        return contended_spin(limit.min(CONTENDED_SPIN), ready);
    }
    let start = Instant::now();
    while start.elapsed() < limit {
        if !yield_once() {
            return false;
        }
        if ready() {
            PAUSE.with(Backoff::reset);
            return true;
        }
    }
    false
}

/// Yields the CPU once; false when the yield was contended, and a pause started (also
/// a waiter's yield to its completer: see [`waiter_yields`]).
pub(crate) fn yield_once() -> bool {
    let before = Instant::now();
    std::thread::yield_now();
    if before.elapsed() >= CONTENDED_YIELD {
        PAUSE.with(Backoff::start);
        return false;
    }
    true
}

/// Lets a thread that this one has just woken run, in case the scheduler put it on this
/// CPU: yields the CPU once, unless this thread is paused after a contended yield (that
/// yield would hand the CPU to a busy process for its time slice). A yield that takes
/// [`CONTENDED_YIELD`] or more starts a pause.
///
/// For a thread about to spin for more work (a pool's worker, after it completed a
/// future someone was waiting on): the scheduler often wakes a thread on the CPU of
/// the thread that woke it, where a spin that does not yield would keep it waiting for
/// the whole spin (with a busy process on every CPU, one run in five of
/// `run_in_executor` round trips took 22 µs instead of 3.3).
pub fn yield_to_woken() {
    if !paused() {
        yield_once();
    }
}

/// Looks for an event of this process with `ready` for up to `limit`, spinning on the
/// CPU without yielding it, as [`spin_for`] does; whether it came. While this thread is
/// paused after a contended yield it spins for at most [`CONTENDED_SPIN`], and not at
/// all while such spins keep failing (see the module docs): a spin that cannot find
/// its event may be keeping the thread that would make it off this CPU.
pub fn spin_unless_contended(limit: Duration, ready: impl FnMut() -> bool) -> bool {
    if paused() {
        contended_spin(limit.min(CONTENDED_SPIN), ready)
    } else {
        spin_for(limit, ready)
    }
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
    PAUSE.with(Backoff::on)
}

/// A paused thread's spin: for up to `limit` unless spins are off after a run of
/// failed ones; whether the event came.
fn contended_spin(limit: Duration, ready: impl FnMut() -> bool) -> bool {
    if SPINS_OFF.with(Backoff::on) {
        return false;
    }
    if spin_for(limit, ready) {
        SPINS_FAILED.set(0);
        SPINS_OFF.with(Backoff::reset);
        return true;
    }
    let failed = SPINS_FAILED.get() + 1;
    if failed < FAILED_SPINS {
        SPINS_FAILED.set(failed);
    } else {
        SPINS_FAILED.set(0);
        SPINS_OFF.with(Backoff::start);
    }
    false
}

/// Ends this thread's pause and any stop of its spins (for tests that need a thread to
/// poll).
#[doc(hidden)]
pub fn unpause() {
    PAUSE.with(Backoff::clear);
    SPINS_OFF.with(Backoff::clear);
    SPINS_FAILED.set(0);
}

/// Puts this thread in a pause of `length` with its spins on, as a contended yield
/// does (for tests of a paused thread's waits).
#[doc(hidden)]
pub fn pause_for(length: Duration) {
    unpause();
    PAUSE.with(|pause| pause.until.set(Some(Instant::now() + length)));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pause() {
        pause_for(Duration::from_secs(60));
    }

    fn spins_off() -> bool {
        SPINS_OFF.with(Backoff::on)
    }

    /// How long the next run of failed spins stops the spins.
    fn next_spins_off() -> Duration {
        SPINS_OFF.with(|off| off.next.get())
    }

    /// Calls `poll_for` with an event that never comes; how many looks it made.
    fn looks_for_nothing() -> u32 {
        let mut looks = 0;
        assert!(!poll_for(POLL_FOR, || {
            looks += 1;
            false
        }));
        looks
    }

    #[test]
    fn a_waiter_yields_while_its_completer_shares_its_cpu_and_probes_now_and_then() {
        unpause();
        spin_found_it();
        assert!(!waiter_yields(), "nothing suspected yet");
        // Completed from this CPU after a failed spin: suspected, and probed once in
        // PROBE_EVERY waits.
        note_completer(current_cpu());
        let yields = (0..2 * PROBE_EVERY).filter(|_| waiter_yields()).count();
        assert_eq!(yields as u32, 2 * PROBE_EVERY - 2);
        // Completed from elsewhere, or from nobody knows where: over.
        note_completer(current_cpu().wrapping_add(1));
        assert!(!waiter_yields());
        note_completer(current_cpu());
        note_completer(u32::MAX);
        assert!(!waiter_yields());
        // A spin that found its task done: over.
        note_completer(current_cpu());
        spin_found_it();
        assert!(!waiter_yields());
        // Never while paused after a contended yield.
        note_completer(current_cpu());
        pause();
        assert!(!waiter_yields());
        unpause();
        spin_found_it();
    }

    /// This thread's affinity mask.
    fn affinity() -> libc::cpu_set_t {
        // SAFETY: a zeroed cpu_set_t is an empty set; pid 0 is this thread.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            assert_eq!(
                libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set),
                0
            );
            set
        }
    }

    fn same(a: &libc::cpu_set_t, b: &libc::cpu_set_t) -> bool {
        // SAFETY: reads two valid sets.
        unsafe { libc::CPU_EQUAL(a, b) }
    }

    #[test]
    fn a_worker_beside_its_waiter_moves_and_keeps_its_affinity() {
        let before = affinity();
        // SAFETY: reads a valid set.
        let cpus = unsafe { libc::CPU_COUNT(&before) };
        // Nothing to do unless told so.
        assert!(!leave_a_shared_cpu());
        completed_beside_waiter();
        assert_eq!(leave_a_shared_cpu(), cpus > 1, "{cpus} CPUs allowed");
        assert!(same(&affinity(), &before), "the affinity is what it was");
        // At most once per MOVE_EVERY: not within it, again after it. (The last move's
        // time is set, not waited for: a thread moved to another CPU may wait there
        // longer than MOVE_EVERY to run again on a busy machine.)
        LAST_MOVE.set(Some(Instant::now()));
        completed_beside_waiter();
        assert!(!leave_a_shared_cpu());
        assert!(same(&affinity(), &before));
        LAST_MOVE.set(Instant::now().checked_sub(MOVE_EVERY));
        completed_beside_waiter();
        assert_eq!(leave_a_shared_cpu(), cpus > 1);
        assert!(same(&affinity(), &before));

        // A thread that may run on one CPU only stays there.
        std::thread::spawn(|| {
            let cpu = current_cpu() as usize;
            // SAFETY: a zeroed set, with one CPU below CPU_SETSIZE added; pid 0 is
            // this thread.
            let one = unsafe {
                let mut one: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(cpu, &mut one);
                assert_eq!(
                    libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &one),
                    0
                );
                one
            };
            completed_beside_waiter();
            assert!(!leave_a_shared_cpu());
            assert!(same(&affinity(), &one));
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_paused_wait_spins_for_its_event() {
        // A spin is bounded in time, and a thread preempted mid-spin (on a loaded
        // machine) can run out of it: a few tries.
        let found = (0..10).any(|_| {
            pause();
            let mut looks = 0;
            poll_for(POLL_FOR, || {
                looks += 1;
                looks == 10
            })
        });
        assert!(found);
        assert!(paused() && !spins_off());
    }

    #[test]
    fn a_run_of_failed_spins_makes_paused_waits_look_once() {
        pause();
        for _ in 0..FAILED_SPINS {
            assert!(!spins_off());
            // The first look, then a spin of many.
            assert!(looks_for_nothing() >= 2);
        }
        assert!(spins_off());
        assert_eq!(looks_for_nothing(), 1);
        assert_eq!(next_spins_off(), 2 * MIN_PAUSE);
    }

    #[test]
    fn a_spin_that_finds_its_event_starts_the_count_over() {
        pause();
        for _ in 1..FAILED_SPINS {
            looks_for_nothing();
        }
        let mut looks = 0;
        assert!(poll_for(POLL_FOR, || {
            looks += 1;
            looks == 3
        }));
        for _ in 1..FAILED_SPINS {
            looks_for_nothing();
        }
        assert!(!spins_off());
    }

    #[test]
    fn spins_start_again_when_their_stop_runs_out() {
        pause();
        for _ in 0..FAILED_SPINS {
            looks_for_nothing();
        }
        assert!(spins_off());
        SPINS_OFF.with(|off| off.until.set(Some(Instant::now())));
        assert!(!spins_off());
        assert!(looks_for_nothing() >= 2);
        // A second run of failures stops them for twice as long.
        for _ in 1..FAILED_SPINS {
            looks_for_nothing();
        }
        assert!(spins_off());
        assert_eq!(next_spins_off(), 4 * MIN_PAUSE);
    }

    #[test]
    fn a_spin_for_a_thread_is_cut_short_by_a_pause_and_stopped_by_failures() {
        unpause();
        let start = Instant::now();
        assert!(!spin_unless_contended(Duration::from_millis(2), || false));
        assert!(
            start.elapsed() >= Duration::from_millis(2),
            "not paused: the whole spin"
        );
        pause();
        for _ in 0..FAILED_SPINS {
            let mut looks = 0;
            assert!(!spin_unless_contended(Duration::from_secs(60), || {
                looks += 1;
                false
            }));
            assert!(looks >= 1);
        }
        let mut looks = 0;
        assert!(!spin_unless_contended(Duration::from_secs(60), || {
            looks += 1;
            false
        }));
        assert_eq!(looks, 0, "spins are off");
    }

    #[test]
    fn the_stop_of_the_spins_is_at_most_the_longest_pause() {
        pause();
        for _ in 0..20 {
            for _ in 0..FAILED_SPINS {
                looks_for_nothing();
            }
            SPINS_OFF.with(|off| off.until.set(None));
        }
        assert_eq!(next_spins_off(), MAX_PAUSE);
    }
}
