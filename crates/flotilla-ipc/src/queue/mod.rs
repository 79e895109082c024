//! Python's `multiprocessing.Queue`, `JoinableQueue` and `SimpleQueue`: queues of any
//! serde type between any number of producer and consumer processes, in shared memory.
//!
//! | Python                               | flotilla                                        |
//! |--------------------------------------|-------------------------------------------------|
//! | `Queue(maxsize=0)`                   | [`Queue::new()`]                                |
//! | `Queue(maxsize=n)`                   | [`Queue::bounded(n)`](Queue::bounded)           |
//! | `put(x)` / `put(x, timeout=t)`       | [`put`](Queue::put) / [`put_timeout`](Queue::put_timeout) |
//! | `put_nowait(x)`                      | [`try_put`](Queue::try_put)                     |
//! | `get()` / `get(timeout=t)`           | [`get`](Queue::get) / [`get_timeout`](Queue::get_timeout) |
//! | `get_nowait()`                       | [`try_get`](Queue::try_get)                     |
//! | `qsize()`, `empty()`, `full()`       | [`len`](Queue::len), [`is_empty`](Queue::is_empty), [`is_full`](Queue::is_full) |
//! | `close()`, `join_thread()`           | drop the handle (there is no feeder thread)     |
//! | `JoinableQueue.task_done()`, `join()`| [`task_done`](JoinableQueue::task_done), [`join`](JoinableQueue::join) / [`join_timeout`](JoinableQueue::join_timeout) |
//! | `SimpleQueue`                        | [`SimpleQueue`]                                 |
//! | `queue.Full`, `queue.Empty`          | [`TryPutError::Full`], [`TryGetError::Empty`], and the `Timeout` variants |
//!
//! # How it works, and how it differs from Python
//!
//! A queue is a ring of bytes in a shared memory segment (the details, and the rules
//! that keep it sound, are in `ring.rs`). [`put`](Queue::put) encodes the item with
//! flotilla's codec and copies it into the ring itself, under a process-shared lock for
//! producers; [`get`](Queue::get) copies one message out under a lock for consumers and
//! decodes it. Waiting is a brief spin and then a futex sleep, so a busy queue makes no
//! system call per item.
//!
//! A long item (over 64 KiB encoded) is copied once on each side: `put` measures its
//! encoding and then encodes it straight into the ring, chunk by chunk, each published
//! as it fills, while a consumer decodes the chunks before it straight from the ring
//! into the item (a byte string such as a `serde_bytes` buffer or
//! [`ByteBuf`](flotilla_core::codec::ByteBuf) in one copy per chunk). Its `Serialize`
//! therefore runs three times (a first try into a buffer, the measure, the encoding),
//! the last one while the producers' lock is held: it should give the same bytes each
//! time (an item whose encoding changes length is refused, nothing put), and must not
//! put into the same queue.
//!
//! - **No feeder thread.** Python's `put` only appends to a buffer that a background
//!   thread writes to a pipe later: an item can be lost when the process exits too soon,
//!   and a child that put items nobody has read yet cannot be joined (its feeder thread
//!   waits for the pipe). Here, when `put` returns, the item is in shared memory: it
//!   survives the putting process, which can exit and be joined at once.
//! - **Unbounded means unbounded in items, not in bytes.** A queue made with
//!   [`Queue::new`] takes any number of items, but they are held in its ring
//!   ([`DEFAULT_CAPACITY`] bytes unless [`QueueBuilder::capacity`] says otherwise), not
//!   in the putting process's memory as in Python. A `put` on a ring without room waits
//!   for consumers to make some, as a write to a full pipe does; `try_put` and
//!   `put_timeout` give up. An item larger than the ring is streamed through it in
//!   pieces while a consumer reads it, so an item may be of any size (up to
//!   [`QueueBuilder::max_message`]).
//! - **An item that cannot be encoded is an error returned by `put`**, with the item;
//!   nothing was written and the queue is as before. (Python's feeder thread prints the
//!   pickling error later, in the background, and drops the item.)
//! - **`close` closes the queue for everyone**, as flotilla-thread's queues do (Python
//!   3.13 calls it `shutdown`): no process may put any more, and consumers get the
//!   items left and then [`GetError::Closed`], so `for item in &queue` loops end without
//!   sentinels. Python's own `close()` only says that this process will put no more, so
//!   that its feeder thread can finish; with no feeder thread, dropping the handle is
//!   that. With several producers, close once, when they all are done.
//! - **A queue crosses into other processes by every route**: inherited by a forked
//!   child, passed as an argument to a spawn or forkserver child or to a pool task, sent
//!   over a [`Connection`](crate::Connection). Python refuses all but inheritance.
//! - **Items may not hold OS handles** (a `Connection`, another queue): their
//!   descriptors cannot travel through shared memory, and `put` says so. Send those over
//!   a [`Connection`](crate::Connection).
//!
//! # When a process dies
//!
//! A producer killed in the middle of a `put` (copying its item in, or encoding a long
//! one into the ring) leaves no partial item: the next process to take the producers'
//! lock (or a consumer waiting for the rest of the item) finds the item unfinished and
//! marks it aborted, and consumers drop what they had of it; an item whose bytes were
//! all written when its producer died is published whole instead. A consumer killed in
//! the middle of a `get` takes with it **at most the item it was reading**: if it had
//! consumed part of a long item, the rest is skipped by the next consumer and the item
//! is lost; if it had copied the item out whole but not yet marked it taken, the next
//! consumer gets it instead. No other item is lost or duplicated, and the queue works
//! on. A consumer that dies after `get` returned, before its `task_done`, leaves a
//! [`JoinableQueue`] unfinished for ever, as in Python:
//! [`join_timeout`](JoinableQueue::join_timeout) exists for that.

