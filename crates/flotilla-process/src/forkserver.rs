//! The forkserver: a clean process that forks every new child on request.
//!
//! It is started on first use by a fresh `exec` of the program, so it holds none of the
//! parent's threads, locks or state, and forking it is safe however many threads the
//! parent runs. It is single-threaded: one `poll` loop over the control socket and a
//! `signalfd` for `SIGCHLD`.
//!
//! A request carries two descriptors: the child's bootstrap socket (the parent sends the
//! task on its other end, exactly as for spawn) and a status socket, on which the server
//! answers with the child's pid and later, once it has reaped the child, its exit code.
//! Only the server can reap its children, so only it can report how they ended.
//!
//! Children are forked ahead of their requests. Once it has served a request, the
//! server forks a *spare*, which waits on a channel of its own; the next request goes
//! to the spare (one `sendmsg` of the request and the bootstrap descriptor), the server
//! answers at once, and forks the next spare while the new child runs: the fork is off
//! the path of a start. A spare killed while it waits is reaped like any child, and the
//! next request forks a new one for itself, as the first request does; a spare ends
//! with the server (end of file on its channel). Every child starts as a spare, so a
//! child's start has one path.
//!
//! The server exits when its parent process ends — it watches a pidfd of it, so a fork
//! child of the parent that still holds a copy of the control socket cannot keep it
//! alive — or when its control socket reaches end of file, terminating its daemonic
//! children first. Daemonic children also die with the server (`PR_SET_PDEATHSIG`,
//! which is safe here: the server has one thread, so the signal is tied to the whole
//! server). The parent's end of the control socket is close-on-exec and registered in
//! `fds`, so no child of the parent inherits it in the first place.
//!
//! This process-wide singleton lives here and only here; `state` holds the handle.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use flotilla_core::codec;
use flotilla_ipc::{Connection, pipe};
use nix::errno::Errno;
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use serde::{Deserialize, Serialize};

use crate::boot::{self, ROLE_FORKSERVER};
use crate::error::Error;
use crate::fds::Internal;
use crate::state;
use crate::sys;

#[derive(Debug, Serialize, Deserialize)]
struct Request {
    daemon: bool,
}

/// The parent's handle on its forkserver.
#[derive(Debug)]
pub(crate) struct ForkServer {
    control: Internal<Connection>,
    pid: i32,
    /// Requests go one at a time: a request is one frame, but the server's answers come
    /// on per-child channels, so this lock only orders the sends.
    send: Mutex<()>,
}

impl ForkServer {
    fn start() -> Result<ForkServer, Error> {
        let (ours, theirs) = pipe(true)?;
        let pid = boot::spawn(ROLE_FORKSERVER, theirs)?;
        // The server says hello once it runs, so a server that cannot start is an error
        // here, not a hang at the first request.
        match ours.recv_timeout::<u32>(Duration::from_secs(60)) {
            Ok(_) => {
                flotilla_core::event!(
                    flotilla_core::log::Level::INFO,
                    forkserver_pid = pid,
                    "started the forkserver"
                );
                Ok(ForkServer {
                    control: Internal::new(ours),
                    pid,
                    send: Mutex::new(()),
                })
            }
            Err(e) => {
                let _ = sys::try_reap(pid);
                Err(Error::ForkServer(format!(
                    "the forkserver (pid {pid}) did not start: {e}; if this program's main does not \
                     start with flotilla::init(), add it"
                )))
            }
        }
    }

    /// Asks the server to fork a child that runs the task arriving on `boot`, then calls
    /// `send_task` (which sends that task on the other end of `boot`) before it waits for
    /// the server's answer. Returns the child's pid and the channel its exit code will
    /// arrive on.
    ///
    /// The task is sent while the server forks, not after its answer: the child finds it
    /// waiting when it starts, instead of waiting for the parent to wake up and send it.
    /// A task larger than the socket buffer blocks `send_task` until the child reads it;
    /// if the child never comes (the fork failed, the server died), the server closes its
    /// end of `boot` (or the kernel does, with the server's queue), and the send ends.
    pub(crate) fn fork(
        &self,
        daemon: bool,
        boot: OwnedFd,
        send_task: impl FnOnce() -> Result<(), Error>,
    ) -> Result<(i32, Connection), Error> {
        let (status, status_theirs) = pipe(true)?;
        let request = codec::encode(&Request { daemon }).map_err(flotilla_ipc::Error::from)?;
        {
            let _guard = self.send.lock().unwrap_or_else(PoisonError::into_inner);
            self.control
                .send_frame(&request, &[boot, status_theirs.into_fd()])?;
        }
        send_task()?;
        let pid = status
            .recv_timeout::<i32>(Duration::from_secs(60))
            .map_err(|e| Error::ForkServer(format!("no answer to a fork request: {e}")))?;
        if pid < 0 {
            return Err(Error::ForkServer(format!(
                "fork failed in the server: errno {}",
                -pid
            )));
        }
        Ok((pid, status))
    }

