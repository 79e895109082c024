//! Reporting a run: the table on the terminal, `target/bench/results.json`, and
//! `docs/benchmarks.md` (the page is generated here, whole, so edit this file and not
//! the page).

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use anyhow::Context;
use serde_json::{Map, Value, json};

use crate::harness::{Column, FigureResult, Problem, Python};

/// `value` with three significant digits and an SI suffix: `48.2k`, `5.41M`, `12.3`.
pub(crate) fn number(value: f64) -> String {
    let (scaled, suffix) = match value.abs() {
        v if v >= 1e9 => (value / 1e9, "G"),
        v if v >= 1e6 => (value / 1e6, "M"),
        v if v >= 1e4 => (value / 1e3, "k"),
        _ => (value, ""),
    };
    // Three significant digits, however small: a ratio of 0.00212 must not print as 0.
    let digits = match scaled.abs() {
        v if v >= 100.0 => 0,
        v if v >= 10.0 => 1,
        v if v >= 1.0 || v == 0.0 => 2,
        v => (2 - v.log10().floor() as i32) as usize,
    };
    format!("{scaled:.digits$}{suffix}")
}

/// flotilla's median over `baseline`'s, turned so that above 1 means flotilla is better.
fn ratio(result: &FigureResult, baseline: &Column) -> Option<f64> {
    let flotilla = result.columns[0].stats()?.0;
    let other = baseline.stats()?.0;
    Some(if result.figure.measure.higher_is_better() {
        flotilla / other
    } else {
        other / flotilla
    })
}

/// What a column without figures shows instead.
fn problem_text(column: &Column) -> String {
    match &column.problem {
        Some(Problem::Missing(why)) => format!("not measured: {why}"),
        Some(Problem::Failed(why)) => format!("FAILED: {why}"),
        None => "no rounds".to_owned(),
    }
}

/// One row per contender: name, median, min, max, and flotilla's ratio over it.
fn rows(result: &FigureResult) -> Vec<[String; 5]> {
    result
        .columns
        .iter()
        .enumerate()
        .map(|(i, column)| {
            let name = column.name.to_owned();
            match column.stats() {
                Some((median, min, max)) => {
                    let ratio = match (i, ratio(result, column)) {
                        (0, _) => String::new(),
                        (_, Some(r)) => format!("{}×", number(r)),
                        (_, None) => "—".to_owned(),
                    };
                    let failed = if matches!(column.problem, Some(Problem::Failed(_))) {
                        " (then failed)"
                    } else {
                        ""
                    };
                    [
                        name + failed,
                        number(median),
                        number(min),
                        number(max),
                        ratio,
                    ]
                }
                None => [
                    name,
                    problem_text(column),
                    String::new(),
                    String::new(),
                    String::new(),
                ],
            }
        })
        .collect()
}

fn direction(result: &FigureResult) -> &'static str {
    if result.figure.measure.higher_is_better() {
        "higher is better"
    } else {
        "lower is better"
    }
}

/// Prints one figure's table on stdout.
pub(crate) fn print_figure(result: &FigureResult) {
    let figure = result.figure;
    println!("\n{}: {}", figure.name, figure.title);
    println!(
        "  {}, {}; median of {} rounds, {} threads",
        figure.unit,
        direction(result),
        result.rounds,
        result.plan.threads
    );
    println!(
        "  {:<12} {:>10} {:>10} {:>10} {:>16}",
        "contender", "median", "min", "max", "flotilla vs it"
    );
    for [name, median, min, max, ratio] in rows(result) {
        if min.is_empty() {
            println!("  {name:<12} {median}");
        } else {
            println!("  {name:<12} {median:>10} {min:>10} {max:>10} {ratio:>16}");
        }
    }
}

/// `results.json`: one object per figure.
pub(crate) fn json(results: &[FigureResult], quick: bool) -> Value {
    let figures = results.iter().map(|result| {
        let stat = |column: &Column, pick: fn((f64, f64, f64)) -> f64| {
            column.stats().map(pick).map_or(Value::Null, Value::from)
        };
        let per_column = |pick: fn((f64, f64, f64)) -> f64| -> Map<String, Value> {
            let columns = result.columns.iter();
            columns
                .map(|c| (c.name.to_owned(), stat(c, pick)))
                .collect()
        };
        let baselines = result.columns[1..].iter();
        let medians: Map<String, Value> = baselines
            .clone()
            .map(|c| (c.name.to_owned(), stat(c, |s| s.0)))
            .collect();
        let ratios: Map<String, Value> = baselines
            .clone()
            .map(|c| {
                let r = ratio(result, c).map_or(Value::Null, Value::from);
                (c.name.to_owned(), r)
            })
            .collect();
        let notes: Map<String, Value> = result
            .columns
            .iter()
            .filter(|c| c.problem.is_some())
            .map(|c| (c.name.to_owned(), Value::from(problem_text(c))))
            .collect();
        json!({
            "figure": result.figure.name,
            "title": result.figure.title,
            "unit": result.figure.unit,
            "higher_is_better": result.figure.measure.higher_is_better(),
            "flotilla": stat(&result.columns[0], |s| s.0),
            "baselines": medians,
            "min": per_column(|s| s.1),
            "max": per_column(|s| s.2),
            "ratios": ratios,
            "notes": notes,
            "threads": result.plan.threads,
            "rounds": result.rounds,
            "quick": quick,
        })
    });
    Value::Array(figures.collect())
}

