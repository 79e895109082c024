//! The figure table: every measurement the harness knows, each with its flotilla side and
//! its baselines. Adding a figure is adding one [`Figure`] entry to [`FIGURES`] (and, for
//! a CPython column, one runner in a script under `benches/python/`).

use crate::thread_pool;

/// How many threads every contender of the thread figures gets: flotilla's workers,
/// `threadpool`'s and rayon's threads, tokio's blocking threads, the crossbeam pool's
/// threads and CPython's `max_workers`.
pub(crate) const THREADS: usize = 2;

/// One timed call of a contender: given `n`, do `n` tasks (or items) and return their
/// results, which the harness checks untimed with [`Figure::check`].
pub(crate) type Batch = Box<dyn FnMut(usize) -> anyhow::Result<Vec<u64>>>;

/// Builds a contender's pool (untimed) with the given thread count and returns its
/// [`Batch`], which owns the pool.
pub(crate) type Setup = fn(threads: usize) -> anyhow::Result<Batch>;

/// Where a contender's code lives.
#[derive(Clone, Copy)]
pub(crate) enum Side {
    /// Rust code in this crate, run in a fresh process of this binary.
    Rust(Setup),
    /// A runner of a Python script under `benches/python/`, run with `python3`.
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
}

/// What one round of a figure measures.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Measure {
    /// A batch of `items` tasks per timed call; the round's value is `items` divided by
    /// the median call time, per second. Higher is better.
    Throughput {
        /// Tasks or items per timed call.
        items: usize,
    },
    /// `trips` timed calls of one task each; the round's value is the median call time,
    /// in microseconds. Lower is better.
    Latency {
        /// Timed calls per round.
        trips: usize,
    },
}

impl Measure {
    /// Whether a larger value is a better one.
    pub(crate) fn higher_is_better(self) -> bool {
        matches!(self, Measure::Throughput { .. })
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
    /// flotilla first, then the baselines.
    pub(crate) fn contenders(&self) -> Vec<Contender> {
        let flotilla = Contender {
            name: "flotilla",
            side: Side::Rust(self.flotilla),
        };
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

/// Every figure, in the order a run measures them.
pub(crate) const FIGURES: &[Figure] = &[
    Figure {
        name: "thread-pool-submit",
        title: "thread pool: submit 100k trivial tasks, then collect every result",
        unit: "tasks/s",
        measure: Measure::Throughput { items: 100_000 },
        conditions: thread_pool::SUBMIT_CONDITIONS,
        check: thread_pool::check_submit,
        flotilla: thread_pool::flotilla_submit,
        baselines: &[
            Contender {
                name: "cpython",
                side: Side::Python {
                    script: "thread_pool.py",
                    runner: "submit",
                },
            },
            Contender {
                name: "threadpool",
                side: Side::Rust(thread_pool::threadpool_submit),
            },
            Contender {
                name: "rayon",
                side: Side::Rust(thread_pool::rayon_submit),
            },
            Contender {
                name: "tokio",
                side: Side::Rust(thread_pool::tokio_submit),
            },
            Contender {
                name: "crossbeam",
                side: Side::Rust(thread_pool::crossbeam_submit),
            },
        ],
    },
    Figure {
        name: "thread-pool-round-trip",
        title: "thread pool: submit one trivial task and wait for its result",
        unit: "µs",
        measure: Measure::Latency { trips: 20_000 },
        conditions: thread_pool::ROUND_TRIP_CONDITIONS,
        check: thread_pool::check_submit,
        flotilla: thread_pool::flotilla_submit,
        baselines: &[
            Contender {
                name: "cpython",
                side: Side::Python {
                    script: "thread_pool.py",
                    runner: "submit",
                },
            },
            Contender {
                name: "threadpool",
                side: Side::Rust(thread_pool::threadpool_submit),
            },
            Contender {
                name: "rayon",
                side: Side::Rust(thread_pool::rayon_submit),
            },
            Contender {
                name: "tokio",
                side: Side::Rust(thread_pool::tokio_submit),
            },
            Contender {
                name: "crossbeam",
                side: Side::Rust(thread_pool::crossbeam_submit),
            },
        ],
    },
    Figure {
        name: "executor-map",
        title: "executor map: 100k trivial items, results in input order",
        unit: "items/s",
        measure: Measure::Throughput { items: 100_000 },
        conditions: thread_pool::MAP_CONDITIONS,
        check: thread_pool::check_map,
        flotilla: thread_pool::flotilla_map,
        baselines: &[
            Contender {
                name: "cpython",
                side: Side::Python {
                    script: "thread_pool.py",
                    runner: "map",
                },
            },
            Contender {
                name: "threadpool",
                side: Side::Rust(thread_pool::threadpool_map),
            },
            Contender {
                name: "rayon",
                side: Side::Rust(thread_pool::rayon_map),
            },
            Contender {
                name: "tokio",
                side: Side::Rust(thread_pool::tokio_map),
            },
            Contender {
                name: "crossbeam",
                side: Side::Rust(thread_pool::crossbeam_map),
            },
        ],
    },
];

/// The figure named `name`.
pub(crate) fn find(name: &str) -> Option<&'static Figure> {
    FIGURES.iter().find(|figure| figure.name == name)
}