mod aio;
mod error;
mod ring;

use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::time::Duration;

use flotilla_core::{Deadline, codec};
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use self::error::{
    GetError, GetTimeoutError, PutError, PutTimeoutError, QueueError, TaskDoneError, TryGetError,
    TryPutError,
};
use self::ring::{Options, Refused, Ring};
use crate::error::CreateError;
use crate::shm::SharedMemory;

/// The ring size of a queue made without [`QueueBuilder::capacity`]: 4 MiB.
///
/// Large for a queue, because a ring's bytes cross between two processors' caches: a
/// writer rewriting bytes that the reader's processor still caches pays to take each
/// line back from it, so bytes move fastest when a ring is larger than a processor's L2
/// cache with room to spare (1 MiB items between two processes ran 1.5 times as fast
/// through a 4 MiB ring as through a 1 MiB one, see `docs/benchmarks.md`). Its memory
/// is taken as the ring is first written: a new queue holds a page, and one whose
/// writes have gone round the ring holds all of it.
pub const DEFAULT_CAPACITY: usize = 4 << 20;

/// Options for a new queue: its maxsize, its ring size, its longest item.
///
/// ```
/// use flotilla_ipc::{Queue, QueueBuilder};
///
/// let q: Queue<String> = QueueBuilder::new().maxsize(100).capacity(64 * 1024).build().unwrap();
/// assert_eq!(q.maxsize(), Some(100));
/// assert_eq!(q.capacity(), 64 * 1024);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct QueueBuilder {
    maxsize: Option<usize>,
    capacity: usize,
    max_message: u64,
}

impl Default for QueueBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl QueueBuilder {
    /// An unbounded queue with a ring of [`DEFAULT_CAPACITY`] bytes, taking items of up
    /// to [`codec::DEFAULT_LIMIT`] bytes encoded.
    pub fn new() -> Self {
        QueueBuilder {
            maxsize: None,
            capacity: DEFAULT_CAPACITY,
            max_message: codec::DEFAULT_LIMIT,
        }
    }

    /// The most items the queue holds at once (Python's `maxsize`); puts wait beyond.
    /// Zero means unbounded, as in Python (and as the thread queues' `bounded(0)`).
    pub fn maxsize(mut self, maxsize: usize) -> Self {
        self.maxsize = (maxsize > 0).then_some(maxsize);
        self
    }

    /// The size of the ring in bytes, rounded up to a power of two, at least 4 KiB and at
    /// most 2 GiB. Larger rings let producers run further ahead of consumers; any item
    /// fits through any ring. The pages are allocated as the ring first fills.
    pub fn capacity(mut self, bytes: usize) -> Self {
        self.capacity = bytes;
        self
    }

    /// The longest item, encoded, in bytes: a longer one is refused by `put` with
    /// [`QueueError::MessageTooLarge`], and consumers never allocate more for one item.
    pub fn max_message(mut self, bytes: u64) -> Self {
        self.max_message = bytes;
        self
    }

    fn ring<T>(&self) -> Result<Ring, CreateError> {
        let capacity = self
            .capacity
            .max(ring::MIN_CAPACITY)
            .checked_next_power_of_two()
            .filter(|&c| c <= ring::MAX_CAPACITY)
            .ok_or_else(|| {
                CreateError::InvalidArgument(format!(
                    "a ring of {} bytes is larger than the 2 GiB maximum",
                    self.capacity
                ))
            })?;
        Ring::create(Options {
            capacity,
            maxsize: self.maxsize.map_or(0, |m| m as u64),
            max_message: self.max_message,
            type_tag: type_tag::<T>(),
        })
    }

    /// A [`Queue`] with these options.
    ///
    /// # Errors
    ///
    /// [`CreateError::InvalidArgument`] for a ring beyond 2 GiB; [`CreateError::Os`]
    /// if the system refuses the memory or the queue's mutexes.
    pub fn build<T>(&self) -> Result<Queue<T>, CreateError> {
        Ok(Queue::from_ring(self.ring::<T>()?))
    }

    /// A [`JoinableQueue`] with these options.
    ///
    /// # Errors
    ///
    /// As for [`build`](Self::build).
    pub fn build_joinable<T>(&self) -> Result<JoinableQueue<T>, CreateError> {
        Ok(JoinableQueue(self.build()?))
    }
}

