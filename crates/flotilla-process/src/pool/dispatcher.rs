//! The manager thread: starts the workers, hands them tasks, reads their answers,
//! completes the futures, and replaces the workers that end.
//!
//! It never blocks on one worker. Its ends of the workers' connections are
//! non-blocking: one `poll` waits for all of them (readable, and writable while a frame
//! is half sent) and for the submitters' wake-ups; each worker's connection keeps the
//! frame being received, and a [`FrameWriter`] the one being sent, so a frame that
//! arrives or leaves in pieces (a worker stopped halfway through sending a large result,
//! or not reading a large task) waits there while the other workers go on. Any size of argument or result may therefore be in
//! any worker's pipeline: none is held back for an idle worker.
//!
//! It works in batches: one `poll` reports every worker with answers, one read takes the
//! answers that arrived together, and the tasks it hands a worker at once go in one
//! frame (see `worker`), in one write. A worker whose tasks prove short gets a deeper
//! pipeline (up to [`DEEP`] small tasks, about [`BUDGET`] of work), refilled when it is
//! half empty, so that the tasks go in batches while it never runs dry.
//!
//! A worker whose connection ends is out of the dispatch at once (the tasks it had not
//! started go back to the queue); the manager learns how it ended from its exit, which
//! it watches beside the connections, so a worker that closes its connection and then
//! hangs holds up nothing but its own task (killed after [`HANG_GRACE`]).

use std::collections::VecDeque;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use flotilla_core::{FutureId, TaskError};
use flotilla_ipc::handle::Fd;
use flotilla_ipc::{Connection, FrameWriter, pipe};

use crate::fds::Internal;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::claims::{Claims, Seen, next_generation};
use super::worker::{
    BATCH_BYTES, BATCHED, Response, WorkerArgs, batch_request, request_frame, seal_batch,
    worker_main,
};
use super::{Canceller, Job, PIPELINE, Shared, WorkerDeath};
use crate::context::Context;
use crate::error::Error;
use crate::process::Process;

/// Consecutive failed worker starts (with no task answered in between) after which
/// the pool is broken. A worker fails to start when it cannot be started, or ends
/// before it has run a task (its initializer exited or was killed, say).
pub(super) const START_ATTEMPTS: u32 = 5;

/// The pause after the first failed start; it doubles with each further one in a row,
/// up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// The most small tasks in flight on one worker whose tasks are short.
pub(super) const DEEP: usize = 16;

/// About how much work, by the time its recent tasks took, a worker's pipeline holds
/// (within [`PIPELINE`]..=[`DEEP`] tasks): enough to batch tasks of a few microseconds,
/// little enough that a slow task holds few others behind it.
pub(super) const BUDGET: Duration = Duration::from_millis(1);

/// How long a worker that closed its connection has to end before it is killed.
pub(super) const HANG_GRACE: Duration = Duration::from_secs(10);

/// How many times the manager looks for answers, yielding the processor in between,
/// before it sleeps in `poll` while a worker runs a task.
const YIELDS: u32 = 20;

/// How often an ended worker whose exit cannot be watched is looked at.
const REAP_EVERY: Duration = Duration::from_millis(20);

/// What waits to be written to a worker.
enum Out {
    /// One request, with its descriptors.
    Single {
        frame: Vec<u8>,
        fds: Vec<OwnedFd>,
        /// The task it carries.
        task: FutureId,
    },
    /// Small requests without descriptors, going in one frame (not sealed yet).
    Batch(Vec<u8>),
}

/// One worker, as the manager sees it.
struct Worker {
    process: Process<()>,
    conn: Internal<Connection>, // flotilla's own: see `fds`
    writer: FrameWriter,
    /// Frames to write after the one in `writer`.
    outbox: VecDeque<Out>,
    /// The tasks sent to it, in order: the front one runs once it is `started` (sent to
    /// run at once, or the worker said it took its claim); the others wait in its
    /// pipeline, pending, until the worker takes their claims.
    inflight: VecDeque<Job>,
    /// Tasks it may still be given before it retires (`max_tasks_per_child`).
    left: Option<usize>,
    /// Killed by [`ProcessPoolExecutor::stop`](super::ProcessPoolExecutor::stop) to stop
    /// this task.
    stopped: Option<FutureId>,
    /// It has said it is ready: its initializer ran.
    ready: bool,
    /// It has been given a task to run: it did start.
    worked: bool,
    /// When the task at the front of its pipeline was sent to it idle, or the answer
    /// before it was read: about when it started.
    started_at: Instant,
    /// How long its tasks have taken lately (a moving average), once one has been
    /// answered: from `started_at` to its answer being read.
    service: Option<Duration>,
    /// How many small tasks it may have in flight: [`PIPELINE`], or more when its tasks
    /// are short (see [`BUDGET`]); follows `service`.
    depth: usize,
}

impl Worker {
    /// Nothing in flight, and it may take a task.
    fn is_idle(&self) -> bool {
        self.inflight.is_empty() && self.has_room()
    }

    fn has_room(&self) -> bool {
        self.inflight.len() < self.depth && self.left.is_none_or(|left| left > 0)
    }

    /// Whether it may take a task now, small (see [`BATCHED`]) or not.
    fn room_for(&self, small: bool) -> bool {
        self.has_room() && (small || self.inflight.len() < PIPELINE)
    }

