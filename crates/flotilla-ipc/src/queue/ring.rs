//! The ring under every cross-process queue: a byte ring in one shared segment, written
//! by one producer at a time and read by one consumer at a time, each side behind a
//! robust process-shared mutex, with futex wake-ups after a brief spin.
//!
//! # Layout
//!
//! ```text
//! offset 0     Meta     magic, version, capacity, maxsize, max_message, type tag
//! offset 64    the write lock (pthread_mutex_t, robust, process-shared)
//! offset 128   the read lock
//! offset 192   Side     the writers' counters: head, messages published, ...
//! offset 256   Side     the readers' counters: tail, messages consumed, ...
//! offset 320   Signals  closed, the futex words sleepers wait on, the room a writer waits for
//! offset 384   Tasks    task_done count and the joiners' futex word
//! offset 4096  the ring: `capacity` bytes, a power of two
//! ```
//!
//! Positions (`head`, `tail`) count bytes since the queue was made and never wrap (2^64
//! bytes); the byte at position `p` lives at `p % capacity`. The ring holds `[tail,
//! head)`; `[head, tail + capacity)` is free.
//!
//! # Chunks
//!
//! A message travels as one or more chunks, each a 16-byte header — payload length
//! (u32), flags (u32), the message's total length (u64) — and its payload, padded to 16
//! bytes, so a header never straddles the end of the ring (a payload may: it is copied
//! in two pieces). Flags: `FIRST` starts a message, `LAST` ends it (a message that fits
//! is one chunk with both), `ABORT` (a bare header) says that the message in progress
//! will never be finished: readers discard what they have of it.
//!
//! A message that fits in the free room is written whole, unless it is longer than a
//! piece (a quarter of the ring, at least 64 KiB): then it goes in pieces, each published
//! as soon as it is written, so that the reader copies one out while the writer copies
//! the next in. One that does not fit is streamed: the writer writes a piece whenever
//! one fits, publishes it, and waits for readers to free more, so a message may be any
//! size, larger than the ring too. A non-final chunk always leaves at least 16 bytes
//! free, so that an `ABORT` header can be written without waiting.
//!
//! The writer fills a chunk in the free room and writes its header last, just before the
//! commit that publishes it ([`Outgoing`]): its bytes may come from a slice or straight
//! from the encoder (the queue encodes a long item into the ring, its length measured
//! first). Until that commit the chunk is free room that no reader looks at, so an item
//! whose encoding fails part of the way is withdrawn like a put that timed out: an
//! `ABORT` if some of its chunks were published, nothing at all otherwise.
//!
//! A reader copies a message of one chunk out whole (the queue decodes it from that
//! copy); a message in pieces it hands to the decoder as a reader of the ring itself
//! ([`Pieces`]), so its bytes are copied once, straight into the value, and each piece
//! is consumed as soon as it is read through.
//!
//! # Who may touch what
//!
//! 1. Meta is written once, before the segment is shared, and only read afterwards;
//!    every bound used for memory access is this process's copy, checked on attach.
//! 2. The writers' `Side` and the free bytes of the ring are written only by the holder
//!    of the write lock; the readers' `Side` and the bytes `[tail, head)` are read and
//!    consumed only by the holder of the read lock. A holder keeps its lock for a whole
//!    message, so messages never interleave.
//! 3. `head` is stored (release) only after the bytes it covers are written; `tail` only
//!    after the bytes it frees are copied out. The other side loads them with acquire
//!    before touching those bytes: the ring is a classic single-producer,
//!    single-consumer ring, with the locks electing the single producer and consumer.
//! 4. `Signals` and `Tasks` are atomics anyone may touch.
//!
//! # Dying in the middle
//!
//! A side's counters (position, message count, open-message flag) change together in a
//! *commit*: the new values are first written to the side's `pend_*` fields and
//! `pending` is set, then the counters are stored, then `pending` is cleared. Whoever
//! next takes the lock after a holder died (told by the robust mutex, or by finding
//! `pending` or `open` set on a free lock) rolls a pending commit forward — its bytes
//! were complete before it began — and then:
//!
//! - on the write side, if a message was open, writes an `ABORT` chunk, so readers drop
//!   the partial message: a producer killed mid-put leaves no corrupted message, and
//!   its message is simply not delivered;
//! - on the read side, if a message was open, skips the rest of it: a consumer killed
//!   mid-get takes with it at most the message it was reading, and only once it had
//!   consumed a part of it; a message it had copied out whole but not yet committed is
//!   delivered to the next reader instead.
//!
//! A reader waiting for the rest of a message whose writer died notices by itself: every
//! [`SLICE`] of sleep it tries the write lock, and if the lock is free while a message is
//! open, the writer is gone and it does the writer's recovery.
//!
//! # Waiting
//!
//! Only lock holders wait on the ring: a reader for data (`data_seq`), a writer for room
//! (`space_seq`). A waiter first spins for a bounded time (`futex::spin`), since a futex
//! wake-up across CPUs costs tens of microseconds, then sets its side's `sleeps` flag,
//! re-checks, and sleeps on the sequence word. The other side, after each commit (a
//! sequentially consistent store), looks at that flag and bumps and wakes the word only
//! when someone sleeps, so a busy queue makes no system calls at all.
//!
//! A writer that sleeps for room first says how much it waits for (`writer_wants`, a
//! tail): half the ring, or the rest of its message if that is less. Readers wake it only
//! once their tail is there (or they consume a message, which a writer waiting below
//! maxsize waits for). Woken for every piece instead, a writer would take a wake-up
//! (50-120 µs on a VM whose idle CPUs halt) to write one piece while the reader drained
//! the ring and went to sleep in turn: both sides would take turns instead of copying
//! at the same time. A waiter rechecks every [`SLICE`] anyway, so a wake-up lost to a
//! reader that died is a delay, not a hang.

use flotilla_core::copy::copy_raw;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};
use std::time::{Duration, Instant};

use flotilla_core::Deadline;

use super::QueueError;
use crate::error::{CreateError, Error, LockError};
use crate::futex::{self, try_spin};
use crate::lock::{RawGuard, RawMutex};
use crate::readiness::{Changed, Word};
use crate::shm::SharedMemory;

const MAGIC: u64 = u64::from_le_bytes(*b"FLTQUEUE");
const VERSION: u32 = 3;

const WRITE_LOCK: usize = 64;
const READ_LOCK: usize = 128;
const WRITER: usize = 192;
const READER: usize = 256;
const SIGNALS: usize = 320;
const TASKS: usize = 384;
/// Where the ring's bytes start: on a page of their own.
const DATA: usize = 4096;
const _: () = assert!(RawMutex::SIZE <= 64);
const _: () = assert!(size_of::<Meta>() <= WRITE_LOCK);
const _: () = assert!(size_of::<Side>() <= 64);
const _: () = assert!(size_of::<Signals>() <= 64 && size_of::<Tasks>() <= 64);

/// The bytes of a chunk header; payloads are padded to a multiple of it.
const HEADER: u64 = 16;
const FIRST: u32 = 1;
const LAST: u32 = 2;
const ABORT: u32 = 4;

/// The least a long message's pieces carry (see [`Ring::piece`]): a smaller piece would
/// cost more in wake-ups than its copy takes.
const MIN_PIECE: u64 = 64 << 10;

