//! [`Connection`] and [`pipe`]: Python's `multiprocessing.Pipe` and `Connection`, with
//! framing that refuses oversized frames before allocating and descriptors that travel
//! with the messages.
//!
//! # Wire format
//!
//! Every message is one frame: a 16-byte header, then the payload.
//!
//! ```text
//! offset  size  field
//!      0     8  payload length, u64 little-endian
//!      8     4  number of descriptors sent with this frame, u32 little-endian
//!     12     4  magic "FLT1" (0x31544c46 little-endian): not a frame otherwise
//! ```
//!
//! Descriptors travel as `SCM_RIGHTS` with the header's bytes (header and payload go in
//! one `sendmsg`), so they arrive with the read that brings the frame's first byte. A
//! frame of up to 4 KiB without descriptors is copied into one buffer on the stack and
//! goes in one `send`, which costs less than a `sendmsg` of two pieces.
//!
//! A receive reads up to 64 KiB at once, the next frame's header into place and the
//! rest into a read-ahead buffer: a small frame costs one read, and frames that arrived
//! together are taken from what was read ahead, with no read at all. A payload of 16 KiB
//! or more that begins the buffer becomes the received `Vec` itself, with no copy; a
//! payload with more than 64 KiB still to come is read straight into its `Vec`. No
//! buffer is zeroed first: reads go into spare capacity. (The kernel ends a read after the
//! message that carries descriptors, so one read brings at most one frame's descriptors,
//! and the frame they belong to begins in that read.) A
//! whole frame read ahead counts as readable for [`Connection::poll`] and [`wait`],
//! although the descriptor may not be; a connection end holding bytes it read ahead
//! cannot be sent to another process (they would not go with it).
//!
//! # Receiving, and what a peer cannot do to the receiver
//!
//! - **Memory follows the bytes, not the header.** A header is checked against the
//!   receiver's maximum before anything is allocated; then the payload's buffer grows
//!   as its bytes arrive (to at most 1 MiB beyond them, or twice them once they are
//!   more, with fallible reservation), so a
//!   header announcing a huge frame costs nothing until the bytes come, and running out
//!   of memory is [`RecvError::NoMemory`], never an abort.
//! - **Deadlines cover the whole frame.** Every read waits in `poll`, bounded by the
//!   call's deadline, so a timed receive returns [`RecvTimeoutError::Timeout`] on time even when the
//!   peer stalls mid-frame. What arrived stays in the connection's [`FrameReader`]
//!   (lent to one receiver at a time, and waited for with the deadline too), and the
//!   next receive goes on with it.
//! - **A frame cut short is not end of file.** The peer closing mid-frame is
//!   [`RecvError::Truncated`]; [`RecvError::Disconnected`] means it closed between
//!   frames.
//! - **Descriptors of a frame nobody gets are closed at once**, whatever the error.
//!
//! A header that is not a frame, or declares more than the receiver's maximum, closes
//! the connection on the receiving side: the stream can no longer be trusted.

use std::collections::VecDeque;
use std::fmt;
use std::io::IoSlice;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{
    FrameStartError, OsError, PollError, RecvError, RecvIntoError, RecvTimeoutError, SendError,
};
use crate::handle::{self, Exported, Fd};
use flotilla_core::Deadline;

use crate::sys;

const HEADER_LEN: usize = 16;
const MAGIC: u32 = u32::from_le_bytes(*b"FLT1");
/// The least a payload buffer grows by at a time (or the rest of the payload, if less).
const MIN_GROWTH: usize = 1 << 20;
/// How much a receive reads at once when the frame at hand is small (or its end near):
/// the frame and whatever follows it, kept for the next receive, so a small frame costs
/// one read, and several small frames that arrived together one read between them. The
/// buffer is never zeroed (reads go into its spare capacity), so a connection that
/// carries a few small frames touches a page of it, not 64 KiB (which right after a
/// fork would be 16 pages copied on write).
const AHEAD: usize = 64 << 10;
/// From this payload length up, a payload that begins the read-ahead buffer becomes
/// the received `Vec` itself, and a new buffer takes its place: no copy. Below it,
/// copying the payload out costs less than a new buffer.
const HAND_OVER: usize = 16 << 10;

/// The largest frame a new connection accepts: 1 GiB. Change it per connection with
/// [`Connection::set_max_frame`].
pub const DEFAULT_MAX_FRAME: u64 = 1 << 30;

/// Which way a connection end works.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Kind {
    /// One end of a socket pair: sends and receives, and carries descriptors.
    Duplex,
    /// The read end of a pipe.
    ReadOnly,
    /// The write end of a pipe.
    WriteOnly,
}

/// One end of a pipe between processes (or threads): framed messages of bytes or serde
/// values, with the OS handles inside those values carried along.
///
/// All methods take `&self`: a connection can be shared between threads (say in an
/// `Arc`); each frame is sent and received whole, never interleaved.
///
/// A connection can itself be sent: inherited by a forked child, passed as an argument
/// to a spawned one, or sent over another connection. The receiving process gets its
/// own descriptor for the same end.
///
/// # Examples
///
/// ```
/// use flotilla_ipc::pipe;
///
/// let (left, right) = pipe(true).unwrap();
/// left.send(&("ping", 1u32)).unwrap();
/// let (word, n): (String, u32) = right.recv().unwrap();
/// assert_eq!((word.as_str(), n), ("ping", 1));
///
/// right.send_bytes(b"pong").unwrap();
/// assert_eq!(left.recv_bytes().unwrap(), b"pong");
/// ```
pub struct Connection {
    fd: OwnedFd,
    kind: Kind,
    max_frame: u64,
    /// Set when the stream stopped being trustworthy (a refused or malformed frame).
    broken: AtomicBool,
    send_lock: Mutex<()>,
    /// The frame being received, lent to one receiver at a time (boxed: with its
    /// read-ahead state it is most of a connection's size).
    receiving: Box<ReceiveSlot>,
}

