//! The manager figures' contenders: calls through a manager's proxies (a `dict`'s `set`
//! and `get`, a `Queue`'s `put` and `get`, a `Lock`'s `acquire` and `release`), from one
//! client in sequence, from one client process's threads at once, and from four client
//! processes; flotilla's manager against CPython's `multiprocessing.Manager()` and
//! against one bare `AF_UNIX` round trip per call.
//!
//! Every item of a call has a number `i` (0 to n − 1) and the call returns them in order
//! after checking each item's own result: a `get` must return what the `set` before it
//! stored, a queue's `get` the item just put. So a wrong answer fails the round.

use std::os::fd::OwnedFd;
use std::time::Duration;

use anyhow::{Context, ensure};
use flotilla::managers::{DictProxy, LockProxy, Manager, QueueProxy};
use flotilla::multiprocessing::{Connection, StartMethod, get_context, pipe};

use crate::figures::{Batch, batch};
use crate::os;

/// How long the parent waits for a client process's answer before the contender fails.
const TIMEOUT: Duration = Duration::from_secs(60);

/// Client processes in `manager-dict-4-clients`.
pub(crate) const CLIENTS: usize = 4;

/// The sentence every manager figure's conditions end with.
macro_rules! common {
    () => {
        "\n\nThe server is started untimed once per round, and so are the clients and the objects. \
The value is items per second; every item's result is checked inside the call (a `get` \
must return what the `set` before it stored), and the call returns the items' numbers \
in order. The machine is shared, so compare ratios within one run."
    };
}

/// The conditions of `manager-dict-sequential`, for `docs/benchmarks.md`.
pub(crate) const DICT_SEQUENTIAL_CONDITIONS: &str = concat!(
    "\
One client, one call at a time: item i is `d[k] = i` for even i and `d[k]` (checked \
to be i − 1) for odd i, k = (i / 2) mod 64, on a manager dict of integers — one round \
trip to the server per item. n = 20,000 items per timed call (2,000 for CPython).

- **flotilla**: `Manager::start()` (its server a forkserver child, on a Unix socket); \
`DictProxy<u64, u64>::set` and `get`.
- **cpython**: `multiprocessing.get_context('forkserver').Manager()`, `d = m.dict()`; \
`d[k] = i` and `d[k]`.
- **os-limit**: one round trip of an 8-byte message per item on a raw \
`socketpair(AF_UNIX, SOCK_STREAM)` to a `fork`ed echo child: what a call costs with \
no protocol, no encoding and no server work.",
    common!()
);

/// The conditions of `manager-dict-pipelined`, for `docs/benchmarks.md`.
pub(crate) const DICT_PIPELINED_CONDITIONS: &str = concat!(
    "\
One client process, pipelined: the work of `manager-dict-sequential` without waiting \
for each answer before the next call. n = 40,000 items per timed call (4,000 for \
CPython).

- **flotilla**: one thread sends the calls with `DictProxy::set_pending` and \
`get_pending` and waits for their answers 256 calls at a time (each `get` checked); \
the server runs a connection's calls in the order sent, so each `get` sees the `set` \
before it, and answers a burst of requests with one write.
- **cpython**: a proxy waits for each answer before the next call, so its nearest form \
is eight threads sharing one `DictProxy` (CPython opens a connection per thread), each \
doing an eighth of the items (a run of its own, on keys of its own; threads started per \
call), one round trip at a time.
- **os-limit**: one raw round trip per item, one at a time, as in \
`manager-dict-sequential` (the sequential floor that pipelining can pass).",
    common!()
);

/// The conditions of `manager-dict-4-clients`, for `docs/benchmarks.md`.
pub(crate) const DICT_CLIENTS_CONDITIONS: &str = concat!(
    "\
Four client processes at once on one manager dict: each call sends each client its \
quarter of the items (the work of `manager-dict-sequential` on keys of its own) over \
a pipe and waits for all four to answer. n = 40,000 items per timed call (4,000 for \
CPython).

- **flotilla**: four forkserver processes, each given the `DictProxy` as an argument \
(it connects, with the key the proxy carries, when it arrives).
- **cpython**: four forkserver processes, each given the `DictProxy` as an argument.
- **os-limit**: one raw round trip per item, one at a time, as in \
`manager-dict-sequential`.",
    common!()
);

