//! `cargo xtask bench`: builds the `bench/` crate in release and runs it with the given
//! arguments. The harness itself (figures, rounds, reports) lives in that crate, which is
//! its own workspace so that the workspace build never compiles its peers.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, ensure};

/// Builds `bench/` into `target/bench-build` (a target dir of its own, so it never waits
/// for the workspace's build lock), then runs it, and exits with its status.
///
/// The committed `bench/Cargo.lock` pins the peers' versions, but the build is not
/// `--locked`: the flotilla crates are path dependencies, and when one of them gains a
/// dependency, cargo must add it to the lock rather than refuse to build.
pub(crate) fn main(args: &[String]) -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("xtask/ is inside the workspace")?;
    let target_dir = root.join("target/bench-build");
    // `cargo run` tells the program which cargo runs it; use the same one.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let build = |features: &[&str]| {
        Command::new(&cargo)
            .args(["build", "--release", "--manifest-path"])
            .arg(root.join("bench/Cargo.toml"))
            .arg("--target-dir")
            .arg(&target_dir)
            .args(features)
            .status()
            .context("cannot run cargo to build bench/")
    };
    // flotilla's side of the MPI figures needs MPI to build; without it (or if that
    // build fails) those figures say "not measured" and the rest runs as ever.
    let mut status = None;
    if mpi_installed() {
        let with_mpi = build(&["--features", "mpi"])?;
        if with_mpi.success() {
            status = Some(with_mpi);
        } else {
            eprintln!("building bench/ with MPI failed ({with_mpi}); building it without");
        }
    }
    let status = match status {
        Some(status) => status,
        None => build(&[])?,
    };
    ensure!(status.success(), "building bench/ failed ({status})");

    let binary = target_dir.join("release/flotilla-bench");
    let status = Command::new(&binary)
        .args(args)
        .status()
        .with_context(|| format!("cannot run {}", binary.display()))?;
    if !status.success() {
        // The harness has said what failed; pass its verdict on without repeating it.
        std::process::exit(status.code().unwrap_or(1));
    }
    Ok(())
}

/// Whether MPI's launcher and compiler wrapper run here (what flotilla-mpi's build and
/// the MPI figures need).
fn mpi_installed() -> bool {
    let runs = |program: &str, arg: &str| {
        Command::new(program)
            .arg(arg)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    runs("mpiexec", "--version") && runs("mpicc", "-show")
}
