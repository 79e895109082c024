//! A process-shared barrier's action and default timeout (Python's
//! `multiprocessing.Barrier(parties, action, timeout)`): the action runs once per round in
//! whichever process arrives last, under every start method; a panicking action breaks
//! the round for the others and goes on in its process; a process that dies in the
//! action breaks the barrier; the default timeout holds in every process.

use std::io::Write;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use flotilla_ipc::{Barrier, BarrierError};
use flotilla_process::{StartMethod, get_context};

const LONG: Duration = Duration::from_secs(120);
const ROUNDS: usize = 4;

/// Where this process's barrier action writes: each participant sets it before it waits
/// (the action itself carries no data, as it runs in whichever process comes last).
static LOG: OnceLock<PathBuf> = OnceLock::new();

/// The action: one line per round, naming the process that ran it.
fn log_round() {
    let path = LOG.get().expect("every participant sets the log first");
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap();
    writeln!(file, "{}", std::process::id()).unwrap();
}

/// Each round's arrival index, and this process's id.
fn participate((barrier, log): (Barrier, PathBuf)) -> (Vec<usize>, u32) {
    LOG.get_or_init(|| log);
    let indices = (0..ROUNDS)
        .map(|_| barrier.wait_timeout(LONG).expect("every round passes"))
        .collect();
    (indices, std::process::id())
}

#[test]
fn the_action_runs_once_per_round_in_the_last_arrival_under_every_start_method() {
    let dir = std::env::temp_dir().join(format!("flotilla-barrier-action-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("rounds");
    let _ = std::fs::remove_file(&log);

    let barrier = Barrier::builder(4).action(log_round).build().unwrap();
    let children: Vec<_> = StartMethod::ALL
        .into_iter()
        .map(|method| {
            let builder =
                get_context(Some(method)).process(participate, (barrier.clone(), log.clone()));
            // SAFETY: under fork the child only uses the barrier (atomics, futexes and a
            // robust mutex) and writes a file; it takes no lock another thread could hold.
            unsafe { builder.start_unchecked() }.unwrap()
        })
        .collect();
    let mut seen = vec![participate((barrier.clone(), log.clone()))];
    for child in children {
        seen.push(child.join_timeout(LONG).unwrap());
    }

    let lines = std::fs::read_to_string(&log).unwrap();
    let runners: Vec<u32> = lines.lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(runners.len(), ROUNDS, "one action per round: {lines:?}");
    for (round, runner) in runners.iter().enumerate() {
        let last = seen
            .iter()
            .find(|(indices, _)| indices[round] == 3)
            .expect("someone arrived last");
        assert_eq!(
            *runner, last.1,
            "round {round}: the last arrival ran the action"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

fn refuse() {
    panic!("the action refuses this round");
}

fn arrive_last(barrier: Barrier) -> usize {
    while barrier.n_waiting() < 1 {
        std::thread::sleep(Duration::from_millis(2));
    }
    barrier.wait_timeout(LONG).unwrap()
}

#[test]
fn a_panicking_action_breaks_the_round_and_the_panic_goes_on_in_its_process() {
    let barrier = Barrier::builder(2).action(refuse).build().unwrap();
    let child = get_context(Some(StartMethod::Spawn))
        .process(arrive_last, barrier.clone())
        .start()
        .unwrap();
    assert!(matches!(
        barrier.wait_timeout(LONG),
        Err(BarrierError::Broken)
    ));
    let failure = child.join_timeout(LONG).unwrap_err().to_string();
    assert!(
        failure.contains("the action refuses this round"),
        "{failure}"
    );
    assert!(barrier.broken());
    // Reset, and the same action refuses again: it is the barrier's, not the child's.
    barrier.reset().unwrap();
    assert!(!barrier.broken());
}

fn die() {
    // SAFETY: raise only sends a signal to this process.
    unsafe { libc::raise(libc::SIGKILL) };
}

#[test]
fn a_process_that_dies_in_the_action_breaks_the_barrier_for_the_others() {
    let barrier = Barrier::builder(2).action(die).build().unwrap();
    let child = get_context(Some(StartMethod::ForkServer))
        .process(arrive_last, barrier.clone())
        .start()
        .unwrap();
    // The action's process dies holding the barrier's lock: this wait's timeout finds the
    // lock owner-died and the barrier broken.
    assert!(matches!(
        barrier.wait_timeout(Duration::from_secs(2)),
        Err(BarrierError::Broken)
    ));
    assert!(child.join_timeout(LONG).is_err(), "the child was killed");
    assert!(barrier.broken());
    barrier.reset().unwrap();
    assert!(!barrier.broken());
}

fn wait_default(barrier: Barrier) -> Result<usize, String> {
    barrier.wait().map_err(|e| e.to_string())
}

#[test]
fn the_default_timeout_holds_in_every_process() {
    let barrier = Barrier::builder(3)
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    assert_eq!(barrier.timeout(), Some(Duration::from_millis(200)));
    let child = get_context(Some(StartMethod::Spawn))
        .process(wait_default, barrier.clone())
        .start()
        .unwrap();
    let start = Instant::now();
    // Three parties, two come: both waits time out by the default and break the barrier.
    assert!(matches!(barrier.wait(), Err(BarrierError::Broken)));
    assert!(start.elapsed() < LONG);
    let theirs = child.join_timeout(LONG).unwrap().unwrap_err();
    assert!(theirs.contains("broken"), "{theirs}");
    // An explicit timeout still wins over the default.
    barrier.reset().unwrap();
    assert!(matches!(
        barrier.wait_timeout(Duration::ZERO),
        Err(BarrierError::Broken)
    ));
}
