//! [`Child`]: what a parent knows of one child process, whatever started it: how to
//! learn that it ended, its exit code, and the report it sent before ending.
//!
//! A child ends in one of two observable ways: its exit watcher becomes readable (a
//! pidfd for the children this process forked or spawned, a status channel from the
//! forkserver for the ones it forked), and its report arrives on the result channel.
//! Waiting polls both, so a child writing a report larger than a socket buffer is read
//! while it writes, and never blocks its own exit.
//!
//! The result channel is read without blocking, a frame at a time as it arrives (the
//! progress kept in a `FrameReader`), so a timed wait honours its deadline even when
//! the child stops half way through its report.
//!
//! A forkserver child whose server died before reporting its exit is still followed:
//! its pidfd says when it ended, and its report (which travels on the result channel,
//! not through the server) gives the exit code it was about to exit with: 0 for a
//! value, 1 for a panic, 70 for a refusal. A child that ended with no report then has
//! no knowable exit code: it is recorded as [`LOST_EXIT`] and `join` says why.
//!
//! The same holds while the server lives: once a forkserver child's report is in, its
//! pidfd says when it ended, and the report its exit code (unless the server's word
//! came first). The parent then wakes up once, for the report, instead of a second
//! time for the server's word, which needs the server woken by the child's end first.
//! Only a signal that killed the child between its report and its `_exit` would have
//! given another code; what the child did is in its report either way. A child that
//! ended without a report still waits for the server's word.
//!
//! A fork child has one more way to report: a page of memory shared with its parent
//! (`sys::ReportPage`), for a report that fits in it and carries no descriptors — the
//! common case. It stores the report there and exits without writing to the result
//! channel, and the parent keeps the child's end of that channel open meanwhile, so the
//! child's exit is no end of file on it either: the parent wakes up once, for the exit,
//! and reads the report from the page. A larger report, or one with descriptors, still
//! travels on the channel as above; a child killed before it stored the whole report
//! leaves the page's length word zero, which reads as no report.
//!
//! Every descriptor here is flotilla's own, entered in the `fds` registry so that a
//! fork child does not inherit it.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use std::os::fd::AsRawFd;

use flotilla_ipc::{Connection, FrameReader};
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::fds::{self, Internal};
use crate::sys;

/// The exit code recorded for a forkserver child that ended, after its server died,
/// without sending a report: how it ended cannot be known.
pub(crate) const LOST_EXIT: i32 = 255;

/// What a child sends its parent just before it exits.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Report {
    /// The target returned; the value's bytes (its handles travel beside them).
    Returned(#[serde(with = "flotilla_core::codec::bytes")] Vec<u8>),
    /// The target panicked.
    Panicked(String),
    /// The child would not run its task.
    Refused(String),
}

/// How the parent learns a child's exit code.
#[derive(Debug)]
pub(crate) enum ExitWatch {
    /// Our own child: its pidfd says when it ended, `waitpid` gives the code.
    Direct { pidfd: OwnedFd },
    /// A forkserver child: the server sends the code on this channel once it reaped it.
    Server {
        status: Connection,
        pidfd: Option<OwnedFd>,
    },
}

/// The report as it arrived: decoded lazily by the typed `Process<R>`.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Nothing yet.
    Pending,
    /// The report, with the descriptors that came with it.
    Reported(Report, Vec<OwnedFd>),
    /// The value was handed to a `join`.
    Taken,
}

#[derive(Debug)]
struct Status {
    exitcode: Option<i32>,
    /// Closed once the report arrived or the child ended without one. Non-blocking.
    results: Option<Internal<Connection>>,
    /// The part of the report received so far.
    reader: FrameReader,
    outcome: Outcome,
    /// The forkserver's status channel reached end of file: follow the pidfd instead.
    server_gone: bool,
    /// The child ended with no report after its forkserver died: its exit is unknown.
    lost: bool,
}

/// A fork child's shared report page, and the parent's copy of the child's end of the
/// result channel, kept open so the child's exit is no end of file: see the module doc.
#[derive(Debug)]
pub(crate) struct PageReport {
    pub(crate) page: sys::ReportPage,
    pub(crate) child_end: Internal<Connection>,
}

/// One child, as its parent sees it.
#[derive(Debug)]
pub(crate) struct Child {
    pub(crate) pid: i32,
    pub(crate) name: String,
    pub(crate) daemon: bool,
    watch: ExitWatch,
    status: Mutex<Status>,
    /// Closed with the result channel, once the child has ended.
    page: Mutex<Option<PageReport>>,
}