/// The machine and the moment of a run, for the docs.
#[derive(Debug)]
pub(crate) struct Machine {
    cpu: String,
    cores: usize,
    kernel: String,
    rustc: String,
    python: String,
    date: String,
    load_before: String,
    idle: String,
}

/// How an idle CPU of this machine waits: the cpuidle driver and governor, and under
/// `haltpoll` how long a guest CPU polls before it halts.
fn idle_states() -> String {
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .ok()
            .map(|s| s.trim().to_owned())
    };
    let driver = read("/sys/devices/system/cpu/cpuidle/current_driver");
    let governor = read("/sys/devices/system/cpu/cpuidle/current_governor_ro")
        .or_else(|| read("/sys/devices/system/cpu/cpuidle/current_governor"));
    let mut idle = match (driver, governor) {
        (Some(driver), Some(governor)) => {
            format!("cpuidle driver `{driver}`, governor `{governor}`")
        }
        (Some(driver), None) => format!("cpuidle driver `{driver}`"),
        _ => "unknown".to_owned(),
    };
    if let Some(ns) = read("/sys/module/haltpoll/parameters/guest_halt_poll_ns") {
        let _ = write!(idle, ", `guest_halt_poll_ns` {ns}");
        if ns == "0" {
            idle.push_str(
                " (an idle vCPU halts at once, and waking it costs tens of microseconds:                  a thread or process that blocks between two messages pays that, which is                  why flotilla polls briefly before it blocks)",
            );
        }
    }
    idle
}

/// The trimmed stdout of `program args`, if it runs.
fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The 1, 5 and 15 minute load averages.
pub(crate) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

impl Machine {
    /// Reads this machine's description; call it before the run, for the load average.
    pub(crate) fn detect(python: &Python) -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let field = |name: &str| {
            cpuinfo
                .lines()
                .find(|l| l.split(':').next().is_some_and(|k| k.trim() == name))
                .and_then(|l| l.split_once(':'))
                .map(|(_, value)| value.trim().to_owned())
        };
        let mut cpu = field("model name").unwrap_or_else(|| "unknown CPU".to_owned());
        if let (Some(family), Some(model)) = (field("cpu family"), field("model")) {
            let _ = write!(cpu, " (family {family}, model {model})");
        }
        if field("flags").is_some_and(|flags| flags.split(' ').any(|f| f == "hypervisor")) {
            cpu.push_str(", virtual machine");
        }
        let unknown = || "unknown".to_owned();
        Machine {
            cpu,
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            kernel: command_output("uname", &["-srm"]).unwrap_or_else(unknown),
            rustc: command_output("rustc", &["-V"]).unwrap_or_else(unknown),
            python: match python {
                Python::Found { program, version } => format!("CPython {version} ({program})"),
                Python::Missing(why) => format!("none: {why}"),
            },
            date: command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_else(unknown),
            load_before: load_average(),
            idle: idle_states(),
        }
    }
}

