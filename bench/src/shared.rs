//! The shared-counter figures' contenders: a counter in shared memory incremented under
//! a lock or atomically, by two worker processes at once or by the measuring process
//! alone; flotilla's `Value` against CPython's `Value` with `get_lock()` and against a
//! bare robust process-shared pthread mutex and a bare atomic in a shared page.
//!
//! The two workers are started untimed when the contender is set up and wait on a pipe:
//! each timed call sends each of them its half of the increments and waits for both to
//! say they are done (a few microseconds against a call of tens of milliseconds). The
//! call returns the counter's growth, which must be exactly the increments asked for.

use std::os::fd::OwnedFd;
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{bail, ensure};
use flotilla::multiprocessing::{
    AcquireError, Connection, Process, StartMethod, Value, get_context, pipe,
};

use crate::figures::{Batch, batch};
use crate::os;

/// How long the parent waits for a worker's answer before the contender fails.
const TIMEOUT: Duration = Duration::from_secs(60);

/// The conditions of `shared-counter-locked`, for `docs/benchmarks.md`.
pub(crate) const LOCKED_CONDITIONS: &str = "\
Each timed call has two worker processes add 1 to one shared 64-bit counter n/2 times \
each, at the same time, every increment under a process-shared lock; the value is n \
divided by the call's time, in increments per second (n = 1,000,000; 100,000 for \
CPython). The workers are started untimed, once per round; each call sends each its \
count over a pipe and waits for both to answer. After each call the counter must have \
grown by exactly n.