/// A pair of connected [`Connection`]s: Python's `multiprocessing.Pipe(duplex)`.
///
/// With `duplex`, both ends send and receive (a Unix socket pair), and messages may carry
/// OS handles. Without, the first end only receives and the second only sends (a pipe);
/// using an end the other way is a [`SendError::WrongDirection`] (or
/// [`RecvError::WrongDirection`]), and a pipe cannot carry handles
/// ([`SendError::HandlesNotSupported`]).
///
/// # Errors
///
/// [`OsError`] when the OS refuses a socket pair or pipe (out of descriptors).
///
/// ```
/// use flotilla_ipc::{SendError, pipe};
///
/// let (reader, writer) = pipe(false).unwrap();
/// writer.send(&vec![1, 2, 3]).unwrap();
/// assert_eq!(reader.recv::<Vec<i32>>().unwrap(), [1, 2, 3]);
/// assert!(matches!(reader.send(&0), Err(SendError::WrongDirection(_))));
/// ```
pub fn pipe(duplex: bool) -> Result<(Connection, Connection), OsError> {
    if duplex {
        let (a, b) = sys::socketpair()?;
        Ok((
            Connection::new(a, Kind::Duplex),
            Connection::new(b, Kind::Duplex),
        ))
    } else {
        let (r, w) = sys::pipe()?;
        Ok((
            Connection::new(r, Kind::ReadOnly),
            Connection::new(w, Kind::WriteOnly),
        ))
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing is changed under these locks but whole values (a record lent or given
    // back): a poisoned lock protects nothing that could be torn.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The receive side's record of the frame being received, lent to one receiver at a
/// time: so frames are never interleaved, and a partial frame a timed receive gave up
/// on is where the next receive finds it.
///
/// The std mutex is held only to lend the record and to take it back, never across a
/// read, so that a receiver waiting for its turn can give up at its deadline (a std
/// mutex has no timed lock): it waits on `returned` instead.
#[derive(Debug)]
struct ReceiveSlot {
    /// `None` while lent.
    reader: Mutex<Option<FrameReader>>,
    returned: Condvar,
    /// Receivers waiting on `returned` (changed under `reader`'s lock): the record is
    /// given back with no wake-up, and no system call, when nobody waits.
    waiters: AtomicUsize,
    /// The connection's descriptor, as [`ahead`] lists it.
    fd: RawFd,
    /// A whole frame (or a header to refuse) waits in the reader's read-ahead: a receive
    /// would not wait. Listed in [`ahead`] while true.
    listed: AtomicBool,
}

impl Drop for ReceiveSlot {
    fn drop(&mut self) {
        if *self.listed.get_mut() {
            ahead::set(self.fd, false);
        }
    }
}

impl ReceiveSlot {
    fn new(fd: RawFd) -> Self {
        ReceiveSlot {
            reader: Mutex::new(Some(FrameReader::default())),
            returned: Condvar::new(),
            waiters: AtomicUsize::new(0),
            fd,
            listed: AtomicBool::new(false),
        }
    }

    /// Records whether `reader` (this slot's, lent) holds a frame a receive would take at
    /// once, for [`Connection::poll`] and [`wait`].
    fn note(&self, reader: &FrameReader, max: u64) {
        let ready = reader.ready(max);
        if self.listed.swap(ready, Ordering::AcqRel) != ready {
            ahead::set(self.fd, ready);
        }
    }

    /// Borrows the record, waiting for its return until `deadline` (`None`: forever);
    /// `None` if the deadline passed first.
    fn take(&self, deadline: Option<Instant>) -> Option<Lent<'_>> {
        let deadline = deadline.map_or(Deadline::NEVER, Deadline::at);
        let mut slot = lock(&self.reader);
        loop {
            if let Some(reader) = slot.take() {
                return Some(Lent { slot: self, reader });
            }
            if deadline.expired() {
                return None;
            }
            self.waiters.fetch_add(1, Ordering::Relaxed);
            slot = deadline.wait(&self.returned, slot);
            self.waiters.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// The record of a [`ReceiveSlot`], lent; given back when dropped (also on a panic).
struct Lent<'a> {
    slot: &'a ReceiveSlot,
    reader: FrameReader,
}

impl std::ops::Deref for Lent<'_> {
    type Target = FrameReader;

    fn deref(&self) -> &FrameReader {
        &self.reader
    }
}

impl std::ops::DerefMut for Lent<'_> {
    fn deref_mut(&mut self) -> &mut FrameReader {
        &mut self.reader
    }
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        let waiters = {
            let mut slot = lock(&self.slot.reader);
            *slot = Some(std::mem::take(&mut self.reader));
            self.slot.waiters.load(Ordering::Relaxed)
        };
        if waiters > 0 {
            self.slot.returned.notify_one();
        }
    }
}

impl Connection {
    fn new(fd: OwnedFd, kind: Kind) -> Self {
        let raw = fd.as_raw_fd();
        Connection {
            fd,
            kind,
            max_frame: DEFAULT_MAX_FRAME,
            broken: AtomicBool::new(false),
            send_lock: Mutex::new(()),
            receiving: Box::new(ReceiveSlot::new(raw)),
        }
    }

    /// Wraps a connected Unix stream socket (one end of a `socketpair`, or an accepted
    /// or connected `UnixStream`) as a duplex connection.
    pub fn from_socket(fd: OwnedFd) -> Self {
        Self::new(fd, Kind::Duplex)
    }

    /// Sets the largest frame this end accepts; a larger one is refused before anything
    /// is allocated, and closes the connection.
    pub fn set_max_frame(&mut self, max: u64) {
        self.max_frame = max;
    }

    /// The largest frame this end accepts.
    pub fn max_frame(&self) -> u64 {
        self.max_frame
    }

    /// True when this end can send.
    pub fn writable(&self) -> bool {
        self.kind != Kind::ReadOnly
    }

    /// True when this end can receive.
    pub fn readable(&self) -> bool {
        self.kind != Kind::WriteOnly
    }

    /// Sends `value`, with the descriptors of any handles inside it.
    ///
    /// # Errors
    ///
    /// [`SendError::Encode`] when the value does not encode, and what
    /// [`send_frame`](Connection::send_frame) reports.
    pub fn send<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), SendError> {
        let (bytes, fds) = handle::encode(value).map_err(SendError::Encode)?;
        self.send_frame(&bytes, &fds)
    }

    /// Sends `bytes` as one message.
    ///
    /// # Errors
    ///
    /// As [`send_frame`](Connection::send_frame).
    pub fn send_bytes(&self, bytes: &[u8]) -> Result<(), SendError> {
        self.send_frame(bytes, &[])
    }

    /// Sends one frame: `payload` with `fds` beside it.
    ///
    /// # Errors
    ///
    /// [`SendError::Disconnected`] when the other end is closed (no `SIGPIPE` is
    /// raised); [`SendError::WrongDirection`] on the read-only end of a simplex pipe;
    /// [`SendError::HandlesNotSupported`] for descriptors on a simplex pipe or too many
    /// of them; [`SendError::Os`] for any other OS error (`EAGAIN` in non-blocking mode).
    pub fn send_frame(&self, payload: &[u8], fds: &[OwnedFd]) -> Result<(), SendError> {
        self.check_send(fds)?;
        let header =
            frame_header(payload.len(), fds.len()).map_err(SendError::HandlesNotSupported)?;
        let raw: Vec<_> = fds.iter().map(std::os::fd::AsRawFd::as_raw_fd).collect();
        let _guard = lock(&self.send_lock);
        sys::write_all(
            self.fd.as_fd(),
            self.kind == Kind::Duplex,
            &[&header, payload],
            &raw,
        )
    }

    /// Whether this end may send a frame carrying `fds`.
    fn check_send(&self, fds: &[OwnedFd]) -> Result<(), SendError> {
        if !self.writable() {
            return Err(SendError::WrongDirection("read-only"));
        }
        if !fds.is_empty() && self.kind != Kind::Duplex {
            return Err(SendError::HandlesNotSupported(
                "a simplex pipe carries bytes only; use a duplex pipe to send handles",
            ));
        }
        Ok(())
    }

    /// Receives a value sent with [`send`](Connection::send), blocking until one
    /// arrives.
    ///
    /// # Errors
    ///
    /// What [`recv_frame`](Connection::recv_frame) reports, and [`RecvError::Decode`]
    /// when the frame does not decode as a `T`.
    pub fn recv<T: DeserializeOwned>(&self) -> Result<T, RecvError> {
        let (bytes, fds) = self.recv_frame()?;
        self.decode(&bytes, fds)
    }

    /// Decodes a received frame as a `T`, within this end's maximum.
    fn decode<T: DeserializeOwned>(&self, bytes: &[u8], fds: Vec<OwnedFd>) -> Result<T, RecvError> {
        handle::decode_with_limit(bytes, fds, self.max_frame).map_err(RecvError::Decode)
    }

    /// Like [`recv`](Connection::recv), giving up with [`RecvTimeoutError::Timeout`] when
    /// no whole message has arrived within `timeout`.
    ///
    /// The timeout bounds the whole call: waiting for the frame to begin, for the rest
    /// of a frame the peer is slow to send, and for another thread of this process that
    /// is receiving on the same end. A frame cut short by the timeout is kept (see
    /// [`recv_frame_timeout`](Connection::recv_frame_timeout)).
    ///
    /// # Errors
    ///
    /// [`RecvTimeoutError::Timeout`], or [`RecvTimeoutError::Recv`] with what
    /// [`recv`](Connection::recv) reports.
    pub fn recv_timeout<T: DeserializeOwned>(
        &self,
        timeout: Duration,
    ) -> Result<T, RecvTimeoutError> {
        let (bytes, fds) = self.recv_frame_timeout(timeout)?;
        Ok(self.decode(&bytes, fds)?)
    }

    /// Receives a value if a whole one has arrived, never waiting: `Ok(None)` when there
    /// is none yet (or another thread is receiving on this end). Part of a frame that
    /// has arrived is kept for the next receive.
    ///
    /// ```
    /// let (a, b) = flotilla_ipc::pipe(true).unwrap();
    /// assert_eq!(b.try_recv::<u8>().unwrap(), None);
    /// a.send(&5u8).unwrap();
    /// assert_eq!(b.try_recv::<u8>().unwrap(), Some(5));
    /// ```
    ///
    /// # Errors
    ///
    /// What [`recv`](Connection::recv) reports.
    pub fn try_recv<T: DeserializeOwned>(&self) -> Result<Option<T>, RecvError> {
        match self.try_recv_frame_now()? {
            Some((bytes, fds)) => self.decode(&bytes, fds).map(Some),
            None => Ok(None),
        }
    }

    /// A frame if a whole one has arrived, never waiting.
    fn try_recv_frame_now(&self) -> Result<Option<Frame>, RecvError> {
        match self.recv_frame_timeout(Duration::ZERO) {
            Ok(frame) => Ok(Some(frame)),
            Err(RecvTimeoutError::Timeout(_)) => Ok(None),
            Err(RecvTimeoutError::Recv(e)) => Err(e),
        }
    }

    /// Receives one message as bytes. Descriptors sent with it are closed.
    ///
    /// # Errors
    ///
    /// What [`recv_frame`](Connection::recv_frame) reports.
    pub fn recv_bytes(&self) -> Result<Vec<u8>, RecvError> {
        Ok(self.recv_frame()?.0)
    }

    /// Like [`recv_bytes`](Connection::recv_bytes), giving up with
    /// [`RecvTimeoutError::Timeout`] when no whole message has arrived within `timeout`
    /// (which bounds the whole call, as for [`recv_timeout`](Connection::recv_timeout)).
    ///
    /// # Errors
    ///
    /// As [`recv_frame_timeout`](Connection::recv_frame_timeout).
    pub fn recv_bytes_timeout(&self, timeout: Duration) -> Result<Vec<u8>, RecvTimeoutError> {
        Ok(self.recv_frame_timeout(timeout)?.0)
    }

    /// Receives one message as bytes if a whole one has arrived, never waiting, as
    /// [`try_recv`](Connection::try_recv).
    ///
    /// # Errors
    ///
    /// What [`recv_frame`](Connection::recv_frame) reports.
    pub fn try_recv_bytes(&self) -> Result<Option<Vec<u8>>, RecvError> {
        Ok(self.try_recv_frame_now()?.map(|(bytes, _)| bytes))
    }

    /// Receives one message into `buf`, returning its length. When the message is longer
    /// than `buf`, it is returned whole in [`RecvIntoError::BufferTooSmall`], so nothing
    /// is lost. Descriptors sent with the message have no one to claim them, and are
    /// closed.
    ///
    /// # Errors
    ///
    /// [`RecvIntoError::BufferTooSmall`], or [`RecvIntoError::Recv`] with what
    /// [`recv_frame`](Connection::recv_frame) reports.
    pub fn recv_bytes_into(&self, buf: &mut [u8]) -> Result<usize, RecvIntoError> {
        let (message, fds) = self.recv_frame()?;
        drop(fds);
        match buf.get_mut(..message.len()) {
            Some(place) => {
                flotilla_core::copy::copy(place, &message);
                Ok(message.len())
            }
            None => Err(RecvIntoError::BufferTooSmall {
                capacity: buf.len(),
                message,
            }),
        }
    }

    /// Receives one frame: its payload and the descriptors that came with it.
    ///
    /// # Errors
    ///
    /// [`RecvError::Disconnected`] when the other end closed between frames;
    /// [`RecvError::Truncated`] when it closed in the middle of one;
    /// [`RecvError::TooLarge`] for a frame beyond [`max_frame`](Connection::max_frame);
    /// [`RecvError::NoMemory`] when memory ran out for a frame; [`RecvError::Malformed`]
    /// for a stream that is not frames; [`RecvError::Closed`] after one of these last
    /// three closed this end; [`RecvError::WrongDirection`] on the write-only end of a
    /// simplex pipe; [`RecvError::Os`] for any other OS error.
    pub fn recv_frame(&self) -> Result<(Vec<u8>, Vec<OwnedFd>), RecvError> {
        self.recv_frame_within(None).map_err(|e| match e {
            RecvTimeoutError::Recv(e) => e,
            // Without a deadline a receive waits as long as it takes.
            RecvTimeoutError::Timeout(_) => unreachable!("a receive without a deadline timed out"),
        })
    }

    /// Like [`recv_frame`](Connection::recv_frame), giving up with
    /// [`RecvTimeoutError::Timeout`] when no whole frame has arrived within `timeout` (`Duration::ZERO`: take a frame
    /// only if it has all arrived, never waiting).
    ///
    /// The timeout bounds the whole call, even when the peer stalls in the middle of a
    /// frame or another thread of this process is receiving on this end. The part of a
    /// frame that arrived before the timeout is kept in the connection, descriptors
    /// included, and the next receive (of any kind) goes on with it: nothing is lost
    /// and the stream stays in step.
    ///
    /// # Errors
    ///
    /// [`RecvTimeoutError::Timeout`], or [`RecvTimeoutError::Recv`] with what
    /// [`recv_frame`](Connection::recv_frame) reports.
    pub fn recv_frame_timeout(
        &self,
        timeout: Duration,
    ) -> Result<(Vec<u8>, Vec<OwnedFd>), RecvTimeoutError> {
        self.recv_frame_within(Some(timeout))
    }

    /// The body of [`recv_frame`](Connection::recv_frame) and
    /// [`recv_frame_timeout`](Connection::recv_frame_timeout); `None` waits forever.
    fn recv_frame_within(
        &self,
        timeout: Option<Duration>,
    ) -> Result<(Vec<u8>, Vec<OwnedFd>), RecvTimeoutError> {
        if !self.readable() {
            return Err(RecvError::WrongDirection("write-only").into());
        }
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let timed_out = || RecvTimeoutError::Timeout(timeout.unwrap_or_default());
        let Some(mut receiving) = self.receiving.take(deadline) else {
            return Err(timed_out());
        };
        if self.broken.load(Ordering::Acquire) {
            return Err(RecvError::Closed.into());
        }
        let frame = self.advance(&mut receiving, deadline);
        self.receiving.note(&receiving, self.max_frame);
        frame?.ok_or_else(timed_out)
    }

    /// Reads what arrives of the frame `reader` holds, until it is whole (`Some`) or
    /// `deadline` passes (`None`; never waiting at all with a deadline in the past).
    /// Every error drops the partial frame, closing its descriptors at once.
    fn advance(
        &self,
        reader: &mut FrameReader,
        deadline: Option<Instant>,
    ) -> Result<Option<Frame>, RecvError> {
        let result = self.advance_inner(reader, deadline);
        if result.is_err() {
            reader.reset();
        }
        result
    }

    fn advance_inner(
        &self,
        reader: &mut FrameReader,
        deadline: Option<Instant>,
    ) -> Result<Option<Frame>, RecvError> {
        let socket = self.kind == Kind::Duplex;
        let fd = self.fd.as_fd();
        loop {
            // First what was read ahead, then the descriptor.
            if reader.got < HEADER_LEN {
                if reader.got == 0 {
                    reader.frame_at = reader.position();
                }
                let n = reader.take_ahead(HEADER_LEN - reader.got);
                let at = reader.got;
                reader.header[at..at + n].copy_from_slice(&reader.ahead[reader.start - n..][..n]);
                reader.got += n;
                if reader.got == HEADER_LEN {
                    self.begin_payload(reader)?;
                }
            }
            if reader.got >= HEADER_LEN {
                let at = reader.got - HEADER_LEN;
                if at == 0
                    && reader.start == 0
                    && !reader.ahead.is_empty()
                    && reader.len >= HAND_OVER
                {
                    // The payload begins the read-ahead buffer: the buffer becomes it.
                    reader.got += reader.hand_over_ahead();
                } else {
                    let n = reader.take_ahead(reader.len - at);
                    if n > 0 {
                        // Room for these bytes, and at once for more when the frame goes
                        // on past them, sparing a reallocation.
                        self.grow(&mut reader.payload, n, reader.len)?;
                        let bytes = &reader.ahead[reader.start - n..reader.start];
                        flotilla_core::copy::extend(&mut reader.payload, bytes);
                        reader.got += n;
                    }
                }
                if reader.got - HEADER_LEN == reader.len {
                    let frame = (
                        std::mem::take(&mut reader.payload),
                        std::mem::take(&mut reader.fds),
                    );
                    reader.got = 0;
                    reader.len = 0;
                    return Ok(Some(frame));
                }
            }
            // All that was read ahead is taken: read from the descriptor. A payload with
            // much still to come is read straight into place, no further than its end;
            // anything else into the read-ahead buffer, in one read with whatever follows.
            // At a frame's start the header is read into place and the rest into the
            // buffer, so a large payload begins the buffer and can become it.
            let before = reader.position();
            let direct =
                reader.got >= HEADER_LEN && reader.len - (reader.got - HEADER_LEN) >= AHEAD;
            let at_start = reader.got == 0;
            let read = if direct {
                let at = reader.got - HEADER_LEN;
                if reader.payload.capacity() == at {
                    self.grow(&mut reader.payload, 0, reader.len)?;
                }
                let left = reader.len - at;
                let room = reader.payload.spare_capacity_mut();
                let room_len = room.len().min(left);
                // A plain read, no control buffer: descriptors come with a frame's first
                // bytes, which went through the read-ahead buffer.
                sys::read_chunk(fd, socket, &mut [&mut room[..room_len]], None, deadline)?
            } else {
                if reader.ahead.capacity() == 0 {
                    reader.ahead = Vec::with_capacity(AHEAD);
                }
                // Everything in it has been taken here, so nothing is lost.
                reader.ahead.clear();
                reader.start = 0;
                let sink = socket.then_some(&mut reader.sink);
                let room = reader.ahead.spare_capacity_mut();
                if at_start {
                    let header = as_room(&mut reader.header);
                    sys::read_chunk(fd, socket, &mut [header, room], sink, deadline)?
                } else {
                    sys::read_chunk(fd, socket, &mut [room], sink, deadline)?
                }
            };
            if !reader.sink.fds.is_empty() {
                let fds = std::mem::take(&mut reader.sink.fds);
                let to = before + read.unwrap_or(0) as u64;
                reader.batches.push_back(FdBatch {
                    fds,
                    from: before,
                    to,
                });
            }
            match read {
                None => return Ok(None),
                Some(0) if reader.got == 0 => return Err(RecvError::Disconnected),
                Some(0) if reader.got < HEADER_LEN => {
                    return Err(RecvError::Truncated {
                        part: "header",
                        got: reader.got as u64,
                        expected: HEADER_LEN as u64,
                    });
                }
                Some(0) => {
                    return Err(RecvError::Truncated {
                        part: "payload",
                        got: (reader.got - HEADER_LEN) as u64,
                        expected: reader.len as u64,
                    });
                }
                Some(n) if direct => {
                    let have = reader.payload.len();
                    // SAFETY: the read wrote these `n` bytes of the spare capacity.
                    unsafe { reader.payload.set_len(have + n) };
                    reader.got += n;
                    reader.read += n as u64;
                }
                Some(n) => {
                    let header = if at_start { n.min(HEADER_LEN) } else { 0 };
                    // SAFETY: the read wrote the header's `header` bytes, then these
                    // `n - header` bytes of the buffer's spare capacity (it was empty).
                    unsafe { reader.ahead.set_len(n - header) };
                    reader.read += n as u64;
                    reader.got += header;
                    if reader.got == HEADER_LEN && header > 0 {
                        self.begin_payload(reader)?;
                    }
                }
            }
        }
    }

    /// The descriptors of the frame whose header begins at `reader.frame_at` and
    /// declares `nfds` of them. They came with the read that brought the header's first
    /// byte (the kernel ends a read after the message that carries descriptors, so one
    /// read brings at most one set). A set that came with a read whose frames have all
    /// begun without claiming it belongs to no frame: the stream is not to be trusted.
    fn claim_fds(&self, reader: &mut FrameReader, nfds: usize) -> Result<Vec<OwnedFd>, RecvError> {
        let at = reader.frame_at;
        if let Some(stale) = reader.batches.front().filter(|b| b.to <= at) {
            let arrived = stale.fds.len();
            return Err(self.poison(RecvError::Malformed(format!(
                "{arrived} descriptors arrived with a frame that declares none"
            ))));
        }
        if nfds == 0 {
            // A set that came with this frame's read may belong to a later frame in it.
            return Ok(Vec::new());
        }
        let here = reader
            .batches
            .front()
            .filter(|b| b.from <= at)
            .map_or(0, |b| b.fds.len());
        if here != nfds {
            return Err(self.poison(RecvError::Malformed(format!(
                "the frame declares {nfds} descriptors but {here} arrived"
            ))));
        }
        Ok(reader.batches.pop_front().expect("just looked").fds)
    }

    /// The header has arrived whole: checks it, claims its descriptors, and makes ready
    /// for its payload.
    fn begin_payload(&self, reader: &mut FrameReader) -> Result<(), RecvError> {
        let (len, nfds) = self.check_header(&reader.header)?;
        reader.fds = self.claim_fds(reader, nfds)?;
        reader.len = len;
        reader.payload = Vec::new();
        Ok(())
    }

    /// Makes room in `payload` (whose bytes have all arrived) for `coming` more bytes of a
    /// payload of `len` bytes, and, when the payload goes on past them, for as much again
    /// as will then have arrived, at least [`MIN_GROWTH`]: so memory stays within twice
    /// the bytes that really arrived (or 1 MiB beyond them), whatever length a header
    /// declares, a frame of up to 1 MiB gets all its room at once, and a larger one is
    /// reallocated a logarithmic number of times, not once per MiB. The room is spare
    /// capacity, never zeroed. Running out of memory is an error.
    fn grow(&self, payload: &mut Vec<u8>, coming: usize, len: usize) -> Result<(), RecvError> {
        let have = payload.len() + coming;
        let more = have.max(MIN_GROWTH).min(len - have);
        if payload.try_reserve_exact(coming + more).is_err() {
            return Err(self.poison(RecvError::NoMemory { len: len as u64 }));
        }
        Ok(())
    }

    /// Checks a frame header against this end's rules: the payload's length and how many
    /// descriptors it declares. Nothing is allocated for the payload here: it grows as
    /// its bytes arrive.
    fn check_header(&self, header: &[u8; HEADER_LEN]) -> Result<(usize, usize), RecvError> {
        let (len, nfds, magic) = parse_header(header);
        if magic != MAGIC {
            return Err(self.poison(RecvError::Malformed(
                "the stream is not flotilla frames".into(),
            )));
        }
        if len > self.max_frame {
            return Err(self.poison(RecvError::TooLarge {
                len,
                max: self.max_frame,
            }));
        }
        let len = usize::try_from(len).map_err(|_| {
            self.poison(RecvError::TooLarge {
                len,
                max: usize::MAX as u64,
            })
        })?;
        Ok((len, nfds))
    }

    fn poison(&self, error: RecvError) -> RecvError {
        self.broken.store(true, Ordering::Release);
        flotilla_core::event!(flotilla_core::log::Level::WARN, %error, "connection closed after bad input");
        error
    }

    /// True when a message (or end of file) is ready to be received; never blocks, as
    /// Python's `poll()` (whose timeout defaults to 0).
    ///
    /// It tells what the descriptor tells: bytes (or end of file) are waiting. When a
    /// frame has begun to arrive and the rest is slow to come, a timed receive may still
    /// time out after `poll` said true; it keeps what arrived.
    ///
    /// ```
    /// let (a, b) = flotilla_ipc::pipe(true).unwrap();
    /// assert!(!b.poll().unwrap());
    /// a.send(&1u8).unwrap();
    /// assert!(b.poll().unwrap());
    /// ```
    ///
    /// # Errors
    ///
    /// [`PollError::WrongDirection`] on the write-only end of a simplex pipe;
    /// [`PollError::Os`] when `poll` fails.
    pub fn poll(&self) -> Result<bool, PollError> {
        self.poll_within(Some(Duration::ZERO))
    }

    /// Like [`poll`](Connection::poll), but waits up to `timeout` for a message:
    /// Python's `poll(timeout)`. `Duration::MAX` waits without limit (Python's
    /// `poll(None)`).
    ///
    /// # Errors
    ///
    /// As [`poll`](Connection::poll).
    pub fn poll_timeout(&self, timeout: Duration) -> Result<bool, PollError> {
        self.poll_within(Some(timeout))
    }

    /// The body of [`poll`](Connection::poll) and [`poll_timeout`](Connection::poll_timeout).
    fn poll_within(&self, timeout: Option<Duration>) -> Result<bool, PollError> {
        if !self.readable() {
            return Err(PollError::WrongDirection("write-only"));
        }
        if self.frame_read_ahead() {
            return Ok(true);
        }
        sys::poll_readable(self.fd.as_fd(), timeout)
    }

    /// True when a whole frame waits in what this end read ahead (or a header a receive
    /// refuses at once): the next receive takes it without reading the descriptor, and
    /// without waiting. Never a system call: an event loop asks this after a receive
    /// to know whether to receive again before it waits for the descriptor.
    ///
    /// ```
    /// let (a, b) = flotilla_ipc::pipe(true).unwrap();
    /// a.send_bytes(b"one").unwrap();
    /// a.send_bytes(b"two").unwrap();
    /// assert!(!b.frame_read_ahead());
    /// assert_eq!(b.recv_bytes().unwrap(), b"one");
    /// // Both had arrived: the one read took both.
    /// assert!(b.frame_read_ahead());
    /// assert_eq!(b.recv_bytes().unwrap(), b"two");
    /// assert!(!b.frame_read_ahead());
    /// ```
    pub fn frame_read_ahead(&self) -> bool {
        self.receiving.listed.load(Ordering::Acquire)
    }

    /// Puts this end in (or out of) non-blocking mode, for an event loop that waits for
    /// readiness itself and then calls [`try_recv_frame`](Connection::try_recv_frame) and
    /// [`try_send_frame`](Connection::try_send_frame).
    ///
    /// The mode belongs to the open file description, so it is shared with every copy of
    /// this end (a forked child's inherited one too). Receiving works in either mode
    /// (a receive that would block waits in `poll`), but a blocking send fails with
    /// `EAGAIN` instead of waiting while it is on.
    ///
    /// # Errors
    ///
    /// [`OsError`] if `ioctl(FIONBIO)` refuses (it should not, on an open end).
    pub fn set_nonblocking(&self, nonblocking: bool) -> Result<(), OsError> {
        sys::set_nonblocking(self.fd.as_fd(), nonblocking)
    }

    /// Reads as much of the next frame as has arrived, without blocking: `Ok(Some(frame))`
    /// once the frame is whole, `Ok(None)` when more must arrive first (wait for the
    /// descriptor to be readable and call again), or when another thread of this process
    /// is receiving on this end. It is [`recv_frame_timeout`](Connection::recv_frame_timeout)
    /// with a zero timeout: the progress stays in the connection, so it mixes freely
    /// with the other receives.
    ///
    /// It never waits, in either mode of the descriptor. The same checks as
    /// [`recv_frame`](Connection::recv_frame) apply: [`RecvError::Disconnected`] reports
    /// the other end closed between frames, [`RecvError::Truncated`] in the middle of
    /// one; the other variants are those of [`recv_frame`](Connection::recv_frame). On any
    /// error the partial frame is dropped, its descriptors closed at once.
    ///
    /// A receive may read the next frames ahead with this one, so after `Ok(Some(_))`
    /// call again before waiting for the descriptor: a frame read ahead does not make it
    /// readable ([`poll`](Connection::poll) and [`wait`] count it, though).
    ///
    /// `reader` is not used any more (the connection keeps the progress itself); the
    /// argument stays so that callers compile.
    ///
    /// ```
    /// use flotilla_ipc::{FrameReader, pipe};
    ///
    /// let (a, b) = pipe(true).unwrap();
    /// b.set_nonblocking(true).unwrap();
    /// let mut reader = FrameReader::default();
    /// assert!(b.try_recv_frame(&mut reader).unwrap().is_none()); // nothing yet
    /// a.send_bytes(b"hello").unwrap();
    /// let (payload, fds) = b.try_recv_frame(&mut reader).unwrap().unwrap();
    /// assert_eq!((payload.as_slice(), fds.len()), (&b"hello"[..], 0));
    /// ```
    pub fn try_recv_frame(&self, reader: &mut FrameReader) -> Result<Option<Frame>, RecvError> {
        let _unused = reader;
        self.try_recv_frame_now()
    }

    /// Writes as much of `writer`'s frame as fits without blocking: `Ok(true)` once it is
    /// all sent (the writer is then empty), `Ok(false)` when the rest must wait for the
    /// descriptor to be writable. An empty writer is sent at once.
    ///
    /// The end must be [non-blocking](Connection::set_nonblocking).
    ///
    /// ```
    /// use flotilla_ipc::{FrameWriter, pipe};
    ///
    /// let (a, b) = pipe(true).unwrap();
    /// a.set_nonblocking(true).unwrap();
    /// let mut writer = FrameWriter::default();
    /// writer.start(b"hello".to_vec(), Vec::new()).unwrap();
    /// assert!(a.try_send_frame(&mut writer).unwrap());
    /// assert_eq!(b.recv_bytes().unwrap(), b"hello");
    /// ```
    ///
    /// # Errors
    ///
    /// As [`send_frame`](Connection::send_frame).
    pub fn try_send_frame(&self, writer: &mut FrameWriter) -> Result<bool, SendError> {
        self.check_send(&writer.fds)?;
        let socket = self.kind == Kind::Duplex;
        let total = HEADER_LEN + writer.payload.len();
        while writer.sent < total {
            let raw: Vec<_> = writer
                .fds
                .iter()
                .map(std::os::fd::AsRawFd::as_raw_fd)
                .collect();
            let (header, payload) = if writer.sent < HEADER_LEN {
                (&writer.header[writer.sent..], &writer.payload[..])
            } else {
                (&[][..], &writer.payload[writer.sent - HEADER_LEN..])
            };
            let iov = [IoSlice::new(header), IoSlice::new(payload)];
            match sys::write_some(self.fd.as_fd(), socket, &iov, &raw)? {
                None => return Ok(false),
                Some(n) => {
                    writer.sent += n;
                    // They went with the first byte; the kernel holds its own copies.
                    writer.fds.clear();
                }
            }
        }
        writer.clear();
        Ok(true)
    }

    /// The descriptor behind this end, for handing it to another process by hand. Bytes
    /// a receive read ahead stay behind (a fresh end has none).
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }

    /// Closes this end. The other end sees end of file once every process holding this
    /// end has closed it (as with any descriptor). Dropping the connection does the same.
    pub fn close(self) {
        drop(self);
    }
}

