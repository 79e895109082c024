//! [`CancelToken`]: cooperative cancellation for tasks that are already running.
//!
//! [`Future::cancel`](crate::Future::cancel) can only stop a task that has not started,
//! as in Python. A running task stops early only if it is written to: it checks a token
//! now and then. The model is .NET's `CancellationToken`: one token is shared by the
//! side that asks for cancellation and the task that honours it; it can carry a
//! deadline, after which it counts as cancelled; and child tokens are cancelled with
//! their parent.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use crate::deadline::Deadline;
use crate::error::TaskError;

struct TokenInner {
    cancelled: AtomicBool,
    deadline: Deadline,
    /// Children to cancel with this token; the lock also pairs with `cond` for `wait`.
    children: Mutex<Vec<Weak<TokenInner>>>,
    cond: Condvar,
}

/// A shared flag asking a running task to stop, optionally with a deadline.
///
/// Clones share the flag. Checking it is one atomic load (plus a clock read when the
/// token has a deadline), cheap enough for a task's inner loop.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use flotilla_core::CancelToken;
///
/// let token = CancelToken::new();
/// let worker = {
///     let token = token.clone();
///     std::thread::spawn(move || {
///         let mut rounds = 0u64;
///         while !token.is_cancelled() {
///             rounds += 1;
///             std::thread::yield_now();
///         }
///         rounds
///     })
/// };
/// token.cancel();
/// worker.join().unwrap();
///
/// let expired = CancelToken::with_timeout(Duration::ZERO);
/// assert!(expired.check().is_err());
/// ```
#[derive(Clone)]
pub struct CancelToken {
    inner: Arc<TokenInner>,
}

impl CancelToken {
    /// A token that is cancelled only by [`cancel`](CancelToken::cancel).
    pub fn new() -> Self {
        Self::build(Deadline::NEVER)
    }

    /// A token that also counts as cancelled from `deadline` on.
    pub fn with_deadline(deadline: Instant) -> Self {
        Self::build(Deadline::at(deadline))
    }

    /// A token that also counts as cancelled once `timeout` has passed from now.
    pub fn with_timeout(timeout: Duration) -> Self {
        Self::build(Deadline::after(Some(timeout)))
    }

    fn build(deadline: Deadline) -> Self {
        CancelToken {
            inner: Arc::new(TokenInner {
                cancelled: AtomicBool::new(false),
                deadline,
                children: Mutex::new(Vec::new()),
                cond: Condvar::new(),
            }),
        }
    }

    /// A new token cancelled when this one is (and on its own), with the earlier of
    /// the two deadlines.
    ///
    /// ```
    /// let parent = flotilla_core::CancelToken::new();
    /// let child = parent.child();
    /// parent.cancel();
    /// assert!(child.is_cancelled());
    /// ```
    pub fn child(&self) -> CancelToken {
        let child = Self::build(self.inner.deadline);
        let mut children = self.lock_children();
        if self.inner.cancelled.load(Ordering::Acquire) {
            child.inner.cancelled.store(true, Ordering::Release);
        } else {
            children.retain(|c| c.strong_count() > 0);
            children.push(Arc::downgrade(&child.inner));
        }
        child
    }

    fn lock_children(&self) -> std::sync::MutexGuard<'_, Vec<Weak<TokenInner>>> {
        self.inner
            .children
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Asks the task to stop, and cancels every child token. Idempotent.
    pub fn cancel(&self) {
        let children = {
            let mut children = self.lock_children();
            if self.inner.cancelled.swap(true, Ordering::AcqRel) {
                return;
            }
            std::mem::take(&mut *children)
        };
        self.inner.cond.notify_all();
        for child in children.iter().filter_map(Weak::upgrade) {
            CancelToken { inner: child }.cancel();
        }
    }

    /// True once [`cancel`](CancelToken::cancel) was called (here or on a parent) or
    /// the deadline has passed.
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancelled.load(Ordering::Acquire) || self.inner.deadline.expired()
    }

    /// `Err(TaskError::Cancelled)` when cancelled, so a task can stop with `?`.
    pub fn check(&self) -> Result<(), TaskError> {
        if self.is_cancelled() {
            Err(TaskError::Cancelled)
        } else {
            Ok(())
        }
    }

    /// The deadline, when the token has one.
    pub fn deadline(&self) -> Option<Instant> {
        self.inner.deadline.instant()
    }

    /// Blocks until the token is cancelled (or its deadline passes).
    pub fn wait(&self) {
        self.wait_within(None);
    }

    /// Blocks until the token is cancelled (or its deadline passes), or `timeout`
    /// passes; true when cancelled.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_within(Some(timeout))
    }

    /// The body of [`wait`](Self::wait) and [`wait_timeout`](Self::wait_timeout).
    fn wait_within(&self, timeout: Option<Duration>) -> bool {
        let wait_until = Deadline::after(timeout).min(self.inner.deadline);
        let mut guard = self.lock_children();
        while !self.inner.cancelled.load(Ordering::Acquire) && !wait_until.expired() {
            guard = wait_until.wait(&self.inner.cond, guard);
        }
        drop(guard);
        self.is_cancelled()
    }
}

impl Default for CancelToken {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for CancelToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CancelToken")
            .field("cancelled", &self.is_cancelled())
            .field("deadline", &self.deadline())
            .finish()
    }
}