- **flotilla**: `Value::new(0i64)` (a robust recursive process-shared pthread mutex at \
the head of the value's segment), passed to two `get_context(Some(StartMethod::ForkServer))` \
workers; each increment is `let v = value.lock()?; v.set(v.get() + 1)`.
- **cpython**: `multiprocessing.Value('q', 0)` passed to two forkserver workers; each \
increment is `with v.get_lock(): v.value += 1`.
- **os-limit**: a robust process-shared pthread mutex (the default, non-recursive \
kind) and a `u64` 64 bytes after it, in a `MAP_SHARED | MAP_ANONYMOUS` page, and two \
`fork`ed workers; each increment is `pthread_mutex_lock`, a volatile read and write of \
the `u64`, `pthread_mutex_unlock`.";

/// The conditions of `shared-counter-atomic`, for `docs/benchmarks.md`.
pub(crate) const ATOMIC_CONDITIONS: &str = "\
As `shared-counter-locked`, with n = 10,000,000 and no lock: each increment is one \
atomic read-modify-write of the shared counter. CPython has no atomic shared integer \
(its `RawValue`'s `+=` loses updates), so it has no column.

- **flotilla**: `Value::raw(0i64)` passed to two forkserver workers; each increment is \
`value.fetch_add(1)` (a `SeqCst` `fetch_add` on the `AtomicI64` in the segment).
- **os-limit**: an `AtomicU64` in a `MAP_SHARED | MAP_ANONYMOUS` page and two `fork`ed \
workers; each increment is `fetch_add(1, SeqCst)`.";

/// The conditions of `shared-counter-locked-uncontended`, for `docs/benchmarks.md`.
pub(crate) const UNCONTENDED_CONDITIONS: &str = "\
The cost of the lock alone: each timed call adds 1 to a shared counter n times from the \
measuring process itself, every increment under the process-shared lock, nobody else \
touching it (n = 1,000,000; 100,000 for CPython). The value is increments per second. \
The lock and the counter are made as in `shared-counter-locked`.

- **flotilla**: `let v = value.lock()?; v.set(v.get() + 1)` on a `Value::new(0i64)`.
- **cpython**: `with v.get_lock(): v.value += 1` on a `multiprocessing.Value('q', 0)`.
- **os-limit**: `pthread_mutex_lock`, a volatile read and write, `pthread_mutex_unlock` \
on a robust process-shared mutex in a shared page.";

/// Whether a call asked for `n` increments saw the counter grow by exactly `n`.
pub(crate) fn check(n: usize, results: &[u64]) -> bool {
    results == [n as u64]
}

/// How one increment is made in a flotilla worker.
#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize)]
enum Increment {
    Locked,
    Atomic,
}

fn add(value: &Value<i64>, how: Increment, n: u64) -> anyhow::Result<()> {
    match how {
        Increment::Locked => {
            for _ in 0..n {
                let v = value.lock().or_else(AcquireError::recover)?;
                v.set(v.get() + 1);
            }
        }
        Increment::Atomic => {
            for _ in 0..n {
                value.fetch_add(1);
            }
        }
    }
    Ok(())
}

/// A flotilla worker: adds what it is told until its connection closes.
fn flotilla_worker((value, conn, how): (Value<i64>, Connection, Increment)) -> u64 {
    let mut total = 0;
    while let Ok(n) = conn.recv::<u64>() {
        add(&value, how, n).expect("the worker's increments");
        total += n;
        if conn.send(&n).is_err() {
            break;
        }
    }
    total
}

/// Two flotilla workers sharing `value`, and the parent's ends of their pipes.
struct FlotillaWorkers {
    value: Value<i64>,
    conns: Vec<Connection>,
    _workers: Vec<Process<u64>>,
}

impl FlotillaWorkers {
    fn start(value: Value<i64>, how: Increment) -> anyhow::Result<Self> {
        let context = get_context(Some(StartMethod::ForkServer));
        let (mut conns, mut workers) = (Vec::new(), Vec::new());
        for _ in 0..2 {
            let (ours, theirs) = pipe(true)?;
            let worker = context
                .process(flotilla_worker, (value.clone(), theirs, how))
                .daemon(true)
                .start()?;
            conns.push(ours);
            workers.push(worker);
        }
        Ok(FlotillaWorkers {
            value,
            conns,
            _workers: workers,
        })
    }

    fn call(&mut self, n: usize) -> anyhow::Result<Vec<u64>> {
        let before = self.value.load();
        let half = n as u64 / 2;
        for (i, conn) in self.conns.iter().enumerate() {
            conn.send(&(half + if i == 0 { n as u64 % 2 } else { 0 }))?;
        }
        for conn in &self.conns {
            conn.recv_timeout::<u64>(TIMEOUT)?;
        }
        Ok(vec![(self.value.load() - before) as u64])
    }
}

/// flotilla: two processes incrementing a `Value` under its lock.
pub(crate) fn flotilla_locked(_threads: usize) -> anyhow::Result<Batch> {
    let mut workers = FlotillaWorkers::start(Value::new(0i64)?, Increment::Locked)?;
    Ok(batch(move |n| workers.call(n)))
}

/// flotilla: two processes incrementing a raw `Value` with `fetch_add`.
pub(crate) fn flotilla_atomic(_threads: usize) -> anyhow::Result<Batch> {
    let mut workers = FlotillaWorkers::start(Value::raw(0i64)?, Increment::Atomic)?;
    Ok(batch(move |n| workers.call(n)))
}

/// flotilla: the measuring process alone, under the `Value`'s lock.
pub(crate) fn flotilla_uncontended(_threads: usize) -> anyhow::Result<Batch> {
    let value = Value::new(0i64)?;
    Ok(batch(move |n| {
        let before = value.load();
        add(&value, Increment::Locked, n as u64)?;
        Ok(vec![(value.load() - before) as u64])
    }))
}

// ---------------------------------------------------------------------------------------
// os-limit

/// Where the raw counter lives in the shared page: past the mutex, on its own line.
const COUNTER: usize = 64;

/// The shared page of this process's raw contender, set before its workers are forked
/// (they inherit the pointer and the mapping).
static PAGE: AtomicPtr<u8> = AtomicPtr::new(ptr::null_mut());

/// A `MAP_SHARED | MAP_ANONYMOUS` page holding a robust process-shared mutex at 0 and a
/// counter at [`COUNTER`]; it is never unmapped (the measuring process ends with it).
fn raw_page() -> anyhow::Result<*mut u8> {
    // SAFETY: a fresh anonymous mapping at an address the kernel chooses.
    let page = unsafe {
        libc::mmap(
            ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    ensure!(
        page != libc::MAP_FAILED,
        "mmap: {}",
        std::io::Error::last_os_error()
    );
    let page = page.cast::<u8>();
    let mut attr = std::mem::MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
    // SAFETY: `attr` is initialised before use and destroyed after; the mutex is
    // initialised once, in a page nobody else maps yet, suitably aligned (page start).
    let rc = unsafe {
        let a = attr.as_mut_ptr();
        libc::pthread_mutexattr_init(a);
        libc::pthread_mutexattr_setpshared(a, libc::PTHREAD_PROCESS_SHARED);
        libc::pthread_mutexattr_setrobust(a, libc::PTHREAD_MUTEX_ROBUST);
        let rc = libc::pthread_mutex_init(page.cast(), a);
        libc::pthread_mutexattr_destroy(a);
        rc
    };
    ensure!(rc == 0, "pthread_mutex_init: {rc}");
    PAGE.store(page, Ordering::Relaxed);
    Ok(page)
}

/// The raw locked increment, `n` times, on the page set up by [`raw_page`].
fn raw_locked(page: *mut u8, n: u64) {
    let mutex = page.cast::<libc::pthread_mutex_t>();
    // SAFETY: `page` is the mapping made by `raw_page`, alive for the whole process (and
    // inherited by forked workers); the counter is only touched with the mutex held.
    unsafe {
        let counter = page.add(COUNTER).cast::<u64>();
        for _ in 0..n {
            libc::pthread_mutex_lock(mutex);
            counter.write_volatile(counter.read_volatile() + 1);
            libc::pthread_mutex_unlock(mutex);
        }
    }
}

/// The raw counter as an atomic.
fn raw_counter(page: *mut u8) -> &'static AtomicU64 {
    // SAFETY: the mapping lives for the whole process and is page-aligned, so the word at
    // `COUNTER` is aligned; atomics tolerate the other processes' writes.
    unsafe { &*page.add(COUNTER).cast::<AtomicU64>() }
}

/// A raw worker's loop: reads a count, makes that many increments with `add`, answers
/// one byte; ends at end of file.
fn raw_worker(fd: &OwnedFd, add: fn(*mut u8, u64)) -> i32 {
    let page = PAGE.load(Ordering::Relaxed);
    let mut count = [0u8; 8];
    loop {
        match os::read_exact(fd, &mut count) {
            Ok(true) => {}
            Ok(false) => return 0,
            Err(_) => return 1,
        }
        add(page, u64::from_ne_bytes(count));
        if os::write_all(fd, b"k").is_err() {
            return 1;
        }
    }
}

fn raw_locked_worker(fd: &OwnedFd) -> i32 {
    raw_worker(fd, raw_locked)
}

fn raw_atomic_worker(fd: &OwnedFd) -> i32 {
    raw_worker(fd, |page, n| {
        let counter = raw_counter(page);
        for _ in 0..n {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    })
}

/// Two forked raw workers and the parent's ends of their socket pairs.
struct RawWorkers {
    page: *mut u8,
    peers: Vec<(OwnedFd, libc::pid_t)>,
}

impl RawWorkers {
    fn start(body: fn(&OwnedFd) -> i32) -> anyhow::Result<Self> {
        let page = raw_page()?;
        let mut peers = Vec::new();
        for _ in 0..2 {
            let (ours, theirs) = os::socketpair()?;
            // SAFETY: the measuring process is single-threaded: contenders run in a
            // fresh process of their own, on its main thread, and this one starts no
            // threads.
            let pid = unsafe { os::fork_with(theirs, &ours, body)? };
            peers.push((ours, pid));
        }
        Ok(RawWorkers { page, peers })
    }

    fn call(&mut self, n: usize) -> anyhow::Result<Vec<u64>> {
        let counter = raw_counter(self.page);
        let before = counter.load(Ordering::SeqCst);
        let half = n as u64 / 2;
        for (i, (fd, _)) in self.peers.iter().enumerate() {
            let count = half + if i == 0 { n as u64 % 2 } else { 0 };
            os::write_all(fd, &count.to_ne_bytes()).map_err(os_error("write"))?;
        }
        for (fd, _) in &self.peers {
            let mut done = [0u8; 1];
            if !os::read_exact(fd, &mut done).map_err(os_error("read"))? {
                bail!("a raw worker died");
            }
        }
        Ok(vec![counter.load(Ordering::SeqCst) - before])
    }
}

impl Drop for RawWorkers {
    fn drop(&mut self) {
        // Close every end before waiting for anyone: the second worker was forked
        // holding a copy of the first one's parent end, so the first sees end of file
        // only once the second has exited.
        let pids: Vec<_> = self.peers.drain(..).map(|(_, pid)| pid).collect();
        for pid in pids {
            let _ = os::wait_exit_code(pid);
        }
    }
}

fn os_error(op: &'static str) -> impl Fn(i32) -> anyhow::Error {
    move |e| anyhow::Error::from(std::io::Error::from_raw_os_error(e)).context(op)
}

/// os-limit: two forked processes incrementing under a raw robust pthread mutex.
pub(crate) fn os_locked(_threads: usize) -> anyhow::Result<Batch> {
    let mut workers = RawWorkers::start(raw_locked_worker)?;
    Ok(batch(move |n| workers.call(n)))
}

/// os-limit: two forked processes doing a raw atomic `fetch_add`.
pub(crate) fn os_atomic(_threads: usize) -> anyhow::Result<Batch> {
    let mut workers = RawWorkers::start(raw_atomic_worker)?;
    Ok(batch(move |n| workers.call(n)))
}

/// os-limit: the measuring process alone, under a raw robust pthread mutex.
pub(crate) fn os_uncontended(_threads: usize) -> anyhow::Result<Batch> {
    let page = raw_page()?;
    Ok(batch(move |n| {
        let before = raw_counter(page).load(Ordering::SeqCst);
        raw_locked(page, n as u64);
        Ok(vec![raw_counter(page).load(Ordering::SeqCst) - before])
    }))
}