/// A fingerprint of `T`, so a queue received as a queue of another type is refused.
/// Sender and receiver are the same build (flotilla checks), so the name is the same.
fn type_tag<T>() -> u64 {
    // FNV-1a.
    std::any::type_name::<T>()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        })
}

thread_local! {
    /// A buffer for encoding and receiving, reused by the calls of this thread.
    static SCRATCH: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// The most bytes of scratch buffer a thread keeps between calls.
const SCRATCH_KEEP: usize = 4 << 20;

fn with_scratch<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    // Taken out, not borrowed: an item's `Serialize` may itself use a queue.
    let mut buf = SCRATCH.take();
    buf.clear();
    let result = f(&mut buf);
    if buf.capacity() <= SCRATCH_KEEP {
        SCRATCH.set(buf);
    }
    result
}

/// Items that encode to more bytes than this are encoded straight into the ring (see
/// the module documentation): for them, the copy into a buffer and then into the ring
/// costs more than encoding them again, once to learn their size.
const DIRECT_FROM: usize = 64 << 10;

/// A message being written into the ring, as the codec's writer; what the ring refused
/// is kept (the codec reports only that the write failed).
struct Sink<'r> {
    outgoing: ring::Outgoing<'r>,
    refused: Option<Refused>,
}

impl std::io::Write for Sink<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        match self.outgoing.write(bytes) {
            Ok(()) => Ok(bytes.len()),
            Err(refused) => {
                self.refused = Some(refused);
                Err(std::io::Error::other("the queue refused the item"))
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A first-in, first-out queue between processes: Python's `multiprocessing.Queue`.
///
/// Items are any `T: Serialize + DeserializeOwned`. A `Queue` is a handle: clones, and
/// copies received by other processes, share one queue, which lives until its last
/// handle in any process is dropped. Items from one producer come out in the order it
/// put them; with several producers, in the order their puts took the queue.
///
/// See [the module documentation](self) for how it differs from Python's.
///
/// # Examples
///
/// ```
/// use flotilla_ipc::Queue;
///
/// let q = Queue::new().unwrap();
/// q.put([42, 7]).unwrap();
/// assert_eq!(q.get().unwrap(), [42, 7]);
/// ```
///
/// A closed queue ends the consumers' loops once drained:
///
/// ```
/// use flotilla_ipc::Queue;
///
/// let q = Queue::bounded(2).unwrap();
/// std::thread::scope(|s| {
///     s.spawn(|| {
///         for i in 0..10 {
///             q.put(i).unwrap(); // waits while 2 items are in the queue
///         }
///         q.close();
///     });
///     let got: Vec<i32> = q.iter().map(Result::unwrap).collect();
///     assert_eq!(got, (0..10).collect::<Vec<_>>());
/// });
/// ```
pub struct Queue<T> {
    ring: Ring,
    _items: PhantomData<fn(T) -> T>,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue::from_ring(self.ring.clone())
    }
}

impl<T> Queue<T> {
    fn from_ring(ring: Ring) -> Self {
        Queue {
            ring,
            _items: PhantomData,
        }
    }

    /// An unbounded queue with a ring of [`DEFAULT_CAPACITY`] bytes: Python's
    /// `Queue()`.
    ///
    /// # Errors
    ///
    /// [`CreateError::Os`] if the system refuses the memory.
    ///
    /// ```
    /// let q = flotilla_ipc::Queue::<u32>::new().unwrap();
    /// assert_eq!(q.maxsize(), None);
    /// ```
    pub fn new() -> Result<Self, CreateError> {
        QueueBuilder::new().build()
    }

    /// A queue that holds at most `maxsize` items: Python's `Queue(maxsize)`.
    ///
    /// # Errors
    ///
    /// [`CreateError::Os`] if the system refuses the memory. A maxsize of 0 is unbounded, as
    /// Python's `Queue(maxsize=0)`.
    ///
    /// ```
    /// let q = flotilla_ipc::Queue::<u32>::bounded(3).unwrap();
    /// assert_eq!(q.maxsize(), Some(3));
    /// assert_eq!(flotilla_ipc::Queue::<u32>::bounded(0).unwrap().maxsize(), None);
    /// ```
    pub fn bounded(maxsize: usize) -> Result<Self, CreateError> {
        QueueBuilder::new().maxsize(maxsize).build()
    }

    /// Options for a new queue.
    pub fn builder() -> QueueBuilder {
        QueueBuilder::new()
    }

    /// Closes the queue, for every process: no more items go in, the ones in it still
    /// come out.
    ///
    /// Afterwards every put fails with `Closed`, handing its item back; gets take the
    /// items left and then fail with `Closed` instead of waiting; iterators end once the
    /// queue is drained. Puts and gets waiting in any process wake up to this. A put
    /// that had begun writing its item finishes it. Closing twice does nothing more.
    /// Python 3.13's `Queue.shutdown()`; see the module documentation for Python's
    /// `close`.
    ///
    /// ```
    /// use flotilla_ipc::Queue;
    ///
    /// let q = Queue::new().unwrap();
    /// q.put(1).unwrap();
    /// q.close();
    /// assert!(q.is_closed());
    /// assert!(q.put(2).unwrap_err().is_closed());
    /// assert_eq!(q.iter().map(Result::unwrap).collect::<Vec<_>>(), [1]);
    /// ```
    #[doc(alias = "shutdown")]
    pub fn close(&self) {
        self.ring.close();
    }

