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
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use flotilla_core::codec;
use flotilla_ipc::{Connection, pipe};
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
                if let Some((status, _)) = children.remove(&pid) {
                    let _ = status.send(&code);
                }
            }
        }
        if control_ready {
            match control.recv_frame() {
                Ok((bytes, fds)) => {
                    let Ok(request) = codec::decode::<Request>(&bytes) else {
                        continue;
                    };
                    let mut fds = fds.into_iter();
                    let (Some(boot), Some(status)) = (fds.next(), fds.next()) else {
                        continue;
                    };
                    let status = Connection::from_socket(status);
                    // SAFETY: this process is single-threaded (it was exec'd fresh and
                    // starts no threads), so the child may run any code.
                    match unsafe { nix::unistd::fork() } {
                        Ok(nix::unistd::ForkResult::Child) => {
                            drop(control);
                            drop(sigfd);
                            drop(status);
                            children.clear();
                            let _ = nix::sys::signal::sigprocmask(
                                SigmaskHow::SIG_UNBLOCK,
                                Some(&chld),
                                None,
                            );
                            // SAFETY: restoring the default disposition installs no code.
                            let _ = unsafe {
                                nix::sys::signal::signal(
                                    Signal::SIGINT,
                                    nix::sys::signal::SigHandler::SigDfl,
                                )
                            };
                            drop(parent_fd);
                            if request.daemon {
                                sys::die_with_server(me);
                            }
                            boot::run_task(Connection::from_socket(boot), false)
                        }
                        Ok(nix::unistd::ForkResult::Parent { child }) => {
                            drop(boot);
                            if status.send(&child.as_raw()).is_ok() {
                                children.insert(child.as_raw(), (status, request.daemon));
                            }
                        }
                        Err(e) => {
                            let _ = status.send(&-(e as i32));
                        }
                    }
                }
                Err(_) => leave(&children),
            }
        }
    }
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