/// A received frame: its payload and the descriptors that came with it.
pub type Frame = (Vec<u8>, Vec<OwnedFd>);

/// A frame being received without blocking: the progress of
/// [`Connection::try_recv_frame`], kept between calls.
///
/// Keep one per connection end, outside whatever future waits for readiness, so that
/// a wait given up midway loses nothing: the next call goes on where this one stopped.
/// (Each `Connection` keeps one of its own too, for its blocking and timed receives.)
#[derive(Debug, Default)]
pub struct FrameReader {
    header: [u8; HEADER_LEN],
    /// Bytes of the frame (header, then payload) received so far.
    got: usize,
    /// The payload's length, once the header has arrived.
    len: usize,
    /// The payload's `got - HEADER_LEN` bytes that have arrived; its spare capacity
    /// is room for more, grown as they arrive.
    payload: Vec<u8>,
    /// The descriptors the frame declared, once its header has arrived.
    fds: Vec<OwnedFd>,
    /// Where `recvmsg` puts descriptors.
    sink: sys::FdSink,
    /// Bytes read beyond the frame at hand ([`AHEAD`] of capacity, from the first
    /// read): `ahead[start..]` are not taken yet.
    ahead: Vec<u8>,
    start: usize,
    /// Bytes read from the stream so far: the position just past the end of `ahead`.
    read: u64,
    /// Where in the stream the frame at hand begins.
    frame_at: u64,
    /// Descriptors received and not yet claimed by a frame, in order.
    batches: VecDeque<FdBatch>,
}

