//! The bare crossbeam-channel pool: the least a thread pool can be (fixed threads taking
//! boxed closures from one unbounded channel), as the floor under every real executor.

use std::thread::JoinHandle;

use anyhow::Context;
use crossbeam_channel::Sender;

type Job = Box<dyn FnOnce() + Send>;

/// A fixed set of threads running the closures sent to them, in arrival order. No
/// futures, no cancellation, no panic handling: a panicking job kills its thread.
pub(crate) struct CrossbeamPool {
    jobs: Option<Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
}

impl CrossbeamPool {
    /// Starts `threads` worker threads.
    pub(crate) fn new(threads: usize) -> anyhow::Result<Self> {
        let (jobs, queue) = crossbeam_channel::unbounded::<Job>();
        let workers = (0..threads)
            .map(|i| {
                let queue = queue.clone();
                std::thread::Builder::new()
                    .name(format!("crossbeam-pool-{i}"))
                    .spawn(move || queue.iter().for_each(|job| job()))
                    .context("cannot start a crossbeam pool thread")
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(CrossbeamPool {
            jobs: Some(jobs),
            workers,
        })
    }

    /// Queues `job` for the next free thread.
    pub(crate) fn execute(&self, job: impl FnOnce() + Send + 'static) {
        self.jobs
            .as_ref()
            .expect("the sender lives until drop")
            .send(Box::new(job))
            .expect("the workers live until drop");
    }
}

impl Drop for CrossbeamPool {
    /// Closes the queue, lets the workers finish what is queued, and joins them.
    fn drop(&mut self) {
        drop(self.jobs.take());
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}