/// The smallest ring.
pub(crate) const MIN_CAPACITY: usize = 4096;
/// The largest ring: a chunk's length must fit its u32 field.
pub(crate) const MAX_CAPACITY: usize = 1 << 31;

/// How long a sleeping reader waits before it checks whether a writer died.
pub(crate) const SLICE: Duration = Duration::from_millis(100);

#[repr(C)]
struct Meta {
    magic: AtomicU64,
    version: AtomicU32,
    _reserved: AtomicU32,
    capacity: AtomicU64,
    /// The most messages the queue holds; 0 for no limit.
    maxsize: AtomicU64,
    max_message: AtomicU64,
    type_tag: AtomicU64,
}

/// One side's counters (rule 2 of the module doc).
#[repr(C)]
struct Side {
    /// Bytes committed: the head (writers) or the tail (readers).
    pos: AtomicU64,
    /// Messages committed: published (writers) or consumed (readers).
    msgs: AtomicU64,
    /// Whether a message is partly written (writers) or partly read (readers).
    open: AtomicU32,
    /// Whether a commit is under way, with its values in `pend_*`.
    pending: AtomicU32,
    pend_pos: AtomicU64,
    pend_msgs: AtomicU64,
    pend_open: AtomicU32,
    _reserved: AtomicU32,
    /// A recent look at the other side's position: never ahead of it, so safe to use
    /// without reloading while it suffices.
    other: AtomicU64,
}

#[repr(C)]
struct Signals {
    closed: AtomicU32,
    /// Bumped when data is published (and on close) while a reader sleeps.
    data_seq: AtomicU32,
    /// Whether the read-lock holder sleeps on `data_seq`.
    reader_sleeps: AtomicU32,
    /// Bumped when room is freed or a message consumed (and on close) while a writer
    /// sleeps.
    space_seq: AtomicU32,
    /// Whether the write-lock holder sleeps on `space_seq`.
    writer_sleeps: AtomicU32,
    /// How many `async` gets wait (through the reactor) for `data_seq` to move.
    async_readers: AtomicU32,
    /// How many `async` puts wait for `space_seq` to move.
    async_writers: AtomicU32,
    /// The tail the sleeping writer waits for: readers wake it only once theirs is
    /// there (or a message is consumed, for a writer waiting below maxsize with 0).
    writer_wants: AtomicU64,
}

#[repr(C)]
struct Tasks {
    /// `task_done` calls so far; never above the readers' messages published.
    done: AtomicU64,
    /// Bumped by `task_done` while someone joins.
    seq: AtomicU32,
    /// How many processes' threads sleep in `join`.
    joiners: AtomicU32,
}

/// What a new ring is made with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Options {
    /// Bytes of the ring, a power of two in `MIN_CAPACITY..=MAX_CAPACITY`.
    pub(crate) capacity: usize,
    /// The most messages it holds; 0 for no limit.
    pub(crate) maxsize: u64,
    /// The longest message, encoded, in bytes.
    pub(crate) max_message: u64,
    /// A fingerprint of the message type, checked when the ring is received.
    pub(crate) type_tag: u64,
}

/// The deadline of a `try_` operation: already passed, so it never waits for room or
/// data. A busy lock is still given a brief [`spin`] (see [`lock`]).
pub(crate) fn now() -> Deadline {
    Deadline::at(Instant::now())
}

/// Why a put or get did not happen.
#[derive(Debug)]
pub(crate) enum Refused {
    /// No room (put) or nothing to get (get) by the deadline.
    Busy,
    /// The queue is closed (put), or closed and drained (get).
    Closed,
    /// Something else went wrong.
    Failed(QueueError),
}

impl From<QueueError> for Refused {
    fn from(e: QueueError) -> Self {
        Refused::Failed(e)
    }
}

/// The shared ring of one queue. Clones share it.
#[derive(Clone)]
pub(crate) struct Ring {
    shm: Arc<SharedMemory>,
    write_lock: RawMutex,
    read_lock: RawMutex,
    capacity: u64,
    maxsize: u64,
    max_message: u64,
}

/// Acquires `mutex`: a brief [`try_spin`] of `try_lock`s, then a blocking lock up to the
/// deadline. The spin is there for a deadline already passed too: a holder keeps the
/// lock for one message's copy, and a `try_` refused for a lock that is about to be free
/// would leave an `async` put or get waiting for a change of room or data that may not
/// come. Recovery after a holder's death is decided by the shared state, not by how the
/// lock was acquired (see the module doc).
fn lock(mutex: &RawMutex, deadline: Deadline) -> Result<RawGuard<'_>, Refused> {
    let mut held = None;
    let attempt = try_spin(|| match mutex.try_lock() {
        Ok((guard, _)) => {
            held = Some(guard);
            Ok(true)
        }
        Err(LockError::WouldBlock) => Ok(false),
        Err(e) => Err(e),
    });
    match attempt {
        Ok(true) => return Ok(held.expect("a try_lock that ended the spin held the lock")),
        Ok(false) => {}
        Err(e) => return Err(Refused::Failed(e.into())),
    }
    let outcome = match deadline.remaining() {
        None => mutex.lock(),
        Some(left) if left.is_zero() => return Err(Refused::Busy),
        Some(left) => mutex.lock_timeout(left),
    };
    match outcome {
        Ok((held, _)) => Ok(held),
        Err(LockError::Timeout(_)) => Err(Refused::Busy),
        Err(e) => Err(Refused::Failed(e.into())),
    }
}

/// The padded size of a chunk carrying `len` payload bytes.
fn span(len: u64) -> u64 {
    HEADER + len.div_ceil(HEADER) * HEADER
}

/// Stores a side's counters as one commit (see "Dying in the middle").
fn commit(side: &Side, pos: u64, msgs: u64, open: bool) {
    side.pend_pos.store(pos, Ordering::Relaxed);
    side.pend_msgs.store(msgs, Ordering::Relaxed);
    side.pend_open.store(u32::from(open), Ordering::Relaxed);
    side.pending.store(1, Ordering::Release);
    apply(side, pos, msgs, open);
    side.pending.store(0, Ordering::Release);
}

fn apply(side: &Side, pos: u64, msgs: u64, open: bool) {
    side.open.store(u32::from(open), Ordering::Relaxed);
    // Sequentially consistent, both: the waker's following load of the sleeper's flag
    // must not be ordered before them, and a sleeper that set its flag (then fenced)
    // must see them (see `Ring::wait`).
    side.msgs.store(msgs, Ordering::SeqCst);
    side.pos.store(pos, Ordering::SeqCst);
}

/// Wakes the sleepers on `seq` if the lock holder's flag or the count of `async`
/// waiters says there are some.
fn wake(seq: &AtomicU32, sleeps: &AtomicU32, waiting: &AtomicU32) {
    if sleeps.load(Ordering::SeqCst) != 0 || waiting.load(Ordering::SeqCst) != 0 {
        wake_all(seq);
    }
}

impl Signals {
    /// After a commit of the writers' side: wakes the reader asleep for data and the
    /// `async` gets, if there are any.
    fn wake_readers(&self) {
        wake(&self.data_seq, &self.reader_sleeps, &self.async_readers);
    }