/// Descriptors that came with one read, which brought the bytes `from..to` of the stream.
#[derive(Debug)]
struct FdBatch {
    fds: Vec<OwnedFd>,
    from: u64,
    to: u64,
}

impl FrameReader {
    /// True when part of a frame has arrived and the rest has not, or bytes were read
    /// ahead.
    pub fn in_progress(&self) -> bool {
        self.got > 0 || self.unread() > 0 || !self.batches.is_empty()
    }

    /// True when a receive would not wait: a whole frame was read ahead, or a header
    /// a receive with this `max` frame refuses at once.
    fn ready(&self, max: u64) -> bool {
        let ahead = &self.ahead[self.start..];
        if self.got > 0 || ahead.len() < HEADER_LEN {
            return false;
        }
        let (len, _, magic) = parse_header(ahead[..HEADER_LEN].try_into().expect("16 bytes"));
        magic != MAGIC || len > max || len <= (ahead.len() - HEADER_LEN) as u64
    }

    /// The stream position of the next byte to take.
    fn position(&self) -> u64 {
        self.read - self.unread() as u64
    }

    /// How many bytes read ahead are not taken yet (`ahead[start..]`).
    fn unread(&self) -> usize {
        self.ahead.len() - self.start
    }

    /// Takes up to `want` bytes read ahead: how many; they are `ahead[start - n..start]`.
    fn take_ahead(&mut self, want: usize) -> usize {
        let n = want.min(self.unread());
        self.start += n;
        n
    }

