//! The process figures' contenders: start a trivial child and wait for it to end, under
//! flotilla's three start methods, with procspawn, and with the bare `fork` /
//! `posix_spawn` + `waitpid` under them.
//!
//! Every child hands back the number 42, by the route its API has: flotilla and
//! procspawn return it from the target, the bare children and CPython's exit with it
//! (CPython's `Process` has no return value). A call of n processes returns n of them.

use std::time::Duration;

use flotilla::multiprocessing::{StartMethod, get_context};

use crate::figures::{Batch, batch};
use crate::os::{self, EXIT_NOW_CODE};

/// What every child hands back.
const VALUE: u64 = EXIT_NOW_CODE as u64;

/// How long a join may wait before the contender is marked failed.
const JOIN_TIMEOUT: Duration = Duration::from_secs(60);

/// The conditions shared by the three `process-start-join-*` figures.
macro_rules! conditions {
    ($method:literal, $trips:literal, $quick:literal, $python:literal) => {
        concat!(
            "Each timed call starts one child process that returns the number 42 at once, \
and waits for it to end; the value is the median call, in milliseconds. A round is a \
fresh process that starts and joins ",
            $trips,
            " children timed (",
            $quick,
            " with `--quick`), after a tenth as many untimed; no child overlaps another. \
Every contender checks, untimed, that 42 came back.

- **flotilla**: `get_context(Some(StartMethod::",
            $method,
            "))`, `.process(child, ()).start()`, then `.join_timeout(60 s)`, which returns \
the target's `u64` (decoded from the child's report).
- **cpython**: `multiprocessing.get_context(\"",
            $python,
            "\").Process(target=child)`, `start()`, `join()`; the child ends with \
`sys.exit(42)` and the parent checks `exitcode` (a Python `Process` returns no value).
- **procspawn**: `procspawn::spawn((), |()| 42u64).join()`, its documented usage. \
procspawn has one way to start a process, a fresh exec of the program (like spawn), \
so outside the spawn figure it is the Rust alternative, not the same mechanism.
"
        )
    };
}

/// The conditions of `process-start-join-fork`, for `docs/benchmarks.md`.
pub(crate) const FORK_CONDITIONS: &str = concat!(
    conditions!("Fork", "300", "60", "fork"),
    "- **os-limit**: `fork()`; the child calls `_exit(42)` at once; the parent \
`waitpid`s it. flotilla's fork start also makes a socket pair for the child's report, \
counts this process's threads (it refuses to fork a multi-threaded process), opens a \
pidfd, and has the child encode and send its value.

The measuring process is single-threaded, so flotilla's `start()` (which checks) is \
used, not `start_unchecked()`."
);

/// The conditions of `process-start-join-spawn`, for `docs/benchmarks.md`.
pub(crate) const SPAWN_CONDITIONS: &str = concat!(
    conditions!("Spawn", "60", "12", "spawn"),
    "- **os-limit**: `posix_spawn` of this same benchmark binary (`/proc/self/exe`) with \
one argument that makes its `main` exit with 42 at once (after the two crates' init \
calls, which only look at an environment variable), then `waitpid`. It pays the same \
exec and dynamic loading as flotilla's and procspawn's children, and nothing else.

The bench binary's `main` calls `flotilla::init()` first and `procspawn::init()` \
second: each recognises its own children by an environment variable of its own and \
returns at once in any other process, so they coexist."
);

/// The conditions of `process-start-join-forkserver`, for `docs/benchmarks.md`.
pub(crate) const FORKSERVER_CONDITIONS: &str = concat!(
    conditions!("ForkServer", "150", "30", "forkserver"),
    "- **os-limit**: `fork()` + `_exit(42)` + `waitpid`, as for the fork figure: the \
bare cost of the fork the server makes. A forkserver start adds a request to the \
server and the exit status coming back over its socket, so flotilla cannot reach this; \
it shows what the indirection costs.

The forkserver is started by the first (untimed) call of each round, flotilla's and \
CPython's alike, so the timed calls measure a running server."
);

/// The trivial child of flotilla's figures.
fn child(_: ()) -> u64 {
    VALUE
}

/// flotilla: start and join under `method`.
fn flotilla_start_join(method: StartMethod) -> Batch {
    let context = get_context(Some(method));
    batch(move |n| {
        (0..n)
            .map(|_| {
                Ok(context
                    .process(child, ())
                    .start()?
                    .join_timeout(JOIN_TIMEOUT)?)
            })
            .collect()
    })
}

/// flotilla under the fork start method.
pub(crate) fn flotilla_fork(_threads: usize) -> anyhow::Result<Batch> {
    Ok(flotilla_start_join(StartMethod::Fork))
}

/// flotilla under the spawn start method.
pub(crate) fn flotilla_spawn(_threads: usize) -> anyhow::Result<Batch> {
    Ok(flotilla_start_join(StartMethod::Spawn))
}

/// flotilla under the forkserver start method.
pub(crate) fn flotilla_forkserver(_threads: usize) -> anyhow::Result<Batch> {
    Ok(flotilla_start_join(StartMethod::ForkServer))
}

/// procspawn: `spawn` and `join`.
pub(crate) fn procspawn_spawn(_threads: usize) -> anyhow::Result<Batch> {
    Ok(batch(|n| {
        (0..n)
            .map(|_| Ok(procspawn::spawn((), |()| VALUE).join()?))
            .collect()
    }))
}

/// The bare `fork` + `_exit` + `waitpid`.
pub(crate) fn os_fork(_threads: usize) -> anyhow::Result<Batch> {
    Ok(batch(|n| {
        (0..n)
            .map(|_| Ok(u64::try_from(os::fork_and_wait()?)?))
            .collect()
    }))
}

/// The bare `posix_spawn` of this binary + `waitpid`.
pub(crate) fn os_spawn(_threads: usize) -> anyhow::Result<Batch> {
    let spawner = os::SpawnSelf::new()?;
    Ok(batch(move |n| {
        (0..n)
            .map(|_| Ok(u64::try_from(spawner.spawn_and_wait()?)?))
            .collect()
    }))
}

/// Whether `results` are the 42s of `n` children.
pub(crate) fn check(n: usize, results: &[u64]) -> bool {
    results.len() == n && results.iter().all(|&v| v == VALUE)
}