    /// Whether to hand it tasks now: it has room, and no more than half its depth in
    /// flight, so that a deep pipeline is refilled in batches.
    fn wants_tasks(&self) -> bool {
        self.has_room() && self.inflight.len() <= self.depth / 2
    }

    /// How many more tasks it may take now.
    fn room(&self) -> usize {
        let room = self.depth.saturating_sub(self.inflight.len());
        self.left.map_or(room, |left| room.min(left))
    }

    /// Counts an answer read now to the task at the front of its pipeline.
    fn answered(&mut self, now: Instant) {
        let took = now.saturating_duration_since(self.started_at);
        let service = match self.service {
            None => took,
            Some(before) => (before * 7 + took) / 8,
        };
        self.service = Some(service);
        let fit = BUDGET.as_nanos() / service.as_nanos().max(1);
        self.depth = usize::try_from(fit).unwrap_or(DEEP).clamp(PIPELINE, DEEP);
    }

    fn wants_to_write(&self) -> bool {
        self.writer.in_progress() || !self.outbox.is_empty()
    }

    /// It broke the protocol (`why`): nothing it says can be trusted. It is killed and
    /// given no more tasks; its end of file follows, and its end is handled as a death.
    fn replace(&mut self, why: &str) {
        flotilla_core::event!(flotilla_core::log::Level::ERROR, "{why}; replacing it");
        let _ = self.process.kill();
        self.left = Some(0);
    }
}

/// A worker whose connection ended, until its process has ended too.
struct Ending {
    worker: Worker,
    /// It is killed if it has not ended by then.
    deadline: Instant,
    /// It was killed for not ending in time.
    hung: bool,
    /// Its exit can be waited for in `poll` (false once its sentinel said so in vain).
    watch: bool,
}

/// The manager thread's state.
pub(super) struct Manager {
    pub(super) shared: Arc<Shared>,
    pub(super) context: Context,
    pub(super) max_workers: usize,
    pub(super) max_tasks: Option<usize>,
    pub(super) init: Option<(usize, Vec<u8>, Vec<OwnedFd>)>,
    pub(super) on_death: WorkerDeath,
    /// Start every worker at once rather than on demand (`Pool`, as in Python).
    pub(super) eager: bool,
    workers: Vec<Worker>,
    /// Workers whose connection ended, waited for without blocking.
    ending: Vec<Ending>,
    pub(super) started: Arc<AtomicUsize>,
    /// Stop requests for tasks not yet running on a worker: a task second in a worker's
    /// pipeline is stopped when it reaches the front.
    stops: Vec<FutureId>,
    /// Failed starts in a row (see [`START_ATTEMPTS`]).
    start_failures: u32,
    /// No worker starts before this, after a failed start.
    next_start: Option<Instant>,
    /// The claim slots no task holds (see `claims`).
    free: Vec<u32>,
    /// The generation of the next claim.
    generation: u64,
}

/// Whether the manager goes on after handling something.
#[derive(PartialEq)]
enum Flow {
    Go,
    /// The pool broke, or the worker at hand was removed: stop looking at it.
    Stop,
}

