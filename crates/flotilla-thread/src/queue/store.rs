//! Queue disciplines: the [`Store`] trait that decides which item a queue hands out next,
//! and its three implementations, [`Fifo`], [`Lifo`] and [`Priority`].
//!
//! A store is plain single-threaded data. The queue owns it inside its lock, so a store
//! never has to think about threads; in return, its methods run with the lock held.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, VecDeque};

/// How a queue keeps its items and which one it hands out next.
///
/// This is the Rust form of overriding `_init`, `_qsize`, `_put` and `_get` in a Python
/// `queue.Queue` subclass: [`GenericQueue`](super::GenericQueue) does the locking,
/// blocking, bounding, closing and task counting, the store only orders the items.
///
/// Every method runs **with the queue's lock held**. It must be quick, must not block,
/// and must not touch the queue that owns it (that would deadlock or panic). A panic in
/// a store method leaves the store as the panic left it; the queue stays usable.
///
/// # Examples
///
/// A queue that hands out the most recently put item, but only keeps the newest three:
///
/// ```
/// use std::collections::VecDeque;
/// use flotilla_thread::queue::{GenericQueue, Store};
///
/// #[derive(Debug, Default)]
/// struct Newest3(VecDeque<u32>);
///
/// impl Store for Newest3 {
///     type Item = u32;
///     fn push(&mut self, item: u32) {
///         if self.0.len() == 3 {
///             self.0.pop_front();
///         }
///         self.0.push_back(item);
///     }
///     fn pop(&mut self) -> Option<u32> {
///         self.0.pop_back()
///     }
///     fn len(&self) -> usize {
///         self.0.len()
///     }
/// }
///
/// let q = GenericQueue::<Newest3>::new();
/// for i in 0..5 {
///     q.put(i).unwrap();
/// }
/// assert_eq!(q.try_iter().collect::<Vec<_>>(), [4, 3, 2]);
/// ```
pub trait Store {
    /// The items the queue carries.
    type Item;

    /// Adds `item`.
    fn push(&mut self, item: Self::Item);

    /// Removes and returns the item to hand out next, or `None` when there is none.
    fn pop(&mut self) -> Option<Self::Item>;

    /// How many items the store holds. The queue compares this with its maxsize.
    fn len(&self) -> usize;

    /// Whether the store holds no items.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// First in, first out: the store of [`Queue`](super::Queue).
///
/// ```
/// use flotilla_thread::queue::{Fifo, Store};
///
/// let mut s = Fifo::default();
/// s.push(1);
/// s.push(2);
/// assert_eq!(s.pop(), Some(1));
/// ```
#[derive(Debug, Clone)]
pub struct Fifo<T>(VecDeque<T>);

/// Last in, first out (a stack): the store of [`LifoQueue`](super::LifoQueue).
///
/// ```
/// use flotilla_thread::queue::{Lifo, Store};
///
/// let mut s = Lifo::default();
/// s.push(1);
/// s.push(2);
/// assert_eq!(s.pop(), Some(2));
/// ```
#[derive(Debug, Clone)]
pub struct Lifo<T>(Vec<T>);

/// Smallest first, ties in the order they were put: the store of
/// [`PriorityQueue`](super::PriorityQueue).
///
/// Like Python's `heapq`-based `PriorityQueue`, the *smallest* item comes out first, so a
/// lower number means a higher priority. Unlike Python's, items that compare equal come
/// out in the order they were put, so `(priority, payload)` pairs need no tie-breaking
/// counter. For largest-first, put [`std::cmp::Reverse`]`(item)`.
///
/// ```
/// use flotilla_thread::queue::{Priority, Store};
///
/// let mut s = Priority::default();
/// s.push((2, "b"));
/// s.push((1, "z"));
/// s.push((1, "a"));
/// // (1, "a") < (1, "z"): the tuple compares as a whole.
/// assert_eq!(s.pop(), Some((1, "a")));
/// ```
#[derive(Debug, Clone)]
pub struct Priority<T> {
    heap: BinaryHeap<Entry<T>>,
    /// How many items were ever pushed: the tie-breaker that keeps equal items in order.
    /// A `u64` cannot wrap in any realistic lifetime (585 years at one push a ns).
    pushed: u64,
}

// `derive(Default)` would demand `T: Default`; an empty store needs no such thing.
impl<T> Default for Fifo<T> {
    fn default() -> Self {
        Fifo(VecDeque::new())
    }
}

impl<T> Default for Lifo<T> {
    fn default() -> Self {
        Lifo(Vec::new())
    }
}

impl<T: Ord> Default for Priority<T> {
    fn default() -> Self {
        Priority {
            heap: BinaryHeap::new(),
            pushed: 0,
        }
    }
}

impl<T> Store for Fifo<T> {
    type Item = T;

    fn push(&mut self, item: T) {
        self.0.push_back(item);
    }

    fn pop(&mut self) -> Option<T> {
        self.0.pop_front()
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

impl<T> Store for Lifo<T> {
    type Item = T;

    fn push(&mut self, item: T) {
        self.0.push(item);
    }

    fn pop(&mut self) -> Option<T> {
        self.0.pop()
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

impl<T: Ord> Store for Priority<T> {
    type Item = T;

    fn push(&mut self, item: T) {
        let seq = self.pushed;
        self.pushed += 1;
        self.heap.push(Entry {
            item: Reverse(item),
            seq: Reverse(seq),
        });
    }

    fn pop(&mut self) -> Option<T> {
        self.heap.pop().map(|entry| entry.item.0)
    }

    fn len(&self) -> usize {
        self.heap.len()
    }
}

/// One item in the priority heap. `BinaryHeap` is a max-heap, so both keys are reversed:
/// the greatest entry is the smallest item, and among equal items the earliest put.
#[derive(Debug, Clone)]
struct Entry<T> {
    item: Reverse<T>,
    seq: Reverse<u64>,
}

impl<T: Ord> Ord for Entry<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.item
            .cmp(&other.item)
            .then_with(|| self.seq.cmp(&other.seq))
    }
}

impl<T: Ord> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<T: Ord> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl<T: Ord> Eq for Entry<T> {}
