//! Logging reaches the program's output from inside spawn and forkserver children, whose
//! tasks run before `main` could install a subscriber: `log::log_to_stderr` and
//! `log::set_worker_setup` travel with the task, and every line names its process.
//!
//! Each test re-runs this test binary for one scenario with its standard error captured,
//! since a child writes to the standard error it inherited.

use std::process::Command;
use std::time::Duration;

use flotilla_process::log::{Level, log_to_stderr, set_worker_setup};
use flotilla_process::{StartMethod, get_context};

const SCENARIO: &str = "FLOTILLA_LOGGING_SCENARIO";

fn say_hello(tag: String) -> u32 {
    tracing::info!(tag = %tag, "hello from inside the child");
    7
}

/// Runs `test` of this binary again with `SCENARIO=scenario`; its standard error.
fn rerun(test: &str, scenario: &str) -> String {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(SCENARIO, scenario)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "the scenario failed: {}\n{stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    stderr
}

fn start_children() {
    for method in [StartMethod::Spawn, StartMethod::ForkServer] {
        let child = get_context(Some(method))
            .process(say_hello, method.to_string())
            .name(format!("Logger-{method}"))
            .start()
            .unwrap();
        assert_eq!(child.join_timeout(Duration::from_secs(60)).unwrap(), 7);
    }
}

#[test]
fn log_to_stderr_reaches_spawn_and_forkserver_children() {
    if std::env::var_os(SCENARIO).is_some() {
        log_to_stderr(Level::DEBUG);
        start_children();
        return;
    }
    let stderr = rerun(
        "log_to_stderr_reaches_spawn_and_forkserver_children",
        "stderr",
    );
    for method in ["spawn", "forkserver"] {
        let line = stderr
            .lines()
            .find(|l| l.contains("hello from inside the child") && l.contains(method))
            .unwrap_or_else(|| panic!("no {method} child's event in:\n{stderr}"));
        assert!(
            line.contains(&format!("name=\"Logger-{method}\"")),
            "{line}"
        );
        assert!(line.contains("pid="), "{line}");
    }
    // The lifecycle events, in the parent, name it.
    assert!(
        stderr.lines().any(|l| l.contains("started a process")
            && l.contains("name=\"MainProcess\"")
            && l.contains("Logger-spawn")),
        "{stderr}"
    );
    assert!(stderr.contains("a process ended"), "{stderr}");
}

/// The worker setup: installs a subscriber of the program's choosing (here one that
/// marks its lines) in each child before its task.
fn install_marked_subscriber() {
    let subscriber = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_max_level(Level::INFO)
        .event_format(tracing_subscriber::fmt::format().with_target(true))
        .finish();
    let _ = tracing::subscriber::set_global_default(subscriber);
    eprintln!("worker setup ran in {}", std::process::id());
}

#[test]
fn the_worker_setup_runs_in_every_child_before_its_task() {
    if std::env::var_os(SCENARIO).is_some() {
        set_worker_setup(install_marked_subscriber);
        start_children();
        return;
    }
    let stderr = rerun(
        "the_worker_setup_runs_in_every_child_before_its_task",
        "setup",
    );
    assert_eq!(
        stderr.matches("worker setup ran in").count(),
        2,
        "one setup per child:\n{stderr}"
    );
    for method in ["spawn", "forkserver"] {
        assert!(
            stderr
                .lines()
                .any(|l| l.contains("hello from inside the child")
                    && l.contains(&format!("Logger-{method}"))),
            "no {method} child's event in:\n{stderr}"
        );
    }
}

fn explode(what: String) -> u32 {
    panic!("{what} went wrong")
}

/// A panic in a spawn or forkserver child names the process it happened in (its task
/// runs before `main`, where std would say `thread '<unnamed>'`).
#[test]
fn a_childs_panic_names_its_process() {
    if std::env::var_os(SCENARIO).is_some() {
        for method in [StartMethod::Spawn, StartMethod::ForkServer] {
            let child = get_context(Some(method))
                .process(explode, format!("the {method} task"))
                .name(format!("Exploder-{method}"))
                .start()
                .unwrap();
            assert!(child.join_timeout(Duration::from_secs(60)).is_err());
        }
        return;
    }
    let stderr = rerun("a_childs_panic_names_its_process", "panic");
    for method in ["spawn", "forkserver"] {
        assert!(
            stderr.lines().any(
                |l| l.starts_with(&format!("process 'Exploder-{method}' (pid "))
                    && l.contains("panicked at")
            ),
            "no line naming the {method} child's process in:\n{stderr}"
        );
        assert!(
            stderr.contains(&format!("the {method} task went wrong")),
            "{stderr}"
        );
    }
    assert!(!stderr.contains("<unnamed>"), "{stderr}");
}