impl Manager {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        shared: Arc<Shared>,
        context: Context,
        max_workers: usize,
        max_tasks: Option<usize>,
        init: Option<(usize, Vec<u8>, Vec<OwnedFd>)>,
        on_death: WorkerDeath,
        eager: bool,
        started: Arc<AtomicUsize>,
    ) -> Manager {
        let slots = u32::try_from(shared.claims.len()).unwrap_or(u32::MAX);
        Manager {
            free: (0..slots).rev().collect(),
            generation: 1,
            shared,
            context,
            max_workers,
            max_tasks,
            init,
            on_death,
            eager,
            workers: Vec::new(),
            ending: Vec::new(),
            started,
            stops: Vec::new(),
            start_failures: 0,
            next_start: None,
        }
    }

    pub(super) fn run(mut self) {
        loop {
            if self.broken_or_terminated() {
                break;
            }
            self.stop_tasks();
            if self.start_workers() && self.broken_or_terminated() {
                break;
            }
            self.dispatch();
            for i in 0..self.workers.len() {
                self.flush(i);
            }
            let now = Instant::now();
            // Ask to be woken by a submission only when one could be dispatched at once.
            let capacity =
                self.workers.iter().any(Worker::wants_tasks) || self.may_start_worker(now);
            self.shared.sleeping.store(capacity, Ordering::Release);
            let (shutdown, queued) = {
                let queue = self.shared.lock();
                (queue.shutdown, !queue.jobs.is_empty())
            };
            let idle = !queued
                && self.workers.iter().all(|w| w.inflight.is_empty())
                && self.ending.iter().all(|e| e.worker.inflight.is_empty());
            if shutdown && idle {
                break;
            }
            let timeout = if capacity && queued {
                // A task came meanwhile: look at the workers and go round again.
                self.shared.sleeping.store(false, Ordering::Release);
                Some(Duration::ZERO)
            } else if self.workers.len() < self.max_workers {
                // Backing off after a failed start: wake up when the pause is over (once
                // it is, a start was not wanted, or it would have happened).
                self.next_start
                    .filter(|&at| at > now)
                    .map(|at| at.saturating_duration_since(now))
            } else {
                None
            };
            self.wait_for_events(timeout);
        }
        self.stop_workers();
    }

    /// True when the pool broke or was terminated (then everything pending has failed).
    /// Takes the stop requests on the way, under the same lock.
    fn broken_or_terminated(&mut self) -> bool {
        let mut queue = self.shared.lock();
        self.stops.append(&mut queue.stops);
        if queue.broken.is_some() {
            return true;
        }
        if queue.terminate {
            drop(queue);
            self.fail_all(&TaskError::ShutDown, true);
            return true;
        }
        false
    }

    /// True when a worker may be started now: there is room for one, and the pool is not
    /// pausing after a failed start.
    fn may_start_worker(&self, now: Instant) -> bool {
        self.workers.len() < self.max_workers && self.next_start.is_none_or(|at| now >= at)
    }

    /// Starts workers while more tasks wait than there are idle workers, up to
    /// `max_workers` (or all of them at once, when eager), unless the pool is pausing
    /// after a failed start. True when it tried to start one (so the pool may have
    /// broken).
    fn start_workers(&mut self) -> bool {
        let mut tried = false;
        loop {
            if !self.may_start_worker(Instant::now()) {
                return tried;
            }
            let waiting = self.shared.lock().jobs.len();
            let idle = self.workers.iter().filter(|w| w.is_idle()).count();
            if !(self.eager || waiting > idle) {
                return tried;
            }
            tried = true;
            match self.start_worker() {
                Ok(worker) => self.workers.push(worker),
                Err(reason) => {
                    self.start_failed(reason);
                    if self.shared.lock().broken.is_some() {
                        return tried;
                    }
                }
            }
        }
    }

    fn start_worker(&mut self) -> Result<Worker, String> {
        let (ours, theirs) = pipe(true).map_err(|e| format!("could not start a worker: {e}"))?;
        ours.set_nonblocking(true)
            .map_err(|e| format!("could not start a worker: {e}"))?;
        let init = match &self.init {
            Some((entry, bytes, fds)) => {
                let fds = fds
                    .iter()
                    .map(|fd| fd.try_clone().map(Fd::from))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("could not share the initializer's handles: {e}"))?;
                Some((*entry, bytes.clone(), fds))
            }
            None => None,
        };
        let n = self.started.fetch_add(1, Ordering::Relaxed) + 1;
        let process = self
            .context
            .process(
                worker_main,
                WorkerArgs {
                    conn: theirs,
                    claims: Claims::clone(&self.shared.claims),
                    init,
                    max_tasks: self.max_tasks,
                },
            )
            .name(format!("PoolWorker-{n}"))
            .daemon(true)
            .start()
            .map_err(|e| format!("could not start a worker: {e}"))?;
        Ok(Worker {
            process,
            conn: Internal::new(ours),
            writer: FrameWriter::default(),
            outbox: VecDeque::new(),
            inflight: VecDeque::new(),
            left: self.max_tasks,
            stopped: None,
            ready: false,
            worked: false,
            started_at: Instant::now(),
            service: None,
            depth: PIPELINE,
        })
    }

    /// Counts a failed worker start: pauses before the next one, or breaks the pool
    /// after [`START_ATTEMPTS`] in a row.
    fn start_failed(&mut self, reason: String) {
        self.start_failures += 1;
        if self.start_failures >= START_ATTEMPTS {
            self.break_pool(format!(
                "workers keep failing to start ({} times in a row); the last: {reason}",
                self.start_failures
            ));
            return;
        }
        let pause = FIRST_BACKOFF
            .saturating_mul(1 << (self.start_failures - 1).min(16))
            .min(MAX_BACKOFF);
        flotilla_core::event!(flotilla_core::log::Level::WARN, %reason, ?pause, "a pool worker failed to start");
        self.next_start = Some(Instant::now() + pause);
    }

    /// Sends queued tasks to workers that want them, the least busy first: an idle
    /// worker gets a task before any worker gets a second one in flight, and a worker
    /// gets what it has room for at once (they go in one write). When nothing is queued
    /// and a worker is idle, a task waiting in another's pipeline is taken back for it
    /// ([`take_back_for_idle`](Self::take_back_for_idle)).
    ///
    /// A task sent to an idle, ready worker starts at once (it is marked running as it
    /// is sent). One sent to a busy or starting worker waits in its pipeline, still
    /// pending and cancellable; the worker starts it by taking its claim once the task
    /// before it ends, and skips it if a cancel took the claim first.
    fn dispatch(&mut self) {
        loop {
            let open: Vec<bool> = self.workers.iter().map(Worker::wants_tasks).collect();
            let room: usize = self
                .workers
                .iter()
                .zip(&open)
                .filter(|(_, open)| **open)
                .map(|(worker, _)| worker.room())
                .sum();
            if room == 0 {
                return;
            }
            // One lock for as many tasks as there is room for.
            let mut jobs: VecDeque<Job> = {
                let mut queue = self.shared.lock();
                let n = room.min(queue.jobs.len());
                queue.jobs.drain(..n).collect()
            };
            if jobs.is_empty() {
                if self.take_back_for_idle() {
                    continue;
                }
                return;
            }
            let mut held = Vec::new();
            while let Some(job) = jobs.pop_front() {
                let small = job.fds.is_empty() && job.frame.len() <= BATCHED;
                let Some(i) = (0..self.workers.len())
                    .filter(|&i| open[i] && self.workers[i].room_for(small))
                    // A ready worker before one still starting, so a task taken back
                    // for an idle worker goes to it.
                    .min_by_key(|&i| (self.workers[i].inflight.len(), !self.workers[i].ready))
                else {
                    jobs.push_front(job);
                    break;
                };
                if let Some(job) = self.assign(i, job, small, &mut held) {
                    jobs.push_front(job); // no claim slot left: the rest waits
                    break;
                }
            }
            let full = !jobs.is_empty();
            {
                let mut queue = self.shared.lock();
                queue.held.extend(held);
                // Those no worker had room for (a large one behind small ones) go back.
                for job in jobs.into_iter().rev() {
                    queue.jobs.push_front(job);
                }
            }
            if full {
                return;
            }
        }
    }

    /// Hands `job` to worker `i` (it has room): to start at once if the worker is idle
    /// and ready, to wait in its pipeline with a claim otherwise (then what cancels it
    /// is added to `held`). A task cancelled meanwhile is dropped. Gives the job back
    /// when it would wait and no claim slot is free.
    fn assign(
        &mut self,
        i: usize,
        mut job: Job,
        small: bool,
        held: &mut Vec<(FutureId, Canceller)>,
    ) -> Option<Job> {
        let claims = &self.shared.claims;
        let worker = &mut self.workers[i];
        let idle = worker.inflight.is_empty();
        let now = worker.ready && (idle || job.eager);
        if now {
            // A task sent again (its worker died before starting it, or it was taken
            // back) still has its claim: take it, unless a cancel did.
            if let Some((slot, word)) = job.claim.take() {
                let started = claims.start(slot, word) == Some(true);
                self.free.push(slot);
                if !started {
                    job.sink.cancel();
                    return None;
                }
            }
            if !job.sink.start() {
                return None; // cancelled while queued
            }
            job.started = true;
            worker.worked = true;
            if idle {
                worker.started_at = Instant::now();
            }
        } else {
            match job.claim {
                Some((slot, word)) => match claims.again(slot, word) {
                    Some(next) => job.claim = Some((slot, next)),
                    None => {
                        // Revoked by a cancel while it was queued again.
                        self.free.push(slot);
                        job.sink.cancel();
                        return None;
                    }
                },
                None => {
                    let Some(slot) = self.free.pop() else {
                        return Some(job);
                    };
                    let word = claims.queue(slot, next_generation(&mut self.generation));
                    if !job.sink.bind(Claims::token(slot, word)) {
                        claims.withdraw(slot, word);
                        self.free.push(slot);
                        job.sink.cancel();
                        return None;
                    }
                    job.claim = Some((slot, word));
                }
            }
        }
        let fds = match job
            .fds
            .iter()
            .map(OwnedFd::try_clone)
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(fds) => fds,
            Err(e) => {
                if let Some((slot, word)) = job.claim.take() {
                    claims.withdraw(slot, word);
                    self.free.push(slot);
                }
                job.sink.finish(Err(TaskError::Remote {
                    message: format!("could not send the task's handles to a worker: {e}"),
                    backtrace: None,
                }));
                return None;
            }
        };
        let id = job.sink.id();
        let claim = if now { None } else { job.claim };
        if claim.is_some() {
            held.push((id, job.sink.canceller()));
        }
        if small {
            match worker.outbox.back_mut() {
                Some(Out::Batch(batch)) if batch.len() + job.frame.len() <= BATCH_BYTES => {
                    batch_request(batch, &job.frame, claim);
                }
                _ => {
                    let mut batch = Vec::with_capacity(256);
                    batch_request(&mut batch, &job.frame, claim);
                    worker.outbox.push_back(Out::Batch(batch));
                }
            }
        } else {
            worker.outbox.push_back(Out::Single {
                frame: request_frame(&job.frame, claim),
                fds,
                task: id,
            });
        }
        if let Some(left) = &mut worker.left {
            *left -= 1;
        }
        worker.inflight.push_back(job);
        None
    }

    /// Takes back a task waiting in a busy worker's pipeline when another worker is idle
    /// and nothing is queued, and queues it again at the front, for [`dispatch`] to send
    /// to the idle one: no task waits behind a running one while a worker has nothing to
    /// do, as in Python's pools, where whichever worker is free takes the next task.
    /// True when it took one.
    ///
    /// It takes the first task of a pipeline whose claim is still queued, moving the
    /// claim to a new copy with one compare-exchange, which races the worker's start:
    /// if the worker wins, the task stays. The copy left behind may already be written
    /// or still in the outbox; either way the worker finds its claim moved and skips it.
    ///
    /// [`dispatch`]: Self::dispatch
    fn take_back_for_idle(&mut self) -> bool {
        let idle = self.workers.iter().any(|w| w.ready && w.is_idle());
        if !idle {
            return false;
        }
        let claims = &self.shared.claims;
        let Some((k, at, slot, next)) = self.workers.iter().enumerate().find_map(|(k, w)| {
            w.inflight.iter().enumerate().find_map(|(at, job)| {
                let (slot, word) = job.claim.filter(|_| !job.started)?;
                let next = claims.again(slot, word)?;
                Some((k, at, slot, next))
            })
        }) else {
            return false;
        };
        let worker = &mut self.workers[k];
        let mut job = worker.inflight.remove(at).expect("found at this position");
        job.claim = Some((slot, next));
        if let Some(left) = &mut worker.left {
            *left += 1;
        }
        let mut queue = self.shared.lock();
        queue.held.remove(&job.sink.id());
        queue.jobs.push_front(job);
        true
    }

    /// Gives back the claim slot `job` holds, if any: its task is done with (answered,
    /// skipped, failed or sent to run at once), and its word started or revoked.
    fn release_claim(&mut self, job: &mut Job) {
        if let Some((slot, _)) = job.claim.take() {
            self.free.push(slot);
        }
    }

    /// Worker `i` said it started the held task at the front of its pipeline (it took
    /// its claim): marks it running. A worker that says so of a task it could not have
    /// started is not following the protocol, and is replaced.
    fn front_started(&mut self, i: usize) -> Flow {
        let worker = &mut self.workers[i];
        let claimed = worker.inflight.front_mut().filter(|front| {
            !front.started
                && front.claim.is_some_and(|(slot, word)| {
                    self.shared.claims.seen(slot, word) == Seen::Started
                })
        });
        let Some(front) = claimed else {
            worker.replace("a worker said it started a task it could not have started");
            return Flow::Go;
        };
        front.started = true;
        worker.worked = true;
        self.shared.lock().held.remove(&front.sink.id());
        front.sink.start();
        Flow::Go
    }

    /// Writes what worker `i` has waiting, as far as it goes without blocking.
    fn flush(&mut self, i: usize) {
        loop {
            let worker = &mut self.workers[i];
            if !worker.writer.in_progress() {
                let Some(out) = worker.outbox.pop_front() else {
                    return;
                };
                let (frame, fds, task) = match out {
                    Out::Single { frame, fds, task } => (frame, fds, Some(task)),
                    Out::Batch(mut batch) => {
                        seal_batch(&mut batch);
                        (batch, Vec::new(), None)
                    }
                };
                if let Err(e) = worker.writer.start(frame, fds) {
                    // Nothing of it was written: that one task fails (only a request
                    // with descriptors can fail so; a batch has none).
                    let at =
                        task.and_then(|id| worker.inflight.iter().position(|j| j.sink.id() == id));
                    if let Some(mut job) = at.and_then(|at| worker.inflight.remove(at)) {
                        self.shared.lock().held.remove(&job.sink.id());
                        if let Some(left) = &mut worker.left {
                            *left += 1;
                        }
                        // Never written, so no worker can start it.
                        if let Some((slot, word)) = job.claim.take() {
                            self.shared.claims.withdraw(slot, word);
                            self.free.push(slot);
                        }
                        job.sink.finish(Err(TaskError::Remote {
                            message: format!("could not send the task to a worker: {e}"),
                            backtrace: None,
                        }));
                    }
                    continue;
                }
            }
            match worker.conn.try_send_frame(&mut worker.writer) {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => {
                    // The worker takes nothing more: it closed its end (it is ending; its
                    // end of file comes next), or the connection failed (then it is
                    // killed, so that its end comes).
                    worker.outbox.clear();
                    worker.writer = FrameWriter::default();
                    worker.left = Some(0);
                    if !matches!(e, flotilla_ipc::SendError::Disconnected) {
                        flotilla_core::event!(flotilla_core::log::Level::ERROR, error = %e, "could not write to a pool worker; replacing it");
                        let _ = worker.process.kill();
                    }
                    return;
                }
            }
        }
    }

    /// Carries out stop requests: kills each worker whose running task (the front of its
    /// pipeline) was asked to stop. Requests for a task waiting behind another in a
    /// worker's pipeline stay until it runs; those for tasks no longer anywhere (finished)
    /// are dropped.
    fn stop_tasks(&mut self) {
        if self.stops.is_empty() {
            return;
        }
        let mut waiting = Vec::new();
        for id in std::mem::take(&mut self.stops) {
            for worker in &mut self.workers {
                let Some(at) = worker.inflight.iter().position(|job| job.sink.id() == id) else {
                    continue;
                };
                if at > 0 || !worker.inflight[at].started {
                    waiting.push(id);
                } else if worker.stopped.is_none() {
                    worker.stopped = Some(id);
                    // No more tasks for it: its end of file comes next.
                    worker.left = Some(0);
                    if let Err(e) = worker.process.kill() {
                        flotilla_core::event!(flotilla_core::log::Level::WARN, error = %e, "could not kill a worker to stop its task");
                    }
                }
                break;
            }
        }
        self.stops = waiting;
    }

    /// Sleeps (up to `timeout`; `None`: as long as it takes) until a submission, an
    /// answer, room to write to a worker, or a worker's end; handles what came.
    fn wait_for_events(&mut self, timeout: Option<Duration>) {
        // An ended worker is looked at by its deadline, or now and then when its exit
        // cannot be waited for.
        let now = Instant::now();
        let timeout = self
            .ending
            .iter()
            .map(|e| match (e.hung, e.watch) {
                (_, false) => REAP_EVERY,
                (false, true) => e.deadline.saturating_duration_since(now),
                (true, true) => HANG_GRACE,
            })
            .chain(timeout)
            .min();
        let ready: Vec<(bool, bool)> = {
            let mut fds = Vec::with_capacity(self.workers.len() + self.ending.len() + 1);
            fds.push(PollFd::new(self.shared.wake.as_fd(), PollFlags::POLLIN));
            for worker in &self.workers {
                let mut events = PollFlags::POLLIN;
                if worker.wants_to_write() {
                    events |= PollFlags::POLLOUT;
                }
                fds.push(PollFd::new(worker.conn.as_fd(), events));
            }
            for ending in &self.ending {
                let events = if ending.watch {
                    PollFlags::POLLIN
                } else {
                    PollFlags::empty()
                };
                fds.push(PollFd::new(ending.worker.process.sentinel(), events));
            }
            let timeout = match timeout {
                None => PollTimeout::NONE,
                // Rounded up, so that a pause is not cut short into a busy loop.
                Some(t) => PollTimeout::try_from(t + Duration::from_micros(999))
                    .unwrap_or(PollTimeout::MAX),
            };
            // A worker running a short task answers within microseconds: look a few
            // times, yielding the processor in between (to that worker, on a busy
            // machine), before sleeping, which costs a wake-up per answer.
            let busy = self.workers.iter().any(|w| !w.inflight.is_empty());
            if busy && timeout != PollTimeout::ZERO {
                for _ in 0..YIELDS {
                    if !matches!(poll(&mut fds, PollTimeout::ZERO), Ok(0)) {
                        break;
                    }
                    std::thread::yield_now();
                }
            }
            match poll(&mut fds, timeout) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => return,
                Err(e) => {
                    // Nothing to wait with: should not happen; do not spin on it.
                    flotilla_core::event!(flotilla_core::log::Level::ERROR, error = %e, "the pool manager's poll failed");
                    std::thread::sleep(Duration::from_millis(10));
                    return;
                }
            }
            fds.iter()
                .map(|fd| {
                    let got = fd.revents().unwrap_or(PollFlags::empty());
                    let readable = got.intersects(
                        PollFlags::POLLIN
                            | PollFlags::POLLHUP
                            | PollFlags::POLLERR
                            | PollFlags::POLLNVAL,
                    );
                    (readable, got.contains(PollFlags::POLLOUT))
                })
                .collect()
        };
        if ready[0].0 {
            self.shared.wake.clear();
        }
        // Those that ended before this poll, before the workers whose connection ends
        // now join them. Highest index first, so removing one keeps the others' indices.
        let workers = self.workers.len();
        let now = Instant::now();
        for k in (0..self.ending.len()).rev() {
            let ended = ready[1 + workers + k].0;
            let ending = &self.ending[k];
            if (ended || !ending.watch || now >= ending.deadline)
                && self.reap(k, ended)
                && self.is_broken()
            {
                return;
            }
        }
        for i in (0..workers).rev() {
            let (readable, writable) = ready[i + 1];
            if writable {
                self.flush(i);
            }
            if readable && self.read_answers(i) == Flow::Stop && self.is_broken() {
                return;
            }
        }
    }

    fn is_broken(&self) -> bool {
        self.shared.lock().broken.is_some()
    }

    /// Reads whatever worker `i` has sent, without waiting for the rest of a frame that
    /// has only begun to arrive; handles its end. Called when its connection is readable:
    /// one read takes what has arrived, and the answers read ahead with the first are
    /// taken with no further read (the next `poll` tells of any that came since).
    fn read_answers(&mut self, i: usize) -> Flow {
        let mut first = true;
        loop {
            if !first && !self.workers[i].conn.frame_read_ahead() {
                return Flow::Go;
            }
            first = false;
            let worker = &mut self.workers[i];
            let (bytes, fds) = match worker.conn.recv_frame_timeout(Duration::ZERO) {
                Ok(frame) => frame,
                Err(flotilla_ipc::RecvTimeoutError::Timeout(_)) => return Flow::Go,
                Err(e) => {
                    if !matches!(
                        e,
                        flotilla_ipc::RecvTimeoutError::Recv(
                            flotilla_ipc::RecvError::Disconnected
                                | flotilla_ipc::RecvError::Truncated { .. }
                        )
                    ) {
                        flotilla_core::event!(flotilla_core::log::Level::ERROR, error = %e, "a pool worker's connection failed; replacing it");
                        let _ = worker.process.kill();
                    }
                    self.worker_ended(i);
                    return Flow::Stop;
                }
            };
            if self.answer(i, bytes, fds) == Flow::Stop {
                return Flow::Stop;
            }
        }
    }

    /// Handles one answer of worker `i`.
    fn answer(&mut self, i: usize, bytes: Vec<u8>, fds: Vec<OwnedFd>) -> Flow {
        let worker = &mut self.workers[i];
        let (response, next_started) = match Response::from_frame(bytes) {
            Some(got) => (Some(got.0), got.1),
            None => (None, false),
        };
        let outcome = match response {
            Some(Response::Ready) if !worker.ready => {
                worker.ready = true;
                self.flush(i);
                return Flow::Go;
            }
            Some(Response::Skipped(word)) => return self.skipped(i, word),
            Some(Response::Started) => return self.front_started(i),
            Some(Response::InitFailed(message)) => {
                self.break_pool(format!("a worker's initializer failed: {message}"));
                return Flow::Stop;
            }
            Some(Response::Done(value)) => Ok((value, fds)),
            Some(Response::Panicked(message)) => Err(TaskError::Panicked { message }),
            Some(Response::Failed(message)) => Err(TaskError::Remote {
                message,
                backtrace: None,
            }),
            Some(Response::Ready) | None => {
                worker.replace("a worker sent garbage");
                return Flow::Go;
            }
        };
        if !worker.inflight.front().is_some_and(|job| job.started) {
            worker.replace("a worker answered a task it was not running");
            return Flow::Go;
        }
        let mut job = worker.inflight.pop_front().expect("just looked");
        let now = Instant::now();
        worker.answered(now);
        worker.started_at = now; // the next, if any, starts as this answer leaves
        self.release_claim(&mut job);
        // The worker works: whatever failed to start before is over.
        self.start_failures = 0;
        self.next_start = None;
        let flow = if next_started {
            self.front_started(i)
        } else {
            Flow::Go
        };
        self.flush(i);
        job.sink.finish(outcome);
        flow
    }

    /// Worker `i` skipped the held task whose claim word was `word`: the one at the
    /// front of its pipeline, if a cancel revoked it, or a copy since sent elsewhere,
    /// which it no longer holds.
    fn skipped(&mut self, i: usize, word: u64) -> Flow {
        let claims = &self.shared.claims;
        let worker = &mut self.workers[i];
        let Some(front) = worker.inflight.front() else {
            return Flow::Go;
        };
        let Some((slot, ours)) = front.claim.filter(|&(_, ours)| ours == word) else {
            return Flow::Go; // a copy taken back for another worker
        };
        if claims.seen(slot, ours) != Seen::Revoked {
            worker.replace("a worker skipped a task it could have run");
            return Flow::Go;
        }
        let job = worker.inflight.pop_front().expect("just looked");
        self.free.push(slot);
        if let Some(left) = &mut worker.left {
            *left += 1;
        }
        self.shared.lock().held.remove(&job.sink.id());
        job.sink.cancel();
        Flow::Go
    }

    /// Worker `i` closed its connection: it retired or died. It leaves the dispatch at
    /// once, and the tasks it had not started go back to the queue (unless its death
    /// breaks the pool); what becomes of the task it was running waits for its exit
    /// ([`reap`](Self::reap)), which tells how it ended, without holding up the others.
    fn worker_ended(&mut self, i: usize) {
        let mut worker = self.workers.swap_remove(i);
        {
            let mut queue = self.shared.lock();
            for job in &worker.inflight {
                queue.held.remove(&job.sink.id());
            }
        }
        let running = worker.inflight.front().is_some_and(|job| job.started);
        if !running {
            // Nothing ran: what it held goes back to the queue, unharmed.
            self.requeue(std::mem::take(&mut worker.inflight));
        } else if let Some(stopped) = worker.stopped {
            // Killed on purpose. The task it held is the one to stop — unless that one
            // finished just before the kill and the next had started: that one did
            // nothing wrong, so it goes back to run again, with the rest.
            let mut held = worker.inflight.pop_front().expect("running");
            if held.sink.id() == stopped {
                self.requeue(std::mem::take(&mut worker.inflight));
                self.release_claim(&mut held);
                held.sink.finish(Err(TaskError::Cancelled));
            } else {
                worker.inflight.push_front(held);
                self.requeue(std::mem::take(&mut worker.inflight));
            }
        } else if self.on_death == WorkerDeath::FailTask {
            // It died running its task, which fails once its exit tells how; the
            // others go on elsewhere meanwhile.
            let rest = worker.inflight.split_off(1);
            self.requeue(rest);
        }
        self.ending.push(Ending {
            worker,
            deadline: Instant::now() + HANG_GRACE,
            hung: false,
            watch: true,
        });
    }

    /// Looks at ended worker `k`: true when its process has ended, and what it left is
    /// settled (the task it was running fails, naming how it ended); false when it still
    /// runs (it is killed once past its deadline). `signalled`: its sentinel said it
    /// ended.
    fn reap(&mut self, k: usize, signalled: bool) -> bool {
        let ending = &mut self.ending[k];
        let how = match ending.worker.process.join_timeout(Duration::ZERO) {
            Err(Error::Timeout(_)) => {
                if signalled {
                    // News that was not its end (its forkserver went away, say): look
                    // now and then instead.
                    ending.watch = false;
                }
                if !ending.hung && Instant::now() >= ending.deadline {
                    let _ = ending.worker.process.kill();
                    ending.hung = true;
                    ending.deadline = Instant::now() + HANG_GRACE;
                }
                return false;
            }
            _ if ending.hung => "closed its connection and hung (it was killed)".to_owned(),
            Ok(()) => "exited".to_owned(),
            Err(Error::Signaled { signal, name }) => {
                format!("was killed by signal {signal} ({name})")
            }
            Err(Error::Exited { code }) => format!("exited with code {code}"),
            Err(e) => e.to_string(),
        };
        let Ending { mut worker, .. } = self.ending.swap_remove(k);
        flotilla_core::event!(
            flotilla_core::log::Level::DEBUG,
            worker = worker.process.name(),
            worker_pid = worker.process.pid(),
            "a pool worker ended: it {how}"
        );
        let running = worker.inflight.front().is_some_and(|job| job.started);
        if !running {
            if !worker.worked && worker.stopped.is_none() {
                let when = if worker.ready {
                    "before it ran a task"
                } else {
                    "before it was ready"
                };
                self.start_failed(format!(
                    "{} (pid {}) {how} {when}",
                    worker.process.name(),
                    worker.process.pid()
                ));
            }
            return true;
        }
        let mut held = worker.inflight.pop_front().expect("running");
        self.release_claim(&mut held);
        let reason = format!(
            "{} (pid {}) {how} while running this task",
            worker.process.name(),
            worker.process.pid()
        );
        flotilla_core::event!(flotilla_core::log::Level::WARN, %reason, "a pool worker died");
        let code = worker.process.exitcode();
        let died = TaskError::WorkerDied {
            reason: reason.clone(),
            pid: worker.process.pid(),
            signal: code.filter(|&c| c < 0).map(|c| -c),
            exit_code: code.filter(|&c| c >= 0),
        };
        held.sink.finish(Err(died));
        if self.on_death == WorkerDeath::BreakPool {
            for job in worker.inflight.drain(..) {
                job.sink.finish(Err(TaskError::Broken {
                    reason: reason.clone(),
                }));
            }
            self.break_pool(format!("a worker died: {reason}"));
        }
        true
    }

    /// Puts tasks a worker held but never ran back at the front of the queue, in order
    /// (they keep their claims, sent again with the next copy; one whose claim the
    /// worker took before it died, without saying so, is queued again); those a cancel
    /// revoked meanwhile are done with. (The caller took them out of `held`.)
    fn requeue(&mut self, jobs: VecDeque<Job>) {
        let claims = &self.shared.claims;
        let mut revoked = Vec::new();
        {
            let mut queue = self.shared.lock();
            for mut job in jobs.into_iter().rev() {
                if let Some((slot, word)) = job.claim {
                    match claims.seen(slot, word) {
                        Seen::Revoked => {
                            self.free.push(slot);
                            revoked.push(job);
                            continue;
                        }
                        Seen::Started => {
                            job.claim = claims.restart(slot, word).map(|next| (slot, next));
                        }
                        Seen::Queued | Seen::Moved => {}
                    }
                }
                job.started = false;
                queue.jobs.push_front(job);
            }
        }
        for job in revoked {
            job.sink.cancel();
        }
    }

    /// Marks the pool broken and fails everything pending.
    fn break_pool(&mut self, reason: String) {
        flotilla_core::event!(flotilla_core::log::Level::ERROR, %reason, "process pool broken");
        self.shared.lock().broken = Some(reason.clone());
        self.fail_all(&TaskError::Broken { reason }, true);
    }

    /// Fails every queued and in-flight task with `error`; with `kill`, also stops the
    /// workers at once.
    fn fail_all(&mut self, error: &TaskError, kill: bool) {
        let queued: Vec<Job> = {
            let mut queue = self.shared.lock();
            queue.held.clear();
            queue.jobs.drain(..).collect()
        };
        for job in queued {
            job.sink.finish(Err(error.clone()));
        }
        for worker in &mut self.workers {
            for job in worker.inflight.drain(..) {
                // Not started later by a worker that outlives this.
                if let Some((slot, word)) = job.claim {
                    self.shared.claims.withdraw(slot, word);
                }
                job.sink.finish(Err(error.clone()));
            }
            if kill {
                let _ = worker.process.terminate();
            }
        }
        for ending in &mut self.ending {
            for job in ending.worker.inflight.drain(..) {
                job.sink.finish(Err(error.clone()));
            }
            if kill {
                let _ = ending.worker.process.kill();
            }
        }
    }

    /// Closes every worker's connection (they exit at end of file) and reaps them.
    fn stop_workers(&mut self) {
        self.shared.lock().held.clear();
        let workers = std::mem::take(&mut self.workers);
        let mut processes = Vec::new();
        for ending in std::mem::take(&mut self.ending) {
            for job in ending.worker.inflight {
                job.sink.finish(Err(TaskError::ShutDown));
            }
            processes.push(ending.worker.process);
        }
        for worker in workers {
            for job in worker.inflight {
                // Whatever it holds is skipped: it goes back to its connection, and ends.
                if let Some((slot, word)) = job.claim {
                    self.shared.claims.withdraw(slot, word);
                }
                job.sink.finish(Err(TaskError::ShutDown));
            }
            drop(worker.conn);
            processes.push(worker.process);
        }
        // One grace period for all of them, not one each: a shutdown with many hung
        // workers takes as long as with one.
        let grace = flotilla_core::Deadline::after(Some(Duration::from_secs(10)));
        let hung: Vec<_> = processes
            .into_iter()
            .filter(|process| {
                let left = grace.remaining().unwrap_or_default();
                matches!(process.join_timeout(left), Err(Error::Timeout(_)))
            })
            .collect();
        for process in &hung {
            let _ = process.kill();
        }
        let reaped = flotilla_core::Deadline::after(Some(Duration::from_secs(10)));
        for process in &hung {
            let _ = process.join_timeout(reaped.remaining().unwrap_or_default());
        }
    }
}