    /// Makes the read-ahead buffer, whose first bytes begin the payload of the frame at
    /// hand (none of it taken yet), that payload, up to its end; a new buffer takes its
    /// place with whatever followed. Returns how many payload bytes it held.
    fn hand_over_ahead(&mut self) -> usize {
        let n = self.len.min(self.ahead.len());
        let mut payload = std::mem::replace(&mut self.ahead, Vec::with_capacity(AHEAD));
        flotilla_core::copy::extend(&mut self.ahead, &payload[n..]);
        self.start = 0;
        payload.truncate(n);
        if n == self.len {
            // Whole: give back the buffer's unused tail (glibc shrinks in place).
            payload.shrink_to_fit();
        }
        self.payload = payload;
        n
    }

    /// Forgets the partial frame and what was read ahead, closing the descriptors that
    /// came with them.
    fn reset(&mut self) {
        self.got = 0;
        self.len = 0;
        self.payload = Vec::new();
        self.fds.clear();
        self.sink.fds.clear();
        self.ahead.clear();
        self.start = 0;
        self.batches.clear();
    }
}

/// A frame being sent without blocking: the bytes and descriptors
/// [`Connection::try_send_frame`] has not written yet.
#[derive(Debug, Default)]
pub struct FrameWriter {
    header: [u8; HEADER_LEN],
    payload: Vec<u8>,
    fds: Vec<OwnedFd>,
    /// Bytes of the frame (header, then payload) written so far.
    sent: usize,
    pending: bool,
}

