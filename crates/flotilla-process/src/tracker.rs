//! The shared-memory name tracker: CPython's resource tracker, for the names of
//! `flotilla_ipc::SharedMemory` segments.
//!
//! A named segment's creator unlinks the name when it drops the segment; a creator
//! killed by `SIGKILL` never does, and the name would stay in `/dev/shm` until reboot.
//! So flotilla-process installs a hook in flotilla-ipc ([`flotilla_ipc::set_name_tracker`],
//! at bootstrap, in every process) that reports each name this process takes on or gives
//! up to a small tracker process, spawned on the first named segment. The tracker
//! watches a pidfd of its parent; when the parent ends, however it ends, it reads the
//! reports still in flight and unlinks every name still owned — each only while it still
//! names the segment it named when reported (same inode), so a newer segment under the
//! same name is left alone. A name is tracked once `SharedMemory::create` has returned:
//! a creator killed inside `create`, between making the name and reporting it, leaves
//! it behind (as CPython's tracker does).
//!
//! One tracker per process that creates named segments: a fork child starts its own
//! (the parent's connection is one of flotilla's own descriptors, which a fork child
//! does not keep), so each tracker follows exactly one creator. The handle lives in the
//! process state, which a fork child replaces.

use std::collections::HashMap;
use std::os::fd::AsFd;
use std::time::Duration;

use flotilla_ipc::{Connection, NameEvent, pipe};
use nix::fcntl::OFlag;
use nix::sys::mman::{shm_open, shm_unlink};
use nix::sys::stat::{Mode, fstat};
use serde::{Deserialize, Serialize};

use crate::boot::{self, ROLE_TRACKER};
use crate::fds::Internal;
use crate::state;
use crate::sys;

/// A report from the creator to its tracker.
#[derive(Debug, Serialize, Deserialize)]
enum Report {
    /// The creator unlinks this name when it drops it: unlink it should it die first.
    Owned(String),
    /// The creator no longer does: forget it.
    Released(String),
}

/// The tracker as its creator sees it.
#[derive(Debug)]
pub(crate) struct Tracker {
    conn: Internal<Connection>,
}

/// The hook installed in flotilla-ipc: reports `event` for `name` to this process's
/// tracker, starting it on first use. Failures are logged, never raised: tracking is
/// a safety net, and the segment itself works without it.
pub(crate) fn track(event: NameEvent, name: &str) {
    let report = match event {
        NameEvent::Owned => Report::Owned(name.to_owned()),
        NameEvent::Released => Report::Released(name.to_owned()),
    };
    let mut state = state::lock();
    if state.tracker.is_none() {
        if event == NameEvent::Released {
            return; // nothing was reported, nothing to forget
        }
        match start() {
            Ok(tracker) => state.tracker = Some(tracker),
            Err(e) => {
                flotilla_core::event!(flotilla_core::log::Level::WARN,
                    error = %e,
                    "could not start the shared memory tracker: a named segment of a \
                     process that dies without unlinking it will stay in /dev/shm"
                );
                return;
            }
        }
    }
    let sent = state
        .tracker
        .as_ref()
        .map(|t| t.conn.send(&report))
        .expect("just set");
    if let Err(e) = sent {
        flotilla_core::event!(flotilla_core::log::Level::WARN, error = %e, "the shared memory tracker is gone");
        state.tracker = None;
    }
}

fn start() -> Result<Tracker, crate::Error> {
    let (ours, theirs) = pipe(true)?;
    let pid = boot::spawn(ROLE_TRACKER, theirs)?;
    // It says hello once it watches us, so a name reported next is never missed.
    match ours.recv_timeout::<u32>(Duration::from_secs(60)) {
        Ok(_) => Ok(Tracker {
            conn: Internal::new(ours),
        }),
        Err(e) => {
            let _ = sys::try_reap(pid);
            Err(crate::Error::Unsupported(format!(
                "the shared memory tracker (pid {pid}) did not start: {e}"
            )))
        }
    }
}

/// The tracker's life: follows its parent until it ends, then unlinks what it left.
pub(crate) fn serve(conn: Connection) -> ! {
    // Ctrl+C goes to the whole process group; the tracker outlives whatever the
    // parent makes of it.
    // SAFETY: ignoring a signal installs no handler code.
    let _ = unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGINT,
            nix::sys::signal::SigHandler::SigIgn,
        )
    };
    let parent = nix::unistd::getppid().as_raw();
    let parent_fd = sys::pidfd_open(parent).ok();
    if nix::unistd::getppid().as_raw() != parent || conn.send(&1u32).is_err() {
        sys::exit_now(0);
    }
    // name → (device, inode) of the segment it named when reported
    let mut owned: HashMap<String, (u64, u64)> = HashMap::new();
    // Whether the connection still carries reports. One that failed (not merely a
    // report that did not decode) would fail again at once: it is no longer watched,
    // and the parent's pidfd alone says when to clean up.
    let mut reading = true;
    loop {
        let mut watched = Vec::with_capacity(2);
        if reading {
            watched.push(conn.as_fd());
        }
        if let Some(fd) = &parent_fd {
            watched.push(fd.as_fd());
        }
        if watched.is_empty() {
            break; // nothing left to tell us when the parent ends
        }
        let ready = match flotilla_ipc::wait_indices(&watched) {
            Ok(ready) => ready,
            Err(_) => {
                // An interrupted or failed poll: look again, but never in a tight loop.
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let parent_index = usize::from(reading);
        if parent_fd.is_some() && ready.contains(&parent_index) {
            // The parent ended: its last reports are still buffered.
            while let Ok(report) = conn.recv_timeout::<Report>(Duration::ZERO) {
                apply(&mut owned, report);
            }
            break;
        }
        match conn.recv::<Report>() {
            Ok(report) => apply(&mut owned, report),
            // End of file: the parent (the only holder of the other end) ended.
            Err(flotilla_ipc::RecvError::Disconnected) => break,
            Err(flotilla_ipc::RecvError::Decode(_)) => {}
            Err(_) => reading = false,
        }
    }
    for (name, identity) in &owned {
        let path = format!("/{name}");
        if segment_identity(&path) == Some(*identity) {
            let _ = shm_unlink(path.as_str());
        }
    }
    sys::exit_now(0)
}

fn apply(owned: &mut HashMap<String, (u64, u64)>, report: Report) {
    match report {
        Report::Owned(name) => {
            if let Some(identity) = segment_identity(&format!("/{name}")) {
                owned.insert(name, identity);
            }
        }
        Report::Released(name) => {
            owned.remove(&name);
        }
    }
}

/// The device and inode of the segment named `path`, if there is one.
fn segment_identity(path: &str) -> Option<(u64, u64)> {
    let fd = shm_open(path, OFlag::O_RDONLY, Mode::empty()).ok()?;
    let stat = fstat(&fd).ok()?;
    Some((stat.st_dev, stat.st_ino))
}