/// `docs/benchmarks.md`, whole.
pub(crate) fn markdown(
    results: &[FigureResult],
    machine: &Machine,
    quick: bool,
    note: Option<&str>,
) -> String {
    let mut md = String::new();
    let w = &mut md;
    let _ = writeln!(
        w,
        "# Benchmarks\n\n\
         <!-- Generated by `cargo xtask bench --write-docs` from bench/src/report.rs and the \
         figure table in bench/src/figures.rs: edit those, not this page. -->\n\n\
         flotilla measured beside CPython (`concurrent.futures`, `multiprocessing`), the \
         Rust peers and, as `os-limit`, the bare OS mechanism underneath (fork, \
         posix_spawn, a socket pair), every contender doing the same work (with the same \
         number of threads, for the thread figures), in one run that alternates the \
         contenders round by round. Each cell is the median of the rounds, \
         with the slowest and fastest round beside it. **flotilla vs it** is stated so that \
         above 1 means flotilla is better: flotilla's median over the baseline's for a \
         throughput, the baseline's over flotilla's for a latency.\n"
    );

    // The summary: one row per figure, one ratio column per baseline.
    let mut baselines: Vec<&str> = Vec::new();
    for result in results {
        for column in &result.columns[1..] {
            if !baselines.contains(&column.name) {
                baselines.push(column.name);
            }
        }
    }
    let _ = writeln!(w, "## Summary\n");
    let _ = write!(w, "| figure | unit | flotilla |");
    for name in &baselines {
        let _ = write!(w, " vs {name} |");
    }
    let _ = write!(w, "\n|---|---|---:|");
    for _ in &baselines {
        let _ = write!(w, "---:|");
    }
    let _ = writeln!(w);
    for result in results {
        let flotilla = result.columns[0]
            .stats()
            .map_or("—".to_owned(), |s| number(s.0));
        let _ = write!(
            w,
            "| [{}](#{}) | {} | {flotilla} |",
            result.figure.name, result.figure.name, result.figure.unit
        );
        for name in &baselines {
            let cell = match result.columns.iter().find(|c| c.name == *name) {
                Some(column) => {
                    ratio(result, column).map_or("—".to_owned(), |r| format!("{}×", number(r)))
                }
                None => String::new(),
            };
            let _ = write!(w, " {cell} |");
        }
        let _ = writeln!(w);
    }

    let _ = writeln!(w, "\n## The run\n");
    let _ = writeln!(w, "- **Machine**: {}; {} cores", machine.cpu, machine.cores);
    let _ = writeln!(w, "- **Kernel**: {}", machine.kernel);
    let _ = writeln!(w, "- **Idle CPUs**: {}", machine.idle);
    let _ = writeln!(w, "- **Rust**: {}, release profile", machine.rustc);
    let _ = writeln!(w, "- **Python**: {}", machine.python);
    let rounds = results.first().map_or(0, |r| r.rounds);
    let kind = if quick { " (`--quick`)" } else { "" };
    let _ = writeln!(
        w,
        "- **When**: {}, {rounds} rounds{kind} (twice as many for the loaded figures); load \
         average (1, 5, 15 min) {} before the run, {} after",
        machine.date,
        machine.load_before,
        load_average()
    );
    let _ = writeln!(
        w,
        "- **Conditions**: {}",
        note.unwrap_or(
            "an ordinary run; nothing is pinned to a core and other processes may run \
             beside it."
        )
    );
    let _ = writeln!(
        w,
        "\nAbsolute figures move with the machine and its load; the ratios, measured in one \
         run that alternates the contenders, are what to compare.\n"
    );

    let _ = writeln!(w, "## Figures");
    for result in results {
        let figure = result.figure;
        let _ = writeln!(w, "\n### {}\n", figure.name);
        let _ = writeln!(
            w,
            "{}. In {}, {}.\n",
            capitalized(figure.title),
            figure.unit,
            direction(result)
        );
        let _ = writeln!(w, "| contender | median | min | max | flotilla vs it |");
        let _ = writeln!(w, "|---|---:|---:|---:|---:|");
        for [name, median, min, max, ratio] in rows(result) {
            let _ = writeln!(w, "| {name} | {median} | {min} | {max} | {ratio} |");
        }
        let _ = writeln!(w, "\n{}", figure.conditions);
    }

    let _ = writeln!(
        w,
        "\n## Reproduce\n\n\
         ```sh\n\
         cargo xtask bench                  # every figure, 5 rounds (a few minutes on 2 cores)\n\
         cargo xtask bench --quick          # 2 rounds and fewer timed calls: a smoke run\n\
         cargo xtask bench thread-pool map  # only the figures whose names contain a word\n\
         cargo xtask bench --rounds 12 round-trip  # more rounds: the worst beside the median\n\
         cargo xtask bench --write-docs     # and rewrite this page from the run\n\
         cargo xtask bench --list           # the figures and their contenders\n\
         ```\n\n\
         `cargo xtask bench` builds the `bench/` crate in release into `target/bench-build` \
         (it is its own workspace, so `cargo test --workspace` never builds its peers) and \
         runs it. Every round of every contender is a fresh process: this binary's hidden \
         `measure` mode for Rust, `bench/python/*.py` for CPython, both printing their \
         call times as JSON; a contender that fails is reported and makes the run exit \
         with an error. The CPython column needs `python3` (or the interpreter named by \
         `FLOTILLA_BENCH_PYTHON`); without it the column says so and the run goes on. \
         The results, with each contender's min and max, are also written to \
         `target/bench/results.json`. `--note TEXT` records the conditions of the run on \
         this page.\n\n\
         A new figure is one entry in the `FIGURES` table of `bench/src/figures.rs`: its \
         flotilla setup, its baselines (Rust setups in this crate, a runner in a script \
         under `bench/python/`, or `os-limit` for the bare OS mechanism), how a round \
         is measured, and its conditions, which land on this page."
    );
    md
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or(String::new(), |first| {
        first.to_uppercase().chain(chars).collect()
    })
}

/// Writes `contents` to `path`, creating its folder.
pub(crate) fn write(path: &Path, contents: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(path, contents).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::number;

    #[test]
    fn numbers_keep_three_significant_digits() {
        assert_eq!(number(5_412_345.0), "5.41M");
        assert_eq!(number(48_213.0), "48.2k");
        assert_eq!(number(9_876.0), "9876");
        assert_eq!(number(12.345), "12.3");
        assert_eq!(number(0.8456), "0.846");
        assert_eq!(number(0.002123), "0.00212");
        assert_eq!(number(0.0), "0.00");
    }
}