    /// Whether [`close`](Self::close) has been called, in any process.
    pub fn is_closed(&self) -> bool {
        self.ring.is_closed()
    }

    /// How many items are in the queue: Python's `qsize`. Items being put or got at
    /// this moment may or may not be counted; the answer is never above `maxsize`.
    ///
    /// ```
    /// let q = flotilla_ipc::Queue::new().unwrap();
    /// q.put('x').unwrap();
    /// assert_eq!(q.len(), 1);
    /// ```
    #[doc(alias = "qsize")]
    pub fn len(&self) -> usize {
        usize::try_from(self.ring.len()).unwrap_or(usize::MAX)
    }

    /// Whether the queue holds no items: Python's `empty`.
    #[doc(alias = "empty")]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the queue holds [`maxsize`](Self::maxsize) items: Python's `full`.
    /// Always `false` for an unbounded queue (whose ring may still lack room for a
    /// large item).
    #[doc(alias = "full")]
    pub fn is_full(&self) -> bool {
        self.maxsize().is_some_and(|max| self.len() >= max)
    }

    /// The most items the queue holds, or `None` if it is unbounded.
    pub fn maxsize(&self) -> Option<usize> {
        self.ring.maxsize()
    }

    /// The size of the queue's ring in bytes.
    pub fn capacity(&self) -> usize {
        self.ring.capacity()
    }

    /// The longest item the queue takes, encoded, in bytes.
    pub fn max_message(&self) -> u64 {
        self.ring.max_message()
    }
}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    fn put_by(&self, item: T, deadline: Deadline) -> Result<(), (T, Refused)> {
        // A short item is encoded into this thread's buffer (outside the lock) and copied
        // in; one that turns out longer than `DIRECT_FROM` is encoded again, sized first,
        // straight into the ring.
        let short = with_scratch(|buf| match codec::encode_capped(buf, &item, DIRECT_FROM) {
            Ok(true) => Some(self.ring.put(buf, deadline)),
            Ok(false) => None,
            Err(e) => Some(Err(Refused::Failed(QueueError::Encode(e)))),
        });
        match short.unwrap_or_else(|| self.put_direct(&item, deadline)) {
            Ok(()) => Ok(()),
            Err(refused) => Err((item, refused)),
        }
    }

    /// Encodes `item` straight into the ring: one copy of its bytes, made under the
    /// producers' lock, chunk by chunk, each published as it fills.
    fn put_direct(&self, item: &T, deadline: Deadline) -> Result<(), Refused> {
        let size = codec::encoded_size(item).map_err(|e| Refused::Failed(QueueError::Encode(e)))?;
        let mut sink = Sink {
            outgoing: self.ring.begin(size, deadline)?,
            refused: None,
        };
        match codec::encode_sized(&mut sink, item, size) {
            Ok(()) => sink.outgoing.finish(),
            // The ring refused (no room by the deadline), or the item's `Serialize` failed
            // part of the way: what was published of it is withdrawn as `sink` drops.
            Err(e) => Err(sink
                .refused
                .take()
                .unwrap_or(Refused::Failed(QueueError::Encode(e)))),
        }
    }

    fn get_by(&self, deadline: Deadline) -> Result<T, Refused> {
        with_scratch(|buf| {
            // An item in pieces is decoded straight from the ring, one copy for its byte
            // strings; an item of one chunk is copied out whole and decoded from there.
            let decoded = match self.ring.get_with(deadline, buf, |pieces| {
                let limit = pieces.total();
                codec::decode_from_source(pieces, limit)
            })? {
                Some(decoded) => decoded,
                None => {
                    codec::decode_with_limit(buf, self.ring.max_message().max(codec::DEFAULT_LIMIT))
                }
            };
            decoded.map_err(|e| Refused::Failed(QueueError::Decode(e)))
        })
    }

    /// Puts `item` at the back of the queue, waiting as long as it takes for room (below
    /// `maxsize`, and bytes in the ring). When it returns `Ok`, the item is in shared
    /// memory: the putting process may exit at once without losing it.
    ///
    /// # Errors
    ///
    /// [`PutError::Closed`] if the queue is closed; [`PutError::Failed`] if the item
    /// cannot be encoded (or is longer than [`max_message`](Self::max_message)), with
    /// the queue unchanged. Either way the item is handed back.
    ///
    /// ```
    /// use flotilla_ipc::Queue;
    ///
    /// let q = Queue::new().unwrap();
    /// q.put(vec![Some(42), None]).unwrap();
    /// assert_eq!(q.get().unwrap(), vec![Some(42), None]);
    /// ```
    pub fn put(&self, item: T) -> Result<(), PutError<T>> {
        self.put_by(item, Deadline::NEVER)
            .map_err(|(item, refused)| match refused {
                Refused::Closed => PutError::Closed(item),
                Refused::Failed(e) => PutError::Failed(item, e),
                Refused::Busy => unreachable!("a put without a deadline never times out"),
            })
    }