impl FrameWriter {
    /// Loads the next frame: `payload` with `fds` beside it.
    ///
    /// # Errors
    ///
    /// Loading nothing: [`FrameStartError::InProgress`] when the previous frame is not
    /// all sent; [`FrameStartError::HandlesNotSupported`] when there are more
    /// descriptors than one message carries.
    pub fn start(&mut self, payload: Vec<u8>, fds: Vec<OwnedFd>) -> Result<(), FrameStartError> {
        if self.pending {
            return Err(FrameStartError::InProgress);
        }
        self.header =
            frame_header(payload.len(), fds.len()).map_err(FrameStartError::HandlesNotSupported)?;
        self.payload = payload;
        self.fds = fds;
        self.sent = 0;
        self.pending = true;
        Ok(())
    }

    /// True while a frame is loaded and not all sent.
    pub fn in_progress(&self) -> bool {
        self.pending
    }

    fn clear(&mut self) {
        self.payload = Vec::new();
        self.fds.clear();
        self.sent = 0;
        self.pending = false;
    }
}

/// A header buffer as room for a read.
fn as_room(header: &mut [u8; HEADER_LEN]) -> &mut [MaybeUninit<u8>] {
    // SAFETY: `MaybeUninit<u8>` has the layout of `u8`, and the room is only written by
    // a read, with bytes, so the array stays initialised.
    unsafe { &mut *(header.as_mut_slice() as *mut [u8] as *mut [MaybeUninit<u8>]) }
}

