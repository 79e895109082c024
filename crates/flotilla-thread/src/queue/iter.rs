//! Iterators over a queue's items: [`Iter`] waits for each item and ends once the queue is
//! closed and drained; [`TryIter`] takes what is there now and never waits.

use std::fmt;
use std::iter::FusedIterator;

use super::{GenericQueue, Store};

/// Gets item after item from a queue, waiting for each; ends once the queue is closed and
/// drained. Made by [`GenericQueue::iter`] or `for item in &queue`.
///
/// Once it has ended it stays ended: a closed queue never takes an item again.
///
/// ```
/// use flotilla_thread::Queue;
///
/// let q = Queue::new();
/// q.put(1).unwrap();
/// q.put(2).unwrap();
/// q.close();
/// let mut iter = q.iter();
/// assert_eq!(iter.next(), Some(1));
/// assert_eq!(iter.next(), Some(2));
/// assert_eq!(iter.next(), None);
/// ```
pub struct Iter<'a, S> {
    queue: &'a GenericQueue<S>,
}

/// Gets the items a queue holds now, never waiting; ends at the first moment the queue is
/// empty. Made by [`GenericQueue::try_iter`].
///
/// It is not fused: after it has returned `None`, a later `next` returns an item put in
/// the meantime.
///
/// ```
/// use flotilla_thread::Queue;
///
/// let q = Queue::new();
/// let mut iter = q.try_iter();
/// assert_eq!(iter.next(), None);
/// q.put(1).unwrap();
/// assert_eq!(iter.next(), Some(1));
/// ```
pub struct TryIter<'a, S> {
    queue: &'a GenericQueue<S>,
}

impl<'a, S> Iter<'a, S> {
    pub(super) fn new(queue: &'a GenericQueue<S>) -> Self {
        Iter { queue }
    }
}

impl<'a, S> TryIter<'a, S> {
    pub(super) fn new(queue: &'a GenericQueue<S>) -> Self {
        TryIter { queue }
    }
}

impl<S: Store> Iterator for Iter<'_, S> {
    type Item = S::Item;

    fn next(&mut self) -> Option<S::Item> {
        self.queue.get().ok()
    }
}

impl<S: Store> FusedIterator for Iter<'_, S> {}

impl<S: Store> Iterator for TryIter<'_, S> {
    type Item = S::Item;

    fn next(&mut self) -> Option<S::Item> {
        self.queue.try_get().ok()
    }
}

impl<S: Store> fmt::Debug for Iter<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Iter").field("queue", self.queue).finish()
    }
}

impl<S: Store> fmt::Debug for TryIter<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TryIter")
            .field("queue", self.queue)
            .finish()
    }
}