    /// Puts `item`, waiting at most `timeout` for room: Python's `put(item, timeout=t)`.
    /// An item being streamed through the ring when the timeout passes is withdrawn
    /// (consumers never see part of it).
    ///
    /// # Errors
    ///
    /// [`PutTimeoutError::Timeout`] if no room came in time; otherwise as for
    /// [`put`](Self::put). The item is handed back.
    ///
    /// ```
    /// use std::time::Duration;
    /// use flotilla_ipc::Queue;
    ///
    /// let q = Queue::bounded(1).unwrap();
    /// q.put_timeout('a', Duration::from_secs(1)).unwrap();
    /// assert!(q.put_timeout('b', Duration::from_millis(10)).unwrap_err().is_timeout());
    /// ```
    pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), PutTimeoutError<T>> {
        self.put_by(item, Deadline::after(Some(timeout)))
            .map_err(|(item, refused)| match refused {
                Refused::Busy => PutTimeoutError::Timeout(item),
                Refused::Closed => PutTimeoutError::Closed(item),
                Refused::Failed(e) => PutTimeoutError::Failed(item, e),
            })
    }

    /// Puts `item` if that needs no waiting for room: Python's `put_nowait`. An item
    /// that does not fit in the ring's free bytes at once is `Full`, even below
    /// `maxsize`.
    ///
    /// # Errors
    ///
    /// [`TryPutError::Full`] if there is no room now (or another producer's put holds
    /// the queue beyond a brief spin); otherwise as for [`put`](Self::put). The item is
    /// handed back.
    ///
    /// ```
    /// use flotilla_ipc::Queue;
    ///
    /// let q = Queue::bounded(1).unwrap();
    /// q.try_put(1).unwrap();
    /// assert!(q.try_put(2).unwrap_err().is_full());
    /// ```
    #[doc(alias = "put_nowait")]
    pub fn try_put(&self, item: T) -> Result<(), TryPutError<T>> {
        self.put_by(item, ring::now())
            .map_err(|(item, refused)| match refused {
                Refused::Busy => TryPutError::Full(item),
                Refused::Closed => TryPutError::Closed(item),
                Refused::Failed(e) => TryPutError::Failed(item, e),
            })
    }

    /// Takes the item at the front of the queue, waiting as long as it takes for one.
    ///
    /// # Errors
    ///
    /// [`GetError::Closed`] once the queue is closed and drained;
    /// [`GetError::Failed`] if the item taken cannot be decoded (it is gone; the queue
    /// works on).
    ///
    /// ```
    /// use flotilla_ipc::Queue;
    ///
    /// let q = Queue::new().unwrap();
    /// q.put((1, "one".to_string())).unwrap();
    /// assert_eq!(q.get().unwrap(), (1, "one".to_string()));
    /// ```
    pub fn get(&self) -> Result<T, GetError> {
        self.get_by(Deadline::NEVER)
            .map_err(|refused| match refused {
                Refused::Closed => GetError::Closed,
                Refused::Failed(e) => GetError::Failed(e),
                Refused::Busy => unreachable!("a get without a deadline never times out"),
            })
    }

    /// Takes the item at the front, waiting at most `timeout` for one to begin:
    /// Python's `get(timeout=t)`. An item longer than the ring, once its first piece is
    /// read, is read to its end (its producer is writing it).
    ///
    /// # Errors
    ///
    /// [`GetTimeoutError::Timeout`] if nothing came in time; otherwise as for
    /// [`get`](Self::get).
    ///
    /// ```
    /// use std::time::Duration;
    /// use flotilla_ipc::Queue;
    ///
    /// let q = Queue::<u8>::new().unwrap();
    /// assert!(q.get_timeout(Duration::from_millis(10)).unwrap_err().is_timeout());
    /// ```
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, GetTimeoutError> {
        self.get_by(Deadline::after(Some(timeout)))
            .map_err(|refused| match refused {
                Refused::Busy => GetTimeoutError::Timeout,
                Refused::Closed => GetTimeoutError::Closed,
                Refused::Failed(e) => GetTimeoutError::Failed(e),
            })
    }

    /// Closes the queue for every process and empties it at once: Python 3.13's
    /// `shutdown(immediate=True)`. The items still in it are taken out and handed back,
    /// in queue order (an item that cannot be decoded is dropped); gets waiting in any
    /// process wake up to `Closed` once it is empty. A get that another process began
    /// before the close may still take its item.
    ///
    /// ```
    /// use flotilla_ipc::Queue;
    ///
    /// let q = Queue::new().unwrap();
    /// q.put(1).unwrap();
    /// q.put(2).unwrap();
    /// assert_eq!(q.close_immediately(), [1, 2]);
    /// assert!(q.is_closed() && q.is_empty());
    /// ```
    #[doc(alias = "shutdown")]
    pub fn close_immediately(&self) -> Vec<T> {
        self.close();
        self.drain_closed().0
    }

    /// Takes every item left in a closed queue: the decoded ones, and how many were
    /// taken in all (undecodable ones included).
    fn drain_closed(&self) -> (Vec<T>, usize) {
        // A closed queue's get never waits for an item; the bound only covers waiting
        // for another consumer that holds the queue's consumer lock.
        const PATIENCE: Duration = Duration::from_secs(10);
        let (mut taken, mut count) = (Vec::new(), 0);
        loop {
            match self.get_timeout(PATIENCE) {
                Ok(item) => taken.push(item),
                // An item was taken but could not be decoded: it is dropped, and counts.
                Err(GetTimeoutError::Failed(QueueError::Decode(_))) => {}
                // The ring itself refused (its lock, a dead consumer's leftovers): no
                // item was taken, and trying again would fail the same way.
                Err(GetTimeoutError::Failed(e)) => {
                    flotilla_core::event!(
                        flotilla_core::log::Level::ERROR,
                        error = %e,
                        "a queue closed immediately could not be emptied"
                    );
                    break;
                }
                Err(GetTimeoutError::Closed | GetTimeoutError::Timeout) => break,
            }
            count += 1;
        }
        (taken, count)
    }

    /// Takes the item at the front if one is there: Python's `get_nowait`.
    ///
    /// # Errors
    ///
    /// [`TryGetError::Empty`] if there is none now (or another consumer's get holds the
    /// queue beyond a brief spin); otherwise as for [`get`](Self::get).
    ///
    /// ```
    /// use flotilla_ipc::Queue;
    ///
    /// let q = Queue::new().unwrap();
    /// assert!(q.try_get().unwrap_err().is_empty());
    /// q.put(5u8).unwrap();
    /// assert_eq!(q.try_get().unwrap(), 5);
    /// ```
    #[doc(alias = "get_nowait")]
    pub fn try_get(&self) -> Result<T, TryGetError> {
        self.get_by(ring::now()).map_err(|refused| match refused {
            Refused::Busy => TryGetError::Empty,
            Refused::Closed => TryGetError::Closed,
            Refused::Failed(e) => TryGetError::Failed(e),
        })
    }

    /// An iterator that [`get`](Self::get)s item after item, waiting for each, and ends
    /// once the queue is closed and drained. `for item in &queue` does the same. It
    /// yields `Err` for an item that could not be decoded, and goes on after it.
    ///
    /// ```
    /// use flotilla_ipc::Queue;
    ///
    /// let q = Queue::new().unwrap();
    /// q.put("four".to_string()).unwrap();
    /// q.put("three".to_string()).unwrap();
    /// q.close();
    /// let mut total = 0;
    /// for word in &q {
    ///     total += word.unwrap().len();
    /// }
    /// assert_eq!(total, 9);
    /// ```
    pub fn iter(&self) -> Iter<'_, T> {
        Iter { queue: self }
    }

    /// An iterator over the items in the queue now: it [`try_get`](Self::try_get)s
    /// until there is none, never waiting.
    ///
    /// ```
    /// use flotilla_ipc::Queue;
    ///
    /// let q = Queue::new().unwrap();
    /// q.put(1).unwrap();
    /// q.put(2).unwrap();
    /// assert_eq!(q.try_iter().map(Result::unwrap).collect::<Vec<_>>(), [1, 2]);
    /// ```
    pub fn try_iter(&self) -> TryIter<'_, T> {
        TryIter { queue: self }
    }
}

