//! Setting up the MPI world: `init` (the static world of `mpiexec -n N ./prog`),
//! `comm_executor` (mpi4py's `MPICommExecutor`), and a worker rank's serving loop.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use flotilla_core::event;
use flotilla_core::log::Level;
use mpi::Threading;
use mpi::ffi;
use mpi::traits::AsRaw;

use crate::comm::Comm;
use crate::error::{BuildError, InitError};
use crate::executor::{MpiPoolExecutor, MpiPoolExecutorBuilder};
use crate::wire::{self, Kind, TAG_RESULT, TAG_STOP, TAG_TASK};

/// The client's view of the static world, once [`init`] ran on rank 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct World {
    size: i32,
}

impl World {
    /// The number of ranks, the client's included.
    pub fn size(&self) -> i32 {
        self.size
    }

    /// The number of worker ranks (`size - 1`).
    pub fn workers(&self) -> usize {
        (self.size - 1).max(0) as usize
    }
}

/// The process-wide state of the static world (rank 0 only).
#[derive(Debug, Default)]
struct State {
    /// What `init` gave, once it ran.
    outcome: Option<Result<(Comm, World), InitError>>,
    /// An executor's progress thread is using the communicator.
    busy: bool,
    /// `init` initialised MPI, so the exit hook finalises it.
    owns_mpi: bool,
    /// The exit hook has run: the workers were stopped.
    ended: bool,
}

static STATE: Mutex<State> = Mutex::new(State {
    outcome: None,
    busy: false,
    owns_mpi: false,
    ended: false,
});