impl Child {
    pub(crate) fn new(
        pid: i32,
        name: String,
        daemon: bool,
        watch: ExitWatch,
        results: Connection,
        page: Option<PageReport>,
    ) -> Self {
        match &watch {
            ExitWatch::Direct { pidfd } => fds::register(pidfd.as_raw_fd()),
            ExitWatch::Server { status, pidfd } => {
                fds::register(status.as_fd().as_raw_fd());
                if let Some(pidfd) = pidfd {
                    fds::register(pidfd.as_raw_fd());
                }
            }
        }
        // Read a frame at a time as it arrives, never blocking: see the module doc. A
        // failure leaves it blocking, which only costs the timed join its precision.
        let _ = results.set_nonblocking(true);
        Child {
            pid,
            name,
            daemon,
            watch,
            status: Mutex::new(Status {
                exitcode: None,
                results: Some(Internal::new(results)),
                reader: FrameReader::default(),
                outcome: Outcome::Pending,
                server_gone: false,
                lost: false,
            }),
            page: Mutex::new(page),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Status> {
        // No user code runs under this lock; see `state::lock`.
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The descriptor that becomes readable when the child has ended: Python's
    /// `Process.sentinel`.
    pub(crate) fn sentinel(&self) -> BorrowedFd<'_> {
        match &self.watch {
            ExitWatch::Direct { pidfd } => pidfd.as_fd(),
            ExitWatch::Server { status, .. } => status.as_fd(),
        }
    }

    /// Waits for the child to end and be reaped, reading its report on the way.
    pub(crate) fn wait(&self) -> Result<bool, Error> {
        self.wait_within(None)
    }

    /// [`wait_within`](Self::wait_within) giving up after `timeout`.
    pub(crate) fn wait_timeout(&self, timeout: Duration) -> Result<bool, Error> {
        self.wait_within(Some(timeout))
    }

    /// Waits up to `timeout` for the child to end, reading its report on the way; true
    /// once it has ended and been reaped.
    ///
    /// Concurrent waiters serialise on the status lock; each wait polls in slices short
    /// enough that a second waiter is not starved.
    pub(crate) fn wait_within(&self, timeout: Option<Duration>) -> Result<bool, Error> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            let mut status = self.lock();
            if status.exitcode.is_some() {
                return Ok(true);
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            // Hold the lock for at most a slice, so `exitcode()` from another thread
            // is never blocked for long behind a long join.
            let slice = left.map_or(Duration::from_millis(50), |l| {
                l.min(Duration::from_millis(50))
            });
            let mut watched = vec![self.exit_fd(&status)];
            if let Some(results) = &status.results {
                watched.push(results.as_fd());
            }
            let ready = flotilla_ipc::wait_indices_timeout(&watched, slice)?;
            let exited = ready.first() == Some(&0);
            if ready.len() > usize::from(exited) {
                self.read_report(&mut status)?;
            }
            if exited {
                self.reap(&mut status)?;
                if let Some(exitcode) = status.exitcode {
                    flotilla_core::event!(
                        flotilla_core::log::Level::DEBUG,
                        child = %self.name,
                        child_pid = self.pid,
                        exitcode,
                        "a process ended"
                    );
                    // Anything the child wrote before ending is already buffered: read
                    // it, and close the channel (a sibling may hold the child's end, so
                    // end of file may never come).
                    // A report stored in the shared page was not sent: the channel
                    // is empty then, and needs no read.
                    self.read_page(&mut status)?;
                    if matches!(status.outcome, Outcome::Pending) {
                        self.read_report(&mut status)?;
                    }
                    status.results = None;
                    return Ok(true);
                }
            }
            drop(status);
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(false);
            }
        }
    }