impl<T> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("len", &self.len())
            .field("maxsize", &self.maxsize())
            .field("capacity", &self.capacity())
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// A blocking iterator over a [`Queue`]: see [`Queue::iter`].
#[derive(Debug)]
pub struct Iter<'a, T> {
    queue: &'a Queue<T>,
}

impl<T: Serialize + DeserializeOwned> Iterator for Iter<'_, T> {
    type Item = Result<T, QueueError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.queue.get() {
            Ok(item) => Some(Ok(item)),
            Err(GetError::Closed) => None,
            Err(GetError::Failed(e)) => Some(Err(e)),
        }
    }
}

/// A non-blocking iterator over a [`Queue`]: see [`Queue::try_iter`].
#[derive(Debug)]
pub struct TryIter<'a, T> {
    queue: &'a Queue<T>,
}

impl<T: Serialize + DeserializeOwned> Iterator for TryIter<'_, T> {
    type Item = Result<T, QueueError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.queue.try_get() {
            Ok(item) => Some(Ok(item)),
            Err(TryGetError::Empty | TryGetError::Closed) => None,
            Err(TryGetError::Failed(e)) => Some(Err(e)),
        }
    }
}

impl<'a, T: Serialize + DeserializeOwned> IntoIterator for &'a Queue<T> {
    type Item = Result<T, QueueError>;
    type IntoIter = Iter<'a, T>;

    fn into_iter(self) -> Iter<'a, T> {
        self.iter()
    }
}

impl<'a, T: Serialize + DeserializeOwned> IntoIterator for &'a JoinableQueue<T> {
    type Item = Result<T, QueueError>;
    type IntoIter = Iter<'a, T>;

