//! A thread pool, as with Python's `concurrent.futures.ThreadPoolExecutor`: submit, map,
//! wait and as_completed. Run with `cargo run --example thread_pool`.

use std::time::Duration;

use flotilla::futures::{ReturnWhen, ThreadPoolExecutor, as_completed_timeout, wait};

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // Dropping the pool at the end of main waits for its tasks, like Python's `with`.
    let pool = ThreadPoolExecutor::builder().max_workers(4).build()?;

    // submit returns a Future: result with a timeout, cancel, done callbacks.
    let answer = pool.submit(|| 6 * 7)?;
    println!(
        "6 * 7 = {}",
        answer.result_timeout(Duration::from_secs(10))?
    );

    // map is lazy and ordered; each item is a Result, and it stops at the first failure.
    let lengths: Vec<usize> = pool
        .map(|word: &str| word.len(), ["flotilla", "of", "threads"])
        .collect::<Result<_, _>>()?;
    println!("lengths: {lengths:?}");

    // wait and as_completed take futures from any executor.
    let sleepers: Vec<_> = [30u64, 10, 20]
        .into_iter()
        .map(|ms| {
            pool.submit(move || {
                std::thread::sleep(Duration::from_millis(ms));
                ms
            })
        })
        .collect::<Result<_, _>>()?;
    let (done, not_done) = wait(&sleepers, ReturnWhen::FirstCompleted);
    println!(
        "first wait: {} done, {} still running",
        done.len(),
        not_done.len()
    );
    for fut in as_completed_timeout(sleepers, Duration::from_secs(10)) {
        println!("slept {} ms", fut?.result()?);
    }
    Ok(())
}