/// The conditions of `manager-queue`, for `docs/benchmarks.md`.
pub(crate) const QUEUE_CONDITIONS: &str = concat!(
    "\
One client: item i is `q.put(i)` then `q.get()` (checked to be i) on an unbounded \
manager queue — two round trips per item. n = 10,000 items per timed call (1,000 for \
CPython).

- **flotilla**: `manager.queue::<u64>(0)`, `put` and `get`.
- **cpython**: `m.Queue()`, `put(i)` and `get()`.
- **os-limit**: two raw round trips of 8 bytes per item.",
    common!()
);

/// The conditions of `manager-lock`, for `docs/benchmarks.md`.
pub(crate) const LOCK_CONDITIONS: &str = concat!(
    "\
One client: item i is `lock.acquire()` then `lock.release()` on a free manager lock — \
two round trips per item. n = 10,000 items per timed call (1,000 for CPython).

- **flotilla**: `manager.lock()`, `acquire()` and `release()`.
- **cpython**: `m.Lock()`, `acquire()` and `release()`.
- **os-limit**: two raw round trips of 8 bytes per item.",
    common!()
);

/// Whether a call of `n` items returned their numbers in order.
pub(crate) fn check(n: usize, results: &[u64]) -> bool {
    results.len() == n && results.iter().enumerate().all(|(i, &r)| r == i as u64)
}

/// Items `range` of the dict work on `d`, keys offset by `base`, into `out`.
fn dict_items(
    d: &DictProxy<u64, u64>,
    range: std::ops::Range<u64>,
    base: u64,
    out: &mut Vec<u64>,
) -> anyhow::Result<()> {
    for i in range {
        let k = base + (i / 2) % 64;
        if i % 2 == 0 {
            d.set(&k, &i)?;
        } else {
            let got = d.get(&k)?;
            ensure!(got == Some(i - 1), "d[{k}] was {got:?}, not {}", i - 1);
        }
        out.push(i);
    }
    Ok(())
}

/// A started manager and what a contender keeps of it.
fn manager() -> anyhow::Result<Manager> {
    Manager::start().context("starting the manager")
}

/// flotilla: one client, one call at a time.
pub(crate) fn flotilla_dict_sequential(_threads: usize) -> anyhow::Result<Batch> {
    let m = manager()?;
    let d = m.dict::<u64, u64>()?;
    Ok(batch(move |n| {
        let _keep = &m;
        let mut out = Vec::with_capacity(n);
        dict_items(&d, 0..n as u64, 0, &mut out)?;
        Ok(out)
    }))
}

/// The runs of `n` items split `parts` ways, each of even length but the last.
fn split(n: usize, parts: usize) -> Vec<std::ops::Range<u64>> {
    let per = (n / parts) & !1;
    (0..parts)
        .map(|p| {
            let start = (p * per) as u64;
            let end = if p + 1 == parts { n } else { (p + 1) * per } as u64;
            start..end
        })
        .collect()
}

/// Calls in flight at once in `manager-dict-pipelined`.
pub(crate) const WINDOW: usize = 256;

/// flotilla: one client, one thread, up to [`WINDOW`] calls in flight.
pub(crate) fn flotilla_dict_pipelined(_threads: usize) -> anyhow::Result<Batch> {
    let m = manager()?;
    let d = m.dict::<u64, u64>()?;
    Ok(batch(move |n| {
        let _keep = &m;
        let mut out = Vec::with_capacity(n);
        let mut sets = std::collections::VecDeque::new();
        let mut gets = std::collections::VecDeque::new();
        for i in 0..n as u64 {
            let k = (i / 2) % 64;
            if i % 2 == 0 {
                sets.push_back(d.set_pending(&k, &i)?);
            } else {
                gets.push_back((i, d.get_pending(&k)?));
            }
            if sets.len() + gets.len() >= WINDOW || i + 1 == n as u64 {
                for s in sets.drain(..) {
                    s.wait()?;
                }
                for (i, g) in gets.drain(..) {
                    let got = g.wait()?;
                    ensure!(
                        got == Some(i - 1),
                        "d[{}] was {got:?}, not {}",
                        (i / 2) % 64,
                        i - 1
                    );
                }
            }
            out.push(i);
        }
        Ok(out)
    }))
}

/// A flotilla client process: does the dict work it is told until its pipe closes.
fn dict_client((d, conn, base): (DictProxy<u64, u64>, Connection, u64)) {
    while let Ok((start, end)) = conn.recv::<(u64, u64)>() {
        let mut out = Vec::new();
        let answer = dict_items(&d, start..end, base, &mut out).map_err(|e| e.to_string());
        if conn.send(&answer).is_err() {
            break;
        }
    }
}