    fn into_iter(self) -> Iter<'a, T> {
        self.0.iter()
    }
}

impl<'a, T: Serialize + DeserializeOwned> IntoIterator for &'a SimpleQueue<T> {
    type Item = Result<T, QueueError>;
    type IntoIter = Iter<'a, T>;

    fn into_iter(self) -> Iter<'a, T> {
        self.0.iter()
    }
}

/// A [`Queue`] whose consumers mark each item done, so that producers can wait until all
/// are processed: Python's `multiprocessing.JoinableQueue`.
///
/// It has every method of [`Queue`] (through `Deref`), and [`task_done`](Self::task_done)
/// and [`join`](Self::join). The count of unfinished items lives in the shared memory, so
/// any process may put, mark done, or join.
///
/// ```
/// use flotilla_ipc::JoinableQueue;
///
/// let q = JoinableQueue::new().unwrap();
/// std::thread::scope(|s| {
///     s.spawn(|| {
///         for item in &q {
///             let _n: u32 = item.unwrap();
///             q.task_done().unwrap();
///         }
///     });
///     for n in 0..100u32 {
///         q.put(n).unwrap();
///     }
///     q.join().unwrap(); // every item has been got and marked done
///     q.close(); // the consumer's loop ends
/// });
/// ```
pub struct JoinableQueue<T>(Queue<T>);

impl<T> Clone for JoinableQueue<T> {
    fn clone(&self) -> Self {
        JoinableQueue(self.0.clone())
    }
}

impl<T> Deref for JoinableQueue<T> {
    type Target = Queue<T>;

    fn deref(&self) -> &Queue<T> {
        &self.0
    }
}

impl<T> JoinableQueue<T> {
    /// An unbounded joinable queue with a ring of [`DEFAULT_CAPACITY`] bytes.
    ///
    /// # Errors
    ///
    /// [`CreateError::Os`] if the system refuses the memory.
    pub fn new() -> Result<Self, CreateError> {
        QueueBuilder::new().build_joinable()
    }

    /// A joinable queue that holds at most `maxsize` items.
    ///
    /// # Errors
    ///
    /// As for [`Queue::bounded`].
    pub fn bounded(maxsize: usize) -> Result<Self, CreateError> {
        QueueBuilder::new().maxsize(maxsize).build_joinable()
    }

    /// [`Queue::close_immediately`] for a joinable queue: each item taken out counts as
    /// done, so [`join`](Self::join) no longer waits for them (Python's
    /// `unfinished_tasks` drops the same way).
    ///
    /// ```
    /// use flotilla_ipc::JoinableQueue;
    ///
    /// let q = JoinableQueue::new().unwrap();
    /// q.put(7).unwrap();
    /// assert_eq!(q.close_immediately(), [7]);
    /// assert!(q.join_timeout(std::time::Duration::from_secs(10)).unwrap());
    /// ```
    #[doc(alias = "shutdown")]
    pub fn close_immediately(&self) -> Vec<T>
    where
        T: Serialize + DeserializeOwned,
    {
        self.0.close();
        let (taken, count) = self.0.drain_closed();
        for _ in 0..count {
            let _ = self.0.ring.task_done();
        }
        taken
    }

    /// Marks one item got from the queue as processed: Python's `task_done`. Call it
    /// once per item, after processing it, in whichever process got it.
    ///
    /// # Errors
    ///
    /// [`TaskDoneError`] if called more times than items were put.
    pub fn task_done(&self) -> Result<(), TaskDoneError> {
        if self.0.ring.task_done() {
            Ok(())
        } else {
            Err(TaskDoneError)
        }
    }

    /// Waits until every item put has been marked done: Python's `join`. Items put
    /// while it waits are waited for too.
    ///
    /// If a consumer dies between getting an item and marking it done, this waits for
    /// ever, as Python's does: prefer [`join_timeout`](Self::join_timeout) when
    /// consumers may die.
    ///
    /// # Errors
    ///
    /// [`QueueError::Os`] if the system refuses to sleep; [`QueueError::Corrupted`] if
    /// the queue's shared memory was written over.
    pub fn join(&self) -> Result<(), QueueError> {
        self.0.ring.join(Deadline::NEVER).map(|_| ())
    }

    /// Waits at most `timeout` until every item put has been marked done; `Ok(false)`
    /// if some were still unfinished then.
    ///
    /// # Errors
    ///
    /// As for [`join`](Self::join).
    ///
    /// ```
    /// use std::time::Duration;
    /// use flotilla_ipc::JoinableQueue;
    ///
    /// let q = JoinableQueue::new().unwrap();
    /// q.put(1).unwrap();
    /// assert!(!q.join_timeout(Duration::from_millis(10)).unwrap());
    /// q.get().unwrap();
    /// q.task_done().unwrap();
    /// assert!(q.join_timeout(Duration::from_millis(10)).unwrap());
    /// ```
    pub fn join_timeout(&self, timeout: Duration) -> Result<bool, QueueError> {
        self.0.ring.join(Deadline::after(Some(timeout)))
    }

