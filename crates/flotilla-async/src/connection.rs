//! [`AsyncConnection`]: a flotilla `Connection` end used from async code, readiness
//! coming from tokio's reactor, never from a blocking call on a runtime thread.
//!
//! # How it works
//!
//! The end is put in non-blocking mode and registered with tokio ([`AsyncFd`]). A
//! receive reads what has arrived into a [`FrameReader`] and waits for readability when
//! the frame is not whole; a send writes what fits from a [`FrameWriter`] and waits for
//! writability. Both progress records live in the `AsyncConnection`, not in the
//! futures, so a receive or send given up midway (a timeout, a `select!`) loses
//! nothing and corrupts nothing:
//!
//! - a receive dropped midway leaves the partial frame in the reader; the next receive
//!   goes on with it;
//! - a send dropped midway leaves the rest of its frame in the writer; the next send
//!   (or [`flush`](AsyncConnection::flush)) writes it out before its own frame. Each
//!   send has a ticket, so a send whose frame another one finished returns too; a flush
//!   waits for the tickets given out before it, through the same write loop.
//!
//! The std mutexes guarding the two records are held only for non-blocking system
//! calls, never across an `.await`.

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::{Mutex, MutexGuard, PoisonError};

use flotilla_ipc::{
    Connection, Frame, FrameReader, FrameStartError, FrameWriter, OsError, RecvError, SendError,
    handle,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// The connection as tokio's reactor sees it: a raw descriptor.
struct Registered(Connection);

impl AsRawFd for Registered {
    fn as_raw_fd(&self) -> RawFd {
        std::os::fd::AsFd::as_fd(&self.0).as_raw_fd()
    }
}

/// The send side's record: the frame being written and whose frames are done.
#[derive(Default)]
struct Sending {
    frame: FrameWriter,
    /// Tickets given out so far; the frame in `frame` is ticket `issued`.
    issued: u64,
    /// Tickets whose frames are all sent.
    finished: u64,
}

/// One end of a flotilla pipe used from async code: sends and receives serde values,
/// bytes and frames with descriptors (`SCM_RIGHTS`) like [`Connection`], awaiting
/// readiness instead of blocking.
///
/// All methods take `&self`; concurrent sends never interleave their frames, and
/// concurrent receives each get whole frames. Receives and sends are cancel-safe: see
/// the module docs for how a dropped operation's progress is kept.
///
/// The other side can be anything that speaks the frames: a blocking `Connection` in
/// a child process, a thread, or another `AsyncConnection`.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use flotilla_async::AsyncConnection;
///
/// let (here, there) = flotilla_ipc::pipe(true).unwrap();
/// let here = AsyncConnection::new(here).unwrap();
/// std::thread::spawn(move || {
///     let n: u32 = there.recv().unwrap();
///     there.send(&(n * 2)).unwrap();
/// });
/// here.send(&21u32).await.unwrap();
/// assert_eq!(here.recv::<u32>().await.unwrap(), 42);
/// # }
/// ```
pub struct AsyncConnection {
    io: AsyncFd<Registered>,
    receiving: Mutex<FrameReader>,
    sending: Mutex<Sending>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Held only around non-blocking system calls that leave the record consistent.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Waiting for readiness failed (tokio's reactor is gone): an OS error of the operation.
const REACTOR: &str = "wait for readiness";

/// What a step run under [`AsyncFd::async_io`] tells it: done (with the operation's own
/// result), or wait for readiness (`WouldBlock`, which clears tokio's readiness flag).
type Step<T, E> = io::Result<Result<T, E>>;

fn would_block<T, E>() -> Step<T, E> {
    Err(io::ErrorKind::WouldBlock.into())
}

impl AsyncConnection {
    /// Registers `connection` with the current tokio runtime, putting it in
    /// non-blocking mode (shared, as the mode is, with every copy of this end in other
    /// processes; a copy there should be used through an `AsyncConnection` too, or not
    /// at all).
    ///
    /// # Errors
    ///
    /// [`OsError`] if the end cannot be made non-blocking or registered with the reactor
    /// (out of memory or descriptors for epoll).
    ///
    /// # Panics
    ///
    /// When called outside a tokio runtime with its I/O driver enabled.
    #[track_caller]
    pub fn new(connection: Connection) -> Result<Self, OsError> {
        connection.set_nonblocking(true)?;
        let interest = match (connection.readable(), connection.writable()) {
            (true, true) => Interest::READABLE.add(Interest::WRITABLE),
            (true, false) => Interest::READABLE,
            _ => Interest::WRITABLE,
        };
        // SAFETY: `Registered` owns the connection, whose `OwnedFd` stays open and is
        // never replaced while registered (this type never hands out `&mut` to it), so
        // `as_raw_fd` returns the same open descriptor until `into_inner` or drop.
        let io = unsafe { AsyncFd::register_with_interest(Registered(connection), interest) }
            .map_err(|e| OsError {
                op: "register with the tokio reactor",
                source: e.into_parts().1,
            })?;
        Ok(AsyncConnection {
            io,
            receiving: Mutex::new(FrameReader::default()),
            sending: Mutex::new(Sending::default()),
        })
    }

    /// The connection, for its settings (`max_frame`, `readable`, ...). Its blocking
    /// methods fail while it is registered here: it is in non-blocking mode.
    pub fn get_ref(&self) -> &Connection {
        &self.io.get_ref().0
    }

    /// Deregisters the end and returns it in blocking mode. A frame half received or
    /// half sent at this point is lost: [`flush`](Self::flush) first.
    ///
    /// # Errors
    ///
    /// [`OsError`] if the end cannot be put back in blocking mode (it is dropped then).
    pub fn into_inner(self) -> Result<Connection, OsError> {
        let Registered(connection) = self.io.into_inner();
        connection.set_nonblocking(false)?;
        Ok(connection)
    }

    /// Sends `value`, with the descriptors of any handles inside it (a `Connection`
    /// end, shared memory, ...), as [`Connection::send`].
    ///
    /// # Errors
    ///
    /// [`Connection::send`]'s [`SendError`]s: [`SendError::Encode`] (nothing sent),
    /// [`SendError::Disconnected`], [`SendError::WrongDirection`] on a read-only end,
    /// [`SendError::HandlesNotSupported`], [`SendError::Os`] (also when waiting for
    /// readiness fails).
    pub async fn send<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), SendError> {
        let (bytes, fds) = handle::encode(value).map_err(SendError::Encode)?;
        self.send_frame(bytes, fds).await
    }

    /// Sends `bytes` as one message.
    ///
    /// # Errors
    ///
    /// As for [`send`](Self::send), less the encoding.
    pub async fn send_bytes(&self, bytes: &[u8]) -> Result<(), SendError> {
        self.send_frame(bytes.to_vec(), Vec::new()).await
    }

    /// Sends one frame: `payload` with `fds` beside it.
    ///
    /// # Errors
    ///
    /// As for [`send_bytes`](Self::send_bytes).
    pub async fn send_frame(&self, payload: Vec<u8>, fds: Vec<OwnedFd>) -> Result<(), SendError> {
        // Checked before waiting: a read-only end is never registered for writability.
        if !self.get_ref().writable() {
            return Err(SendError::WrongDirection("read-only"));
        }
        self.write(Some((payload, fds)), None).await
    }

    /// Writes out the rest of a frame whose send was dropped midway, if there is one.
    ///
    /// # Errors
    ///
    /// As for [`send_bytes`](Self::send_bytes): those of the frame being written out.
    pub async fn flush(&self) -> Result<(), SendError> {
        // Every frame given a ticket so far; none, always, on a read-only end.
        let issued = lock(&self.sending).issued;
        self.write(None, Some(issued)).await
    }

    /// Writes until the frame of `ticket` is all sent: first whatever frame is in the
    /// writer, then `frame` (which gets the ticket) unless `ticket` is given.
    async fn write(
        &self,
        mut frame: Option<Frame>,
        mut ticket: Option<u64>,
    ) -> Result<(), SendError> {
        let finished =
            |sending: &Sending, ticket: Option<u64>| ticket.is_some_and(|t| sending.finished >= t);
        // Not even registering for writability when there is nothing to write.
        if finished(&lock(&self.sending), ticket) {
            return Ok(());
        }
        let step = |registered: &Registered| -> Step<(), SendError> {
            let mut sending = lock(&self.sending);
            loop {
                if finished(&sending, ticket) {
                    return Ok(Ok(()));
                }
                if sending.frame.in_progress() {
                    // Ours, or one a dropped send left half written: out it goes.
                    match registered.0.try_send_frame(&mut sending.frame) {
                        Ok(true) => sending.finished += 1,
                        Ok(false) => return would_block(),
                        Err(e) => return Ok(Err(e)),
                    }
                    continue;
                }
                let Some((payload, fds)) = frame.take() else {
                    unreachable!("a ticket is finished once its frame is sent");
                };
                match sending.frame.start(payload, fds) {
                    Ok(()) => {}
                    Err(FrameStartError::HandlesNotSupported(why)) => {
                        return Ok(Err(SendError::HandlesNotSupported(why)));
                    }
                    // The loop above sends out any frame in progress before starting one.
                    Err(e) => {
                        return Ok(Err(SendError::Os {
                            op: "start a frame",
                            source: io::Error::other(e),
                        }));
                    }
                }
                sending.issued += 1;
                ticket = Some(sending.issued);
            }
        };
        self.io
            .async_io(Interest::WRITABLE, step)
            .await
            .map_err(|source| SendError::Os {
                op: REACTOR,
                source,
            })?
    }

    /// Receives a value sent with `send`, waiting for it without blocking the runtime.
    ///
    /// # Errors
    ///
    /// [`Connection::recv`]'s [`RecvError`]s: [`RecvError::Disconnected`] when the other
    /// end is closed, [`RecvError::Decode`] for a frame that is not a `T` (the next one
    /// may be received), [`RecvError::Truncated`], [`RecvError::TooLarge`] and the
    /// others that close the connection, [`RecvError::WrongDirection`] on a write-only
    /// end, [`RecvError::Os`] (also when waiting for readiness fails).
    pub async fn recv<T: DeserializeOwned>(&self) -> Result<T, RecvError> {
        let (bytes, fds) = self.recv_frame().await?;
        handle::decode_with_limit(&bytes, fds, self.get_ref().max_frame())
            .map_err(RecvError::Decode)
    }

    /// Receives one message as bytes.
    ///
    /// # Errors
    ///
    /// As for [`recv`](Self::recv), less the decoding.
    pub async fn recv_bytes(&self) -> Result<Vec<u8>, RecvError> {
        Ok(self.recv_frame().await?.0)
    }

    /// Receives one frame: its payload and the descriptors that came with it.
    ///
    /// # Errors
    ///
    /// As for [`recv_bytes`](Self::recv_bytes).
    pub async fn recv_frame(&self) -> Result<Frame, RecvError> {
        // Checked before waiting: a write-only end is never registered for readability.
        if !self.get_ref().readable() {
            return Err(RecvError::WrongDirection("write-only"));
        }
        let step = |registered: &Registered| -> Step<Frame, RecvError> {
            match registered.0.try_recv_frame(&mut lock(&self.receiving)) {
                Ok(Some(frame)) => Ok(Ok(frame)),
                Ok(None) => would_block(),
                Err(e) => Ok(Err(e)),
            }
        };
        self.io
            .async_io(Interest::READABLE, step)
            .await
            .map_err(|source| RecvError::Os {
                op: REACTOR,
                source,
            })?
    }
}

impl fmt::Debug for AsyncConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncConnection")
            .field("connection", self.get_ref())
            .field("receiving", &lock(&self.receiving).in_progress())
            .field("sending", &lock(&self.sending).frame.in_progress())
            .finish()
    }
}