    /// After a commit of the readers' side that moved the tail to `tail`: wakes the
    /// writer asleep for room, if that is the room it waits for, and the `async` puts.
    fn wake_writers(&self, tail: u64) {
        // The flag first: a writer stores what it wants before it sets the flag.
        let asleep = self.writer_sleeps.load(Ordering::SeqCst) != 0
            && tail >= self.writer_wants.load(Ordering::SeqCst);
        if asleep || self.async_writers.load(Ordering::SeqCst) != 0 {
            wake_all(&self.space_seq);
        }
    }
}

/// Clears a sleep flag left set by a holder that died asleep; only the new holder of
/// that side's lock may call it.
fn clear(sleeps: &AtomicU32) {
    if sleeps.load(Ordering::Relaxed) != 0 {
        sleeps.store(0, Ordering::Relaxed);
    }
}

fn wake_all(seq: &AtomicU32) {
    seq.fetch_add(1, Ordering::SeqCst);
    futex::notify_all(seq);
}

fn corrupted(what: String) -> QueueError {
    QueueError::Corrupted(what)
}

impl Ring {
    /// The bytes a segment needs for a ring of `capacity`.
    pub(crate) fn segment_size(capacity: usize) -> usize {
        DATA + capacity
    }

    /// Makes a ring in a new anonymous segment.
    pub(crate) fn create(options: Options) -> Result<Ring, CreateError> {
        let shm = Arc::new(
            SharedMemory::new(Self::segment_size(options.capacity)).map_err(CreateError::shm)?,
        );
        // SAFETY: the segment was created just now and has not been shared.
        let write_lock = unsafe { RawMutex::init(Arc::clone(&shm), WRITE_LOCK, false) }?;
        // SAFETY: as above.
        let read_lock = unsafe { RawMutex::init(Arc::clone(&shm), READ_LOCK, false) }?;
        let ring = Ring {
            shm,
            write_lock,
            read_lock,
            capacity: options.capacity as u64,
            maxsize: options.maxsize,
            max_message: options.max_message,
        };
        let meta = ring.meta();
        meta.version.store(VERSION, Ordering::Relaxed);
        meta.capacity.store(ring.capacity, Ordering::Relaxed);
        meta.maxsize.store(options.maxsize, Ordering::Relaxed);
        meta.max_message
            .store(options.max_message, Ordering::Relaxed);
        meta.type_tag.store(options.type_tag, Ordering::Relaxed);
        meta.magic.store(MAGIC, Ordering::Release);
        Ok(ring)
    }

    /// The ring in a received segment, checked against what this process expects.
    pub(crate) fn attach(shm: SharedMemory, type_tag: u64, type_name: &str) -> Result<Ring, Error> {
        if shm.size() < DATA {
            return Err(Error::InvalidQueue(format!(
                "received a segment of {} bytes, too small for a queue",
                shm.size()
            )));
        }
        let shm = Arc::new(shm);
        // SAFETY: the segment holds at least `DATA` bytes (checked above) and is
        // page-aligned; `Meta` is all atomics, valid for any bits.
        let meta = unsafe { &*shm.as_ptr().cast::<Meta>() };
        if meta.magic.load(Ordering::Acquire) != MAGIC
            || meta.version.load(Ordering::Relaxed) != VERSION
        {
            return Err(Error::InvalidQueue(
                "received a segment that does not hold a queue of this version".into(),
            ));
        }
        if meta.type_tag.load(Ordering::Relaxed) != type_tag {
            return Err(Error::InvalidQueue(format!(
                "received a queue of another message type than {type_name}"
            )));
        }
        let capacity = meta.capacity.load(Ordering::Relaxed);
        let fits = usize::try_from(capacity)
            .ok()
            .and_then(|c| c.checked_add(DATA))
            .is_some_and(|end| end <= shm.size());
        if !capacity.is_power_of_two() || capacity < MIN_CAPACITY as u64 || !fits {
            return Err(Error::InvalidQueue(format!(
                "received a queue whose ring of {capacity} bytes does not fit its segment of {} bytes",
                shm.size()
            )));
        }
        Ok(Ring {
            write_lock: RawMutex::attach(Arc::clone(&shm), WRITE_LOCK)?,
            read_lock: RawMutex::attach(Arc::clone(&shm), READ_LOCK)?,
            capacity,
            maxsize: meta.maxsize.load(Ordering::Relaxed),
            max_message: meta.max_message.load(Ordering::Relaxed),
            shm,
        })
    }

    pub(crate) fn shm(&self) -> &SharedMemory {
        &self.shm
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity as usize
    }

    pub(crate) fn maxsize(&self) -> Option<usize> {
        (self.maxsize != 0).then(|| usize::try_from(self.maxsize).unwrap_or(usize::MAX))
    }

    pub(crate) fn max_message(&self) -> u64 {
        self.max_message
    }

    /// The part of the first page at `offset`, as a `T` made of atomics.
    fn at<T>(&self, offset: usize) -> &T {
        // SAFETY: every caller passes one of the offsets above, all below `DATA` with room
        // for `T` (asserted at compile time); the segment is at least `DATA` bytes
        // (checked in `create` and `attach`), page-aligned, so the offsets (multiples of
        // 64) are aligned for atomics; `T` is all atomics, valid for any bits, which stay
        // sound while other processes change them; the mapping lives as long as `self`.
        unsafe { &*self.shm.as_ptr().add(offset).cast::<T>() }
    }

    fn meta(&self) -> &Meta {
        self.at(0)
    }

    fn writer(&self) -> &Side {
        self.at(WRITER)
    }

    fn reader(&self) -> &Side {
        self.at(READER)
    }

    fn signals(&self) -> &Signals {
        self.at(SIGNALS)
    }

    fn tasks(&self) -> &Tasks {
        self.at(TASKS)
    }

    fn data(&self) -> *mut u8 {
        // SAFETY: the segment holds `DATA + capacity` bytes (checked in `create` and
        // `attach`), so the result and the `capacity` bytes after it are inside it.
        unsafe { self.shm.as_ptr().add(DATA) }
    }

    /// Copies `src` into the ring at position `pos`, wrapping at its end.
    ///
    /// # Safety
    ///
    /// The caller holds the write lock and `[pos, pos + src.len())` is free (rule 2), so
    /// no reader looks at those bytes until a later commit publishes them.
    unsafe fn write_at(&self, pos: u64, src: &[u8]) {
        let at = (pos & (self.capacity - 1)) as usize;
        let first = src.len().min(self.capacity as usize - at);
        // SAFETY: `at + first <= capacity` and `src.len() - first <= capacity - first`
        // (a chunk is never longer than the ring), so both copies stay inside the ring;
        // private `src` cannot overlap the shared mapping; the bytes are ours alone
        // (our caller's promise), so nobody reads or writes them concurrently.
        // (`copy_raw` is `copy_nonoverlapping` that stays fast when the two addresses
        // alias modulo 4 KiB.)
        unsafe {
            copy_raw(src.as_ptr(), self.data().add(at), first);
            copy_raw(src.as_ptr().add(first), self.data(), src.len() - first);
        }
    }

