//! The MPI executor under real `mpiexec` runs.
//!
//! Run without arguments (by `cargo test -p flotilla-mpi --features mpi`) this binary is
//! the driver: it launches itself under `mpiexec -n 3` and `-n 5` (and a few other ways),
//! each run bounded by a timeout that kills the job, and checks what rank 0 reports.
//! Launched with `--scenario NAME` it is the MPI program itself.
//!
//! A machine without `mpiexec` fails every case, saying what to install.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use flotilla_core::{ReturnWhen, TaskError, as_completed_timeout, wait_timeout};
use flotilla_mpi::{InitError, MpiPoolExecutor};
use serde::{Deserialize, Serialize};

const TIMEOUT: Duration = Duration::from_secs(60);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--scenario") {
        let name = args.get(at + 1).map(String::as_str).unwrap_or("");
        std::process::exit(program(name));
    }
    driver();
}

// ---------------------------------------------------------------------------------------
// The driver.

struct Run {
    status: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `command` with a timeout; kills its process group when it runs over.
fn run(mut command: Command) -> Result<Run, String> {
    use std::os::unix::process::CommandExt;
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = command
        .spawn()
        .map_err(|e| format!("could not start {command:?}: {e}"))?;
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if start.elapsed() > TIMEOUT {
            // SAFETY: killpg with the child's own process group (process_group(0)).
            unsafe { libc::killpg(child.id() as i32, libc::SIGKILL) };
            let _ = child.wait();
            return Err(format!(
                "{command:?} did not finish within {TIMEOUT:?} (killed)\nstdout:\n{}\nstderr:\n{}",
                out.join().unwrap_or_default(),
                err.join().unwrap_or_default()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ok(Run {
        status: status.code(),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

fn mpiexec(n: usize, scenario: &str) -> Command {
    let mut command = Command::new("mpiexec");
    command
        .args(["-n", &n.to_string()])
        .arg(std::env::current_exe().unwrap())
        .args(["--scenario", scenario]);
    command
}

fn have_mpiexec() -> Result<(), String> {
    match Command::new("mpiexec").arg("--version").output() {
        Ok(_) => Ok(()),
        Err(e) => Err(format!(
            "mpiexec cannot be run ({e}): install MPI, e.g. `apt-get install mpich libmpich-dev \
             libclang-dev` on Debian"
        )),
    }
}

fn expect_all_ok(n: usize, scenario: &str) -> Result<(), String> {
    have_mpiexec()?;
    let run = run(mpiexec(n, scenario))?;
    let done = format!("ALL OK {scenario} size={n}");
    if run.status == Some(0) && run.stdout.lines().any(|l| l == done) {
        Ok(())
    } else {
        Err(format!(
            "mpiexec -n {n} --scenario {scenario}: status {:?}\nstdout:\n{}\nstderr:\n{}",
            run.status, run.stdout, run.stderr
        ))
    }
}

fn driver() {
    type Case = (&'static str, fn() -> Result<(), String>);
    let cases: &[Case] = &[
        ("mpiexec_n3_all_scenarios", || expect_all_ok(3, "all")),
        ("mpiexec_n5_all_scenarios_after_init_if_launched", || {
            expect_all_ok(5, "all-auto")
        }),
        ("mpiexec_n3_comm_executor", || expect_all_ok(3, "comm")),
        ("mpiexec_n5_comm_executor", || expect_all_ok(5, "comm")),
        ("a_dead_rank_ends_the_job", || {
            have_mpiexec()?;
            let run = run(mpiexec(3, "die"))?;
            if run.status != Some(0) && !run.stdout.contains("UNEXPECTED") {
                Ok(())
            } else {
                Err(format!(
                    "a rank's death did not end the job with a failure: status {:?}\n{}\n{}",
                    run.status, run.stdout, run.stderr
                ))
            }
        }),
        ("not_launched_by_mpiexec_is_a_clear_error", || {
            have_mpiexec()?;
            let mut command = Command::new(std::env::current_exe().unwrap());
            command.args(["--scenario", "all-auto"]);
            for var in ["PMI_RANK", "PMI_SIZE", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE"] {
                command.env_remove(var);
            }
            let run = run(command)?;
            if run.status == Some(2) && run.stderr.contains("mpiexec -n N") {
                Ok(())
            } else {
                Err(format!(
                    "status {:?}\nstdout:\n{}\nstderr:\n{}",
                    run.status, run.stdout, run.stderr
                ))
            }
        }),
    ];
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let (mut passed, mut failed) = (0, 0);
    for (name, case) in cases {
        if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        match case() {
            Ok(()) => {
                println!("test {name} ... ok");
                passed += 1;
            }
            Err(why) => {
                println!("test {name} ... FAILED\n{why}");
                failed += 1;
            }
        }
    }
    println!("\n{passed} passed, {failed} failed");
    if failed > 0 {
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------------------------------
// The MPI program.

fn program(scenario: &str) -> i32 {
    if scenario == "comm" {
        return comm_program();
    }
    if scenario == "all-auto" {
        // What `flotilla::init()` does: the workers serve inside this call; then `init`
        // on rank 0 gives the same world again.
        flotilla_mpi::init_if_launched();
    }
    let world = match flotilla_mpi::init() {
        Ok(world) => world,
        Err(e @ InitError::NoWorkers { .. }) => {
            eprintln!("{e}");
            return 2;
        }
        Err(e) => {
            eprintln!("{e}");
            return 3;
        }
    };
    // Only rank 0 gets here.
    let size = world.size();
    let outcome = match scenario {
        "all" | "all-auto" => all(),
        "die" => die_scenario(),
        other => Err(format!("no scenario {other:?}")),
    };
    match outcome {
        Ok(()) => {
            println!("ALL OK {scenario} size={size}");
            0
        }
        Err(why) => {
            println!("FAILED {scenario}: {why}");
            1
        }
    }
}

fn check(ok: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if ok { Ok(()) } else { Err(what()) }
}

fn square(x: u64) -> u64 {
    x * x
}

fn add(a: u64, b: u64) -> u64 {
    a + b
}

fn sum_pair((a, b): (u64, u64)) -> u64 {
    a + b
}

fn describe(name: String, n: u8, flag: bool) -> String {
    format!("{name}:{n}:{flag}")
}

fn rank_of_worker(_: ()) -> i32 {
    // The world rank of the process running the task.
    let mut rank = -1;
    // SAFETY: MPI is initialised on every worker rank; MPI writes one int.
    unsafe {
        flotilla_mpi::mpi::ffi::MPI_Comm_rank(flotilla_mpi::mpi::ffi::RSMPI_COMM_WORLD, &mut rank)
    };
    rank
}

fn boom(x: u32) -> u32 {
    if x == 13 {
        panic!("boom at {x}");
    }
    x
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct NotANumber(String);

impl std::fmt::Display for NotANumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} is not a number", self.0)
    }
}

impl std::error::Error for NotANumber {}

fn parse(s: String) -> Result<u8, NotANumber> {
    s.parse().map_err(|_| NotANumber(s))
}

fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn reverse(mut bytes: Vec<u8>) -> Vec<u8> {
    bytes.reverse();
    bytes
}

fn inc(x: u32) -> u32 {
    x + 1
}

static T0: std::sync::LazyLock<Instant> = std::sync::LazyLock::new(Instant::now);

fn all() -> Result<(), String> {
    let _ = *T0;
    let pool = MpiPoolExecutor::builder()
        .build()
        .map_err(|e| e.to_string())?;
    let workers = pool.max_workers();

    // submit and result; every task runs on a worker rank, and every worker is used.
    let f = pool.submit(square, 7).map_err(|e| e.to_string())?;
    check(f.result_timeout(TIMEOUT).ok() == Some(49), || {
        format!("square(7): {:?}", f.result())
    })?;
    let ranks: Vec<_> = (0..50)
        .map(|_| pool.submit(rank_of_worker, ()).unwrap())
        .collect();
    let mut seen: Vec<i32> = ranks
        .iter()
        .map(|f| f.result_timeout(TIMEOUT).unwrap())
        .collect();
    seen.sort();
    seen.dedup();
    check(!seen.contains(&0) && seen.len() == workers, || {
        format!("tasks ran on ranks {seen:?}, with {workers} workers")
    })?;
    println!("{:?} ok submit", T0.elapsed());

    // Several arguments, spread from a tuple; one argument that is a tuple, as before.
    let two = pool.submit(add, (2, 3)).map_err(|e| e.to_string())?;
    let pair = pool.submit(sum_pair, (4, 5)).map_err(|e| e.to_string())?;
    let three = pool
        .submit(describe, ("x".to_string(), 7, true))
        .map_err(|e| e.to_string())?;
    let got = (
        two.result_timeout(TIMEOUT).map_err(|e| e.to_string())?,
        pair.result_timeout(TIMEOUT).map_err(|e| e.to_string())?,
        three.result_timeout(TIMEOUT).map_err(|e| e.to_string())?,
    );
    check(got == (5, 9, "x:7:true".to_string()), || {
        format!("spread submit: {got:?}")
    })?;
    let sums: Vec<u64> = pool
        .starmap(add, (0..100u64).map(|x| (x, 2 * x)), 7)
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    check(
        sums == (0..100u64).map(|x| 3 * x).collect::<Vec<_>>(),
        || format!("starmap: {sums:?}"),
    )?;
    println!(
        "{:?} ok submit with several arguments, starmap",
        T0.elapsed()
    );

    // map: ordered, chunked, lazy.
    let squares: Vec<u64> = pool
        .map(square, 0..1000u64, 7)
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    check(
        squares == (0..1000u64).map(|x| x * x).collect::<Vec<_>>(),
        || "map order".into(),
    )?;
    let one: Vec<u64> = pool
        .map(square, 0..10u64, None)
        .map(Result::unwrap)
        .collect();
    check(one == (0..10u64).map(|x| x * x).collect::<Vec<_>>(), || {
        "map chunk 1".into()
    })?;
    println!("{:?} ok map", T0.elapsed());

    // as_completed and wait.
    let futures: Vec<_> = (0..20u64)
        .map(|x| pool.submit(square, x).unwrap())
        .collect();
    let mut got: Vec<u64> = as_completed_timeout(futures.iter(), TIMEOUT)
        .map(|f| f.unwrap().result().unwrap())
        .collect();
    got.sort();
    check(got == (0..20u64).map(|x| x * x).collect::<Vec<_>>(), || {
        format!("as_completed {got:?}")
    })?;
    let naps: Vec<_> = (0..6).map(|_| pool.submit(nap, 10).unwrap()).collect();
    let (done, not_done) = wait_timeout(naps.iter(), ReturnWhen::AllCompleted, TIMEOUT);
    check(done.len() == 6 && not_done.is_empty(), || "wait".into())?;
    println!("{:?} ok as_completed", T0.elapsed());

    // a failing task and a panicking one.
    let err = pool
        .try_submit(parse, "x".into())
        .unwrap()
        .result_timeout(TIMEOUT)
        .unwrap_err();
    check(err.downcast_ref() == Some(&NotANumber("x".into())), || {
        format!("try_submit: {err:?}")
    })?;
    let ok = pool
        .try_submit(parse, "7".into())
        .unwrap()
        .result_timeout(TIMEOUT);
    check(ok.as_ref().ok() == Some(&7), || {
        format!("try_submit ok: {ok:?}")
    })?;
    let panicked = pool.submit(boom, 13).unwrap().result_timeout(TIMEOUT);
    check(
        matches!(&panicked, Err(TaskError::Panicked { message }) if message.contains("boom at 13")),
        || format!("panic: {panicked:?}"),
    )?;
    // map stops at the first failure: the chunk [12, 13, 14] fails whole.
    let out: Vec<_> = pool.map(boom, 0..40u32, 3).collect();
    check(
        out.len() == 13 && out[..12].iter().all(Result::is_ok) && out[12].is_err(),
        || format!("map with a failure: {} results", out.len()),
    )?;
    // the workers survived it.
    check(
        pool.submit(square, 3).unwrap().result_timeout(TIMEOUT).ok() == Some(9),
        || "after panic".into(),
    )?;
    println!("{:?} ok failures", T0.elapsed());

    // the async bridge: an MPI future awaited on a runtime.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| e.to_string())?;
    let future = pool.submit(square, 12).unwrap();
    let value = runtime.block_on(async move { future.await });
    check(value.as_ref().ok() == Some(&144), || {
        format!("await: {value:?}")
    })?;
    println!("{:?} ok async", T0.elapsed());

    // 10,000 small tasks.
    let many: Vec<_> = (0..10_000u32)
        .map(|x| pool.submit(inc, x).unwrap())
        .collect();
    for (x, f) in many.iter().enumerate() {
        let got = f.result_timeout(TIMEOUT);
        check(got.as_ref().ok() == Some(&(x as u32 + 1)), || {
            format!("task {x}: {got:?}")
        })?;
    }
    println!("{:?} ok 10000 tasks", T0.elapsed());

    // a 16 MiB argument and result.
    let big: Vec<u8> = (0..16 << 20).map(|i: u32| (i % 251) as u8).collect();
    let mut expected = big.clone();
    expected.reverse();
    let back = pool
        .submit(reverse, big)
        .unwrap()
        .into_result_timeout(TIMEOUT);
    check(back.as_ref().ok() == Some(&expected), || {
        "16 MiB round trip".into()
    })?;
    println!("{:?} ok 16 MiB", T0.elapsed());

    // shutdown: the pool goes, the workers stay for the next executor.
    pool.shutdown(true, false);
    check(
        matches!(pool.submit(square, 1), Err(TaskError::ShutDown)),
        || "submit after shutdown".into(),
    )?;
    drop(pool);

    // shutdown with queued work, cancelling what has not been sent.
    let pool = MpiPoolExecutor::builder()
        .pipeline(1)
        .build()
        .map_err(|e| e.to_string())?;
    let second = MpiPoolExecutor::builder().build();
    check(
        matches!(second, Err(flotilla_mpi::BuildError::Busy)),
        || format!("a second executor at once: {second:?}"),
    )?;
    let queued: Vec<_> = (0..40).map(|_| pool.submit(nap, 20).unwrap()).collect();
    let start = Instant::now();
    while !queued[0].running() && !queued[0].done() && start.elapsed() < TIMEOUT {
        std::thread::sleep(Duration::from_millis(1));
    }
    pool.shutdown(true, true);
    let finished = queued
        .iter()
        .filter(|f| f.result_timeout(Duration::ZERO).ok() == Some(20))
        .count();
    let cancelled = queued.iter().filter(|f| f.cancelled()).count();
    check(
        finished + cancelled == 40 && cancelled > 0 && finished >= 1,
        || format!("shutdown(cancel_futures): {finished} finished, {cancelled} cancelled"),
    )?;
    drop(pool);
    // and without cancelling, everything queued runs.
    let pool = MpiPoolExecutor::builder()
        .build()
        .map_err(|e| e.to_string())?;
    let queued: Vec<_> = (0..20).map(|_| pool.submit(nap, 5).unwrap()).collect();
    let slow = pool.submit(nap, 300).unwrap();
    check(
        !pool.shutdown_timeout(Duration::from_millis(1), false),
        || "shutdown_timeout returned true with work left".into(),
    )?;
    check(pool.shutdown_timeout(TIMEOUT, false), || {
        "shutdown_timeout timed out".into()
    })?;
    check(
        slow.result_timeout(Duration::ZERO).ok() == Some(300),
        || "the slow task".into(),
    )?;
    check(
        queued
            .iter()
            .all(|f| f.result_timeout(Duration::ZERO).ok() == Some(5)),
        || "shutdown(wait) left work".into(),
    )?;
    println!("{:?} ok shutdown", T0.elapsed());

    // max_workers uses fewer ranks.
    let pool = MpiPoolExecutor::builder()
        .max_workers(1)
        .build()
        .map_err(|e| e.to_string())?;
    let ranks: Vec<i32> = (0..10)
        .map(|_| {
            pool.submit(rank_of_worker, ())
                .unwrap()
                .result_timeout(TIMEOUT)
                .unwrap()
        })
        .collect();
    check(ranks.iter().all(|&r| r == 1), || {
        format!("max_workers(1) ran on {ranks:?}")
    })?;
    // an executor left alive at exit is shut down by the exit hook.
    std::mem::forget(pool);
    Ok(())
}

fn die(_: ()) {
    std::process::exit(3);
}

fn die_scenario() -> Result<(), String> {
    let pool = MpiPoolExecutor::builder()
        .build()
        .map_err(|e| e.to_string())?;
    let f = pool.submit(die, ()).unwrap();
    // The job should end before this returns.
    let outcome = f.result_timeout(TIMEOUT);
    println!("UNEXPECTED: the dead rank's future gave {outcome:?}");
    Err("the job survived a dead rank".into())
}

fn comm_program() -> i32 {
    use flotilla_mpi::mpi::traits::{Communicator, CommunicatorCollectives};
    let Some((universe, _)) =
        flotilla_mpi::mpi::initialize_with_threading(flotilla_mpi::mpi::Threading::Serialized)
    else {
        eprintln!("MPI was initialised already");
        return 3;
    };
    let world = universe.world();
    let size = world.size();
    // The last rank is the root: any rank may be.
    let root = size - 1;
    let pool = match flotilla_mpi::comm_executor(&world, root) {
        Ok(Some(pool)) => pool,
        Ok(None) => {
            // A worker: it served until the root's executor shut down; MPI is the
            // program's own again.
            world.barrier();
            return 0;
        }
        Err(e) => {
            eprintln!("{e}");
            return 3;
        }
    };
    let ranks: Vec<i32> = (0..30)
        .map(|_| pool.submit(rank_of_worker, ()).unwrap())
        .map(|f| f.result_timeout(TIMEOUT).unwrap())
        .collect();
    let squares: Vec<u64> = pool.map(square, 0..100u64, 9).map(Result::unwrap).collect();
    drop(pool);
    // MPI is the program's own again: a collective with the workers, which returned.
    let ok = !ranks.contains(&root) && squares == (0..100u64).map(|x| x * x).collect::<Vec<_>>();
    world.barrier();
    if ok {
        println!("ALL OK comm size={size}");
        0
    } else {
        println!("FAILED comm: ranks {ranks:?}");
        1
    }
}
