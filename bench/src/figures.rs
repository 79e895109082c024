//! The figure table: every measurement the harness knows, each with its flotilla side and
//! its baselines. Adding a figure is adding one [`Figure`] entry to [`FIGURES`] (and, for
//! a CPython column, one runner in a script under `bench/python/`).

use crate::{
    asyncio, connection, manager, mpi_pool, process, process_pool, queue, shared, thread_pool,
};

/// How many threads every contender of the thread figures gets: flotilla's workers,
/// `threadpool`'s and rayon's threads, tokio's blocking threads, the crossbeam pool's
/// threads and CPython's `max_workers`.
pub(crate) const THREADS: usize = 2;

/// A contender ready to be measured: its pool, peer process or socket, built untimed by a
/// [`Setup`]. The harness times each [`call`](Calls::call) alone, then, untimed, checks
/// its results with [`Figure::check`] and calls [`verify`](Calls::verify).
pub(crate) trait Calls {
    /// Does `n` tasks (items, messages, processes) and returns their results.
    fn call(&mut self, n: usize) -> anyhow::Result<Vec<u64>>;

    /// Checks what the last call left that its results cannot carry, such as the bytes
    /// of an echoed message. Untimed.
    fn verify(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
}

impl<F: FnMut(usize) -> anyhow::Result<Vec<u64>>> Calls for F {
    fn call(&mut self, n: usize) -> anyhow::Result<Vec<u64>> {
        self(n)
    }
}

/// One contender's [`Calls`], boxed.
pub(crate) type Batch = Box<dyn Calls>;

/// A [`Batch`] of a closure that does `n` tasks and returns their results.
pub(crate) fn batch(calls: impl FnMut(usize) -> anyhow::Result<Vec<u64>> + 'static) -> Batch {
    Box::new(calls)
}

/// Builds a contender's pool (untimed) with the given thread count and returns its
/// [`Batch`], which owns the pool.
pub(crate) type Setup = fn(threads: usize) -> anyhow::Result<Batch>;

/// Where a contender's code lives.
#[derive(Clone, Copy)]
pub(crate) enum Side {
    /// Rust code in this crate, run in a fresh process of this binary.
    Rust(Setup),
    /// A runner of a Python script under `bench/python/`, run with `python3`.
    Python {
        /// The script's file name.
        script: &'static str,
        /// The runner inside the script (its first argument).
        runner: &'static str,
    },
}

/// One column of a figure: flotilla or a baseline.
#[derive(Clone, Copy)]
pub(crate) struct Contender {
    /// Its key in `results.json`: `flotilla`, `cpython`, a Rust peer's crate name, or
    /// `os-limit` for the cost of the bare OS mechanism.
    pub(crate) name: &'static str,
    /// Its code.
    pub(crate) side: Side,
    /// Tasks or items per timed call of a [`Measure::Throughput`] figure, when this
    /// contender does a different number from the figure's (a much slower contender
    /// does fewer, so that a round stays short; the value is a rate, so it compares).
    pub(crate) items: Option<usize>,
}

impl Contender {
    /// This contender with `items` tasks per timed call instead of the figure's.
    const fn with_items(self, items: usize) -> Contender {
        Contender {
            items: Some(items),
            ..self
        }
    }
}

/// What one round of a figure measures.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Measure {
    /// A batch of `items` tasks per timed call, `calls` timed calls a round (a third
    /// as many, at least one, with `--quick`); the round's value is `items` divided by
    /// the median call time, per second. Higher is better.
    Throughput {
        /// Tasks or items per timed call (a contender may override it:
        /// [`Contender::items`]).
        items: usize,
        /// Timed calls per round.
        calls: usize,
    },
    /// A batch of `messages` messages of `bytes` bytes each per timed call; the round's
    /// value is the bytes moved divided by the median call time, in MB/s (10^6 bytes).
    /// Higher is better.
    Bandwidth {
        /// Messages per timed call.
        messages: usize,
        /// Bytes per message.
        bytes: usize,
    },
    /// `trips` timed calls of one task each (`quick_trips` with `--quick`); the round's
    /// value is the median call time, in `unit`. Lower is better.
    Latency {
        /// Timed calls per round.
        trips: usize,
        /// Timed calls per round with `--quick`.
        quick_trips: usize,
        /// The unit of the value.
        unit: TimeUnit,
    },
}

