//! [`ReadySet`]: which of many child futures woke since they were last polled, so a
//! combinator (gather, wait, as_completed) polls only those, not all of them on every
//! wake-up. n children completing one by one cost O(n) polls in all, not O(n²).
//!
//! Each child gets a waker of its own, made once. Waking it queues the child's index
//! (once, however often it is woken before its next poll) and wakes the parent. The
//! parent drains the queue and clears each child's flag *before* polling it, so a wake
//! that arrives during that poll queues the child again rather than being lost.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Wake, Waker};

struct Queue {
    indices: Vec<usize>,
    parent: Option<Waker>,
}

struct Shared {
    queue: Mutex<Queue>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Only index pushes and waker swaps happen under this lock: never torn.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

struct Child {
    index: usize,
    queued: AtomicBool,
    shared: Arc<Shared>,
}

impl Wake for Child {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.queued.swap(true, Ordering::AcqRel) {
            return; // already queued; the parent will poll it
        }
        let parent = {
            let mut queue = self.shared.lock();
            queue.indices.push(self.index);
            queue.parent.clone()
        };
        // Woken outside the lock: a waker is the runtime's code.
        if let Some(parent) = parent {
            parent.wake();
        }
    }
}

/// The wake-up bookkeeping of a set of `n` child futures; every child starts queued,
/// so the first drain polls them all.
pub(crate) struct ReadySet {
    shared: Arc<Shared>,
    children: Vec<Arc<Child>>,
    wakers: Vec<Waker>,
}

impl ReadySet {
    pub(crate) fn new(n: usize) -> Self {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                indices: (0..n).collect(),
                parent: None,
            }),
        });
        let children: Vec<Arc<Child>> = (0..n)
            .map(|index| {
                Arc::new(Child {
                    index,
                    queued: AtomicBool::new(true),
                    shared: Arc::clone(&shared),
                })
            })
            .collect();
        let wakers = children
            .iter()
            .map(|c| Waker::from(Arc::clone(c)))
            .collect();
        ReadySet {
            shared,
            children,
            wakers,
        }
    }

    /// Records the parent's waker and takes the children to poll now, each unqueued.
    pub(crate) fn drain(&self, cx: &Context<'_>) -> Vec<usize> {
        let indices = {
            let mut queue = self.shared.lock();
            match &mut queue.parent {
                Some(parent) => parent.clone_from(cx.waker()),
                None => queue.parent = Some(cx.waker().clone()),
            }
            std::mem::take(&mut queue.indices)
        };
        for &i in &indices {
            self.children[i].queued.store(false, Ordering::Release);
        }
        indices
    }

    /// True when some child was woken since the last drain.
    pub(crate) fn any_queued(&self) -> bool {
        !self.shared.lock().indices.is_empty()
    }

    /// The waker to poll child `index` with.
    pub(crate) fn waker(&self, index: usize) -> &Waker {
        &self.wakers[index]
    }
}