fn state() -> MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// True when this process was started by an MPI launcher (`mpiexec`, `mpirun`, `srun`
/// with PMI or PMIx): the variables MPICH's hydra, Open MPI and PMIx set for each rank.
pub fn launched_by_mpi() -> bool {
    ["PMI_RANK", "PMI_SIZE", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE"]
        .iter()
        .any(|name| std::env::var_os(name).is_some())
}

/// [`init`] when this program was launched by an MPI launcher ([`launched_by_mpi`]);
/// nothing otherwise. What `flotilla::init()` does with the `mpi` feature: a worker rank
/// serves and never returns from it, and a failure is kept for
/// [`MpiPoolExecutor::builder`]'s `build` to report (as [`BuildError::Init`]).
pub fn init_if_launched() {
    if launched_by_mpi() {
        let _ = init();
    }
}

/// Makes this program an MPI pool, as `mpiexec -n N python -m mpi4py.futures prog.py`
/// does: call it first thing in `main` (before any thread starts).
///
/// On rank 0 it returns the [`World`]: `main` goes on as the client, and
/// [`MpiPoolExecutor::builder`] runs tasks on the other ranks. On ranks 1..N-1 it never
/// returns: the rank serves tasks until rank 0's program ends (its exit hook stops the
/// workers and finalises MPI), then exits with status 0.
///
/// A program not launched by `mpiexec` (a world of one rank) gets
/// [`InitError::NoWorkers`], which says how to launch it: flotilla-mpi does not fall
/// back to running tasks in the client, so a program meant for a cluster never runs
/// quietly on one core. (`flotilla::init()` with the `mpi` feature calls this only when
/// [`launched_by_mpi`] is true, and the executor's builder reports any failure.)
///
/// MPI is initialised at `MPI_THREAD_SERIALIZED` (the client's progress thread makes
/// every MPI call while an executor lives); if the program initialised MPI itself, its
/// level must be at least that, and the program finalises it. Calling `init` again on
/// rank 0 returns the same outcome.
pub fn init() -> Result<World, InitError> {
    if let Some(outcome) = &state().outcome {
        return outcome.clone().map(|(_, world)| world);
    }
    let (owns_mpi, provided) = match mpi::initialize_with_threading(Threading::Serialized) {
        Some((universe, provided)) => {
            // The exit hook (rank 0) or `serve_world` (the workers) finalises MPI, once
            // every message is through: the universe's own drop must not.
            std::mem::forget(universe);
            (true, provided)
        }
        None => (false, mpi::environment::threading_support()),
    };
    // SAFETY: MPI is initialised (just above, or by the program); MPI_COMM_WORLD is a
    // live intra-communicator, and every rank makes this same call.
    let world = unsafe { Comm::duplicate(mpi::topology::SimpleCommunicator::world().as_raw()) };
    let comm = match world {
        Ok(comm) => comm,
        Err(e) => fatal(&e),
    };
    let outcome = check_world(comm, provided).map(|world| (comm, world));
    let rank = comm.rank();
    if rank != 0 {
        match outcome {
            Ok(_) => {
                serve(comm, 0);
                end_worker(owns_mpi, 0)
            }
            Err(e) => {
                eprintln!("flotilla-mpi rank {rank}: {e}");
                end_worker(owns_mpi, 70)
            }
        }
    }
    let mut state = state();
    state.owns_mpi = owns_mpi;
    state.outcome = Some(outcome.clone());
    drop(state);
    // SAFETY: `at_exit` is an `extern "C" fn()` that lives as long as the program.
    unsafe { libc::atexit(at_exit) };
    outcome.map(|(_, world)| world)
}

/// Checks the world every rank sees the same way: threads allowed, the same build
/// everywhere, at least one worker.
fn check_world(comm: Comm, provided: Threading) -> Result<World, InitError> {
    check_comm(comm, provided, 0)?;
    let size = comm.size();
    if size < 2 {
        return Err(InitError::NoWorkers { size });
    }
    Ok(World { size })
}

/// The checks of a communicator that `init` and `comm_executor` share (collective: every
/// rank reaches the same verdict, so none is left waiting for the others).
pub(crate) fn check_comm(comm: Comm, provided: Threading, root: i32) -> Result<(), InitError> {
    let ok = provided >= Threading::Serialized;
    let ours = if ok {
        flotilla_process::task::fingerprint()
    } else {
        0
    };
    let all = match comm.all_gather_u64(ours) {
        Ok(all) => all,
        Err(e) => fatal(&e),
    };
    if all.contains(&0) {
        return Err(InitError::Threading {
            provided: format!("{provided:?}"),
        });
    }
    let root_print = all.get(root as usize).copied().unwrap_or(0);
    if let Some((rank, &theirs)) = all.iter().enumerate().find(|(_, f)| **f != root_print) {
        return Err(InitError::DifferentBuilds {
            rank: rank as i32,
            theirs,
            ours: root_print,
        });
    }
    Ok(())
}

/// An MPI call failed where MPI's default handler did not end the job (it usually ends
/// it first): the futures could not be completed any more, so the job ends, loudly.
pub(crate) fn fatal(what: &str) -> ! {
    eprintln!("flotilla-mpi: {what}; aborting the MPI job");
    // SAFETY: MPI is initialised; MPI_Abort ends every rank of the world.
    unsafe { ffi::MPI_Abort(ffi::RSMPI_COMM_WORLD, 70) };
    std::process::abort()
}

/// Ends a worker rank: finalises MPI (when `init` initialised it), flushes, exits.
fn end_worker(owns_mpi: bool, code: i32) -> ! {
    if owns_mpi {
        // SAFETY: MPI is initialised, this thread made every call, and none is pending.
        unsafe { ffi::MPI_Finalize() };
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
    std::process::exit(code)
}

/// Rank 0's exit hook: stops a live executor, tells the workers to end, finalises MPI.
extern "C" fn at_exit() {
    let _ = catch_unwind(|| {
        crate::executor::stop_active();
        let mut state = state();
        if state.ended {
            return;
        }
        state.ended = true;
        if let Some(Ok((comm, world))) = &state.outcome {
            for rank in 1..world.size {
                if let Err(e) = comm.send(rank, TAG_STOP, &[]) {
                    eprintln!("flotilla-mpi: stopping rank {rank}: {e}");
                }
            }
        }
        if state.owns_mpi {
            // SAFETY: MPI is initialised, no other thread calls it (the progress thread
            // has ended), and no request is pending.
            unsafe { ffi::MPI_Finalize() };
        }
    });
}

/// The static world's executor builder's source: the communicator and its workers, or
/// why there is none. Marks the world busy until [`release`] is called.
pub(crate) fn acquire() -> Result<(Comm, World), BuildError> {
    let mut state = state();
    let (comm, world) = match &state.outcome {
        None => return Err(BuildError::NotInitialized),
        Some(Err(e)) => return Err(BuildError::Init(e.clone())),
        Some(Ok(pair)) => *pair,
    };
    if state.busy || state.ended {
        return Err(BuildError::Busy);
    }
    state.busy = true;
    Ok((comm, world))
}

/// The static world's communicator is free again (its executor's progress thread ended).
pub(crate) fn release() {
    state().busy = false;
}

/// Serves tasks from `root` on `comm` until it says stop: a worker rank's life.
pub(crate) fn serve(comm: Comm, root: i32) {
    // A task's panic goes back to the client with its message, as mpi4py sends an
    // exception back: the worker prints nothing of its own.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    serve_loop(comm, root);
    std::panic::set_hook(hook);
}

fn serve_loop(comm: Comm, root: i32) {
    let mut idle = Backoff::default();
    loop {
        let (tag, message) = match comm.try_receive(Some(root), None) {
            Ok(Some((_, tag, message))) => (tag, message),
            Ok(None) => {
                idle.pause();
                continue;
            }
            Err(e) => {
                fatal(&e);
            }
        };
        idle.reset();
        match tag {
            TAG_STOP => return,
            TAG_TASK => {}
            other => {
                event!(
                    Level::WARN,
                    tag = other,
                    "flotilla-mpi: a message of unknown tag was ignored"
                );
                continue;
            }
        }
        let Some((id, entry, args)) = wire::parse_task(message) else {
            fatal("a task message too short to be one arrived");
        };
        let (kind, payload) = match catch_unwind(AssertUnwindSafe(|| {
            // SAFETY: `init`/`comm_executor` checked that every rank runs this very
            // build (equal fingerprints), and the client made `entry` with `Entry`.
            unsafe { flotilla_process::task::run(entry, &args) }
        })) {
            Ok(Ok(value)) => (Kind::Done, value),
            Ok(Err(message)) => (Kind::Failed, message.into_bytes()),
            Err(payload) => (
                Kind::Panicked,
                flotilla_core::panic_message(&*payload).into_bytes(),
            ),
        };
        drop(args);
        let answer = wire::result_message(payload, id, kind);
        if let Err(e) = comm.send(root, TAG_RESULT, &answer) {
            // Too big for one message, say: the task fails, the worker goes on.
            let answer = wire::result_message(e.into_bytes(), id, Kind::Failed);
            if let Err(e) = comm.send(root, TAG_RESULT, &answer) {
                fatal(&e);
            }
        }
    }
}

/// How a polling loop waits when nothing happened: spin (yielding the CPU, which matters
/// when ranks outnumber cores), then sleep longer and longer, up to a millisecond.
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    idle: u32,
}

impl Backoff {
    const SPINS: u32 = 200;
    const LONGEST: Duration = Duration::from_millis(1);

    /// Waits a little: yields while spinning, then sleeps.
    pub(crate) fn pause(&mut self) {
        match self.next() {
            None => std::thread::yield_now(),
            Some(nap) => std::thread::sleep(nap),
        }
    }

    /// Like [`pause`](Self::pause), but a sleep is a park: an `unpark` ends it early.
    pub(crate) fn pause_parked(&mut self) {
        match self.next() {
            None => std::thread::yield_now(),
            Some(nap) => std::thread::park_timeout(nap),
        }
    }

    /// True while the next pause only yields.
    pub(crate) fn is_spinning(&self) -> bool {
        self.idle < Self::SPINS
    }

    /// Counts a pause: `None` to yield, or how long to sleep.
    fn next(&mut self) -> Option<Duration> {
        self.idle = self.idle.saturating_add(1);
        if self.idle <= Self::SPINS {
            return None;
        }
        let shift = (self.idle - Self::SPINS).min(10);
        Some(Duration::from_micros(1u64 << shift).min(Self::LONGEST))
    }

    pub(crate) fn reset(&mut self) {
        self.idle = 0;
    }
}

/// mpi4py's `MPICommExecutor(comm, root)`: the pool over an existing communicator, for
/// MPIs without a static `mpiexec` pool mode or programs that set up MPI themselves.
///
/// Collective: every rank of `comm` calls it. On `root` it returns the executor (its
/// workers are the other ranks of `comm`); on every other rank it serves tasks until the
/// root's executor shuts down, then returns `Ok(None)`, so the same code runs on all
/// ranks:
///
/// ```no_run
/// use flotilla_mpi::mpi::traits::Communicator;
///
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// let (universe, _) =
///     flotilla_mpi::mpi::initialize_with_threading(flotilla_mpi::mpi::Threading::Serialized)
///         .unwrap();
/// let world = universe.world();
/// if let Some(pool) = flotilla_mpi::comm_executor(&world, 0).unwrap() {
///     let squares: Vec<u64> = pool.map(square, 1..=4, None).map(Result::unwrap).collect();
///     assert_eq!(squares, [1, 4, 9, 16]);
/// } // dropped: shut down, and the workers return from comm_executor
/// ```
///
/// MPI must be initialised at `MPI_THREAD_SERIALIZED` or above (the root's progress
/// thread calls MPI), and the root's program must make no MPI call of its own while the
/// executor lives. Unlike the static world's executors, this one stops its workers when
/// it shuts down.
pub fn comm_executor<C>(comm: &C, root: i32) -> Result<Option<MpiPoolExecutor>, BuildError>
where
    C: mpi::traits::Communicator,
{
    let size = comm.size();
    if root < 0 || root >= size {
        return Err(InitError::BadRoot { root, size }.into());
    }
    // SAFETY: `comm` is a live communicator of the program (the rsmpi value borrowed
    // here), and every rank makes this call, per this function's contract.
    let dup = match unsafe { Comm::duplicate(comm.as_raw()) } {
        Ok(dup) => dup,
        Err(e) => fatal(&e),
    };
    check_comm(dup, mpi::environment::threading_support(), root)?;
    if size < 2 {
        return Err(InitError::NoWorkers { size }.into());
    }
    if dup.rank() != root {
        serve(dup, root);
        dup.free();
        return Ok(None);
    }
    let workers: Vec<i32> = (0..size).filter(|&r| r != root).collect();
    MpiPoolExecutorBuilder::default()
        .start(dup, workers, true, None)
        .map(Some)
}