    /// The descriptor that becomes readable when there is news of the child's end: for
    /// a forkserver child, its pidfd once its report is in (see [`reap`](Self::reap))
    /// or its server is gone.
    fn exit_fd<'a>(&'a self, status: &Status) -> BorrowedFd<'a> {
        match &self.watch {
            ExitWatch::Server {
                pidfd: Some(pidfd), ..
            } if status.server_gone || !matches!(status.outcome, Outcome::Pending) => pidfd.as_fd(),
            _ => self.sentinel(),
        }
    }

    /// Reads as much of the child's report as has arrived, without blocking; closes the
    /// channel once the report is whole, or at end of file.
    fn read_report(&self, status: &mut Status) -> Result<(), Error> {
        let Some(results) = &status.results else {
            return Ok(());
        };
        match results.try_recv_frame(&mut status.reader) {
            Ok(Some((bytes, fds))) => {
                status.results = None;
                let report: Report =
                    flotilla_core::codec::decode(&bytes).map_err(flotilla_ipc::Error::from)?;
                status.outcome = Outcome::Reported(report, fds);
            }
            Ok(None) => {}
            // No report is coming: the child died before sending it, or while sending
            // it (a truncated report is no report; its exit status tells what happened).
            Err(
                flotilla_ipc::RecvError::Disconnected | flotilla_ipc::RecvError::Truncated { .. },
            ) => status.results = None,
            Err(e) => {
                status.results = None;
                return Err(e.into());
            }
        }
        Ok(())
    }

    /// Once the child has ended: takes the report from its shared page, if it stored
    /// one there (then nothing came on the channel), and recycles the page.
    fn read_page(&self, status: &mut Status) -> Result<(), Error> {
        let Some(PageReport { page, child_end }) = self
            .page
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        else {
            return Ok(());
        };
        drop(child_end);
        let stored = page.read();
        // The child has ended: the page is free for the next fork start.
        page.recycle();
        if let (Outcome::Pending, Some(bytes)) = (&status.outcome, stored) {
            let report: Report =
                flotilla_core::codec::decode(&bytes).map_err(flotilla_ipc::Error::from)?;
            status.outcome = Outcome::Reported(report, Vec::new());
        }
        Ok(())
    }

    fn reap(&self, status: &mut Status) -> Result<(), Error> {
        match &self.watch {
            ExitWatch::Direct { .. } => status.exitcode = sys::try_reap(self.pid)?,
            ExitWatch::Server {
                status: channel,
                pidfd,
            } => {
                if !status.server_gone {
                    match channel.recv_timeout::<i32>(Duration::ZERO) {
                        Ok(code) => status.exitcode = Some(code),
                        Err(flotilla_ipc::RecvTimeoutError::Timeout(_)) => {}
                        Err(flotilla_ipc::RecvTimeoutError::Recv(
                            flotilla_ipc::RecvError::Disconnected,
                        )) if pidfd.is_some() => {
                            status.server_gone = true;
                        }
                        Err(flotilla_ipc::RecvTimeoutError::Recv(
                            flotilla_ipc::RecvError::Disconnected,
                        )) => {
                            return Err(Error::ForkServer(format!(
                                "the forkserver went away before reporting how {} (pid {}) \
                                 ended, and the child cannot be followed without it",
                                self.name, self.pid
                            )));
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                // A child whose report is in has ended once its pidfd says so, and
                // with the code its report implies (it exits with exactly that code
                // right after sending it): no need to wait for the server to wake up,
                // reap it and send the code, which is a second wake-up of this
                // process. The server's code, when it came first, is the one kept.
                let reported = !matches!(status.outcome, Outcome::Pending);
                if let (None, true, Some(pidfd)) =
                    (status.exitcode, status.server_gone || reported, pidfd)
                    && flotilla_ipc::wait_indices_timeout(&[pidfd.as_fd()], Duration::ZERO)?.first()
                        == Some(&0)
                {
                    // It ended, and only its report can say how.
                    self.read_report(status)?;
                    status.exitcode = Some(match &status.outcome {
                        Outcome::Reported(Report::Returned(_), _) | Outcome::Taken => 0,
                        Outcome::Reported(Report::Panicked(_), _) => 1,
                        Outcome::Reported(Report::Refused(_), _) => 70,
                        Outcome::Pending => {
                            status.lost = true;
                            LOST_EXIT
                        }
                    });
                }
            }
        }
        Ok(())
    }

    /// The exit code if the child has ended (reaping it): 0 for success, 1 for a panic,
    /// `-N` when killed by signal N.
    pub(crate) fn exitcode(&self) -> Result<Option<i32>, Error> {
        self.wait_timeout(Duration::ZERO)?;
        Ok(self.lock().exitcode)
    }

    /// Sends `signal`, unless the child is already known to have ended.
    pub(crate) fn signal(&self, signal: i32) -> Result<(), Error> {
        let status = self.lock();
        if status.exitcode.is_some() {
            return Ok(());
        }
        let pidfd = match &self.watch {
            ExitWatch::Direct { pidfd } => Some(pidfd),
            ExitWatch::Server { pidfd, .. } => pidfd.as_ref(),
        };
        match pidfd {
            Some(pidfd) => sys::pidfd_send_signal(pidfd.as_fd(), signal),
            None => nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.pid),
                nix::sys::signal::Signal::try_from(signal).map_err(|e| Error::os("kill", e))?,
            )
            .map_err(|e| Error::os("kill", e)),
        }
    }

    /// Takes the report once the child has ended (see `Process::join`); the exit code
    /// is `None` when it cannot be known (see [`LOST_EXIT`]).
    pub(crate) fn take_outcome(&self) -> (Option<i32>, Outcome) {
        let mut status = self.lock();
        if status.lost {
            return (None, Outcome::Pending);
        }
        let outcome = match &status.outcome {
            // Failures stay, so every join reports them.
            Outcome::Reported(Report::Panicked(m), _) => {
                Outcome::Reported(Report::Panicked(m.clone()), Vec::new())
            }
            Outcome::Reported(Report::Refused(m), _) => {
                Outcome::Reported(Report::Refused(m.clone()), Vec::new())
            }
            Outcome::Pending => Outcome::Pending,
            _ => std::mem::replace(&mut status.outcome, Outcome::Taken),
        };
        (status.exitcode, outcome)
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        // Before the fields close them: see `fds`.
        match &self.watch {
            ExitWatch::Direct { pidfd } => fds::unregister(pidfd.as_raw_fd()),
            ExitWatch::Server { status, pidfd } => {
                fds::unregister(status.as_fd().as_raw_fd());
                if let Some(pidfd) = pidfd {
                    fds::unregister(pidfd.as_raw_fd());
                }
            }
        }
    }
}
