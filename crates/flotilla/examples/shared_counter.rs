//! A counter shared by processes, as with Python's `multiprocessing.Value`: four
//! processes add to it, under its lock and with an atomic add.
//! Run with `cargo run --example shared_counter`.

use std::time::Duration;

use flotilla::multiprocessing::{Process, Value};

fn add_locked(counter: Value<u64>) {
    for _ in 0..1000 {
        // Python's `with counter.get_lock(): counter.value += 1`.
        let guard = counter.lock().expect("no holder died");
        guard.set(guard.get() + 1);
    }
}

fn add_atomic(counter: Value<u64>) {
    for _ in 0..1000 {
        // An integer Value also has atomic operations: no lock at all.
        counter.fetch_add(1);
    }
}

/// Starts four processes running `target` on a new counter, joins them, and returns the
/// count. Each fn item has a type of its own, hence the generic (a `fn(Value<u64>)`
/// pointer would do as well).
fn run_four<F>(target: F) -> Result<u64, Box<dyn std::error::Error + Send + Sync>>
where
    F: Fn(Value<u64>) + Copy + Send + 'static,
{
    let counter = Value::new(0u64)?;
    let workers: Vec<_> = (0..4)
        .map(|_| Process::new(target, counter.clone()).start())
        .collect::<Result<_, _>>()?;
    for w in &workers {
        w.join_timeout(Duration::from_secs(60))?;
    }
    Ok(counter.get()?)
}

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    flotilla::init();

    println!("locked: 4 processes x 1000 = {}", run_four(add_locked)?);
    println!("atomic: 4 processes x 1000 = {}", run_four(add_atomic)?);
    Ok(())
}
