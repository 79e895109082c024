//! The primes scenario on `MpiPoolExecutor`: `is_prime` over six large numbers, each on
//! a worker rank. Run it under MPI (`cargo xtask demo mpi-primes` does):
//!
//! ```text
//! cargo build -p flotilla-mpi --features mpi --example mpi_primes
//! mpiexec -n 3 target/debug/examples/mpi_primes
//! ```

use std::time::Instant;

use flotilla_core::as_completed;
use flotilla_mpi::MpiPoolExecutor;

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

/// `is_prime`, and the pid of the worker rank that answered.
fn is_prime_where(n: u64) -> (u64, bool, u32) {
    (n, is_prime(n), std::process::id())
}

fn main() {
    // Ranks 1..N-1 serve tasks inside this call and never return.
    let world = match flotilla_mpi::init() {
        Ok(world) => world,
        Err(e) => {
            eprintln!("mpi_primes: {e}");
            std::process::exit(2);
        }
    };
    println!(
        "rank 0 (pid {}) is the client; {} worker rank(s)",
        std::process::id(),
        world.workers()
    );
    let pool = MpiPoolExecutor::builder()
        .build()
        .expect("the MPI executor");

    let started = Instant::now();
    let primes: Vec<bool> = pool
        .map(is_prime, PRIMES, 1)
        .collect::<Result<_, _>>()
        .expect("map");
    println!(
        "map in input order: {primes:?} in {:.2} s",
        started.elapsed().as_secs_f64()
    );

    let futures: Vec<_> = PRIMES
        .iter()
        .map(|&n| pool.submit(is_prime_where, n).expect("submit"))
        .collect();
    for future in as_completed(futures.iter()) {
        let (n, prime, pid) = future.expect("as_completed").result().expect("task");
        println!("  {n} is prime: {prime} (worker pid {pid})");
    }

    if primes == [true, true, true, true, true, false] {
        println!("mpi-primes: OK");
    } else {
        eprintln!("mpi-primes: wrong answers {primes:?}");
        std::process::exit(1);
    }
}
