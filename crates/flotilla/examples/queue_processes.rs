//! A queue between processes, as with Python's `multiprocessing.Queue`: producers and a
//! consumer in separate processes, the queue passed as a plain argument.
//! Run with `cargo run --example queue_processes`.

use std::time::Duration;

use flotilla::multiprocessing::{Process, Queue};

fn produce((id, q): (u32, Queue<(u32, u64)>)) {
    for i in 0..5 {
        q.put((id, i * i)).expect("the queue is open");
    }
}

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    flotilla::init();

    let q = Queue::new()?;
    let producers: Vec<_> = (0..3)
        .map(|id| Process::new(produce, (id, q.clone())).start())
        .collect::<Result<_, _>>()?;
    // Unlike Python's, flotilla's queue has no feeder thread: a producer that put its
    // items and exited can be joined before anyone reads them.
    for p in &producers {
        p.join_timeout(Duration::from_secs(60))?;
    }
    for _ in 0..15 {
        let (id, square) = q.get_timeout(Duration::from_secs(10))?;
        println!("producer {id} sent {square}");
    }
    Ok(())
}