/// A header's payload length, descriptor count and magic.
fn parse_header(header: &[u8; HEADER_LEN]) -> (u64, usize, u32) {
    let len = u64::from_le_bytes(header[..8].try_into().expect("8 bytes"));
    let nfds = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes")) as usize;
    let magic = u32::from_le_bytes(header[12..].try_into().expect("4 bytes"));
    (len, nfds, magic)
}

/// The 16-byte header of a frame of `len` payload bytes with `nfds` descriptors, if one
/// message can carry that many (otherwise why not, for a `HandlesNotSupported`).
fn frame_header(len: usize, nfds: usize) -> Result<[u8; HEADER_LEN], &'static str> {
    if nfds > sys::MAX_FDS_PER_MESSAGE {
        return Err("more than 253 handles in one message");
    }
    let mut header = [0u8; HEADER_LEN];
    header[..8].copy_from_slice(&(len as u64).to_le_bytes());
    header[8..12].copy_from_slice(&(nfds as u32).to_le_bytes());
    header[12..].copy_from_slice(&MAGIC.to_le_bytes());
    Ok(header)
}

impl AsFd for Connection {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("fd", &self.fd)
            .field("kind", &self.kind)
            .field("max_frame", &self.max_frame)
            .field("broken", &self.broken.load(Ordering::Relaxed))
            .finish()
    }
}