/// The unit of a latency.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TimeUnit {
    /// Microseconds, `µs`.
    Micros,
    /// Milliseconds, `ms`.
    Millis,
}

impl TimeUnit {
    /// Nanoseconds in one of this unit.
    pub(crate) fn nanos(self) -> f64 {
        match self {
            TimeUnit::Micros => 1e3,
            TimeUnit::Millis => 1e6,
        }
    }

    /// Its symbol, which must be the `unit` of a figure measured in it.
    pub(crate) const fn symbol(self) -> &'static str {
        match self {
            TimeUnit::Micros => "µs",
            TimeUnit::Millis => "ms",
        }
    }
}

impl Measure {
    /// Whether a larger value is a better one.
    pub(crate) fn higher_is_better(self) -> bool {
        !matches!(self, Measure::Latency { .. })
    }
}

/// One benchmark figure.
pub(crate) struct Figure {
    /// Its name on the command line and in `results.json`.
    pub(crate) name: &'static str,
    /// One line saying what is measured.
    pub(crate) title: &'static str,
    /// The unit of the reported values.
    pub(crate) unit: &'static str,
    /// What a round measures.
    pub(crate) measure: Measure,
    /// The exact conditions, in Markdown, for `docs/benchmarks.md`: what each contender
    /// does, so that a reader can judge the comparison.
    pub(crate) conditions: &'static str,
    /// Whether the results of a call with `n` tasks are right.
    pub(crate) check: fn(n: usize, results: &[u64]) -> bool,
    /// flotilla's side.
    pub(crate) flotilla: Setup,
    /// The baselines, in column order.
    pub(crate) baselines: &'static [Contender],
}

impl Figure {
    /// Whether the harness runs this figure under load (see [`LOADED_CONDITIONS`]).
    pub(crate) fn loaded(&self) -> bool {
        self.name.ends_with(LOADED_SUFFIX)
    }

    /// The rounds this figure runs in a run of `rounds`: twice as many for a loaded one,
    /// whose point is its worst round. With 5 rounds, whether a contender met the
    /// environment's slow placement (see [`LOADED_CONDITIONS`]) at all was luck: in one
    /// run a peer's worst round was 7.5 µs, in the next, with the same code, 55.
    pub(crate) fn rounds(&self, rounds: usize) -> usize {
        if self.loaded() { 2 * rounds } else { rounds }
    }

    /// flotilla first, then the baselines.
    pub(crate) fn contenders(&self) -> Vec<Contender> {
        let flotilla = rust("flotilla", self.flotilla);
        std::iter::once(flotilla)
            .chain(self.baselines.iter().copied())
            .collect()
    }
}

impl std::fmt::Debug for Figure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Figure")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The CPython contender running `runner` of `script`.
const fn cpython(script: &'static str, runner: &'static str) -> Contender {
    python("cpython", script, runner)
}

/// A CPython contender named `name` (for a figure with more than one), running
/// `runner` of `script`.
const fn python(name: &'static str, script: &'static str, runner: &'static str) -> Contender {
    Contender {
        name,
        side: Side::Python { script, runner },
        items: None,
    }
}

/// A Rust contender.
const fn rust(name: &'static str, setup: Setup) -> Contender {
    Contender {
        name,
        side: Side::Rust(setup),
        items: None,
    }
}

