//! [`Event`]: Python's `threading.Event`, a flag that threads wait to see set.

use std::fmt;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use flotilla_core::Deadline;

use super::lock;

/// A flag threads can wait on: Python's `threading.Event`.
///
/// [`set`](Self::set) raises the flag and wakes every waiter;
/// [`clear`](Self::clear) lowers it; [`wait`](Self::wait) blocks until it is raised.
/// A waiter woken by `set` returns `true` even if another thread clears the flag again
/// before the waiter runs, as in Python: it saw the event happen.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use flotilla_thread::Event;
///
/// let ready = Arc::new(Event::new());
/// let waiter = {
///     let ready = Arc::clone(&ready);
///     std::thread::spawn(move || ready.wait_timeout(Duration::from_secs(10)))
/// };
/// ready.set();
/// assert!(waiter.join().unwrap());
/// assert!(ready.is_set());
/// ```
pub struct Event {
    state: Mutex<State>,
    cv: Condvar,
}

#[derive(Debug)]
struct State {
    flag: bool,
    /// How many times `set` raised the flag. A waiter that sees it change was woken
    /// by a `set`, whatever the flag is now.
    sets: u64,
}

impl Event {
    /// A new event, not set.
    ///
    /// # Examples
    ///
    /// ```
    /// let event = flotilla_thread::Event::new();
    /// assert!(!event.is_set());
    /// ```
    pub const fn new() -> Self {
        Event {
            state: Mutex::new(State {
                flag: false,
                sets: 0,
            }),
            cv: Condvar::new(),
        }
    }

    /// Whether the flag is set.
    ///
    /// # Examples
    ///
    /// ```
    /// let event = flotilla_thread::Event::new();
    /// event.set();
    /// assert!(event.is_set());
    /// ```
    pub fn is_set(&self) -> bool {
        lock(&self.state).flag
    }

    /// Sets the flag and wakes every thread waiting for it. Setting a set event does
    /// nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// let event = flotilla_thread::Event::new();
    /// event.set();
    /// event.set();
    /// assert!(event.is_set());
    /// ```
    pub fn set(&self) {
        let mut state = lock(&self.state);
        if !state.flag {
            state.flag = true;
            state.sets = state.sets.wrapping_add(1);
            self.cv.notify_all();
        }
    }

    /// Clears the flag: later calls to [`wait`](Self::wait) block until the next
    /// [`set`](Self::set).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let event = flotilla_thread::Event::new();
    /// event.set();
    /// event.clear();
    /// assert!(!event.wait_timeout(Duration::ZERO));
    /// ```
    pub fn clear(&self) {
        lock(&self.state).flag = false;
    }

    /// Blocks until the flag is set (already, or by a [`set`](Self::set) while
    /// waiting): Python's `Event.wait()`.
    ///
    /// # Examples
    ///
    /// ```
    /// let event = flotilla_thread::Event::new();
    /// event.set();
    /// event.wait();
    /// ```
    pub fn wait(&self) {
        self.wait_within(None);
    }

    /// Blocks until the flag is set, or until `timeout` passes: Python's
    /// `Event.wait(timeout)`.
    ///
    /// Returns `true` if the flag was set (already, or by a [`set`](Self::set) while
    /// waiting), `false` if the timeout passed first. `Duration::ZERO` only looks.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let event = flotilla_thread::Event::new();
    /// assert!(!event.wait_timeout(Duration::from_millis(10)));
    /// event.set();
    /// assert!(event.wait_timeout(Duration::ZERO));
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_within(Some(timeout))
    }

    /// The body of [`wait`](Self::wait) and [`wait_timeout`](Self::wait_timeout).
    pub(crate) fn wait_within(&self, timeout: Option<Duration>) -> bool {
        let mut state = lock(&self.state);
        if state.flag {
            return true;
        }
        let seen = state.sets;
        let deadline = Deadline::after(timeout);
        loop {
            if state.sets != seen {
                return true;
            }
            if deadline.expired() {
                return false;
            }
            state = deadline.wait(&self.cv, state);
        }
    }
}

impl Default for Event {
    fn default() -> Self {
        Event::new()
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("is_set", &self.is_set())
            .finish()
    }
}