    pub(crate) fn pid(&self) -> i32 {
        self.pid
    }
}

/// The forkserver of this process, started on first use (and again if it died).
pub(crate) fn get() -> Result<Arc<ForkServer>, Error> {
    let mut state = state::lock();
    if let Some(server) = &state.forkserver {
        // A server that died is replaced; its zombie is reaped on the way.
        match sys::try_reap(server.pid()) {
            Ok(None) => return Ok(Arc::clone(server)),
            _ => state.forkserver = None,
        }
    }
    let server = Arc::new(ForkServer::start()?);
    state.forkserver = Some(Arc::clone(&server));
    Ok(server)
}

/// The server's life. Never returns.
pub(crate) fn serve(control: Connection) -> ! {
    // Ctrl+C in a terminal goes to the whole process group; the server is not the one to
    // decide what it means for the children.
    // SAFETY: ignoring a signal installs no handler code.
    let _ =
        unsafe { nix::sys::signal::signal(Signal::SIGINT, nix::sys::signal::SigHandler::SigIgn) };
    let mut chld = SigSet::empty();
    chld.add(Signal::SIGCHLD);
    let sigfd = nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&chld), None)
        .and_then(|()| SignalFd::with_flags(&chld, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK));
    let sigfd = match sigfd {
        Ok(fd) => fd,
        Err(e) => {
            eprintln!("flotilla forkserver: cannot watch for children: {e}");
            sys::exit_now(71)
        }
    };
    // The process that started us; its end is ours too. (Checked after opening: had
    // it already ended, we would have been re-parented.)
    let parent = nix::unistd::getppid().as_raw();
    // Without a pidfd (kernel before 5.3), end of file on the control socket remains
    // the only signal.
    let parent_fd = sys::pidfd_open(parent).ok();
    if nix::unistd::getppid().as_raw() != parent {
        sys::exit_now(0);
    }
    if control.send(&1u32).is_err() {
        sys::exit_now(0);
    }
    flotilla_core::log::set_process_name("ForkServer");
    let me = std::process::id() as i32;
    // pid → (status channel, daemon)
    let mut children: HashMap<i32, (Connection, bool)> = HashMap::new();
    // Made for the first request, and again after each one it serves.
    let mut spare: Option<Spare> = None;
    loop {
        let mut watched = vec![control.as_fd(), sigfd.as_fd()];
        if let Some(fd) = &parent_fd {
            watched.push(fd.as_fd());
        }
        let Ok(ready) = flotilla_ipc::wait_indices(&watched) else {
            continue;
        };
        let (control_ready, child_ended) = (ready.contains(&0), ready.contains(&1));
        if ready.contains(&2) {
            leave(&children);
        }
        if child_ended {
            while let Ok(Some(_)) = sigfd.read_signal() {}
            for (pid, code) in sys::reap_any() {
                if spare.as_ref().is_some_and(|spare| spare.pid == pid) {
                    spare = None; // killed while it waited: the next request forks another
                } else if let Some((status, _)) = children.remove(&pid) {
                    let _ = status.send(&code);
                }
            }
        }
        if !control_ready {
            continue;
        }
        let Ok((bytes, fds)) = control.recv_frame() else {
            leave(&children)
        };
        let Ok(request) = codec::decode::<Request>(&bytes) else {
            continue;
        };
        let mut fds = fds.into_iter();
        let (Some(boot), Some(status)) = (fds.next(), fds.next()) else {
            continue;
        };
        let status = Connection::from_socket(status);
        // The server's own descriptors, which a spare closes.
        let mut own: Vec<RawFd> = vec![control.as_fd().as_raw_fd(), sigfd.as_raw_fd()];
        own.extend(parent_fd.as_ref().map(AsRawFd::as_raw_fd));
        own.extend(
            children
                .values()
                .map(|(status, _)| status.as_fd().as_raw_fd()),
        );
        // The spare takes the request; one that died meanwhile refuses it (its end is
        // closed), is reaped as it ended, and a new one is forked for the request.
        let mut started = Err(Errno::EAGAIN);
        for _ in 0..2 {
            let taker = match spare.take() {
                Some(taker) => taker,
                None => {
                    let request_fds = [boot.as_raw_fd(), status.as_fd().as_raw_fd()];
                    match fork_spare(&[&own[..], &request_fds[..]].concat(), &chld, me) {
                        Ok(taker) => taker,
                        Err(e) => {
                            started = Err(e);
                            break;
                        }
                    }
                }
            };
            if taker
                .conn
                .send_frame(&bytes, std::slice::from_ref(&boot))
                .is_ok()
            {
                started = Ok(taker.pid);
                break;
            }
        }
        drop(boot);
        match started {
            Ok(pid) => {
                if status.send(&pid).is_ok() {
                    own.push(status.as_fd().as_raw_fd());
                    children.insert(pid, (status, request.daemon));
                }
            }
            Err(e) => {
                let _ = status.send(&-(e as i32));
            }
        }
        // The next child is forked now, while this one runs and its parent waits on
        // it, instead of when it is asked for (on failure, when it is asked for).
        spare = fork_spare(&own, &chld, me).ok();
    }
}

