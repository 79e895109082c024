//! Process-shared barriers: processes of every start method meet round after round with
//! distinct arrival indices; a participant SIGKILLed before it arrives makes the others
//! time out cleanly and the barrier report broken, never hang; reset makes it usable.

use std::time::Duration;

use flotilla_ipc::{Barrier, BarrierError};
use flotilla_process::{StartMethod, get_context};

const LONG: Duration = Duration::from_secs(120);
const ROUNDS: usize = 5;

fn meet(barrier: Barrier) -> Vec<usize> {
    (0..ROUNDS)
        .map(|_| barrier.wait_timeout(LONG).expect("every round passes"))
        .collect()
}

#[test]
fn processes_of_every_start_method_meet_with_distinct_indices() {
    let barrier = Barrier::new(4).unwrap();
    let children: Vec<_> = StartMethod::ALL
        .into_iter()
        .map(|method| {
            let builder = get_context(Some(method)).process(meet, barrier.clone());
            // SAFETY: under fork the child only uses the barrier (atomics, futexes and
            // a robust mutex nobody holds); it takes no lock another thread could hold.
            unsafe { builder.start_unchecked() }.unwrap()
        })
        .collect();
    let mut rounds = vec![meet(barrier.clone())];
    for child in children {
        rounds.push(child.join_timeout(LONG).unwrap());
    }
    for round in 0..ROUNDS {
        let mut indices: Vec<usize> = rounds.iter().map(|r| r[round]).collect();
        indices.sort_unstable();
        assert_eq!(indices, [0, 1, 2, 3], "round {round}");
    }
    assert_eq!(barrier.n_waiting(), 0);
    assert!(!barrier.broken());
}

fn never_arrive(_barrier: Barrier) {
    std::thread::sleep(Duration::from_secs(600));
}

fn wait_long(barrier: Barrier) -> Result<usize, String> {
    barrier.wait_timeout(LONG).map_err(|e| e.to_string())
}

#[test]
fn a_participant_killed_before_arriving_breaks_the_barrier_by_timeout() {
    for method in [StartMethod::Spawn, StartMethod::ForkServer] {
        let barrier = Barrier::new(3).unwrap();
        let ctx = get_context(Some(method));
        let doomed = ctx.process(never_arrive, barrier.clone()).start().unwrap();
        let patient = ctx.process(wait_long, barrier.clone()).start().unwrap();
        while barrier.n_waiting() < 1 {
            std::thread::sleep(Duration::from_millis(5));
        }
        doomed.kill().unwrap();
        assert!(doomed.join_timeout(LONG).is_err(), "killed");
        // This wait times out, which breaks the barrier for the patient child too.
        assert!(matches!(
            barrier.wait_timeout(Duration::from_millis(100)),
            Err(BarrierError::Broken)
        ));
        let theirs = patient.join_timeout(LONG).unwrap().unwrap_err();
        assert!(theirs.contains("broken"), "{method}: {theirs}");
        assert!(barrier.broken(), "{method}");
        assert!(matches!(
            barrier.wait_timeout(LONG),
            Err(BarrierError::Broken)
        ));

        // Reset: usable again by the living.
        barrier.reset().unwrap();
        let others: Vec<_> = (0..2)
            .map(|_| ctx.process(wait_long, barrier.clone()).start().unwrap())
            .collect();
        let mut indices = vec![barrier.wait_timeout(LONG).unwrap()];
        for other in others {
            indices.push(other.join_timeout(LONG).unwrap().unwrap());
        }
        indices.sort_unstable();
        assert_eq!(indices, [0, 1, 2], "{method}");
    }
}

fn abort_it(barrier: Barrier) {
    barrier.abort().unwrap();
}

#[test]
fn an_abort_in_another_process_wakes_the_waiters_with_broken() {
    let barrier = Barrier::new(2).unwrap();
    let child = get_context(Some(StartMethod::ForkServer))
        .process(abort_it, barrier.clone())
        .start()
        .unwrap();
    assert!(matches!(
        barrier.wait_timeout(LONG),
        Err(BarrierError::Broken)
    ));
    child.join_timeout(LONG).unwrap();
    assert!(barrier.broken());
}

fn meet_rounds((barrier, rounds): (Barrier, usize)) -> Vec<usize> {
    (0..rounds)
        .map(|_| barrier.wait_timeout(LONG).expect("every round passes"))
        .collect()
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(8))]

    /// For any number of parties and rounds, each round hands out every index in
    /// `0..parties` exactly once.
    #[test]
    fn every_round_hands_out_each_index_once(parties in 2usize..5, rounds in 1usize..6, spawn: bool) {
        let method = if spawn { StartMethod::Spawn } else { StartMethod::ForkServer };
        let barrier = Barrier::new(parties).unwrap();
        let ctx = get_context(Some(method));
        let children: Vec<_> = (1..parties)
            .map(|_| ctx.process(meet_rounds, (barrier.clone(), rounds)).start().unwrap())
            .collect();
        let mut seen = vec![meet_rounds((barrier.clone(), rounds))];
        for child in children {
            seen.push(child.join_timeout(LONG).unwrap());
        }
        for round in 0..rounds {
            let mut indices: Vec<usize> = seen.iter().map(|s| s[round]).collect();
            indices.sort_unstable();
            proptest::prop_assert_eq!(indices, (0..parties).collect::<Vec<_>>());
        }
        proptest::prop_assert!(!barrier.broken());
    }
}
