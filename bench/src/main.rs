//! `flotilla-bench`: flotilla side by side with CPython and the Rust peers. It measures
//! every figure of [`figures::FIGURES`] for each contender in one run, alternating them
//! round by round, prints the table, and writes `target/bench/results.json` (and, with
//! `--write-docs`, `docs/benchmarks.md`). `cargo xtask bench` builds and runs it.

mod asyncio;
mod connection;
mod crossbeam_pool;
mod figures;
mod harness;
mod manager;
mod mpi_pool;
mod os;
mod process;
mod process_pool;
mod queue;
mod report;
mod shared;
mod thread_pool;

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::harness::{Problem, Python};

const USAGE: &str = "\
usage: cargo xtask bench [--quick] [--rounds N] [--write-docs] [--note TEXT] [FILTER...]
       cargo xtask bench --list

Measures every figure whose name contains one of the FILTERs (all of them when none is
given) for flotilla and each baseline, alternating them over rounds, then prints the
table and writes target/bench/results.json.

  --quick        2 rounds and fewer timed calls instead of 5 rounds: a smoke run
  --rounds N     N rounds (each a fresh process per contender) instead of 5 (or 2):
                 for the distribution of a figure, its worst round beside its median;
                 the loaded figures run twice as many (a slow round is rarer there)
  --write-docs   also rewrite docs/benchmarks.md from this run
  --note TEXT    the conditions of this run, for docs/benchmarks.md
  --list         list the figures and their contenders

The CPython column runs bench/python/*.py with python3 ($FLOTILLA_BENCH_PYTHON to
choose another interpreter); without one the column says so and the run goes on.";

/// The parsed command line of a run.
#[derive(Debug, Default)]
struct Options {
    quick: bool,
    write_docs: bool,
    list: bool,
    rounds: Option<usize>,
    note: Option<String>,
    filters: Vec<String>,
}

impl Options {
    fn parse(args: &[String]) -> anyhow::Result<Options> {
        let mut options = Options::default();
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--quick" => options.quick = true,
                "--write-docs" => options.write_docs = true,
                "--list" => options.list = true,
                "--rounds" => {
                    let n = args.next().context("--rounds needs a number")?;
                    let n: usize =
                        n.parse().ok().filter(|&n| n > 0).with_context(|| {
                            format!("--rounds needs a positive number, not {n:?}")
                        })?;
                    options.rounds = Some(n);
                }
                "--note" => {
                    options.note = Some(args.next().context("--note needs a text")?.clone())
                }
                "-h" | "--help" => {
                    println!("{USAGE}");
                    std::process::exit(0);
                }
                flag if flag.starts_with('-') => bail!("unknown flag {flag:?}\n\n{USAGE}"),
                filter => options.filters.push(filter.to_owned()),
            }
        }
        Ok(options)
    }
}

/// The flotilla workspace this crate sits in.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bench/ is inside the workspace")
        .to_owned()
}

fn main() -> anyhow::Result<()> {
    // Both make this binary a worker when it was started as one (a flotilla spawn or
    // forkserver child, a procspawn child), and never return then. Each looks for its
    // own environment variable only, so their order does not matter for correctness;
    // flotilla's goes first, as its docs ask.
    flotilla::init();
    procspawn::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(os::EXIT_NOW) {
        // The posix_spawn limit's child: a fresh start of this binary, and nothing else.
        std::process::exit(os::EXIT_NOW_CODE);
    }
    if args.first().map(String::as_str) == Some(harness::SPIN) {
        // One process of a loaded figure's load: busy until the harness kills it.
        harness::spin_main();
    }
    if args.first().map(String::as_str) == Some(harness::MEASURE) {
        return harness::measure_main(&args[1..]);
    }
    let options = Options::parse(&args)?;

    let chosen: Vec<&'static figures::Figure> = figures::FIGURES
        .iter()
        .filter(|f| {
            options.filters.is_empty() || options.filters.iter().any(|w| f.name.contains(w))
        })
        .collect();
    if options.list {
        for figure in figures::FIGURES {
            let names: Vec<_> = figure.contenders().iter().map(|c| c.name).collect();
            println!(
                "{:<24} {} [{}]",
                figure.name,
                figure.title,
                names.join(", ")
            );
        }
        return Ok(());
    }
    if chosen.is_empty() {
        bail!(
            "no figure matches {:?}; `cargo xtask bench --list` lists them",
            options.filters
        );
    }
    if options.write_docs && chosen.len() != figures::FIGURES.len() {
        bail!("--write-docs rewrites the whole page: run it without filters");
    }

    let root = workspace_root();
    let rounds = options.rounds.unwrap_or(if options.quick { 2 } else { 5 });
    let python = Python::detect();
    if let Python::Missing(why) = &python {
        eprintln!("warning: no CPython column: {why}");
    }
    let machine = report::Machine::detect(&python);

    let mut results = Vec::new();
    for figure in chosen {
        let rounds = figure.rounds(rounds);
        eprintln!("{} ({} rounds)", figure.name, rounds);
        let result = harness::run_figure(figure, rounds, options.quick, &python, &root);
        report::print_figure(&result);
        results.push(result);
    }

    let json_path = root.join("target/bench/results.json");
    let json = serde_json::to_string_pretty(&report::json(&results, options.quick))?;
    report::write(&json_path, &(json + "\n"))?;
    println!("\nwrote {}", json_path.display());
    if options.write_docs {
        let docs_path = root.join("docs/benchmarks.md");
        let page = report::markdown(&results, &machine, options.quick, options.note.as_deref());
        report::write(&docs_path, &page)?;
        println!("wrote {}", docs_path.display());
    }

    // flotilla failing is a bug and fails the run. A baseline failing (a peer crate's own
    // flake, say) is a fact about the baseline: the table and the page already say so, and
    // the run still measured flotilla, so it is reported here without failing the run.
    let (failures, baseline_failures): (Vec<String>, Vec<String>) = results
        .iter()
        .flat_map(|r| r.columns.iter().map(move |c| (r.figure.name, c)))
        .filter_map(|(figure, c)| match &c.problem {
            Some(Problem::Failed(why)) => Some((
                c.name == "flotilla",
                format!("{figure} / {}: {why}", c.name),
            )),
            _ => None,
        })
        .fold(
            (Vec::new(), Vec::new()),
            |(mut ours, mut theirs), (is_ours, line)| {
                if is_ours {
                    ours.push(line)
                } else {
                    theirs.push(line)
                }
                (ours, theirs)
            },
        );
    if !baseline_failures.is_empty() {
        eprintln!(
            "warning: {} baseline(s) failed (flotilla's figures stand):\n{}",
            baseline_failures.len(),
            baseline_failures.join("\n")
        );
    }
    if !failures.is_empty() {
        bail!(
            "{} contender(s) failed:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
    Ok(())
}