/// A `process-start-join-*` figure: its name, title, timed calls a round, conditions,
/// flotilla's setup, CPython's runner and the os-limit's setup.
macro_rules! start_join {
    ($name:literal, $title:literal, $trips:literal, $conditions:expr, $flotilla:expr,
     $python:literal, $os:expr) => {
        Figure {
            name: $name,
            title: $title,
            unit: TimeUnit::Millis.symbol(),
            measure: Measure::Latency {
                trips: $trips,
                quick_trips: $trips / 5,
                unit: TimeUnit::Millis,
            },
            conditions: $conditions,
            check: process::check,
            flotilla: $flotilla,
            baselines: &[
                cpython("process.py", $python),
                rust("procspawn", process::procspawn_spawn),
                rust("os-limit", $os),
            ],
        }
    };
}

/// A `connection-round-trip-*` figure of `$size`-byte messages, `$trips` timed calls a
/// round; `$python` is CPython's runner.
macro_rules! round_trip {
    ($name:literal, $title:literal, $size:expr, $trips:literal, $python:literal) => {
        Figure {
            name: $name,
            title: $title,
            unit: TimeUnit::Micros.symbol(),
            measure: Measure::Latency {
                trips: $trips,
                quick_trips: $trips / 5,
                unit: TimeUnit::Micros,
            },
            conditions: connection::ROUND_TRIP_CONDITIONS,
            check: connection::check_round_trip::<{ $size }>,
            flotilla: connection::flotilla_round_trip::<{ $size }>,
            baselines: &[
                cpython("connection.py", $python),
                rust(
                    "ipc-channel",
                    connection::ipc_channel_round_trip::<{ $size }>,
                ),
                rust("os-limit", connection::os_round_trip::<{ $size }>),
            ],
        }
    };
}

/// A `connection-throughput-*` figure of `$messages` messages of `$size` bytes per timed
/// call; `$python` is CPython's runner.
macro_rules! throughput {
    ($name:literal, $title:literal, $size:expr, $messages:literal, $python:literal) => {
        Figure {
            name: $name,
            title: $title,
            unit: "MB/s",
            measure: Measure::Bandwidth {
                messages: $messages,
                bytes: $size,
            },
            conditions: connection::THROUGHPUT_CONDITIONS,
            check: connection::check_throughput::<{ $size }>,
            flotilla: connection::flotilla_throughput::<{ $size }>,
            baselines: &[
                cpython("connection.py", $python),
                rust(
                    "ipc-channel",
                    connection::ipc_channel_throughput::<{ $size }>,
                ),
                rust("os-limit", connection::os_throughput::<{ $size }>),
            ],
        }
    };
}

/// A `queue-throughput-small-*` figure: `$p` producers and `$c` consumers of small
/// items through one process queue; `$baselines` after CPython's runner `$python`.
macro_rules! queue_small {
    ($name:literal, $title:literal, $p:literal, $c:literal, $python:literal,
     [$($baseline:expr),*]) => {
        Figure {
            name: $name,
            title: $title,
            unit: "items/s",
            measure: Measure::Throughput {
                items: 200_000,
                calls: 3,
            },
            conditions: queue::CONDITIONS,
            check: queue::check::<8>,
            flotilla: queue::flotilla_small::<$p, $c>,
            baselines: &[cpython("mp_queue.py", $python).with_items(40_000), $($baseline),*],
        }
    };
}

/// A `queue-throughput-<size>-*` figure: `$p` producers and `$c` consumers of byte blocks
/// of `$size` bytes, `$messages` of them per timed call.
macro_rules! queue_blocks {
    ($name:literal, $title:literal, $size:expr, $messages:expr, $p:literal, $c:literal,
     $python:literal, [$($baseline:expr),*]) => {
        Figure {
            name: $name,
            title: $title,
            unit: "MB/s",
            measure: Measure::Bandwidth {
                messages: $messages,
                bytes: $size,
            },
            conditions: queue::CONDITIONS,
            check: queue::check::<{ $size }>,
            flotilla: queue::flotilla_blocks::<{ $size }, $p, $c>,
            baselines: &[cpython("mp_queue.py", $python), $($baseline),*],
        }
    };
}