    /// How many items were put but not yet marked done: Python's `unfinished_tasks`.
    pub fn unfinished_tasks(&self) -> usize {
        usize::try_from(self.0.ring.unfinished()).unwrap_or(usize::MAX)
    }
}

impl<T> fmt::Debug for JoinableQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinableQueue")
            .field("queue", &self.0)
            .field("unfinished_tasks", &self.unfinished_tasks())
            .finish()
    }
}

/// The simplest queue between processes: Python's `multiprocessing.SimpleQueue`, with
/// only `put`, `get`, `empty` and `close`.
///
/// It is a [`Queue`] without a maxsize and with fewer methods; use a `Queue` for
/// timeouts and non-blocking forms.
///
/// ```
/// use flotilla_ipc::SimpleQueue;
///
/// let q = SimpleQueue::new().unwrap();
/// q.put([1.5, 2.5]).unwrap();
/// assert!(!q.is_empty());
/// assert_eq!(q.get().unwrap(), [1.5, 2.5]);
/// ```
pub struct SimpleQueue<T>(Queue<T>);

impl<T> Clone for SimpleQueue<T> {
    fn clone(&self) -> Self {
        SimpleQueue(self.0.clone())
    }
}

impl<T> SimpleQueue<T> {
    /// A new queue, with a ring of [`DEFAULT_CAPACITY`] bytes.
    ///
    /// # Errors
    ///
    /// [`CreateError::Os`] if the system refuses the memory.
    pub fn new() -> Result<Self, CreateError> {
        Queue::new().map(SimpleQueue)
    }

    /// Whether the queue holds no items: Python's `empty`.
    #[doc(alias = "empty")]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Closes the queue for every process, as [`Queue::close`] does.
    pub fn close(&self) {
        self.0.close();
    }

    /// Closes the queue and empties it at once, as [`Queue::close_immediately`] does.
    #[doc(alias = "shutdown")]
    pub fn close_immediately(&self) -> Vec<T>
    where
        T: Serialize + DeserializeOwned,
    {
        self.0.close_immediately()
    }
}

impl<T: Serialize + DeserializeOwned> SimpleQueue<T> {
    /// Puts `item`, waiting for room in the ring if need be; as [`Queue::put`].
    ///
    /// # Errors
    ///
    /// As for [`Queue::put`].
    pub fn put(&self, item: T) -> Result<(), PutError<T>> {
        self.0.put(item)
    }

    /// Takes the item at the front, waiting for one; as [`Queue::get`].
    ///
    /// # Errors
    ///
    /// As for [`Queue::get`].
    pub fn get(&self) -> Result<T, GetError> {
        self.0.get()
    }

    /// An iterator that gets items until the queue is closed and drained.
    pub fn iter(&self) -> Iter<'_, T> {
        self.0.iter()
    }
}

impl<T> fmt::Debug for SimpleQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimpleQueue")
            .field("len", &self.0.len())
            .field("closed", &self.0.is_closed())
            .finish()
    }
}

/// Which queue type a handle was sent as, so it is received as the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Kind {
    Queue,
    Joinable,
    Simple,
}

/// What a queue serializes as: its segment (through [`crate::handle`]) and its kind.
#[derive(Serialize)]
#[serde(rename = "Queue")]
struct Sent<'a> {
    shm: &'a SharedMemory,
    kind: Kind,
}

#[derive(Deserialize)]
#[serde(rename = "Queue")]
struct Received {
    shm: SharedMemory,
    kind: Kind,
}

impl<T> Queue<T> {
    fn send<S: Serializer>(&self, kind: Kind, serializer: S) -> Result<S::Ok, S::Error> {
        Sent {
            shm: self.ring.shm(),
            kind,
        }
        .serialize(serializer)
    }

    fn receive<'de, D: Deserializer<'de>>(deserializer: D, kind: Kind) -> Result<Self, D::Error> {
        let r = Received::deserialize(deserializer)?;
        if r.kind != kind {
            return Err(D::Error::custom(format!(
                "received a {:?} queue where a {kind:?} queue was expected",
                r.kind
            )));
        }
        Ring::attach(r.shm, type_tag::<T>(), std::any::type_name::<T>())
            .map(Queue::from_ring)
            .map_err(D::Error::custom)
    }
}

impl<T> Serialize for Queue<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.send(Kind::Queue, serializer)
    }
}

impl<'de, T> Deserialize<'de> for Queue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Queue::receive(deserializer, Kind::Queue)
    }
}

impl<T> Serialize for JoinableQueue<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.send(Kind::Joinable, serializer)
    }
}

impl<'de, T> Deserialize<'de> for JoinableQueue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Queue::receive(deserializer, Kind::Joinable).map(JoinableQueue)
    }
}

impl<T> Serialize for SimpleQueue<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.send(Kind::Simple, serializer)
    }
}

impl<'de, T> Deserialize<'de> for SimpleQueue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Queue::receive(deserializer, Kind::Simple).map(SimpleQueue)
    }
}