/// Forks a [`Spare`]. In the spare, which never returns from here, the descriptors
/// `close` (the server's own) are closed, not dropped: nothing of the server's runs
/// there again.
fn fork_spare(close: &[RawFd], chld: &SigSet, server: i32) -> Result<Spare, Errno> {
    let (ours, theirs) = pipe(true).map_err(|_| Errno::last())?;
    // SAFETY: this process is single-threaded (it was exec'd fresh and starts no
    // threads), so the child may run any code.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Child => {
            for &fd in close {
                // SAFETY: the server's descriptors, whose owners in this copy of its
                // memory are never dropped (this function does not return here), so
                // nothing closes them again.
                unsafe { libc::close(fd) };
            }
            drop(ours);
            spare_main(theirs, chld, server)
        }
        nix::unistd::ForkResult::Parent { child } => Ok(Spare {
            pid: child.as_raw(),
            conn: ours,
        }),
    }
}

/// A child the server forked before it was asked for, waiting for a request: a start
/// then costs the server one `sendmsg` instead of a `fork`, and the fork of the next
/// spare happens while the new child runs.
struct Spare {
    pid: i32,
    /// The server's end of the spare's channel, on which a request arrives with the
    /// child's bootstrap descriptor.
    conn: Connection,
}

/// A spare's life: waits for a request, then becomes the child it asks for. It ends
/// when the server closes its channel instead (the server ended).
fn spare_main(conn: Connection, chld: &SigSet, server: i32) -> ! {
    // What `ps` shows while it waits; the child it becomes names itself.
    sys::set_process_name("ForkServerSpare");
    let Ok((bytes, fds)) = conn.recv_frame() else {
        sys::exit_now(0)
    };
    let (Ok(request), Some(boot)) = (codec::decode::<Request>(&bytes), fds.into_iter().next())
    else {
        sys::exit_now(0)
    };
    drop(conn);
    // Ctrl+C ignored until now, as by the server: a spare is not a child yet.
    become_child(chld);
    if request.daemon {
        sys::die_with_server(server);
    }
    boot::run_task(Connection::from_socket(boot), false)
}

/// In a new child of the server: takes back the signal dispositions the server changed
/// for itself.
fn become_child(chld: &SigSet) {
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(chld), None);
    // SAFETY: restoring the default disposition installs no code.
    let _ =
        unsafe { nix::sys::signal::signal(Signal::SIGINT, nix::sys::signal::SigHandler::SigDfl) };
}

/// The parent is gone: takes the daemonic children along, as the parent would have at
/// its exit, and ends the server (which kills any daemonic child the `SIGTERM` did not).
fn leave(children: &HashMap<i32, (Connection, bool)>) -> ! {
    for (pid, (_, daemon)) in children {
        if *daemon {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid), Signal::SIGTERM);
        }
    }
    sys::exit_now(0)
}