/// A `manager-*` figure: `$items` items per timed call (a tenth for CPython), 3 calls a
/// round; CPython's runner `$python` of `manager.py`, and the os-limit's setup.
macro_rules! manager_figure {
    ($name:literal, $title:literal, $items:literal, $conditions:expr, $flotilla:expr,
     $python:literal, $os:expr) => {
        Figure {
            name: $name,
            title: $title,
            unit: "items/s",
            measure: Measure::Throughput {
                items: $items,
                calls: 3,
            },
            conditions: $conditions,
            check: manager::check,
            flotilla: $flotilla,
            baselines: &[
                cpython("manager.py", $python).with_items($items / 10),
                rust("os-limit", $os),
            ],
        }
    };
}

/// Every figure, in the order a run measures them.
/// The name suffix of a loaded figure (see [`loaded`]).
pub(crate) const LOADED_SUFFIX: &str = "-loaded";

/// The conditions of every loaded figure, for `docs/benchmarks.md`.
pub(crate) const LOADED_CONDITIONS: &str = "\
The figure of the same name without `-loaded`, with the same contenders, plans and
rounds, while the harness keeps one busy process per CPU running (a fresh process of the
bench binary in a multiply-add loop): it starts them just before each contender's round
and kills them just after, so every contender's round runs under the same load. A
loaded figure runs twice the rounds of the others. The value of a latency figure is
still the median call of a round; compare each contender's worst round (max) as well as
its median (`--rounds N` for more rounds).

Why these exist: flotilla's one-task latency used to be bimodal, a whole process at
45-70 µs a round trip where the peers took 4-6 µs. The waiter of a flotilla future spun
with crossbeam's `Backoff::snooze` before it parked: 127 `pause` hints, which take 4-24
µs on this virtual machine, then four `sched_yield`s, each of which took from 1 to 470 µs
on a CPU shared with a busy process (it hands over the rest of a time slice). Where the
scheduler had put the worker on the waiter's CPU (it keeps such a pair together for the
life of the process), the worker ran only once the waiter stopped spinning and yielding:
a 50 µs spin, tried while looking for the cause, made every round trip 54 µs. A blocking
wait on a flotilla future now spins for at most 3 µs of time, never yields, then parks.

Two more slow modes showed under this load, each in one process in three to five:
- Where the scheduler put the two ends of a connection on different CPUs, each beside
  a busy process, every wake-up waited for the woken end to preempt that process: 40-55
  µs per round trip, for every contender (the raw socket pair too). A flotilla wait
  whose yield was contended now spins, without yielding, for up to 20 µs before it
  blocks, and stops spinning for a while after three spins in a row found nothing
  (the two ends then share a CPU, and the spin only keeps the peer off it).
- Where the runtime thread that a `run_in_executor` completion woke was put on the
  worker's CPU, the worker's 50 µs idle spin kept it waiting: 22 µs per call. A worker
  whose completion woke someone now yields once before it spins.

And one more, in one process in five to seven: the scheduler put a thread pool's
caller and its worker on one CPU, where the caller's spin on a task not yet started
cannot see it start (the worker needs that CPU), so the caller slept and was woken for
every task: 7.9 µs per round trip (crossbeam's pool, whose receive yields, took 2.1-9.4 µs
in that placement). A waiter that has seen its task completed from its own CPU after a
failed spin now yields to the worker a few times before it sleeps (3 µs a round trip),
and a pool worker that completes a task whose waiter yields or sleeps on its own CPU
moves itself to another CPU it may run on (narrowing its affinity for a moment, then
restoring it, at most once per 2 ms): the pair then runs apart, at 0.45 µs.";

/// `figure` under load: named `name` (which ends in [`LOADED_SUFFIX`]), the harness
/// runs it with one busy process per CPU around every contender's round.
const fn loaded(figure: Figure, name: &'static str, title: &'static str) -> Figure {
    Figure {
        name,
        title,
        conditions: LOADED_CONDITIONS,
        ..figure
    }
}

