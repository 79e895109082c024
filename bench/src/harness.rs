//! Measuring: one round of one contender in a fresh child process (this binary's
//! `measure` mode, or a CPython script), and the rounds that alternate the contenders of a
//! figure so that a slow spell of a shared machine hits all of them alike.
//!
//! Every child speaks the same protocol: it gets the figure's [`Plan`] as flags, builds
//! its pool, makes the untimed warm-up calls, times the calls one by one, checks each
//! call's results, and prints `{"samples_ns": [...]}` on stdout. The parent turns the
//! samples into the round's value with [`Figure::value`] alone, so no contender computes
//! its own figure.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use serde::{Deserialize, Serialize};

use crate::figures::{self, Contender, Figure, Measure, Side, THREADS};

/// The first argument that puts this binary in child mode.
pub(crate) const MEASURE: &str = "measure";

/// How long one child may take before it is killed and its contender marked failed.
const CHILD_TIMEOUT: Duration = Duration::from_secs(300);

/// The first argument that makes this binary one busy process of a loaded figure's load.
pub(crate) const SPIN: &str = "spin";

/// Child mode `spin`: keeps one CPU busy until killed, or until its parent is gone or
/// [`CHILD_TIMEOUT`] has passed, so a load never outlives the run that started it.
pub(crate) fn spin_main() -> ! {
    let parent = std::os::unix::process::parent_id();
    let start = Instant::now();
    let mut x = 1u64;
    loop {
        for _ in 0..1_000_000 {
            x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
        }
        if std::os::unix::process::parent_id() != parent || start.elapsed() > CHILD_TIMEOUT {
            std::process::exit(0);
        }
    }
}

/// The load of a loaded figure (one busy process per CPU), from [`Load::start`] until
/// dropped.
struct Load(Vec<std::process::Child>);

impl Load {
    /// Starts one busy process per CPU.
    fn start() -> anyhow::Result<Load> {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut load = Load(Vec::with_capacity(cpus));
        for _ in 0..cpus {
            let child = Command::new(std::env::current_exe()?)
                .arg(SPIN)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .context("cannot start a load process")?;
            load.0.push(child);
        }
        Ok(load)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What one child does, the same for every contender of a figure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Worker threads of the contender's pool.
    pub(crate) threads: usize,
    /// Tasks per timed call.
    pub(crate) batch: usize,
    /// Timed calls.
    pub(crate) calls: usize,
    /// Untimed calls before them.
    pub(crate) warmup_calls: usize,
    /// Tasks per untimed call.
    pub(crate) warmup_batch: usize,
}

impl Plan {
    /// The plan of `contender`'s round of `measure`; `quick` times fewer calls.
    pub(crate) fn new(measure: Measure, contender: &Contender, quick: bool) -> Plan {
        match measure {
            Measure::Throughput { items, calls } => {
                let items = contender.items.unwrap_or(items);
                Plan {
                    threads: THREADS,
                    batch: items,
                    calls: if quick { (calls / 3).max(1) } else { calls },
                    warmup_calls: 1,
                    warmup_batch: (items / 10).max(1),
                }
            }
            Measure::Bandwidth { messages, .. } => Plan {
                threads: THREADS,
                batch: messages,
                calls: if quick { 1 } else { 3 },
                warmup_calls: 1,
                warmup_batch: (messages / 10).max(1),
            },
            Measure::Latency {
                trips, quick_trips, ..
            } => {
                let trips = if quick { quick_trips } else { trips };
                Plan {
                    threads: THREADS,
                    batch: 1,
                    calls: trips,
                    warmup_calls: (trips / 10).max(1),
                    warmup_batch: 1,
                }
            }
        }
    }

    /// The plan as the child's flags.
    fn to_args(self) -> Vec<String> {
        [
            ("--threads", self.threads),
            ("--batch", self.batch),
            ("--calls", self.calls),
            ("--warmup-calls", self.warmup_calls),
            ("--warmup-batch", self.warmup_batch),
        ]
        .into_iter()
        .flat_map(|(flag, value)| [flag.to_owned(), value.to_string()])
        .collect()
    }