    /// Copies `len` bytes at position `pos` of the ring to `dst`, wrapping at its end.
    ///
    /// # Safety
    ///
    /// The caller holds the read lock and `[pos, pos + len)` lies in `[tail, head)` as
    /// published (rule 3), so nobody writes those bytes until a later commit frees them;
    /// `len <= capacity`; `dst` is private memory valid for `len` bytes of writes.
    unsafe fn read_at(&self, pos: u64, dst: *mut u8, len: usize) {
        let at = (pos & (self.capacity - 1)) as usize;
        let first = len.min(self.capacity as usize - at);
        // SAFETY: as in `write_at`, with the roles swapped.
        unsafe {
            copy_raw(self.data().add(at), dst, first);
            copy_raw(self.data(), dst.add(first), len - first);
        }
    }

    /// Writes a chunk's header (a chunk's payload length is at most the ring's, which fits
    /// in its u32 field).
    ///
    /// # Safety
    ///
    /// As for [`write_at`](Self::write_at), for the header's bytes.
    unsafe fn write_header(&self, pos: u64, flags: u32, len: u64, total: u64) {
        let mut header = [0u8; HEADER as usize];
        header[..4].copy_from_slice(&(len as u32).to_le_bytes());
        header[4..8].copy_from_slice(&flags.to_le_bytes());
        header[8..].copy_from_slice(&total.to_le_bytes());
        // SAFETY: our caller's promise covers the header.
        unsafe { self.write_at(pos, &header) };
    }

    /// A future that resolves when data may have come (or the queue closed): an
    /// `async` get's wait between two tries. It counts as a waiter from now on, so a
    /// `try` made after this call and failing cannot miss the data's wake-up.
    pub(crate) fn data_changed(&self) -> Changed {
        self.changed(
            SIGNALS + std::mem::offset_of!(Signals, data_seq),
            SIGNALS + std::mem::offset_of!(Signals, async_readers),
        )
    }

    /// Like [`data_changed`](Self::data_changed), for room (an `async` put).
    pub(crate) fn space_changed(&self) -> Changed {
        self.changed(
            SIGNALS + std::mem::offset_of!(Signals, space_seq),
            SIGNALS + std::mem::offset_of!(Signals, async_writers),
        )
    }

    /// Like [`data_changed`](Self::data_changed), for `task_done` (an `async` join).
    pub(crate) fn tasks_changed(&self) -> Changed {
        self.changed(
            TASKS + std::mem::offset_of!(Tasks, seq),
            TASKS + std::mem::offset_of!(Tasks, joiners),
        )
    }

    /// Whether a message of `len` bytes fits in the ring at once, as one chunk (one that
    /// does not must be streamed).
    pub(crate) fn fits_whole(&self, len: u64) -> bool {
        span(len) <= self.capacity
    }

    fn changed(&self, word: usize, interest: usize) -> Changed {
        Changed::new(
            Word::new(Arc::clone(&self.shm), word),
            Some(Word::new(Arc::clone(&self.shm), interest)),
        )
    }

    /// Whether [`close`](Self::close) was called.
    pub(crate) fn is_closed(&self) -> bool {
        self.signals().closed.load(Ordering::Acquire) != 0
    }

    /// Closes the queue for every process and wakes every sleeper to see it.
    pub(crate) fn close(&self) {
        let signals = self.signals();
        signals.closed.store(1, Ordering::SeqCst);
        wake_all(&signals.data_seq);
        wake_all(&signals.space_seq);
    }

    /// Messages published and not yet consumed: never above the true count, which a
    /// bounded queue keeps at most `maxsize`.
    pub(crate) fn len(&self) -> u64 {
        // Published first: a later (larger) consumed count can only lower the answer.
        let published = self.writer().msgs.load(Ordering::Acquire);
        let consumed = self.reader().msgs.load(Ordering::Acquire);
        published.saturating_sub(consumed)
    }

    /// Free bytes in front of `head`, with a fresh look at the tail if `fresh`.
    fn free(&self, head: u64, fresh: bool) -> Result<u64, QueueError> {
        let cache = &self.writer().other;
        let tail = if fresh {
            let tail = self.reader().pos.load(Ordering::Acquire);
            cache.store(tail, Ordering::Relaxed);
            tail
        } else {
            cache.load(Ordering::Relaxed)
        };
        match head.checked_sub(tail) {
            Some(used) if used <= self.capacity => Ok(self.capacity - used),
            _ => Err(corrupted(format!("head {head} and tail {tail}"))),
        }
    }

    /// The head as far as it is needed from `tail`, with a fresh look if `fresh`.
    fn head(&self, tail: u64, fresh: bool) -> Result<u64, QueueError> {
        let cache = &self.reader().other;
        let head = if fresh {
            let head = self.writer().pos.load(Ordering::Acquire);
            cache.store(head, Ordering::Relaxed);
            head
        } else {
            cache.load(Ordering::Relaxed)
        };
        match head.checked_sub(tail) {
            Some(used) if used <= self.capacity => Ok(head),
            // The cache may lag behind a tail that went on from a fresh head.
            _ if !fresh => self.head(tail, true),
            _ => Err(corrupted(format!("head {head} and tail {tail}"))),
        }
    }

    /// Waits until `ready` holds or the deadline passes: a spin, then sleeps on `seq`
    /// with `sleeps` set, calling `housekeeping` after every [`SLICE`] of sleep.
    fn wait(
        &self,
        seq: &AtomicU32,
        sleeps: &AtomicU32,
        deadline: Deadline,
        ready: &mut dyn FnMut() -> Result<bool, QueueError>,
        housekeeping: &mut dyn FnMut() -> Result<(), QueueError>,
    ) -> Result<bool, QueueError> {
        if ready()? {
            return Ok(true);
        }
        if deadline.expired() {
            return Ok(false);
        }
        if try_spin(&mut *ready)? {
            return Ok(true);
        }
        loop {
            let now = Instant::now();
            let until = match deadline.instant() {
                Some(at) if at <= now => return ready(),
                Some(at) => at.min(now + SLICE),
                None => now + SLICE,
            };
            // The flag, then (after a full fence) a last look: either the other side's
            // commit is seen now, or its following look at the flag sees the flag.
            sleeps.store(1, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            let seen = seq.load(Ordering::SeqCst);
            let mut done = ready();
            if matches!(done, Ok(false)) {
                if let Err(e) = futex::wait(seq, seen, Some(until)) {
                    done = Err(QueueError::os("futex wait", e));
                }
                done = done.and_then(|_| ready());
            }
            sleeps.store(0, Ordering::Relaxed);
            if done? {
                return Ok(true);
            }
            housekeeping()?;
        }
    }

    /// A writer's [`wait`](Self::wait) for room (or a close); asleep, it is woken once
    /// the readers' tail reaches `wanted_tail` or they consume a message.
    fn wait_for_room(
        &self,
        deadline: Deadline,
        wanted_tail: u64,
        ready: &mut dyn FnMut() -> Result<bool, QueueError>,
    ) -> Result<bool, QueueError> {
        let signals = self.signals();
        signals.writer_wants.store(wanted_tail, Ordering::SeqCst);
        self.wait(
            &signals.space_seq,
            &signals.writer_sleeps,
            deadline,
            ready,
            &mut || Ok(()),
        )
    }

    /// A reader's [`wait`](Self::wait) for data (or a close), rescuing a dead writer's
    /// message every [`SLICE`].
    fn wait_for_data(
        &self,
        deadline: Deadline,
        ready: &mut dyn FnMut() -> Result<bool, QueueError>,
    ) -> Result<bool, QueueError> {
        let signals = self.signals();
        self.wait(
            &signals.data_seq,
            &signals.reader_sleeps,
            deadline,
            ready,
            &mut || self.rescue_writer(),
        )
    }

    // -----------------------------------------------------------------------------------
    // Writing.
    // -----------------------------------------------------------------------------------

    /// Puts one message: its bytes are in the ring, published, when this returns `Ok`.
    pub(crate) fn put(&self, message: &[u8], deadline: Deadline) -> Result<(), Refused> {
        let total = message.len() as u64;
        let held = self.prepare(total, deadline)?;
        // The common case, kept short: a message that fits at once, as one chunk.
        let writer = self.writer();
        let head = writer.pos.load(Ordering::Relaxed);
        let whole = span(total);
        if total <= self.piece() && self.free(head, false)? >= whole {
            // SAFETY: we hold the write lock and `whole` bytes from `head` are free.
            unsafe {
                self.write_header(head, FIRST | LAST, total, total);
                self.write_at(head + HEADER, message);
            }
            let published = writer.msgs.load(Ordering::Relaxed);
            commit(writer, head + whole, published + 1, false);
            self.signals().wake_readers();
            return Ok(());
        }
        let mut outgoing = self.outgoing(held, total, deadline);
        outgoing.write(message)?;
        outgoing.finish()
    }

    /// Begins a message of `total` bytes: takes the write lock and waits (up to the
    /// deadline) for the queue to be below its maxsize. The bytes then go in through
    /// [`Outgoing::write`], straight into the ring, and [`Outgoing::finish`] ends it; an
    /// `Outgoing` dropped unfinished withdraws what it had published.
    pub(crate) fn begin(&self, total: u64, deadline: Deadline) -> Result<Outgoing<'_>, Refused> {
        let held = self.prepare(total, deadline)?;
        Ok(self.outgoing(held, total, deadline))
    }

