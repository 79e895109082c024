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

use super::worker::{Gate, Response, WorkerArgs, request_frame, worker_main};
use super::{Job, PIPELINE, Shared, WorkerDeath};
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

/// A frame waiting to be written to a worker.
struct Out {
    frame: Vec<u8>,
    fds: Vec<OwnedFd>,
    /// The task it carries, if it carries one.
    task: Option<FutureId>,
}

/// One worker, as the manager sees it.
struct Worker {
    process: Process<()>,
    conn: Internal<Connection>, // flotilla's own: see `fds`
    writer: FrameWriter,
    /// Frames to write after the one in `writer`.
    outbox: VecDeque<Out>,
    /// The tasks sent to it, in order: the front one runs once it is `started`; the
    /// others wait in its pipeline, pending, until the manager lets them start.
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
    /// Where its held tasks are let go or skipped.
    gate: Gate,
    /// The sequence number of the last held task sent to it.
    seq: u32,
}

impl Worker {
    fn has_room(&self) -> bool {
        self.inflight.len() < PIPELINE && self.left.is_none_or(|left| left > 0)
    }

    fn wants_to_write(&self) -> bool {
        self.writer.in_progress() || !self.outbox.is_empty()
    }
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
    pub(super) started: Arc<AtomicUsize>,
    /// Stop requests for tasks not yet running on a worker: a task second in a worker's
    /// pipeline is stopped when it reaches the front.
    stops: Vec<FutureId>,
    /// Failed starts in a row (see [`START_ATTEMPTS`]).
    start_failures: u32,
    /// No worker starts before this, after a failed start.
    next_start: Option<Instant>,
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
        Manager {
            shared,
            context,
            max_workers,
            max_tasks,
            init,
            on_death,
            eager,
            workers: Vec::new(),
            started,
            stops: Vec::new(),
            start_failures: 0,
            next_start: None,
        }
    }

    pub(super) fn run(mut self) {
        loop {
            self.stop_tasks();
            if self.broken_or_terminated() {
                break;
            }
            self.start_workers();
            if self.broken_or_terminated() {
                break;
            }
            self.dispatch();
            for i in 0..self.workers.len() {
                self.flush(i);
            }
            let (shutdown, idle, queued) = {
                let queue = self.shared.lock();
                let idle =
                    queue.jobs.is_empty() && self.workers.iter().all(|w| w.inflight.is_empty());
                (queue.shutdown, idle, !queue.jobs.is_empty())
            };
            if shutdown && idle {
                break;
            }
            // Ask to be woken by a submission only when one could be dispatched at once.
            let now = Instant::now();
            let capacity = self.workers.iter().any(Worker::has_room) || self.may_start_worker(now);
            self.shared.sleeping.store(capacity, Ordering::Release);
            let timeout = if capacity && (queued || !self.shared.lock().jobs.is_empty()) {
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
    fn broken_or_terminated(&mut self) -> bool {
        let queue = self.shared.lock();
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
    /// after a failed start.
    fn start_workers(&mut self) {
        loop {
            if !self.may_start_worker(Instant::now()) {
                return;
            }
            let waiting = self.shared.lock().jobs.len();
            let idle = self
                .workers
                .iter()
                .filter(|w| w.inflight.is_empty() && w.has_room())
                .count();
            if !(self.eager || waiting > idle) {
                return;
            }
            match self.start_worker() {
                Ok(worker) => self.workers.push(worker),
                Err(reason) => {
                    self.start_failed(reason);
                    if self.shared.lock().broken.is_some() {
                        return;
                    }
                }
            }
        }
    }

    fn start_worker(&mut self) -> Result<Worker, String> {
        let (ours, theirs) = pipe(true).map_err(|e| format!("could not start a worker: {e}"))?;
        let gate = Gate::new().map_err(|e| format!("could not start a worker: {e}"))?;
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
                    gate: gate.clone(),
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
            gate,
            seq: 0,
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

    /// Sends queued tasks to workers with room, the least busy first: an idle worker
    /// gets a task before any worker gets a second one in flight.
    ///
    /// A task sent to an idle, ready worker starts at once (it is marked running as it
    /// is sent). One sent to a busy or starting worker waits in its pipeline, still
    /// pending and cancellable; the worker starts it only when the manager says so,
    /// after the task before it ends ([`release`](Self::release)).
    fn dispatch(&mut self) {
        loop {
            let (i, mut job) = {
                let mut queue = self.shared.lock();
                if queue.jobs.is_empty() {
                    return;
                }
                let Some(i) = (0..self.workers.len())
                    .filter(|&i| self.workers[i].has_room())
                    .min_by_key(|&i| self.workers[i].inflight.len())
                else {
                    return;
                };
                (i, queue.jobs.pop_front().expect("not empty"))
            };
            let worker = &mut self.workers[i];
            let now = worker.ready && worker.inflight.is_empty();
            if now {
                if !job.sink.start() {
                    continue; // cancelled while queued
                }
                job.started = true;
                worker.worked = true;
            } else if job.sink.cancelled() {
                job.sink.cancel();
                continue;
            }
            let fds = match job
                .fds
                .iter()
                .map(OwnedFd::try_clone)
                .collect::<Result<Vec<_>, _>>()
            {
                Ok(fds) => fds,
                Err(e) => {
                    job.sink.finish(Err(TaskError::Remote {
                        message: format!("could not send the task's handles to a worker: {e}"),
                        backtrace: None,
                    }));
                    continue;
                }
            };
            let id = job.sink.id();
            let held = (!now).then(|| {
                worker.seq = worker.seq.wrapping_add(1);
                worker.seq
            });
            if let Some(seq) = held {
                job.seq = seq;
                let cancel = job.sink.canceller();
                self.shared.lock().held.insert(id, cancel);
            }
            worker.outbox.push_back(Out {
                frame: request_frame(&job.frame, held),
                fds,
                task: Some(id),
            });
            if let Some(left) = &mut worker.left {
                *left -= 1;
            }
            worker.inflight.push_back(job);
        }
    }

    /// Lets worker `i` start the task at the front of its pipeline, if it waits: marks it
    /// running and tells the worker, through its gate, to go, or, when it was cancelled,
    /// to skip it, and looks at the next. Called when the worker is free: ready, with the
    /// task before ended.
    fn release(&mut self, i: usize) {
        let worker = &mut self.workers[i];
        if !worker.ready {
            return;
        }
        while let Some(front) = worker.inflight.front_mut() {
            if front.started {
                return;
            }
            self.shared.lock().held.remove(&front.sink.id());
            if front.sink.start() {
                front.started = true;
                worker.worked = true;
                worker.gate.decide(front.seq, true);
                return;
            }
            let job = worker.inflight.pop_front().expect("just looked");
            worker.gate.decide(job.seq, false);
            job.sink.cancel();
            if let Some(left) = &mut worker.left {
                *left += 1;
            }
        }
    }

    /// Writes what worker `i` has waiting, as far as it goes without blocking.
    fn flush(&mut self, i: usize) {
        loop {
            let worker = &mut self.workers[i];
            if !worker.writer.in_progress() {
                let Some(out) = worker.outbox.pop_front() else {
                    return;
                };
                if let Err(e) = worker.writer.start(out.frame, out.fds) {
                    // Nothing of it was written: that one task fails.
                    let at = out
                        .task
                        .and_then(|id| worker.inflight.iter().position(|j| j.sink.id() == id));
                    if let Some(job) = at.and_then(|at| worker.inflight.remove(at)) {
                        self.shared.lock().held.remove(&job.sink.id());
                        if let Some(left) = &mut worker.left {
                            *left += 1;
                        }
                        job.sink.finish(Err(TaskError::Remote {
                            message: format!("could not send the task to a worker: {e}"),
                            backtrace: None,
                        }));
                        if at == Some(0) {
                            self.release(i);
                        }
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
                    if !matches!(
                        e,
                        flotilla_ipc::Error::Eof | flotilla_ipc::Error::TruncatedFrame { .. }
                    ) {
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
        self.stops.append(&mut self.shared.lock().stops);
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
        let ready: Vec<(bool, bool)> = {
            let mut fds = Vec::with_capacity(self.workers.len() + 1);
            fds.push(PollFd::new(self.shared.wake.as_fd(), PollFlags::POLLIN));
            for worker in &self.workers {
                let mut events = PollFlags::POLLIN;
                if worker.wants_to_write() {
                    events |= PollFlags::POLLOUT;
                }
                fds.push(PollFd::new(worker.conn.as_fd(), events));
            }
            let timeout = match timeout {
                None => PollTimeout::NONE,
                // Rounded up, so that a pause is not cut short into a busy loop.
                Some(t) => PollTimeout::try_from(t + Duration::from_micros(999))
                    .unwrap_or(PollTimeout::MAX),
            };
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
        // Highest index first, so removing a dead worker keeps the others' indices.
        for i in (0..self.workers.len()).rev() {
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
                Err(flotilla_ipc::Error::Timeout(_)) => return Flow::Go,
                Err(e) => {
                    if !matches!(
                        e,
                        flotilla_ipc::Error::Eof | flotilla_ipc::Error::TruncatedFrame { .. }
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
        let outcome = match Response::from_frame(bytes) {
            Some(Response::Ready) if !worker.ready => {
                worker.ready = true;
                self.release(i);
                self.flush(i);
                return Flow::Go;
            }
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
                flotilla_core::event!(
                    flotilla_core::log::Level::ERROR,
                    "a worker sent garbage; replacing it"
                );
                let _ = worker.process.kill();
                worker.left = Some(0);
                return Flow::Go; // its end of file follows
            }
        };
        if !worker.inflight.front().is_some_and(|job| job.started) {
            flotilla_core::event!(
                flotilla_core::log::Level::ERROR,
                "a worker answered a task it was not running; replacing it"
            );
            let _ = worker.process.kill();
            worker.left = Some(0);
            return Flow::Go;
        }
        let job = worker.inflight.pop_front().expect("just looked");
        // The worker works: whatever failed to start before is over.
        self.start_failures = 0;
        self.next_start = None;
        // Let the next task start before completing this one (which runs callbacks).
        self.release(i);
        self.flush(i);
        job.sink.finish(outcome);
        Flow::Go
    }

    /// Worker `i` closed its connection: it retired or died.
    fn worker_ended(&mut self, i: usize) {
        let mut worker = self.workers.swap_remove(i);
        let how = match worker.process.join_timeout(Duration::from_secs(10)) {
            Ok(()) => "exited".to_owned(),
            Err(Error::Signaled { signal, name }) => {
                format!("was killed by signal {signal} ({name})")
            }
            Err(Error::Exited { code }) => format!("exited with code {code}"),
            Err(Error::Timeout(_)) => {
                let _ = worker.process.kill();
                "closed its connection and hung (it was killed)".to_owned()
            }
            Err(e) => e.to_string(),
        };
        flotilla_core::event!(
            flotilla_core::log::Level::DEBUG,
            worker = worker.process.name(),
            worker_pid = worker.process.pid(),
            "a pool worker ended: it {how}"
        );
        {
            let mut queue = self.shared.lock();
            for job in &worker.inflight {
                queue.held.remove(&job.sink.id());
            }
        }
        let running = worker.inflight.front().is_some_and(|job| job.started);
        if !running {
            // Nothing ran: what it held goes back to the queue, unharmed.
            self.requeue(worker.inflight);
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
            return;
        }
        let held = worker.inflight.pop_front().expect("running");
        if let Some(stopped) = worker.stopped {
            // Killed on purpose. The task it held is the one to stop — unless that one
            // finished just before the kill and the next had started: that one did
            // nothing wrong, so it goes back to run again, with the rest.
            if held.sink.id() == stopped {
                self.requeue(worker.inflight);
                held.sink.finish(Err(TaskError::Cancelled));
            } else {
                worker.inflight.push_front(held);
                self.requeue(worker.inflight);
            }
            return;
        }
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
        match self.on_death {
            WorkerDeath::FailTask => {
                held.sink.finish(Err(died));
                self.requeue(worker.inflight);
            }
            WorkerDeath::BreakPool => {
                held.sink.finish(Err(died));
                for job in worker.inflight.drain(..) {
                    job.sink.finish(Err(TaskError::Broken {
                        reason: reason.clone(),
                    }));
                }
                self.break_pool(format!("a worker died: {reason}"));
            }
        }
    }

    /// Puts tasks a worker held but never ran back at the front of the queue, in order.
    fn requeue(&self, jobs: VecDeque<Job>) {
        let mut queue = self.shared.lock();
        for mut job in jobs.into_iter().rev() {
            job.started = false;
            queue.jobs.push_front(job);
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
                job.sink.finish(Err(error.clone()));
            }
            if kill {
                let _ = worker.process.terminate();
            }
        }
    }

    /// Closes every worker's connection (they exit at end of file) and reaps them.
    fn stop_workers(&mut self) {
        self.shared.lock().held.clear();
        let workers = std::mem::take(&mut self.workers);
        let mut processes = Vec::new();
        for worker in workers {
            for job in worker.inflight {
                job.sink.finish(Err(TaskError::ShutDown));
            }
            // Whatever it holds is skipped: it goes back to its connection, and ends.
            worker.gate.decide(worker.seq.wrapping_add(1), false);
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