/// `thread-pool-round-trip`, and the base of its loaded variant.
const THREAD_POOL_ROUND_TRIP: Figure = Figure {
    name: "thread-pool-round-trip",
    title: "thread pool: submit one trivial task and wait for its result",
    unit: TimeUnit::Micros.symbol(),
    measure: Measure::Latency {
        trips: 20_000,
        quick_trips: 20_000,
        unit: TimeUnit::Micros,
    },
    conditions: thread_pool::ROUND_TRIP_CONDITIONS,
    check: thread_pool::check_submit,
    flotilla: thread_pool::flotilla_submit,
    baselines: &[
        cpython("thread_pool.py", "submit"),
        rust("threadpool", thread_pool::threadpool_submit),
        rust("rayon", thread_pool::rayon_submit),
        rust("tokio", thread_pool::tokio_submit),
        rust("crossbeam", thread_pool::crossbeam_submit),
    ],
};

/// `async-run-in-executor-latency`, and the base of its loaded variant.
const ASYNC_RUN_IN_EXECUTOR_LATENCY: Figure = Figure {
    name: "async-run-in-executor-latency",
    title: "run_in_executor from async code: start one trivial task and await it",
    unit: TimeUnit::Micros.symbol(),
    measure: Measure::Latency {
        trips: 20_000,
        quick_trips: 5_000,
        unit: TimeUnit::Micros,
    },
    conditions: asyncio::LATENCY_CONDITIONS,
    check: asyncio::check,
    flotilla: asyncio::flotilla_one_by_one,
    baselines: &[
        cpython("asyncio_bridge.py", "one-by-one"),
        rust("tokio", asyncio::tokio_one_by_one),
    ],
};

