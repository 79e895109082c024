//! [`Event`]: Python's `multiprocessing.Event`, a flag in shared memory that processes
//! wait to see set.
//!
//! # Words
//!
//! - `STATE`: the flag in bit 0, and above it a count of the times `set` raised it (it
//!   wraps). Waiters sleep on this word; a waiter that sees the count move was woken by
//!   a `set`, even if the flag was cleared again before it ran.
//! - `WAITERS`: processes about to sleep or asleep (rule 3 of the `sync` module doc).

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Kind, Segment};
use crate::futex::{notify_all, sleep, spin};
use flotilla_core::Deadline;

use crate::error::CreateError;

const STATE: usize = 4;
const WAITERS: usize = 8;
const FLAG: u32 = 1;

/// A flag that processes can wait on: Python's `multiprocessing.Event`.
///
/// [`set`](Self::set) raises the flag and wakes every waiter, in every process;
/// [`clear`](Self::clear) lowers it; [`wait`](Self::wait) blocks until it is raised. A
/// waiter woken by `set` returns `true` even if someone clears the flag again before the
/// waiter runs, as Python's `threading.Event` does (Python's `multiprocessing.Event`
/// may miss such a set and wait on). Give it to other processes by fork, as a process
/// argument or over a `Connection`; a clone is another handle to the same event.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use flotilla_ipc::Event;
///
/// let ready = Event::new().unwrap();
/// let waiter = {
///     let ready = ready.clone();
///     std::thread::spawn(move || ready.wait_timeout(Duration::from_secs(10)))
/// };
/// ready.set();
/// assert!(waiter.join().unwrap());
/// assert!(ready.is_set());
/// ```
#[derive(Clone)]
pub struct Event {
    segment: Segment,
}

impl Event {
    /// A new event, not set, in a small shared segment of its own.
    ///
    /// # Errors
    ///
    /// [`CreateError::Os`] if the system refuses the memory.
    ///
    /// ```
    /// let event = flotilla_ipc::Event::new().unwrap();
    /// assert!(!event.is_set());
    /// ```
    pub fn new() -> Result<Self, CreateError> {
        let (segment, ()) = Segment::new(Kind::Event, |_| Ok(()))?;
        Ok(Event { segment })
    }

    fn state(&self) -> &AtomicU32 {
        self.segment.u32_at(STATE)
    }

    fn waiters(&self) -> &AtomicU32 {
        self.segment.u32_at(WAITERS)
    }

    /// Whether the flag is set.
    ///
    /// ```
    /// let event = flotilla_ipc::Event::new().unwrap();
    /// event.set();
    /// assert!(event.is_set());
    /// ```
    pub fn is_set(&self) -> bool {
        self.state().load(Ordering::Acquire) & FLAG != 0
    }

    /// Sets the flag and wakes every waiter, in every process. Waiting after this
    /// returns at once until [`clear`](Self::clear).
    ///
    /// ```
    /// let event = flotilla_ipc::Event::new().unwrap();
    /// event.set();
    /// event.wait();
    /// ```
    pub fn set(&self) {
        let state = self.state();
        let mut now = state.load(Ordering::Relaxed);
        loop {
            if now & FLAG != 0 {
                return;
            }
            let raised = now.wrapping_add(2) | FLAG;
            match state.compare_exchange_weak(now, raised, Ordering::SeqCst, Ordering::Relaxed) {
                Ok(_) => break,
                Err(actual) => now = actual,
            }
        }
        if self.waiters().load(Ordering::SeqCst) > 0 {
            notify_all(state);
        }
    }

    /// Clears the flag: later waiters block until the next [`set`](Self::set).
    ///
    /// ```
    /// let event = flotilla_ipc::Event::new().unwrap();
    /// event.set();
    /// event.clear();
    /// assert!(!event.is_set());
    /// ```
    pub fn clear(&self) {
        self.state().fetch_and(!FLAG, Ordering::SeqCst);
    }

    /// Blocks until the flag is set (or a `set` happens while waiting): Python's
    /// `Event.wait()`.
    ///
    /// ```
    /// let event = flotilla_ipc::Event::new().unwrap();
    /// event.set();
    /// event.wait();
    /// ```
    pub fn wait(&self) {
        self.wait_within(None);
    }

    /// Blocks until the flag is set or `timeout` passes. Returns `true` if the flag was
    /// set or a `set` happened while waiting, `false` if the timeout passed first —
    /// Python's `Event.wait(timeout)`.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let event = flotilla_ipc::Event::new().unwrap();
    /// assert!(!event.wait_timeout(Duration::from_millis(10)));
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_within(Some(timeout))
    }

    /// The body of [`wait`](Self::wait) and [`wait_timeout`](Self::wait_timeout).
    fn wait_within(&self, timeout: Option<Duration>) -> bool {
        let state = self.state();
        let start = state.load(Ordering::Acquire);
        // Set now, or set (even if cleared since) after `start` was read.
        let seen = |now: u32| now & FLAG != 0 || now >> 1 != start >> 1;
        if seen(start) || spin(|| seen(state.load(Ordering::Acquire))) {
            return true;
        }
        let deadline = Deadline::after(timeout);
        self.waiters().fetch_add(1, Ordering::SeqCst);
        let set = loop {
            let now = state.load(Ordering::SeqCst);
            if seen(now) {
                break true;
            }
            if deadline.expired() {
                break false;
            }
            sleep(state, now, deadline);
        };
        self.waiters().fetch_sub(1, Ordering::SeqCst);
        set
    }
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.segment.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Segment::deserialize(deserializer, Kind::Event).map(|segment| Event { segment })
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("is_set", &self.is_set())
            .finish()
    }
}
