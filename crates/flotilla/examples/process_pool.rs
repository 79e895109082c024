//! A process pool, as with Python's `ProcessPoolExecutor` and `multiprocessing.Pool`:
//! CPU-bound work in worker processes, which survives a worker that dies.
//! Run with `cargo run --example process_pool`.

use std::time::Duration;

use flotilla::futures::ProcessPoolExecutor;
use flotilla::multiprocessing::Pool;

/// A task is a plain `fn` with serde arguments, so that a spawned worker (a fresh run of
/// this same program) can find it.
fn is_prime(n: u64) -> bool {
    n >= 2
        && (2..)
            .take_while(|d| d * d <= n)
            .all(|d| !n.is_multiple_of(d))
}

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // First thing in main: a spawned worker runs its task here and never returns.
    flotilla::init();

    let executor = ProcessPoolExecutor::builder().max_workers(2).build()?;
    let fut = executor.submit(is_prime, 1_000_000_007)?;
    println!(
        "1000000007 is prime: {}",
        fut.result_timeout(Duration::from_secs(60))?
    );

    // map with a chunksize, as in Python: results in input order.
    let candidates = 1_000_000_000..1_000_000_100u64;
    let primes: Vec<u64> = executor
        .map(is_prime, candidates.clone(), 10)
        .zip(candidates)
        .filter_map(|(prime, n)| prime.ok().filter(|&p| p).map(|_| n))
        .collect();
    println!("primes just above 10^9: {primes:?}");

    // The classic Pool: apply, map, imap_unordered.
    let pool = Pool::new(2)?;
    println!("apply: {}", pool.apply(is_prime, 97)?);
    let flags = pool.map(is_prime, 0..20u64, None)?;
    println!(
        "primes below 20: {:?}",
        (0..20).filter(|&n| flags[n as usize]).collect::<Vec<_>>()
    );
    pool.close();
    pool.join()?;
    Ok(())
}