    /// What a put does before it writes: checks the length and the close, takes the
    /// write lock, repairs what a dead writer left, waits to be below maxsize.
    fn prepare(&self, total: u64, deadline: Deadline) -> Result<RawGuard<'_>, Refused> {
        if total > self.max_message {
            return Err(Refused::Failed(QueueError::MessageTooLarge {
                len: total,
                max: self.max_message,
            }));
        }
        if self.is_closed() {
            return Err(Refused::Closed);
        }
        let held = lock(&self.write_lock, deadline)?;
        self.recover_writer()?;
        let writer = self.writer();
        if self.maxsize != 0 {
            let mut room = || {
                // Our own count is exact; a stale consumed count only makes us wait.
                let published = writer.msgs.load(Ordering::Relaxed);
                let consumed = self.reader().msgs.load(Ordering::Acquire);
                Ok(self.is_closed() || published.saturating_sub(consumed) < self.maxsize)
            };
            // Any consumed message may be the one we wait for: woken by every commit.
            let ready = self.wait_for_room(deadline, 0, &mut room)?;
            if !ready {
                return Err(Refused::Busy);
            }
        }
        if self.is_closed() {
            return Err(Refused::Closed);
        }
        Ok(held)
    }

    /// A message of `total` bytes to write, with the write lock `held` (see
    /// [`prepare`](Self::prepare)).
    fn outgoing<'r>(&'r self, held: RawGuard<'r>, total: u64, deadline: Deadline) -> Outgoing<'r> {
        let writer = self.writer();
        Outgoing {
            ring: self,
            _held: held,
            deadline,
            // A try_put (its deadline passed at the call) never streams.
            streams: !deadline.expired(),
            total,
            published: writer.msgs.load(Ordering::Relaxed),
            head: writer.pos.load(Ordering::Relaxed),
            sent: 0,
            size: 0,
            filled: 0,
            begun: false,
            done: false,
        }
    }

    /// The most payload bytes of a chunk that does not end its message: a quarter of
    /// the ring, at least [`MIN_PIECE`]. A long message goes in pieces, each published
    /// as it is written, so the reader copies one piece out while the writer copies the
    /// next in, instead of each waiting for the other's whole copy.
    fn piece(&self) -> u64 {
        (self.capacity / 4).max(MIN_PIECE) / HEADER * HEADER
    }

    /// Ends the open message at `head` with an ABORT chunk.
    fn abort(&self, head: u64) -> Result<(), QueueError> {
        let writer = self.writer();
        if self.free(head, true)? < HEADER {
            return Err(corrupted("no room left for an abort chunk".into()));
        }
        // SAFETY: we hold the write lock and HEADER bytes from `head` are free.
        unsafe { self.write_header(head, ABORT, 0, 0) };
        let published = writer.msgs.load(Ordering::Relaxed);
        commit(writer, head + HEADER, published, false);
        self.signals().wake_readers();
        Ok(())
    }

    /// Repairs what a writer that died holding the write lock left: called by every new
    /// holder of the write lock (see "Dying in the middle").
    fn recover_writer(&self) -> Result<(), QueueError> {
        let writer = self.writer();
        if writer.pending.load(Ordering::Acquire) != 0 {
            let pos = writer.pend_pos.load(Ordering::Relaxed);
            let msgs = writer.pend_msgs.load(Ordering::Relaxed);
            let open = writer.pend_open.load(Ordering::Relaxed) != 0;
            let head = writer.pos.load(Ordering::Relaxed);
            let tail = self.reader().pos.load(Ordering::Acquire);
            let sane = pos >= head
                && pos
                    .checked_sub(tail)
                    .is_some_and(|used| used <= self.capacity)
                && msgs >= writer.msgs.load(Ordering::Relaxed);
            if !sane {
                return Err(corrupted(format!(
                    "a dead writer's pending head {pos} (head {head}, tail {tail})"
                )));
            }
            flotilla_core::event!(
                flotilla_core::log::Level::WARN,
                "a producer died while publishing; its message is published"
            );
            apply(writer, pos, msgs, open);
            writer.pending.store(0, Ordering::Release);
            self.signals().wake_readers();
        }
        if writer.open.load(Ordering::Acquire) != 0 {
            flotilla_core::event!(
                flotilla_core::log::Level::WARN,
                "a producer died in the middle of a message; it is discarded"
            );
            self.abort(writer.pos.load(Ordering::Relaxed))?;
        }
        // The dead holder's sleep flag, if it died asleep (read first: this runs on every
        // put, and a store would take the line from the readers each time).
        clear(&self.signals().writer_sleeps);
        Ok(())
    }

    /// Called by a sleeping reader every [`SLICE`]: if a writer seems to be in the middle
    /// of something and the write lock is free, it died there; repair it.
    fn rescue_writer(&self) -> Result<(), QueueError> {
        let writer = self.writer();
        if writer.pending.load(Ordering::Acquire) == 0 && writer.open.load(Ordering::Acquire) == 0 {
            return Ok(());
        }
        match self.write_lock.try_lock() {
            Ok((_held, _)) => self.recover_writer(),
            Err(LockError::WouldBlock) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    // -----------------------------------------------------------------------------------
    // Reading.
    // -----------------------------------------------------------------------------------

    /// Gets one message into `out` (cleared first).
    ///
    /// The deadline bounds the wait for a message to *begin*; once its first chunk is
    /// read, the rest is waited for without one: its writer is streaming it, and either
    /// finishes, aborts it (its own timeout), or dies (noticed every [`SLICE`]).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn get(&self, deadline: Deadline, out: &mut Vec<u8>) -> Result<(), Refused> {
        let streamed = self.get_with(deadline, out, |pieces| {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(pieces, &mut bytes).map(|_| bytes)
        })?;
        if let Some(bytes) = streamed {
            // A read error is an abort or a failure, both of which `get_with` handled.
            *out = bytes.unwrap_or_default();
        }
        Ok(())
    }

    /// Gets one message: a message of one chunk is copied into `out` (cleared first) and
    /// `Ok(None)` returned; a message in pieces is handed to `stream` as a reader of its
    /// bytes, read straight from the ring piece by piece, and `Ok(Some(what it
    /// returned))` comes back. Whatever `stream` left unread of the message is skipped.
    /// If the message's writer aborts it while `stream` reads, `stream`'s reads fail, its
    /// result is dropped, and the next message is waited for.
    ///
    /// Deadlines as for [`get`](Self::get).
    pub(crate) fn get_with<R>(
        &self,
        deadline: Deadline,
        out: &mut Vec<u8>,
        mut stream: impl FnMut(&mut Pieces<'_, '_>) -> R,
    ) -> Result<Option<R>, Refused> {
        out.clear();
        let _held = lock(&self.read_lock, deadline)?;
        let skipping = self.recover_reader()?;
        let reader = self.reader();
        let mut cursor = Cursor {
            ring: self,
            tail: reader.pos.load(Ordering::Relaxed),
            consumed: reader.msgs.load(Ordering::Relaxed),
            open: skipping,
            skipping,
            total: 0,
            got: 0,
        };
        loop {
            let Some(chunk) = cursor.next(deadline)? else {
                continue; // an ABORT: the message in progress is gone
            };
            if cursor.skipping {
                cursor.done(chunk);
                continue;
            }
            if chunk.flags & LAST != 0 {
                let len = chunk.len as usize;
                out.reserve(len);
                // SAFETY: we hold the read lock and the chunk lies in `[tail, head)`
                // (checked by `next`); `out` has room for `len` more bytes, which the
                // copy initialises before `set_len` counts them.
                unsafe {
                    self.read_at(cursor.tail + HEADER, out.as_mut_ptr(), len);
                    out.set_len(len);
                }
                cursor.done(chunk);
                return Ok(None);
            }
            let mut pieces = Pieces {
                at: cursor.tail + HEADER,
                left: chunk.len,
                chunk,
                cursor: &mut cursor,
                spent: false,
                end: None,
            };
            let result = stream(&mut pieces);
            match pieces.finish() {
                Ok(()) => return Ok(Some(result)),
                Err(PieceEnd::Aborted) => continue,
                Err(PieceEnd::Failed(e)) => return Err(e),
            }
        }
    }

    /// With the ring seen empty after a close: whether it is drained for good. A writer
    /// that began before the close may still be publishing; wait for it by taking the
    /// write lock (it cannot be waiting for us: the ring is empty).
    fn drained(&self, tail: u64, deadline: Deadline) -> Result<bool, Refused> {
        let _held = lock(&self.write_lock, deadline)?;
        self.recover_writer()?;
        Ok(self.writer().pos.load(Ordering::Acquire) == tail)
    }

    /// Repairs what a reader that died holding the read lock left; `true` if the message
    /// at the tail is the rest of one it had begun, to be skipped.
    fn recover_reader(&self) -> Result<bool, QueueError> {
        let reader = self.reader();
        if reader.pending.load(Ordering::Acquire) != 0 {
            let pos = reader.pend_pos.load(Ordering::Relaxed);
            let msgs = reader.pend_msgs.load(Ordering::Relaxed);
            let open = reader.pend_open.load(Ordering::Relaxed) != 0;
            let tail = reader.pos.load(Ordering::Relaxed);
            let head = self.writer().pos.load(Ordering::Acquire);
            if pos < tail || pos > head {
                return Err(corrupted(format!(
                    "a dead reader's pending tail {pos} (tail {tail}, head {head})"
                )));
            }
            apply(reader, pos, msgs, open);
            reader.pending.store(0, Ordering::Release);
            self.signals().wake_writers(pos);
        }
        clear(&self.signals().reader_sleeps);
        let open = reader.open.load(Ordering::Acquire) != 0;
        if open {
            flotilla_core::event!(
                flotilla_core::log::Level::WARN,
                "a consumer died in the middle of a message; the rest of it is skipped"
            );
        }
        Ok(open)
    }

    // -----------------------------------------------------------------------------------
    // Tasks (JoinableQueue).
    // -----------------------------------------------------------------------------------

    /// Counts one task done; `false` if that would count more than were published.
    pub(crate) fn task_done(&self) -> bool {
        let tasks = self.tasks();
        // `done` first: a task_done counted elsewhere that we see was for a message
        // whose publication we then see too.
        let mut done = tasks.done.load(Ordering::Acquire);
        loop {
            let published = self.writer().msgs.load(Ordering::Acquire);
            if done >= published {
                return false;
            }
            match tasks.done.compare_exchange_weak(
                done,
                done + 1,
                Ordering::SeqCst,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(now) => done = now,
            }
        }
        if tasks.joiners.load(Ordering::SeqCst) != 0 {
            wake_all(&tasks.seq);
        }
        true
    }

    /// Messages published and not yet marked done.
    pub(crate) fn unfinished(&self) -> u64 {
        let published = self.writer().msgs.load(Ordering::Acquire);
        published.saturating_sub(self.tasks().done.load(Ordering::Acquire))
    }

    /// Waits until every published message is marked done; `false` on the deadline.
    pub(crate) fn join(&self, deadline: Deadline) -> Result<bool, QueueError> {
        let until = match deadline.instant() {
            Some(at) if at <= Instant::now() => return Ok(self.unfinished() == 0),
            until => until,
        };
        let tasks = self.tasks();
        loop {
            tasks.joiners.fetch_add(1, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            let seen = tasks.seq.load(Ordering::SeqCst);
            let outcome = if self.unfinished() == 0 {
                Ok(futex::Wake::Woken)
            } else {
                futex::wait(&tasks.seq, seen, until)
            };
            tasks.joiners.fetch_sub(1, Ordering::SeqCst);
            match outcome {
                _ if self.unfinished() == 0 => return Ok(true),
                Ok(futex::Wake::TimedOut) => return Ok(false),
                Ok(futex::Wake::Woken) => {}
                Err(e) => return Err(QueueError::os("futex wait", e)),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// A writer's message in progress.
// ---------------------------------------------------------------------------------------

/// A message being written by the holder of the write lock (see [`Ring::begin`]): its
/// bytes are copied into a chunk in the free room, and each chunk is published once it
/// is full, so that a reader copies it out while the next one is filled.
pub(crate) struct Outgoing<'r> {
    ring: &'r Ring,
    _held: RawGuard<'r>,
    deadline: Deadline,
    /// Whether the message may be streamed (waiting for room between chunks), or must
    /// fit in the free room at once.
    streams: bool,
    /// The message's length.
    total: u64,
    /// Messages published before this one.
    published: u64,
    /// The committed head: where the chunk being filled begins.
    head: u64,
    /// Payload bytes in the chunks published so far.
    sent: u64,
    /// The chunk being filled: its payload length, and how much of it is written.
    size: u64,
    filled: u64,
    /// A chunk is being filled.
    begun: bool,
    /// The last chunk is published.
    done: bool,
}

impl Outgoing<'_> {
    /// Copies `bytes` into the ring, after the message's bytes written so far; chunks are
    /// published as they fill. Waits for room (up to the deadline) when streaming.
    ///
    /// # Errors
    ///
    /// [`Refused::Busy`] if no room came by the deadline (what was published of the
    /// message is withdrawn when this is dropped); `Failed` if `bytes` go beyond the
    /// length the message was begun with, or the ring is corrupted.
    pub(crate) fn write(&mut self, mut bytes: &[u8]) -> Result<(), Refused> {
        while !bytes.is_empty() {
            if !self.begun {
                if self.sent == self.total {
                    return Err(Refused::Failed(beyond(self.total)));
                }
                self.open_chunk()?;
            }
            let n = ((self.size - self.filled) as usize).min(bytes.len());
            // SAFETY: we hold the write lock (`_held`); `open_chunk` found `span(size)`
            // bytes free from `head`, and `[head + HEADER + filled, + n)` lies inside
            // them, unpublished until `publish` commits.
            unsafe {
                self.ring
                    .write_at(self.head + HEADER + self.filled, &bytes[..n]);
            }
            self.filled += n as u64;
            bytes = &bytes[n..];
            if self.filled == self.size {
                self.publish();
            }
        }
        Ok(())
    }

    /// Ends the message: its last chunk is published.
    ///
    /// # Errors
    ///
    /// `Failed` if fewer bytes were written than the message was begun with (it is
    /// withdrawn); as for [`write`](Self::write) for an empty message.
    pub(crate) fn finish(mut self) -> Result<(), Refused> {
        if self.total == 0 && !self.done {
            // An empty message: one chunk with no payload.
            self.open_chunk()?;
            self.publish();
        }
        if !self.done {
            return Err(Refused::Failed(QueueError::Corrupted(format!(
                "a message of {} bytes ended after {}",
                self.total,
                self.sent + self.filled
            ))));
        }
        Ok(())
    }

    /// Waits for room for the next chunk and sizes it: the whole rest if it fits and is
    /// no longer than a piece, else a piece of what fits, leaving room for an `ABORT`.
    fn open_chunk(&mut self) -> Result<(), Refused> {
        let ring = self.ring;
        let rest = self.total - self.sent;
        let whole = span(rest);
        let piece = ring.piece();
        // Room for the whole rest, or (streaming) for a piece and an ABORT header, or
        // half of a ring smaller than two pieces.
        let want = if self.streams {
            whole.min(HEADER + piece + HEADER).min(ring.capacity / 2)
        } else {
            whole
        };
        let head = self.head;
        let mut free = ring.free(head, false)?;
        if free < want {
            let first = self.sent == 0;
            let mut room = || {
                free = ring.free(head, true)?;
                Ok(free >= want || (first && ring.is_closed()))
            };
            // Asleep, the writer is woken only once half the ring (or the whole rest) is
            // free: it then has plenty to copy while the reader drains the other half,
            // instead of both taking turns at a wake-up per piece.
            let asleep_want = whole.min(ring.capacity / 2).max(want);
            let wanted_tail = (head + asleep_want).saturating_sub(ring.capacity);
            let ready = ring.wait_for_room(self.deadline, wanted_tail, &mut room)?;
            if !ready {
                return Err(Refused::Busy);
            }
            if first && free < want {
                return Err(Refused::Closed);
            }
        }
        self.size = if whole <= free && rest <= piece {
            rest
        } else {
            // `free >= HEADER + piece + HEADER` or half the ring here, or the whole rest
            // fits (and is longer than a piece), so this is a full piece or more than a
            // kilobyte.
            ((free - 2 * HEADER) / HEADER * HEADER).min(piece)
        };
        self.filled = 0;
        self.begun = true;
        Ok(())
    }

    /// Publishes the full chunk being filled.
    fn publish(&mut self) {
        let ring = self.ring;
        let first = if self.sent == 0 { FIRST } else { 0 };
        let last = self.sent + self.size == self.total;
        let flags = first | if last { LAST } else { 0 };
        // SAFETY: we hold the write lock and the chunk's `span(size)` bytes from `head`
        // were free (`open_chunk`); its payload is written.
        unsafe { ring.write_header(self.head, flags, self.size, self.total) };
        self.head += span(self.size);
        self.sent += self.size;
        self.begun = false;
        self.done = last;
        commit(
            ring.writer(),
            self.head,
            self.published + u64::from(last),
            !last,
        );
        ring.signals().wake_readers();
    }
}

/// More bytes written than a message was begun with: callers size their messages
/// exactly (the queue through `codec::encode_sized`), so only a bug gets here.
fn beyond(total: u64) -> QueueError {
    QueueError::Corrupted(format!(
        "more bytes written than the {total} of the message"
    ))
}

impl Drop for Outgoing<'_> {
    /// Withdraws a message left unfinished (a timeout, an encoding error or a panic in
    /// the middle): readers drop what was published of it.
    fn drop(&mut self) {
        if self.sent > 0
            && !self.done
            && let Err(e) = self.ring.abort(self.head)
        {
            flotilla_core::event!(
                flotilla_core::log::Level::ERROR,
                error = %e,
                "a message could not be withdrawn from the queue"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// A reader's walk over the chunks.
// ---------------------------------------------------------------------------------------

/// A chunk's header, as read and checked by [`Cursor::next`].
#[derive(Clone, Copy)]
struct Chunk {
    len: u64,
    flags: u32,
}

/// The holder of the read lock walking the ring: its private copy of the readers'
/// counters, committed chunk by chunk.
struct Cursor<'a> {
    ring: &'a Ring,
    tail: u64,
    consumed: u64,
    /// A message is begun and not yet finished.
    open: bool,
    /// The open message is being skipped (a dead reader's, or one whose decoding failed).
    skipping: bool,
    /// The open message's length, from its first chunk.
    total: u64,
    /// The open message's bytes in the chunks seen so far.
    got: u64,
}

impl Cursor<'_> {
    /// Waits for the chunk at the tail and checks its header; `None` if it was an
    /// `ABORT`, which ends the open message and is consumed. The chunk itself is left
    /// in place until [`done`](Self::done). Only the wait for a message to begin is
    /// bounded by `deadline`.
    fn next(&mut self, deadline: Deadline) -> Result<Option<Chunk>, Refused> {
        let ring = self.ring;
        let tail = self.tail;
        let mut head = ring.head(tail, false)?;
        while head == tail {
            head = ring.head(tail, true)?;
            if head != tail {
                break;
            }
            let open = self.open;
            let mut data = || {
                head = ring.head(tail, true)?;
                Ok(head != tail || (!open && ring.is_closed()))
            };
            let ready =
                ring.wait_for_data(if open { Deadline::NEVER } else { deadline }, &mut data)?;
            if head == tail {
                if !ready {
                    return Err(Refused::Busy);
                }
                if ring.drained(tail, deadline)? {
                    return Err(Refused::Closed);
                }
            }
        }
        let mut header = [0u8; HEADER as usize];
        // SAFETY: we hold the read lock; `head - tail >= HEADER` (positions are
        // multiples of HEADER and head > tail), and `[tail, head)` is published.
        unsafe { ring.read_at(tail, header.as_mut_ptr(), header.len()) };
        let len = u64::from(u32::from_le_bytes([
            header[0], header[1], header[2], header[3],
        ]));
        let flags = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let whole = u64::from_le_bytes(header[8..].try_into().unwrap_or_default());
        if span(len) > head - tail || flags & !(FIRST | LAST | ABORT) != 0 {
            return Err(Refused::Failed(corrupted(format!(
                "a chunk of {len} bytes with flags {flags:#x} at {tail} (head {head})"
            ))));
        }
        if flags & ABORT != 0 {
            // The writer gave up on (or died in) the message we were reading.
            self.tail += span(len);
            commit(ring.reader(), self.tail, self.consumed, false);
            ring.signals().wake_writers(self.tail);
            (self.open, self.skipping) = (false, false);
            return Ok(None);
        }
        if flags & FIRST != 0 {
            if self.open && !self.skipping {
                return Err(Refused::Failed(corrupted(
                    "a message began inside another".into(),
                )));
            }
            if whole > ring.max_message {
                return Err(Refused::Failed(corrupted(format!(
                    "a message of {whole} bytes, beyond the queue's maximum"
                ))));
            }
            (self.open, self.skipping) = (true, false);
            (self.total, self.got) = (whole, 0);
        } else if !self.open {
            return Err(Refused::Failed(corrupted(
                "a chunk continues no message".into(),
            )));
        }
        if !self.skipping {
            if self.got + len > self.total {
                return Err(Refused::Failed(corrupted(
                    "a message longer than it said".into(),
                )));
            }
            self.got += len;
        }
        Ok(Some(Chunk { len, flags }))
    }

    /// Consumes the chunk at the tail (its bytes are copied out, or not wanted) and
    /// commits: the message is consumed with its last chunk.
    fn done(&mut self, chunk: Chunk) {
        self.tail += span(chunk.len);
        let last = chunk.flags & LAST != 0;
        if last {
            self.consumed += 1;
            (self.open, self.skipping) = (false, false);
        }
        commit(self.ring.reader(), self.tail, self.consumed, !last);
        // The message's end wakes a writer waiting below maxsize, whatever the tail.
        let tail = if last { u64::MAX } else { self.tail };
        self.ring.signals().wake_writers(tail);
    }
}

/// Why a message read in pieces ended early.
enum PieceEnd {
    /// Its writer aborted it (or died in it): there is no message.
    Aborted,
    /// The ring failed.
    Failed(Refused),
}

/// The bytes of a message in pieces, read straight out of the ring as a
/// [`Read`](std::io::Read): each chunk is consumed (and its room given back to the
/// writers) once it is read through, so the writer can stream the next piece while this
/// one is decoded.
pub(crate) struct Pieces<'c, 'r> {
    cursor: &'c mut Cursor<'r>,
    chunk: Chunk,
    /// The ring position of the next unread byte of `chunk`, and how many are left.
    at: u64,
    left: u64,
    /// `chunk` is consumed already: read through, and not the last.
    spent: bool,
    end: Option<PieceEnd>,
}

impl Pieces<'_, '_> {
    /// The message's length.
    pub(crate) fn total(&self) -> u64 {
        self.cursor.total
    }

    /// Skips what was not read, up to and including the last chunk.
    fn finish(mut self) -> Result<(), PieceEnd> {
        loop {
            if let Some(end) = self.end.take() {
                return Err(end);
            }
            if !self.spent {
                self.cursor.done(self.chunk);
            }
            if self.chunk.flags & LAST != 0 {
                return Ok(());
            }
            self.cursor.skipping = true;
            self.advance_raw()?;
        }
    }

    /// Moves to the next chunk of the message (the current one is done).
    fn advance_raw(&mut self) -> Result<(), PieceEnd> {
        match self.cursor.next(Deadline::NEVER) {
            Err(e) => Err(PieceEnd::Failed(e)),
            Ok(None) => Err(PieceEnd::Aborted),
            Ok(Some(chunk)) => {
                self.chunk = chunk;
                (self.at, self.left) = (self.cursor.tail + HEADER, chunk.len);
                self.spent = false;
                Ok(())
            }
        }
    }
}

impl Pieces<'_, '_> {
    /// Copies up to `len` bytes of the message to `dst`, from the chunk at hand (moving
    /// to the next first if this one is read through); how many, 0 at its end.
    ///
    /// # Safety
    ///
    /// `dst` is private memory valid for `len` bytes of writes.
    unsafe fn read_raw(&mut self, dst: *mut u8, len: usize) -> std::io::Result<usize> {
        loop {
            if self.end.is_some() {
                return Err(std::io::Error::other("the message is not there"));
            }
            if self.left > 0 {
                let n = (self.left as usize).min(len);
                // SAFETY: we hold the read lock (the cursor borrows the locked ring), and
                // `[at, at + left)` is the unread payload of a checked chunk in
                // `[tail, head)`; `dst` is valid for `n <= len` bytes (our caller's
                // promise).
                unsafe { self.cursor.ring.read_at(self.at, dst, n) };
                self.at += n as u64;
                self.left -= n as u64;
                if self.left == 0 && self.chunk.flags & LAST == 0 {
                    // Read through: its room goes back to the writer now, not at the next
                    // read (which may come after a long decode), and a reader killed
                    // from here on has begun the message (see "Dying in the middle").
                    self.cursor.done(self.chunk);
                    self.spent = true;
                }
                return Ok(n);
            }
            if self.chunk.flags & LAST != 0 || len == 0 {
                return Ok(0);
            }
            if !self.spent {
                // An empty chunk that is not the last.
                self.cursor.done(self.chunk);
                self.spent = true;
            }
            if let Err(end) = self.advance_raw() {
                self.end = Some(end);
            }
        }
    }
}

impl std::io::Read for Pieces<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // SAFETY: `buf` is private memory of `buf.len()` bytes.
        unsafe { self.read_raw(buf.as_mut_ptr(), buf.len()) }
    }
}

/// A byte string of the message goes from the ring straight into its `Vec`, a chunk's
/// worth at a time: one copy, and no zeroing first.
impl flotilla_core::codec::ByteSource for Pieces<'_, '_> {
    fn read_into_vec(&mut self, out: &mut Vec<u8>, len: usize) -> std::io::Result<()> {
        out.reserve(len);
        let mut left = len;
        while left > 0 {
            let spare = out.spare_capacity_mut();
            // SAFETY: `spare` is `out`'s own unused capacity, at least `left` bytes
            // (reserved above, and each pass fills what it counts).
            let n = unsafe { self.read_raw(spare.as_mut_ptr().cast(), left) }?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            // SAFETY: `read_raw` initialised the `n` bytes after `out.len()`.
            unsafe { out.set_len(out.len() + n) };
            left -= n;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
