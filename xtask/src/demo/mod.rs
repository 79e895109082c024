//! The demos: the classic scenarios of `../shared/SCENARIOS.md`, reproduced with flotilla.
//!
//! Each demo is a module with a `run(&Clock) -> anyhow::Result<()>`. It prints what
//! happens with [`Clock::say`], so a reader sees the concurrency in the timestamps, and
//! it checks what it claims (order, totals, errors) with `ensure!`, so `demo all` fails
//! loudly when flotilla stops behaving as shown.

use std::time::{Duration, SystemTime};

use anyhow::bail;

mod async_cancel;
mod async_executors;
mod condition_producers;
mod daemon_threads;
mod done_callback;
mod executor_as_completed;
mod executor_map;
mod joinable_queue;
mod manager_dict_list;
mod manager_lock;
mod mpi_primes;
mod pipe;
mod pool_callbacks;
mod pool_in_threads;
mod pool_methods;
mod pool_queue;
mod primes;
mod process_basics;
mod progress;
mod python_interop;
mod queue_bounded;
mod queue_processes;
mod queue_workers;
mod remote_queues;
mod shared_array;
mod shared_value;
mod shield;
mod start_methods;
mod tasks;
mod thread_local;
mod worker_killed;
mod wrap_future;

/// One demo: its name, a one-line description, and its body.
struct Demo {
    name: &'static str,
    about: &'static str,
    run: fn(&Clock) -> anyhow::Result<()>,
}

/// Every demo, in the order `demo all` runs them.
const DEMOS: &[Demo] = &[
    Demo {
        name: "executor-map",
        about: "map over four tasks on 3 workers: ordered results, stops at the failure",
        run: executor_map::run,
    },
    Demo {
        name: "executor-as-completed",
        about: "the same four tasks with submit + as_completed: completion order",
        run: executor_as_completed::run,
    },
    Demo {
        name: "done-callback",
        about: "add_done_callback before and after the task is done",
        run: done_callback::run,
    },
    Demo {
        name: "condition-producers",
        about: "five producers and a consumer share a bounded queue through a Condition",
        run: condition_producers::run,
    },
    Demo {
        name: "daemon-threads",
        about: "exit waits for normal threads, not daemons; join(timeout) leaves a thread running",
        run: daemon_threads::run,
    },
    Demo {
        name: "thread-local",
        about: "each thread sees its own thread-local \"student\"",
        run: thread_local::run,
    },
    Demo {
        name: "queue-workers",
        about: "two workers drain a queue with task_done; join waits; close ends them",
        run: queue_workers::run,
    },
    Demo {
        name: "process-basics",
        about: "pids and names of parent and child, is_alive, terminate, exit codes",
        run: process_basics::run,
    },
    Demo {
        name: "pipe",
        about: "duplex and simplex pipes between parent and child, under each start method",
        run: pipe::run,
    },
    Demo {
        name: "start-methods",
        about: "the same child under fork, spawn and forkserver, with start-to-join times",
        run: start_methods::run,
    },
    Demo {
        name: "primes",
        about: "is_prime over six large numbers on a process pool and a thread pool, timed",
        run: primes::run,
    },
    Demo {
        name: "worker-killed",
        about: "a worker SIGKILLed mid-task: that task fails naming the signal, the rest finish",
        run: worker_killed::run,
    },
    Demo {
        name: "pool-methods",
        about: "map, map_async, imap_unordered, apply and apply_async on a pool of 4, timed",
        run: pool_methods::run,
    },
    Demo {
        name: "pool-callbacks",
        about: "apply_async with callback and error_callback; close, join; get with a timeout",
        run: pool_callbacks::run,
    },
    Demo {
        name: "pool-queue",
        about: "a Queue passed to pool tasks as an argument (Python refuses), and by initializer",
        run: pool_queue::run,
    },
    Demo {
        name: "pool-in-threads",
        about: "three threads share one process pool, fed by a closable thread queue",
        run: pool_in_threads::run,
    },
    Demo {
        name: "progress",
        about: "a pool map reporting completed/total to an indicatif progress bar",
        run: progress::run,
    },
    Demo {
        name: "shared-value",
        about: "Value and Array written by children; a counter without a lock, with one, atomic",
        run: shared_value::run,
    },
    Demo {
        name: "queue-processes",
        about: "a child's put is got after it exits; two children talk through one queue",
        run: queue_processes::run,
    },
    Demo {
        name: "queue-bounded",
        about: "a queue of maxsize 3: put with a timeout and put_nowait say Full; a child drains it",
        run: queue_bounded::run,
    },
    Demo {
        name: "joinable-queue",
        about: "two worker processes call task_done; join waits for them; close ends them",
        run: joinable_queue::run,
    },
    Demo {
        name: "async-executors",
        about: "blocking I/O on threads and CPU work in a process, gathered: they overlap",
        run: async_executors::run,
    },
    Demo {
        name: "wrap-future",
        about: "two thread-pool futures wrapped as awaitables and gathered: both arrive together",
        run: wrap_future::run,
    },
    Demo {
        name: "shield",
        about: "cancelling a shielded task's outer handle; the inner work runs on and is awaited",
        run: shield::run,
    },
    Demo {
        name: "async-cancel",
        about: "a stuck pool task stopped from async code, the pool goes on; a thread task's token",
        run: async_cancel::run,
    },
    Demo {
        name: "shared-array",
        about: "an Array written by two children lined up by a Barrier; moves under its lock",
        run: shared_array::run,
    },
    Demo {
        name: "python-interop",
        about: "a Python script and Rust share work through a Python manager's queues",
        run: python_interop::run,
    },
    Demo {
        name: "mpi-primes",
        about: "the primes on MpiPoolExecutor under mpiexec -n 3 (skipped without MPI)",
        run: mpi_primes::run,
    },
    Demo {
        name: "manager-dict-list",
        about: "a manager dict and list passed to two pool tasks: one changes them, one prints them",
        run: manager_dict_list::run,
    },
    Demo {
        name: "manager-lock",
        about: "five processes add to d[\"year\"]: lost updates, 2500 with a lock, 2500 on the server",
        run: manager_lock::run,
    },
    Demo {
        name: "remote-queues",
        about: "two queues registered by name on TCP with an authkey; two clients swap messages",
        run: remote_queues::run,
    },
];