    /// The plan from the child's flags.
    fn from_args(args: &[String]) -> anyhow::Result<Plan> {
        let mut plan = Plan {
            threads: 0,
            batch: 0,
            calls: 0,
            warmup_calls: 0,
            warmup_batch: 0,
        };
        let mut args = args.iter();
        while let Some(flag) = args.next() {
            let value: usize = args
                .next()
                .with_context(|| format!("{flag} needs a value"))?
                .parse()
                .with_context(|| format!("{flag} needs a number"))?;
            match flag.as_str() {
                "--threads" => plan.threads = value,
                "--batch" => plan.batch = value,
                "--calls" => plan.calls = value,
                "--warmup-calls" => plan.warmup_calls = value,
                "--warmup-batch" => plan.warmup_batch = value,
                _ => bail!("unknown flag {flag:?}"),
            }
        }
        ensure!(
            plan.threads > 0 && plan.batch > 0 && plan.calls > 0,
            "--threads, --batch and --calls must be positive"
        );
        Ok(plan)
    }
}

/// What a child prints: the time of each timed call.
#[derive(Serialize, Deserialize)]
struct Samples {
    samples_ns: Vec<u64>,
}

impl Figure {
    /// A round's value from the call times of a round run by `plan`: tasks per second
    /// for a throughput, MB/s for a bandwidth, the median call in the figure's unit for
    /// a latency.
    pub(crate) fn value(&self, plan: Plan, samples_ns: &[u64]) -> f64 {
        let mut samples: Vec<f64> = samples_ns.iter().map(|&ns| ns as f64).collect();
        let median_ns = median(&mut samples);
        match self.measure {
            Measure::Throughput { .. } => plan.batch as f64 / (median_ns / 1e9),
            Measure::Bandwidth { messages, bytes } => {
                (messages * bytes) as f64 / 1e6 / (median_ns / 1e9)
            }
            Measure::Latency { unit, .. } => median_ns / unit.nanos(),
        }
    }
}

/// The median of `values` (the mean of the middle two for an even count); sorts them.
pub(crate) fn median(values: &mut [f64]) -> f64 {
    assert!(!values.is_empty(), "the median of nothing");
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// Child mode: `measure FIGURE CONTENDER PLAN-FLAGS...`, one round of a Rust contender.
pub(crate) fn measure_main(args: &[String]) -> anyhow::Result<()> {
    let [figure, contender, plan @ ..] = args else {
        bail!("usage: flotilla-bench measure FIGURE CONTENDER --threads N --batch N ...");
    };
    let figure = figures::find(figure).with_context(|| format!("no figure {figure:?}"))?;
    let plan = Plan::from_args(plan)?;
    let setup = match figure.contenders().iter().find(|c| c.name == contender) {
        Some(Contender {
            side: Side::Rust(setup),
            ..
        }) => *setup,
        Some(_) => bail!("{contender:?} is not a Rust contender of {:?}", figure.name),
        None => bail!("{:?} has no contender {contender:?}", figure.name),
    };

    let mut batch = setup(plan.threads)?;
    for _ in 0..plan.warmup_calls {
        let results = batch.call(plan.warmup_batch)?;
        ensure!(
            (figure.check)(plan.warmup_batch, &results),
            "{contender} returned wrong results"
        );
        batch.verify()?;
    }
    let mut samples_ns = Vec::with_capacity(plan.calls);
    for _ in 0..plan.calls {
        let start = Instant::now();
        let results = batch.call(plan.batch)?;
        samples_ns.push(start.elapsed().as_nanos().try_into()?);
        ensure!(
            (figure.check)(plan.batch, &results),
            "{contender} returned wrong results"
        );
        batch.verify()?;
    }
    drop(batch);
    println!("{}", serde_json::to_string(&Samples { samples_ns })?);
    Ok(())
}

/// The Python interpreter for the CPython column, found once per run.
#[derive(Debug)]
pub(crate) enum Python {
    /// Found: the program to run and its version.
    Found {
        /// What to execute.
        program: String,
        /// Its `sys.version`, first word.
        version: String,
    },
    /// Not usable, and why: its column shows this instead of figures.
    Missing(String),
}

impl Python {
    /// `$FLOTILLA_BENCH_PYTHON`, or `python3`, if it runs.
    pub(crate) fn detect() -> Python {
        let program =
            std::env::var("FLOTILLA_BENCH_PYTHON").unwrap_or_else(|_| "python3".to_owned());
        let probe = Command::new(&program)
            .args(["-c", "import sys; print(sys.version.split()[0])"])
            .stdin(Stdio::null())
            .output();
        match probe {
            Ok(out) if out.status.success() => Python::Found {
                version: String::from_utf8_lossy(&out.stdout).trim().to_owned(),
                program,
            },
            Ok(out) => Python::Missing(format!("{program} failed to start ({})", out.status)),
            Err(error) => Python::Missing(format!("{program} not found ({error})")),
        }
    }
}

/// Why a column has no figures.
#[derive(Debug)]
pub(crate) enum Problem {
    /// Its tool is not on this machine (CPython): reported, not an error of the run.
    Missing(String),
    /// A round failed: reported, and the run exits with an error.
    Failed(String),
}

/// One contender's values over the rounds of a figure.
#[derive(Debug)]
pub(crate) struct Column {
    /// The contender's name.
    pub(crate) name: &'static str,
    /// One value per round that succeeded.
    pub(crate) values: Vec<f64>,
    /// Why it stopped being measured, if it did.
    pub(crate) problem: Option<Problem>,
}

impl Column {
    /// Median, min and max of the rounds, if any succeeded.
    pub(crate) fn stats(&self) -> Option<(f64, f64, f64)> {
        if self.values.is_empty() {
            return None;
        }
        let mut values = self.values.clone();
        let median = median(&mut values);
        Some((median, values[0], values[values.len() - 1]))
    }
}

/// One figure's outcome: a column per contender, flotilla's first.
#[derive(Debug)]
pub(crate) struct FigureResult {
    /// The figure.
    pub(crate) figure: &'static Figure,
    /// What flotilla's child did (a baseline's may do another number of items:
    /// [`Contender::items`]).
    pub(crate) plan: Plan,
    /// Rounds run.
    pub(crate) rounds: usize,
    /// flotilla's column, then each baseline's.
    pub(crate) columns: Vec<Column>,
}

/// Runs `rounds` rounds of `figure`: in each round every contender once, starting one
/// further along the list each round so that none always goes first. A contender that
/// fails once is not run again.
pub(crate) fn run_figure(
    figure: &'static Figure,
    rounds: usize,
    quick: bool,
    python: &Python,
    root: &Path,
) -> FigureResult {
    let contenders = figure.contenders();
    let plans: Vec<Plan> = contenders
        .iter()
        .map(|c| Plan::new(figure.measure, c, quick))
        .collect();
    let mut columns: Vec<Column> = contenders
        .iter()
        .map(|c| Column {
            name: c.name,
            values: Vec::new(),
            problem: match (c.side, python) {
                (Side::Python { .. }, Python::Missing(why)) => Some(Problem::Missing(why.clone())),
                // The MPI figures need MPI (flotilla) and mpi4py (their Python column).
                (Side::Rust(_), _) if crate::mpi_pool::is_mpi(figure.name) => {
                    crate::mpi_pool::flotilla_missing().map(Problem::Missing)
                }
                (Side::Python { .. }, _) if crate::mpi_pool::is_mpi(figure.name) => {
                    crate::mpi_pool::mpi4py_missing(python).map(Problem::Missing)
                }
                _ => None,
            },
        })
        .collect();
    for round in 0..rounds {
        eprint!("  round {}/{rounds}:", round + 1);
        for k in 0..contenders.len() {
            let i = (round + k) % contenders.len();
            if columns[i].problem.is_some() {
                continue;
            }
            let contender = &contenders[i];
            // A loaded figure's load runs for exactly this contender's round.
            let load = figure.loaded().then(Load::start).transpose();
            let outcome =
                load.and_then(|_load| run_child(figure, contender, plans[i], python, root));
            match outcome {
                Ok(samples_ns) if !samples_ns.is_empty() => {
                    let value = figure.value(plans[i], &samples_ns);
                    eprint!(" {} {}", contender.name, crate::report::number(value));
                    columns[i].values.push(value);
                }
                Ok(_) => columns[i].problem = Some(Problem::Failed("no samples".to_owned())),
                Err(error) => {
                    eprint!(" {} FAILED", contender.name);
                    columns[i].problem = Some(Problem::Failed(format!("{error:#}")));
                }
            }
        }
        eprintln!();
    }
    FigureResult {
        figure,
        plan: plans[0],
        rounds,
        columns,
    }
}

/// Runs one round of `contender` in a child process and returns its call times.
fn run_child(
    figure: &Figure,
    contender: &Contender,
    plan: Plan,
    python: &Python,
    root: &Path,
) -> anyhow::Result<Vec<u64>> {
    // An MPI figure's contender runs under `mpiexec`; its rank 0 measures.
    let mpi = crate::mpi_pool::is_mpi(figure.name);
    let mut command = match (contender.side, python) {
        (Side::Rust(_), _) if mpi => {
            let mut command = crate::mpi_pool::mpiexec();
            command.arg(std::env::current_exe()?);
            command.args([MEASURE, figure.name, contender.name]);
            command
        }
        (Side::Rust(_), _) => {
            let mut command = Command::new(std::env::current_exe()?);
            command.args([MEASURE, figure.name, contender.name]);
            command
        }
        (Side::Python { script, runner }, Python::Found { program, .. }) => {
            let script: PathBuf = root.join("bench/python").join(script);
            ensure!(script.is_file(), "{} is missing", script.display());
            let mut command = if mpi {
                let mut command = crate::mpi_pool::mpiexec();
                command.args([program.as_str(), "-m", "mpi4py.futures"]);
                command
            } else {
                Command::new(program)
            };
            command.arg(script).arg(runner);
            command
        }
        (Side::Python { .. }, Python::Missing(why)) => bail!("{why}"),
    };
    command.args(plan.to_args());
    let stdout = output_with_timeout(command, CHILD_TIMEOUT)?;
    let samples: Samples = serde_json::from_str(stdout.trim())
        .with_context(|| format!("the child printed {stdout:?}, not its samples"))?;
    Ok(samples.samples_ns)
}

/// Reads `pipe` to its end on a thread of its own.
fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_string(&mut text);
        }
        text
    })
}

