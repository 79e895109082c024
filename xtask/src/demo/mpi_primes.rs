//! mpi-primes: the primes scenario on `MpiPoolExecutor`, under `mpiexec -n 3`.
//!
//! MPI is not part of the workspace build (flotilla-mpi's `mpi` feature needs an MPI
//! library), so this demo builds flotilla-mpi's `mpi_primes` example with the feature
//! and launches it with `mpiexec` itself. Without MPI it explains what to install;
//! `demo all` then skips it with that message.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};

use super::Clock;

const INSTALL: &str = "MPI is not installed: on Debian, `apt-get install mpich libmpich-dev \
     libclang-dev` (MPICH's mpiexec, its headers, and libclang for the bindings)";

/// How long the MPI job may take before it is killed.
const TIMEOUT: Duration = Duration::from_secs(120);

fn mpi_missing() -> bool {
    Command::new("mpiexec")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
}

pub(crate) fn run(clock: &Clock) -> anyhow::Result<()> {
    if mpi_missing() {
        // `cargo xtask demo all` goes on without it; asked for by name, it fails.
        if std::env::args().any(|a| a == "all") {
            clock.say(format!("skipped: {INSTALL}"));
            return Ok(());
        }
        bail!("{INSTALL}");
    }
    clock.say("building flotilla-mpi's mpi_primes example with the mpi feature");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("the workspace root")?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let build = Command::new(cargo)
        .current_dir(root)
        .args([
            "build",
            "--quiet",
            "-p",
            "flotilla-mpi",
            "--features",
            "mpi",
            "--example",
            "mpi_primes",
            "--message-format=json",
        ])
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo build")?;
    ensure!(
        build.status.success(),
        "building the mpi_primes example failed"
    );
    let stdout = String::from_utf8_lossy(&build.stdout);
    let executable = stdout
        .lines()
        .filter(|line| line.contains("\"name\":\"mpi_primes\""))
        .find_map(|line| {
            let at = line.find("\"executable\":\"")? + "\"executable\":\"".len();
            let end = line[at..].find('"')?;
            Some(line[at..at + end].to_owned())
        })
        .context("cargo did not say where the mpi_primes example is")?;

    clock.say("mpiexec -n 3 mpi_primes: rank 0 is the client, ranks 1 and 2 run the tasks");
    let mut child = Command::new("mpiexec")
        .args(["-n", "3", &executable])
        .stdout(Stdio::piped())
        .spawn()
        .context("starting mpiexec")?;
    let mut out = child.stdout.take().context("mpiexec's output")?;
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = out.read_to_string(&mut text);
        text
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the MPI job did not finish within {TIMEOUT:?}; killed");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = reader.join().unwrap_or_default();
    for line in text.lines() {
        clock.say(line);
    }
    ensure!(status.success(), "the MPI job failed: {status}");
    ensure!(
        text.lines().any(|l| l == "mpi-primes: OK"),
        "the MPI job did not confirm its answers"
    );
    Ok(())
}
