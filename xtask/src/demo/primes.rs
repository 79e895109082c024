//! primes: `is_prime` over six large numbers, on a process pool executor of 3 and on a
//! thread pool executor of 3, with the wall time of each; the results agree.
//!
//! The work is pure computation, so threads share the machine's cores just as processes
//! do: in Rust (no GIL) both pools run in parallel, and the process pool pays only for
//! starting its workers and moving the numbers.

use std::time::Instant;

use anyhow::ensure;
use flotilla::futures::{ProcessPoolExecutor, ThreadPoolExecutor};

use super::Clock;

const PRIMES: [u64; 6] = [
    112_272_535_095_293,
    112_582_705_942_171,
    112_272_535_095_293,
    115_280_095_190_773,
    115_797_848_077_099,
    1_099_726_899_285_419,
];

fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    if n.is_multiple_of(2) {
        return n == 2;
    }
    let limit = (n as f64).sqrt() as u64;
    (3..=limit).step_by(2).all(|d| !n.is_multiple_of(d))
}

pub(crate) fn run(clock: &Clock) -> anyhow::Result<()> {
    let started = Instant::now();
    let by_processes: Vec<bool> = {
        let pool = ProcessPoolExecutor::builder().max_workers(3).build()?;
        pool.map(is_prime, PRIMES, 1).collect::<Result<_, _>>()?
    };
    let processes = started.elapsed();
    clock.say(format!(
        "process pool of 3: {by_processes:?} in {:.2} s",
        processes.as_secs_f64()
    ));

    let started = Instant::now();
    let by_threads: Vec<bool> = {
        let pool = ThreadPoolExecutor::builder().max_workers(3).build()?;
        pool.map(is_prime, PRIMES).collect::<Result<_, _>>()?
    };
    let threads = started.elapsed();
    clock.say(format!(
        "thread pool of 3:  {by_threads:?} in {:.2} s",
        threads.as_secs_f64()
    ));

    ensure!(by_processes == by_threads, "the two pools disagree");
    ensure!(
        by_processes == [true, true, true, true, true, false],
        "wrong answers: {by_processes:?}"
    );
    Ok(())
}