/// Runs `command` and returns its stdout; fails with its stderr when it fails, and kills
/// it when it outlives `timeout`.
fn output_with_timeout(mut command: Command, timeout: Duration) -> anyhow::Result<String> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot run {command:?}"))?;
    // Drain both pipes on threads, so a chatty child never blocks on a full pipe.
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("killed after {timeout:?}: {command:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    ensure!(status.success(), "{status}: {}", stderr.trim());
    Ok(stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_flags_round_trip() {
        for quick in [false, true] {
            for figure in figures::FIGURES {
                for contender in figure.contenders() {
                    let plan = Plan::new(figure.measure, &contender, quick);
                    assert_eq!(Plan::from_args(&plan.to_args()).unwrap(), plan);
                }
            }
        }
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
    }

    #[test]
    fn every_contender_of_the_thread_figures_does_its_work() {
        // The process, connection, queue and shared figures' contenders start processes:
        // they need this binary's `main` (procspawn's init) and, for fork, a
        // single-threaded process, which the test harness is not. `cargo xtask bench
        // --quick` checks them.
        let thread_figures = figures::FIGURES.iter().filter(|f| {
            !["process-", "connection-", "queue-", "shared-"]
                .iter()
                .any(|prefix| f.name.starts_with(prefix))
        });
        for figure in thread_figures {
            for contender in figure.contenders() {
                if let Side::Rust(setup) = contender.side {
                    let mut batch = setup(THREADS).unwrap();
                    for n in [1, 1000] {
                        let results = batch.call(n).unwrap();
                        batch.verify().unwrap();
                        assert!(
                            (figure.check)(n, &results),
                            "{} / {}",
                            figure.name,
                            contender.name
                        );
                    }
                }
            }
        }
    }
}