pub(crate) const FIGURES: &[Figure] = &[
    Figure {
        name: "thread-pool-submit",
        title: "thread pool: submit 100k trivial tasks, then collect every result",
        unit: "tasks/s",
        measure: Measure::Throughput {
            items: 100_000,
            calls: 3,
        },
        conditions: thread_pool::SUBMIT_CONDITIONS,
        check: thread_pool::check_submit,
        flotilla: thread_pool::flotilla_submit,
        baselines: &[
            cpython("thread_pool.py", "submit"),
            rust("threadpool", thread_pool::threadpool_submit),
            rust("rayon", thread_pool::rayon_submit),
            rust("tokio", thread_pool::tokio_submit),
            rust("crossbeam", thread_pool::crossbeam_submit),
        ],
    },
    THREAD_POOL_ROUND_TRIP,
    Figure {
        name: "executor-map",
        title: "executor map: 100k trivial items, results in input order",
        unit: "items/s",
        measure: Measure::Throughput {
            items: 100_000,
            calls: 3,
        },
        conditions: thread_pool::MAP_CONDITIONS,
        check: thread_pool::check_map,
        flotilla: thread_pool::flotilla_map,
        baselines: &[
            cpython("thread_pool.py", "map"),
            rust("threadpool", thread_pool::threadpool_map),
            rust("rayon", thread_pool::rayon_map),
            rust("tokio", thread_pool::tokio_map),
            rust("crossbeam", thread_pool::crossbeam_map),
        ],
    },
    start_join!(
        "process-start-join-fork",
        "process start + join, fork start method: a child that returns 42",
        300,
        process::FORK_CONDITIONS,
        process::flotilla_fork,
        "fork",
        process::os_fork
    ),
    start_join!(
        "process-start-join-spawn",
        "process start + join, spawn start method: a child that returns 42",
        60,
        process::SPAWN_CONDITIONS,
        process::flotilla_spawn,
        "spawn",
        process::os_spawn
    ),
    start_join!(
        "process-start-join-forkserver",
        "process start + join, forkserver start method: a child that returns 42",
        150,
        process::FORKSERVER_CONDITIONS,
        process::flotilla_forkserver,
        "forkserver",
        process::os_fork
    ),
    Figure {
        name: "process-pool-submit",
        title: "process pool: submit trivial tasks one by one, then collect every result",
        unit: "tasks/s",
        measure: Measure::Throughput {
            items: 50_000,
            calls: 3,
        },
        conditions: process_pool::SUBMIT_CONDITIONS,
        check: process_pool::check_submit,
        flotilla: process_pool::flotilla_submit,
        baselines: &[
            cpython("process_pool.py", "ppe-submit").with_items(10_000),
            python("cpython-pool", "process_pool.py", "pool-apply").with_items(10_000),
            rust("procspawn", process_pool::procspawn_submit).with_items(2_000),
        ],
    },
    Figure {
        name: "process-pool-round-trip",
        title: "process pool: submit one trivial task and wait for its result",
        unit: TimeUnit::Micros.symbol(),
        measure: Measure::Latency {
            trips: 2_000,
            quick_trips: 400,
            unit: TimeUnit::Micros,
        },
        conditions: process_pool::ROUND_TRIP_CONDITIONS,
        check: process_pool::check_submit,
        flotilla: process_pool::flotilla_submit,
        baselines: &[
            cpython("process_pool.py", "ppe-submit"),
            python("cpython-pool", "process_pool.py", "pool-apply"),
            rust("procspawn", process_pool::procspawn_submit),
        ],
    },
    Figure {
        name: "process-pool-map",
        title: "process pool map: 100k ints, chunksize 1000, results in input order",
        unit: "items/s",
        measure: Measure::Throughput {
            items: 100_000,
            calls: 30,
        },
        conditions: process_pool::MAP_CONDITIONS,
        check: process_pool::check_map,
        flotilla: process_pool::flotilla_map,
        baselines: &[
            cpython("process_pool.py", "ppe-map"),
            python("cpython-pool", "process_pool.py", "pool-map"),
        ],
    },
    Figure {
        name: "process-pool-imap-unordered",
        title: "process pool imap_unordered: trivial items one per message, completion order",
        unit: "items/s",
        measure: Measure::Throughput {
            items: 50_000,
            calls: 3,
        },
        conditions: process_pool::IMAP_UNORDERED_CONDITIONS,
        check: process_pool::check_unordered,
        flotilla: process_pool::flotilla_imap_unordered,
        baselines: &[
            cpython("process_pool.py", "ppe-as-completed").with_items(10_000),
            python("cpython-pool", "process_pool.py", "pool-imap-unordered").with_items(10_000),
        ],
    },
    Figure {
        name: "process-pool-imap-unordered-chunked",
        title: "process pool imap_unordered: trivial items 100 per message, completion order",
        unit: "items/s",
        measure: Measure::Throughput {
            items: 1_000_000,
            calls: 3,
        },
        conditions: process_pool::IMAP_UNORDERED_CHUNKED_CONDITIONS,
        check: process_pool::check_unordered,
        flotilla: process_pool::flotilla_imap_unordered_chunked,
        baselines: &[python(
            "cpython-pool",
            "process_pool.py",
            "pool-imap-unordered-chunked",
        )
        .with_items(200_000)],
    },
    round_trip!(
        "connection-round-trip-64B",
        "Connection round trip to a child process, 64 B messages",
        64,
        5_000,
        "round-trip-64"
    ),
    round_trip!(
        "connection-round-trip-4KiB",
        "Connection round trip to a child process, 4 KiB messages",
        4 << 10,
        5_000,
        "round-trip-4096"
    ),
    round_trip!(
        "connection-round-trip-64KiB",
        "Connection round trip to a child process, 64 KiB messages",
        64 << 10,
        2_000,
        "round-trip-65536"
    ),
    round_trip!(
        "connection-round-trip-1MiB",
        "Connection round trip to a child process, 1 MiB messages",
        1 << 20,
        300,
        "round-trip-1048576"
    ),
    throughput!(
        "connection-throughput-64B",
        "Connection one-way throughput to a child process, 64 B messages",
        64,
        100_000,
        "throughput-64"
    ),
    throughput!(
        "connection-throughput-4KiB",
        "Connection one-way throughput to a child process, 4 KiB messages",
        4 << 10,
        40_000,
        "throughput-4096"
    ),
    throughput!(
        "connection-throughput-64KiB",
        "Connection one-way throughput to a child process, 64 KiB messages",
        64 << 10,
        8_000,
        "throughput-65536"
    ),
    throughput!(
        "connection-throughput-1MiB",
        "Connection one-way throughput to a child process, 1 MiB messages",
        1 << 20,
        512,
        "throughput-1048576"
    ),
    queue_small!(
        "queue-throughput-small-1x1",
        "process Queue: small items from 1 producer process to 1 consumer process",
        1,
        1,
        "small-1x1",
        [
            rust("ipc-channel", connection::ipc_channel_throughput::<8>),
            rust("os-limit", connection::os_throughput::<8>)
        ]
    ),
    queue_small!(
        "queue-throughput-small-2x2",
        "process Queue: small items from 2 producer processes to 2 consumer processes",
        2,
        2,
        "small-2x2",
        []
    ),
    queue_blocks!(
        "queue-throughput-64KiB-1x1",
        "process Queue: 64 KiB items from 1 producer process to 1 consumer process",
        64 << 10,
        8192,
        1,
        1,
        "kib64-1x1",
        [
            rust(
                "ipc-channel",
                connection::ipc_channel_throughput::<{ 64 << 10 }>
            ),
            rust("os-limit", queue::os_memcpy::<{ 64 << 10 }>)
        ]
    ),
    queue_blocks!(
        "queue-throughput-1MiB-1x1",
        "process Queue: 1 MiB items from 1 producer process to 1 consumer process",
        1 << 20,
        512,
        1,
        1,
        "mib-1x1",
        [
            rust(
                "ipc-channel",
                connection::ipc_channel_throughput::<{ 1 << 20 }>
            ),
            rust("os-limit", queue::os_memcpy::<{ 1 << 20 }>)
        ]
    ),
    queue_blocks!(
        "queue-throughput-1MiB-2x2",
        "process Queue: 1 MiB items from 2 producer processes to 2 consumer processes",
        1 << 20,
        512,
        2,
        2,
        "mib-2x2",
        []
    ),
    // The asyncio bridge (bench/src/asyncio.rs, bench/python/asyncio_bridge.py).
    ASYNC_RUN_IN_EXECUTOR_LATENCY,
    // The latency figures again under load (see `loaded`): a slow mode that only shows
    // when the CPUs are shared is what a service on a busy machine sees.
    loaded(
        THREAD_POOL_ROUND_TRIP,
        "thread-pool-round-trip-loaded",
        "thread pool: submit one trivial task and wait for its result, every CPU busy",
    ),
    loaded(
        ASYNC_RUN_IN_EXECUTOR_LATENCY,
        "async-run-in-executor-latency-loaded",
        "run_in_executor from async code: start one trivial task and await it, every CPU busy",
    ),
    loaded(
        round_trip!(
            "connection-round-trip-64B",
            "Connection round trip to a child process, 64 B messages",
            64,
            5_000,
            "round-trip-64"
        ),
        "connection-round-trip-64B-loaded",
        "Connection round trip to a child process, 64 B messages, every CPU busy",
    ),
    Figure {
        name: "async-run-in-executor-gather",
        title: "run_in_executor from async code: start trivial tasks together, gather them",
        unit: "tasks/s",
        measure: Measure::Throughput {
            items: 100_000,
            calls: 3,
        },
        conditions: asyncio::GATHER_CONDITIONS,
        check: asyncio::check,
        flotilla: asyncio::flotilla_gather,
        baselines: &[
            cpython("asyncio_bridge.py", "gather").with_items(10_000),
            rust("tokio", asyncio::tokio_gather),
        ],
    },
    Figure {
        name: "shared-counter-locked",
        title: "shared counter: 2 processes increment a Value under its lock",
        unit: "increments/s",
        measure: Measure::Throughput {
            items: 1_000_000,
            calls: 5,
        },
        conditions: shared::LOCKED_CONDITIONS,
        check: shared::check,
        flotilla: shared::flotilla_locked,
        baselines: &[
            cpython("shared.py", "locked-2").with_items(100_000),
            rust("os-limit", shared::os_locked),
        ],
    },
    Figure {
        name: "shared-counter-atomic",
        title: "shared counter: 2 processes increment a Value with an atomic fetch_add",
        unit: "increments/s",
        measure: Measure::Throughput {
            items: 10_000_000,
            calls: 5,
        },
        conditions: shared::ATOMIC_CONDITIONS,
        check: shared::check,
        flotilla: shared::flotilla_atomic,
        baselines: &[rust("os-limit", shared::os_atomic)],
    },
    Figure {
        name: "shared-counter-locked-uncontended",
        title: "shared counter: one process increments a Value under its lock, uncontended",
        unit: "increments/s",
        measure: Measure::Throughput {
            items: 1_000_000,
            calls: 5,
        },
        conditions: shared::UNCONTENDED_CONDITIONS,
        check: shared::check,
        flotilla: shared::flotilla_uncontended,
        baselines: &[
            cpython("shared.py", "locked-1").with_items(100_000),
            rust("os-limit", shared::os_uncontended),
        ],
    },
    Figure {
        name: "mpi-pool-submit",
        title: "MPI pool on mpiexec -n 3: submit trivial tasks one by one, then collect every result",
        unit: "tasks/s",
        measure: Measure::Throughput {
            items: 20_000,
            calls: 3,
        },
        conditions: mpi_pool::SUBMIT_CONDITIONS,
        check: process_pool::check_submit,
        flotilla: mpi_pool::flotilla_submit,
        baselines: &[python("mpi4py", "mpi_pool.py", "submit").with_items(2_000)],
    },
    Figure {
        name: "mpi-pool-map",
        title: "MPI pool map on mpiexec -n 3: 100k ints, chunksize 1000, results in input order",
        unit: "items/s",
        measure: Measure::Throughput {
            items: 100_000,
            calls: 3,
        },
        conditions: mpi_pool::MAP_CONDITIONS,
        check: process_pool::check_map,
        flotilla: mpi_pool::flotilla_map,
        baselines: &[python("mpi4py", "mpi_pool.py", "map")],
    },
    manager_figure!(
        "manager-dict-sequential",
        "manager dict: set/get calls from one client, one at a time",
        20_000,
        manager::DICT_SEQUENTIAL_CONDITIONS,
        manager::flotilla_dict_sequential,
        "dict-sequential",
        manager::os_one_trip
    ),
    manager_figure!(
        "manager-dict-pipelined",
        "manager dict: set/get calls from one client, pipelined",
        40_000,
        manager::DICT_PIPELINED_CONDITIONS,
        manager::flotilla_dict_pipelined,
        "dict-pipelined",
        manager::os_one_trip
    ),
    manager_figure!(
        "manager-dict-4-clients",
        "manager dict: set/get calls from 4 client processes at once",
        40_000,
        manager::DICT_CLIENTS_CONDITIONS,
        manager::flotilla_dict_clients,
        "dict-4-clients",
        manager::os_one_trip
    ),
    manager_figure!(
        "manager-queue",
        "manager queue: put then get of one item, one client",
        10_000,
        manager::QUEUE_CONDITIONS,
        manager::flotilla_queue,
        "queue",
        manager::os_two_trips
    ),
    manager_figure!(
        "manager-lock",
        "manager lock: acquire then release, one client",
        10_000,
        manager::LOCK_CONDITIONS,
        manager::flotilla_lock,
        "lock",
        manager::os_two_trips
    ),
];

/// The figure named `name`.
pub(crate) fn find(name: &str) -> Option<&'static Figure> {
    FIGURES.iter().find(|figure| figure.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_units_match_measures() {
        for (i, figure) in FIGURES.iter().enumerate() {
            assert!(
                FIGURES[..i].iter().all(|f| f.name != figure.name),
                "{} twice",
                figure.name
            );
            let unit = match figure.measure {
                Measure::Latency { unit, .. } => unit.symbol(),
                Measure::Bandwidth { .. } => "MB/s",
                Measure::Throughput { .. } => continue,
            };
            assert_eq!(figure.unit, unit, "{}", figure.name);
        }
    }
}
