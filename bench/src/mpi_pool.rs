//! The MPI figures' contenders: flotilla's `MpiPoolExecutor` and mpi4py's
//! `MPIPoolExecutor` (in `bench/python/mpi_pool.py`), each run under `mpiexec -n 3`
//! (rank 0 measures, ranks 1 and 2 run the tasks).
//!
//! flotilla's side exists only in a bench built with the `mpi` feature (`cargo xtask
//! bench` adds it when MPI is installed); mpi4py's needs `pip install mpi4py`. A column
//! whose side is missing says "not measured" and why.

use std::process::{Command, Stdio};

use crate::figures::Batch;
use crate::harness::Python;

/// The ranks of every MPI figure's job: the client and two workers.
pub(crate) const RANKS: usize = 3;

/// What to install for MPI.
const INSTALL_MPI: &str = "MPI is not installed (`apt-get install mpich libmpich-dev \
     libclang-dev`, then run `cargo xtask bench` again)";

/// Whether `figure` runs its contenders under `mpiexec`.
pub(crate) fn is_mpi(figure: &str) -> bool {
    figure.starts_with("mpi-")
}

/// `mpiexec -n RANKS`, the start of every MPI contender's command.
pub(crate) fn mpiexec() -> Command {
    let mut command = Command::new("mpiexec");
    command.args(["-n", &RANKS.to_string()]);
    command
}

fn mpiexec_runs() -> bool {
    Command::new("mpiexec")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Why flotilla's side of the MPI figures cannot be measured, if it cannot.
pub(crate) fn flotilla_missing() -> Option<String> {
    if !cfg!(feature = "mpi") {
        return Some(format!(
            "this bench was built without flotilla's mpi feature: {INSTALL_MPI}"
        ));
    }
    (!mpiexec_runs()).then(|| INSTALL_MPI.to_owned())
}

/// Why mpi4py's side cannot be measured, if it cannot.
pub(crate) fn mpi4py_missing(python: &Python) -> Option<String> {
    let Python::Found { program, .. } = python else {
        return None; // the Python column already says why
    };
    if !mpiexec_runs() {
        return Some(INSTALL_MPI.to_owned());
    }
    let probe = Command::new(program)
        .args(["-c", "import mpi4py.futures"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    match probe {
        Ok(status) if status.success() => None,
        _ => Some(format!(
            "mpi4py not installed for {program} (`pip install mpi4py`, with libmpich-dev)"
        )),
    }
}

/// The conditions of `mpi-pool-submit`, for `docs/benchmarks.md`.
pub(crate) const SUBMIT_CONDITIONS: &str = "\
Both contenders run under `mpiexec -n 3` (MPICH): rank 0 is the client that measures, \
ranks 1 and 2 run the tasks. Each timed call submits n trivial tasks one by one, each \
returning its argument `i` (`0..n`), then collects every result in submission order; \
the value is n divided by the call's time, in tasks per second. n per contender: \
**flotilla 20,000; mpi4py 2,000**; the value is a rate, so the columns compare. Each \
round is a fresh `mpiexec` job that makes one untimed call of n/10 tasks, then times 3 \
calls (1 with `--quick`) and keeps their median; the results must be exactly `0..n`, \
in order.

- **flotilla**: `flotilla::init()` at the top of `main` (ranks 1 and 2 serve there), \
then `MpiPoolExecutor::builder().build()` (2 tasks in flight per rank, `PIPELINE`); \
`submit(identity, i)` each, then `into_result` on each in order.
- **mpi4py**: `mpiexec -n 3 python3 -m mpi4py.futures mpi_pool.py submit ...`; \
`MPIPoolExecutor()`; `[ex.submit(identity, i) for i in range(n)]`, then \
`[f.result() for f in futures]`.";

/// The conditions of `mpi-pool-map`, for `docs/benchmarks.md`.
pub(crate) const MAP_CONDITIONS: &str = "\
Both contenders run under `mpiexec -n 3` as for `mpi-pool-submit`. Each timed call maps \
`x + 1` over `0..100,000` in chunks of 1000 and collects the results in input order; \
the value is 100,000 divided by the call's time, in items per second. A round is a \
fresh job: one untimed call, then 3 timed calls (1 with `--quick`), median kept; the \
results must be exactly `1..=100,000`, in order.

- **flotilla**: `MpiPoolExecutor::map(inc, 0..n, 1000)`, collected.
- **mpi4py**: `list(MPIPoolExecutor().map(inc, range(n), chunksize=1000))`.";

#[cfg(feature = "mpi")]
mod imp {
    use std::time::Duration;

    use flotilla::mpi::MpiPoolExecutor;

    use super::RANKS;
    use crate::figures::{Batch, batch};

    const RESULT_TIMEOUT: Duration = Duration::from_secs(60);

    fn identity(i: u64) -> u64 {
        i
    }

    fn inc(x: u64) -> u64 {
        x + 1
    }

    fn pool() -> anyhow::Result<MpiPoolExecutor> {
        let pool = MpiPoolExecutor::builder().build()?;
        anyhow::ensure!(
            pool.max_workers() == RANKS - 1,
            "expected {} worker ranks, found {}",
            RANKS - 1,
            pool.max_workers()
        );
        Ok(pool)
    }

    pub(crate) fn submit() -> anyhow::Result<Batch> {
        let pool = pool()?;
        Ok(batch(move |n| {
            let futures = (0..n as u64)
                .map(|i| pool.submit(identity, i))
                .collect::<Result<Vec<_>, _>>()?;
            let results = futures
                .into_iter()
                .map(|f| f.into_result_timeout(RESULT_TIMEOUT))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(results)
        }))
    }

    pub(crate) fn map() -> anyhow::Result<Batch> {
        let pool = pool()?;
        Ok(batch(move |n| {
            let results = pool
                .map(inc, 0..n as u64, crate::process_pool::CHUNKSIZE)
                .timeout(RESULT_TIMEOUT)
                .collect::<Result<Vec<_>, _>>()?;
            Ok(results)
        }))
    }
}

/// flotilla: `submit` each task, then every result in order.
pub(crate) fn flotilla_submit(_threads: usize) -> anyhow::Result<Batch> {
    #[cfg(feature = "mpi")]
    return imp::submit();
    #[cfg(not(feature = "mpi"))]
    anyhow::bail!(flotilla_missing().unwrap_or_default())
}

/// flotilla: `map` with chunks of 1000, collected.
pub(crate) fn flotilla_map(_threads: usize) -> anyhow::Result<Batch> {
    #[cfg(feature = "mpi")]
    return imp::map();
    #[cfg(not(feature = "mpi"))]
    anyhow::bail!(flotilla_missing().unwrap_or_default())
}