pub(crate) fn main(args: &[String]) -> anyhow::Result<()> {
    match args.first().map(String::as_str) {
        Some("--list") | Some("-l") => {
            for demo in DEMOS {
                println!("{:<24} {}", demo.name, demo.about);
            }
            Ok(())
        }
        Some("all") => run_all(DEMOS.iter()),
        // A demo's own child process (a re-exec of this binary), not listed.
        Some("--child") => match args.get(1).map(String::as_str) {
            Some("daemon-threads") => daemon_threads::child(),
            other => bail!("no child mode {other:?}"),
        },
        Some(_) => {
            let mut chosen = Vec::new();
            for name in args {
                match DEMOS.iter().find(|d| d.name == name) {
                    Some(demo) => chosen.push(demo),
                    None => bail!("no demo named {name:?}; `cargo xtask demo --list` lists them"),
                }
            }
            run_all(chosen.into_iter())
        }
        None => bail!("name a demo, or `all`, or `--list`"),
    }
}

fn run_all<'a>(demos: impl Iterator<Item = &'a Demo>) -> anyhow::Result<()> {
    for demo in demos {
        println!("\n=== {} — {}", demo.name, demo.about);
        let clock = Clock::start();
        (demo.run)(&clock).map_err(|e| e.context(format!("demo {}", demo.name)))?;
    }
    Ok(())
}

/// Scenario time: one unit is one second of the classic examples, scaled down.
///
/// It is wall-clock based so that it can be handed to a child process (it is serde
/// data), which then prints on the same timeline as its parent.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub(crate) struct Clock {
    start: SystemTime,
    unit: Duration,
}

impl Clock {
    fn start() -> Self {
        let unit_ms = std::env::var("FLOTILLA_DEMO_UNIT_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(100);
        Clock {
            start: SystemTime::now(),
            unit: Duration::from_millis(unit_ms),
        }
    }

    /// `units` scenario seconds as real time.
    pub(crate) fn units(&self, units: f64) -> Duration {
        self.unit.mul_f64(units)
    }

    /// Sleeps `units` scenario seconds.
    pub(crate) fn sleep(&self, units: f64) {
        std::thread::sleep(self.units(units));
    }

    /// Scenario seconds since the demo started.
    pub(crate) fn now(&self) -> f64 {
        let elapsed = SystemTime::now()
            .duration_since(self.start)
            .unwrap_or_default();
        elapsed.as_secs_f64() / self.unit.as_secs_f64()
    }

    /// Prints `what` with the current scenario time.
    pub(crate) fn say(&self, what: impl std::fmt::Display) {
        println!("[t={:>5.2}] {what}", self.now());
    }
}