/// What a connection is on the wire: its descriptor as a handle, and its settings.
#[derive(Serialize, Deserialize)]
struct WireConnection {
    fd: Fd,
    kind: Kind,
    max_frame: u64,
}

impl Serialize for Connection {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error as _, SerializeStruct};
        // Bytes this end read ahead would not go with it: refuse rather than lose them.
        if lock(&self.receiving.reader)
            .as_ref()
            .is_some_and(|reader| reader.unread() > 0)
        {
            return Err(S::Error::custom(
                "this connection end holds frames it read ahead: it cannot be sent",
            ));
        }
        let mut s = serializer.serialize_struct("WireConnection", 3)?;
        s.serialize_field("fd", &Exported(self.fd.as_fd()))?;
        s.serialize_field("kind", &self.kind)?;
        s.serialize_field("max_frame", &self.max_frame)?;
        s.end()
    }
}

impl<'de> Deserialize<'de> for Connection {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = WireConnection::deserialize(deserializer)?;
        let mut conn = Connection::new(wire.fd.into_inner(), wire.kind);
        conn.max_frame = wire.max_frame;
        Ok(conn)
    }
}

/// Waits until at least one of `objects` is ready to read (a message or end of file),
/// and returns the ready ones: Python's `multiprocessing.connection.wait`.
///
/// Works on anything with a descriptor: connections, sockets, a process's sentinel.
///
/// # Errors
///
/// [`PollError::Os`] when `poll` fails (too many descriptors, out of memory).
///
/// ```
/// use flotilla_ipc::{pipe, wait};
///
/// let (a_in, a_out) = pipe(true).unwrap();
/// let (b_in, b_out) = pipe(true).unwrap();
/// b_out.send(&"hello").unwrap();
/// let ends = [&a_in, &b_in];
/// let ready = wait(&ends).unwrap();
/// assert_eq!(ready.len(), 1);
/// assert_eq!(ready[0].recv::<String>().unwrap(), "hello");
/// # drop((a_out,));
/// ```
pub fn wait<T: AsFd>(objects: &[T]) -> Result<Vec<&T>, PollError> {
    let ready = wait_indices(objects)?;
    Ok(ready.into_iter().map(|i| &objects[i]).collect())
}

/// Like [`wait`], but returns after `timeout` at the latest (with none ready, an empty
/// vector): Python's `wait(object_list, timeout)`.
///
/// ```
/// use std::time::Duration;
/// use flotilla_ipc::{pipe, wait_timeout};
///
/// let (a_in, _a_out) = pipe(true).unwrap();
/// assert!(wait_timeout(&[&a_in], Duration::from_millis(1)).unwrap().is_empty());
/// ```
pub fn wait_timeout<T: AsFd>(objects: &[T], timeout: Duration) -> Result<Vec<&T>, PollError> {
    let ready = wait_indices_timeout(objects, timeout)?;
    Ok(ready.into_iter().map(|i| &objects[i]).collect())
}

/// Like [`wait`], answering with the positions of the ready objects in `objects`, in
/// order: for a caller that keeps state beside each object (a pool's workers, say).
///
/// # Errors
///
/// As for [`wait`].
///
/// ```
/// use flotilla_ipc::{pipe, wait_indices};
///
/// let (a_in, a_out) = pipe(true).unwrap();
/// let (b_in, b_out) = pipe(true).unwrap();
/// b_out.send(&1u8).unwrap();
/// let ready = wait_indices(&[&a_in, &b_in]).unwrap();
/// assert_eq!(ready, [1]);
/// # drop(a_out);
/// ```
pub fn wait_indices<T: AsFd>(objects: &[T]) -> Result<Vec<usize>, PollError> {
    wait_indices_within(objects, None)
}

/// Like [`wait_indices`], but returns after `timeout` at the latest.
pub fn wait_indices_timeout<T: AsFd>(
    objects: &[T],
    timeout: Duration,
) -> Result<Vec<usize>, PollError> {
    wait_indices_within(objects, Some(timeout))
}

/// The body of every `wait*` function; `None` waits without limit.
fn wait_indices_within<T: AsFd>(
    objects: &[T],
    timeout: Option<Duration>,
) -> Result<Vec<usize>, PollError> {
    let fds: Vec<BorrowedFd<'_>> = objects.iter().map(AsFd::as_fd).collect();
    let read_ahead = ahead::among(&fds);
    if read_ahead.is_empty() {
        return sys::poll_many(&fds, timeout);
    }
    // Connections with a frame read ahead are ready, whatever their descriptors say.
    let mut ready = sys::poll_many(&fds, Some(Duration::ZERO))?;
    ready.extend(read_ahead);
    ready.sort_unstable();
    ready.dedup();
    Ok(ready)
}

/// The connections of this process with a frame read ahead: a receive takes it at once,
/// but their descriptors need not be readable, so [`wait`] asks here first.
mod ahead {
    use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// How many are listed: [`among`] takes no lock while none is.
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    static LISTED: Mutex<Vec<RawFd>> = Mutex::new(Vec::new());

    /// Lists (or unlists) the connection with descriptor `fd`.
    pub(super) fn set(fd: RawFd, listed: bool) {
        let mut fds = super::lock(&LISTED);
        if listed {
            fds.push(fd);
        } else if let Some(at) = fds.iter().position(|&f| f == fd) {
            fds.swap_remove(at);
        }
        COUNT.store(fds.len(), Ordering::Release);
    }

    /// The positions in `fds` of listed connections.
    pub(super) fn among(fds: &[BorrowedFd<'_>]) -> Vec<usize> {
        if COUNT.load(Ordering::Acquire) == 0 {
            return Vec::new();
        }
        let listed = super::lock(&LISTED);
        fds.iter()
            .enumerate()
            .filter(|(_, fd)| listed.contains(&fd.as_raw_fd()))
            .map(|(i, _)| i)
            .collect()
    }
}