/// flotilla: four client processes.
pub(crate) fn flotilla_dict_clients(_threads: usize) -> anyhow::Result<Batch> {
    let m = manager()?;
    let d = m.dict::<u64, u64>()?;
    let context = get_context(Some(StartMethod::ForkServer));
    let mut conns = Vec::new();
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (ours, theirs) = pipe(true)?;
        clients.push(
            context
                .process(dict_client, (d.clone(), theirs, c as u64 * 64))
                .daemon(true)
                .start()?,
        );
        conns.push(ours);
    }
    Ok(batch(move |n| {
        let _keep = (&m, &clients);
        let runs = split(n, CLIENTS);
        for (conn, run) in conns.iter().zip(&runs) {
            conn.send(&(run.start, run.end))?;
        }
        for conn in &conns {
            conn.recv_timeout::<Result<(), String>>(TIMEOUT)?
                .map_err(anyhow::Error::msg)?;
        }
        Ok((0..n as u64).collect())
    }))
}

/// flotilla: put then get, one client.
pub(crate) fn flotilla_queue(_threads: usize) -> anyhow::Result<Batch> {
    let m = manager()?;
    let q: QueueProxy<u64> = m.queue(0)?;
    Ok(batch(move |n| {
        let _keep = &m;
        let mut out = Vec::with_capacity(n);
        for i in 0..n as u64 {
            q.put(&i)?;
            out.push(q.get()?);
        }
        Ok(out)
    }))
}

/// flotilla: acquire then release, one client.
pub(crate) fn flotilla_lock(_threads: usize) -> anyhow::Result<Batch> {
    let m = manager()?;
    let lock: LockProxy = m.lock()?;
    Ok(batch(move |n| {
        let _keep = &m;
        let mut out = Vec::with_capacity(n);
        for i in 0..n as u64 {
            lock.acquire()?;
            lock.release()?;
            out.push(i);
        }
        Ok(out)
    }))
}

/// The raw echo child: reads 8 bytes, writes them back, until end of file.
fn raw_echo(fd: &OwnedFd) -> i32 {
    let mut buffer = [0u8; 8];
    loop {
        match os::read_exact(fd, &mut buffer) {
            Ok(true) => {
                if os::write_all(fd, &buffer).is_err() {
                    return 1;
                }
            }
            Ok(false) => return 0,
            Err(_) => return 1,
        }
    }
}

/// The parent's end of a socket pair to a forked echo child.
struct Raw {
    fd: Option<OwnedFd>,
    pid: libc::pid_t,
}

impl Raw {
    fn start() -> anyhow::Result<Raw> {
        let (ours, theirs) = os::socketpair()?;
        // SAFETY: the measuring process is single-threaded: contenders run in a fresh
        // process of their own, on its main thread, and this one starts no threads.
        let pid = unsafe { os::fork_with(theirs, &ours, raw_echo)? };
        Ok(Raw {
            fd: Some(ours),
            pid,
        })
    }

    /// One round trip of `i`; returns the echo.
    fn trip(&self, i: u64) -> anyhow::Result<u64> {
        let fd = self.fd.as_ref().expect("open until dropped");
        os::write_all(fd, &i.to_le_bytes())
            .map_err(std::io::Error::from_raw_os_error)
            .context("write")?;
        let mut echo = [0u8; 8];
        ensure!(
            os::read_exact(fd, &mut echo)
                .map_err(std::io::Error::from_raw_os_error)
                .context("read")?,
            "the raw child closed its end"
        );
        Ok(u64::from_le_bytes(echo))
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        drop(self.fd.take());
        let _ = os::wait_exit_code(self.pid);
    }
}

/// os-limit: `trips` raw round trips of 8 bytes per item.
fn os_trips(trips: usize) -> anyhow::Result<Batch> {
    let raw = Raw::start()?;
    Ok(batch(move |n| {
        let mut out = Vec::with_capacity(n);
        for i in 0..n as u64 {
            let mut echo = 0;
            for _ in 0..trips {
                echo = raw.trip(i)?;
            }
            out.push(echo);
        }
        Ok(out)
    }))
}

/// os-limit: one raw round trip per item.
pub(crate) fn os_one_trip(_threads: usize) -> anyhow::Result<Batch> {
    os_trips(1)
}

/// os-limit: two raw round trips per item.
pub(crate) fn os_two_trips(_threads: usize) -> anyhow::Result<Batch> {
    os_trips(2)
}
