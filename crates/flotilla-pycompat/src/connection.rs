//! Python's `multiprocessing.connection` on Unix sockets and TCP: [`Listener`],
//! [`Client`] and the [`Connection`] they make, byte-compatible with CPython's.
//!
//! Frames and the authkey handshake are flotilla-manager's ([`flotilla_manager::wire`],
//! [`flotilla_manager::auth`]); this module adds the pickled payloads, per-call
//! deadlines, and the legacy HMAC-MD5 handshake of Python ≤ 3.11 behind
//! [`Options::legacy_md5`].

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::Duration;

use flotilla_core::Deadline;
use flotilla_manager::wire::{self, FrameError};
use flotilla_manager::{Address, AuthError, AuthKey};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::pickle::{self, PickleError, PyValue, UnpickleError};

/// The default largest frame a connection accepts: 64 MiB.
pub const DEFAULT_MAX_FRAME: u64 = wire::DEFAULT_MAX_FRAME;
/// The default bound on each blocking call (connect, handshake, send, recv): 30 s.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How a [`Listener`] or [`Client`] connects: the authkey, the handshakes accepted, the
/// largest frame and the time each blocking call may take.
///
/// ```
/// use std::time::Duration;
/// use flotilla_pycompat::Options;
///
/// let options = Options::new()
///     .authkey(b"secret")
///     .max_frame(1 << 20)
///     .timeout(Duration::from_secs(5));
/// assert!(!options.is_legacy_md5()); // Python ≤ 3.11 peers are refused unless asked for
/// ```
#[derive(Debug, Clone)]
pub struct Options {
    authkey: Option<AuthKey>,
    legacy_md5: bool,
    max_frame: u64,
    timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            authkey: None,
            legacy_md5: false,
            max_frame: DEFAULT_MAX_FRAME,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

impl Options {
    /// No authkey, SHA-256 handshakes only, 64 MiB frames, 30 s per call.
    pub fn new() -> Self {
        Self::default()
    }

    /// The shared secret: both sides prove they hold it (Python's `authkey=`). Without
    /// one there is no handshake, as in Python with `authkey=None`.
    pub fn authkey(mut self, key: impl AsRef<[u8]>) -> Self {
        self.authkey = Some(AuthKey::new(key.as_ref().to_vec()));
        self
    }

    /// Also speak the legacy handshake of Python 3.11 and older (raw HMAC-MD5). Off by
    /// default: MD5 is weak, and 3.12+ peers never need it.
    pub fn legacy_md5(mut self, on: bool) -> Self {
        self.legacy_md5 = on;
        self
    }

    /// Whether the legacy handshake is on.
    pub fn is_legacy_md5(&self) -> bool {
        self.legacy_md5
    }

    /// The largest frame received; a larger one is refused before anything is allocated
    /// (Python's `recv_bytes(maxlength)`).
    pub fn max_frame(mut self, bytes: u64) -> Self {
        self.max_frame = bytes;
        self
    }

    /// The bound on each blocking call: connecting, the handshake, each send and each
    /// [`Connection::recv`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The bound on each blocking call.
    pub fn get_timeout(&self) -> Duration {
        self.timeout
    }
}

/// A connected stream of either family.
#[derive(Debug)]
enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Stream {
    fn set_timeouts(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Unix(s) => {
                s.set_read_timeout(t)?;
                s.set_write_timeout(t)
            }
            Stream::Tcp(s) => {
                s.set_read_timeout(t)?;
                s.set_write_timeout(t)
            }
        }
    }
}

/// The error a [`Timed`] stream reads or writes once its deadline has passed.
#[derive(Debug, thiserror::Error)]
#[error("the deadline passed")]
struct DeadlinePassed;

fn is_deadline(e: &io::Error) -> bool {
    e.get_ref()
        .is_some_and(|inner| inner.is::<DeadlinePassed>())
}

/// A stream whose every read and write ends by `deadline`: each one is given the time
/// left, and once it is gone fails with [`DeadlinePassed`] (not a timeout kind, so the
/// frame reader does not wait on).
struct Timed<'a> {
    stream: &'a mut Stream,
    deadline: Deadline,
}

impl Timed<'_> {
    fn arm(&self) -> io::Result<()> {
        match self.deadline.remaining() {
            Some(left) if left.is_zero() => Err(io::Error::other(DeadlinePassed)),
            left => self.stream.set_timeouts(left),
        }
    }

    fn check<T>(r: io::Result<T>) -> io::Result<T> {
        match r {
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Err(io::Error::other(DeadlinePassed))
            }
            r => r,
        }
    }
}

impl Read for Timed<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.arm()?;
        Self::check(match self.stream {
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
        })
    }
}

impl Write for Timed<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.arm()?;
        Self::check(match self.stream {
            Stream::Unix(s) => s.write(buf),
            Stream::Tcp(s) => s.write(buf),
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Why a connection could not be made (by [`Client::connect`] or [`Listener::accept`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The socket could not be connected, bound or accepted.
    #[error("cannot connect to {address}: {source}")]
    Io {
        /// The address.
        address: Address,
        /// The OS's reason.
        source: io::Error,
    },
    /// The authkey handshake failed: different keys, a legacy peer without
    /// [`Options::legacy_md5`], or a peer that does not speak it.
    #[error("the authkey handshake with {address} failed: {source}")]
    Handshake {
        /// The peer's address.
        address: Address,
        /// What went wrong.
        source: AuthError,
    },
    /// Connecting, accepting or the handshake took longer than allowed.
    #[error("connecting with {address} timed out after {timeout:?}")]
    Timeout {
        /// The address.
        address: Address,
        /// The bound.
        timeout: Duration,
    },
}

/// Why a message could not be sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The value could not be pickled.
    #[error(transparent)]
    Pickle(#[from] PickleError),
    /// The peer did not take the bytes in time.
    #[error("sending timed out after {0:?}")]
    Timeout(Duration),
    /// The connection failed (or failed earlier and was closed).
    #[error("sending failed: {0}")]
    Io(io::Error),
}

/// Why a message could not be received.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecvError {
    /// No message came in time. The connection stays usable.
    #[error("no message arrived within {0:?}")]
    Timeout(Duration),
    /// The peer closed the connection.
    #[error("the peer closed the connection")]
    Closed,
    /// The frame was bad (too large, a bad length, truncated, stalled) or the stream
    /// failed; the connection is closed, as CPython closes it.
    #[error("bad frame, connection closed: {0}")]
    Frame(FrameError),
    /// The frame arrived but its pickle was refused or did not fit the type asked for.
    /// The connection stays usable.
    #[error(transparent)]
    Unpickle(#[from] UnpickleError),
}

/// One end of a connection to a Python process: Python's
/// `multiprocessing.connection.Connection`.
///
/// Messages are frames; [`send`](Self::send) and [`recv`](Self::recv) carry pickles of
/// serde values (protocol 3 out, any protocol in, never running code),
/// [`send_bytes`](Self::send_bytes) and [`recv_bytes`](Self::recv_bytes) raw bytes.
#[derive(Debug)]
pub struct Connection {
    stream: Stream,
    peer: Address,
    options: Options,
    /// A frame failed half-way: the stream is out of step and is not used again.
    broken: bool,
}

impl Connection {
    fn new(stream: Stream, peer: Address, options: Options) -> Self {
        Connection {
            stream,
            peer,
            options,
            broken: false,
        }
    }

    /// The address of the other end (for an accepted connection, the listener's).
    pub fn peer(&self) -> &Address {
        &self.peer
    }

    fn timed(&mut self, timeout: Option<Duration>) -> Timed<'_> {
        Timed {
            stream: &mut self.stream,
            deadline: Deadline::after(timeout),
        }
    }

    /// Sends `value` pickled: Python's `conn.send(obj)`.
    pub fn send<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), SendError> {
        let bytes = pickle::to_pickle(value)?;
        self.send_bytes(&bytes)
    }

    pub(crate) fn send_value(&mut self, value: &serde_pickle::Value) -> Result<(), SendError> {
        let bytes = pickle::encode_value(value)?;
        self.send_bytes(&bytes)
    }

    /// Sends `bytes` as one frame: Python's `conn.send_bytes(buf)`.
    pub fn send_bytes(&mut self, bytes: &[u8]) -> Result<(), SendError> {
        if self.broken {
            return Err(SendError::Io(io::Error::other(
                "the connection was closed after an earlier error",
            )));
        }
        let timeout = self.options.timeout;
        let res = wire::write_frame(&mut self.timed(Some(timeout)), bytes);
        res.map_err(|e| {
            self.broken = true;
            if is_deadline(&e) {
                SendError::Timeout(timeout)
            } else {
                SendError::Io(e)
            }
        })
    }

    /// Receives one frame's bytes, waiting at most the [`Options::timeout`]: Python's
    /// `conn.recv_bytes()`.
    pub fn recv_bytes(&mut self) -> Result<Vec<u8>, RecvError> {
        self.recv_bytes_timeout(self.options.timeout)
    }

    /// Receives one frame's bytes, waiting at most `timeout` for it to begin
    /// (`Duration::MAX`: for as long as it takes).
    pub fn recv_bytes_timeout(&mut self, timeout: Duration) -> Result<Vec<u8>, RecvError> {
        if self.broken {
            return Err(RecvError::Frame(FrameError::Closed));
        }
        let max = self.options.max_frame;
        // Wait for the first byte without reading it, so a timeout leaves the stream in
        // step; then the frame gets the whole per-call bound.
        if !self.readable(Some(timeout))? {
            return Err(RecvError::Timeout(timeout));
        }
        let frame_timeout = self.options.timeout;
        let res = wire::read_frame_from(&mut self.timed(Some(frame_timeout)), max);
        res.map_err(|e| {
            self.broken = true;
            match e {
                FrameError::Closed => RecvError::Closed,
                FrameError::Io(e) if is_deadline(&e) => {
                    RecvError::Frame(FrameError::Stalled(frame_timeout))
                }
                e => RecvError::Frame(e),
            }
        })
    }

    /// Whether a byte (or end of file) can be read within `timeout`.
    fn readable(&self, timeout: Option<Duration>) -> Result<bool, RecvError> {
        let fd = match &self.stream {
            Stream::Unix(s) => s.as_fd(),
            Stream::Tcp(s) => s.as_fd(),
        };
        poll_readable(fd, timeout).map_err(|e| RecvError::Frame(FrameError::Io(e)))
    }

    /// Whether a message (or end of file) is waiting; never blocks: Python's
    /// `conn.poll()` (whose timeout defaults to 0).
    pub fn poll(&self) -> Result<bool, RecvError> {
        self.readable(Some(Duration::ZERO))
    }

    /// Whether a message (or end of file) is waiting, or arrives within `timeout`:
    /// Python's `conn.poll(timeout)`. `Duration::MAX` waits without limit (Python's
    /// `poll(None)`).
    pub fn poll_timeout(&self, timeout: Duration) -> Result<bool, RecvError> {
        self.readable(Some(timeout))
    }

    /// Receives one message and reads its pickle into `T`, waiting at most the
    /// [`Options::timeout`]: Python's `conn.recv()`.
    pub fn recv<T: DeserializeOwned>(&mut self) -> Result<T, RecvError> {
        self.recv_timeout(self.options.timeout)
    }

    /// [`recv`](Self::recv), waiting at most `timeout` (`Duration::MAX`: for as long as
    /// it takes).
    pub fn recv_timeout<T: DeserializeOwned>(&mut self, timeout: Duration) -> Result<T, RecvError> {
        Ok(pickle::from_value(self.recv_value_timeout(timeout)?)?)
    }

    /// Receives one message as a [`PyValue`] (plain data, or an allow-listed object).
    pub fn recv_value(&mut self) -> Result<PyValue, RecvError> {
        self.recv_value_timeout(self.options.timeout)
    }

    /// [`recv_value`](Self::recv_value), waiting at most `timeout`.
    pub fn recv_value_timeout(&mut self, timeout: Duration) -> Result<PyValue, RecvError> {
        let bytes = self.recv_bytes_timeout(timeout)?;
        Ok(pickle::decode(&bytes)?)
    }

    fn handshake(&mut self, serving: bool) -> Result<(), ConnectError> {
        let Some(key) = self.options.authkey.clone() else {
            return Ok(());
        };
        let (legacy, timeout) = (self.options.legacy_md5, self.options.timeout);
        let peer = self.peer.clone();
        // One bound for the whole handshake (both halves), as for any blocking call.
        let mut timed = self.timed(Some(timeout));
        let res = if serving {
            flotilla_manager::auth::serve_handshake(&mut timed, &key, legacy, timeout)
        } else {
            flotilla_manager::auth::connect_handshake(&mut timed, &key, legacy, timeout)
        };
        res.map_err(|source| match source {
            AuthError::Frame(FrameError::Io(e)) if is_deadline(&e) => ConnectError::Timeout {
                address: peer.clone(),
                timeout,
            },
            AuthError::Frame(FrameError::Idle | FrameError::Stalled(_)) => ConnectError::Timeout {
                address: peer.clone(),
                timeout,
            },
            source => ConnectError::Handshake {
                address: peer.clone(),
                source,
            },
        })
    }
}

fn poll_readable(fd: std::os::fd::BorrowedFd<'_>, timeout: Option<Duration>) -> io::Result<bool> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let deadline = Deadline::after(timeout);
    loop {
        let wait = match deadline.remaining() {
            None => PollTimeout::NONE,
            Some(left) => {
                PollTimeout::try_from(left.as_millis().saturating_add(1).min(i32::MAX as u128))
                    .unwrap_or(PollTimeout::MAX)
            }
        };
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        match poll(&mut fds, wait) {
            Ok(0) => {
                if deadline.expired() {
                    return Ok(false);
                }
            }
            Ok(_) => return Ok(true),
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// The connecting side: Python's `multiprocessing.connection.Client(address, authkey=...)`.
///
/// ```no_run
/// use flotilla_pycompat::{Client, Options};
///
/// // Python: Listener(('127.0.0.1', 6000), authkey=b'secret')
/// let mut conn = Client::new(Options::new().authkey(b"secret"))
///     .connect(&"127.0.0.1:6000".parse().unwrap())
///     .unwrap();
/// conn.send(&("hello", 42)).unwrap();
/// let reply: String = conn.recv().unwrap();
/// ```
#[derive(Debug, Clone, Default)]
pub struct Client {
    options: Options,
}

impl Client {
    /// A client connecting with these options.
    pub fn new(options: Options) -> Self {
        Client { options }
    }

    /// Connects to `address` (a Unix socket path or `host:port`) and runs the handshake
    /// (answer, then challenge) when an authkey is set.
    pub fn connect(&self, address: &Address) -> Result<Connection, ConnectError> {
        let timeout = self.options.timeout;
        let io_err = |source: io::Error| {
            if matches!(
                source.kind(),
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
            ) {
                ConnectError::Timeout {
                    address: address.clone(),
                    timeout,
                }
            } else {
                ConnectError::Io {
                    address: address.clone(),
                    source,
                }
            }
        };
        let stream = match address {
            Address::Unix(path) => Stream::Unix(UnixStream::connect(path).map_err(io_err)?),
            Address::Tcp(addr) => {
                let s = TcpStream::connect_timeout(addr, timeout).map_err(io_err)?;
                s.set_nodelay(true).map_err(io_err)?;
                Stream::Tcp(s)
            }
        };
        let mut conn = Connection::new(stream, address.clone(), self.options.clone());
        conn.handshake(false)?;
        Ok(conn)
    }
}

/// The listening side: Python's `multiprocessing.connection.Listener(address, authkey=...)`.
///
/// ```
/// use flotilla_pycompat::{Client, Listener, Options};
///
/// let options = Options::new().authkey(b"secret");
/// let listener = Listener::bind(&"127.0.0.1:0".parse().unwrap(), options.clone()).unwrap();
/// let address = listener.address().clone();
/// let peer = std::thread::spawn(move || {
///     let mut conn = Client::new(options).connect(&address).unwrap();
///     conn.send(&[1, 2, 3]).unwrap();
/// });
/// let mut conn = listener.accept().unwrap();
/// assert_eq!(conn.recv::<Vec<i32>>().unwrap(), [1, 2, 3]);
/// peer.join().unwrap();
/// ```
#[derive(Debug)]
pub struct Listener {
    socket: Socket,
    address: Address,
    options: Options,
}

#[derive(Debug)]
enum Socket {
    Unix(UnixListener, PathBuf),
    Tcp(TcpListener),
}

impl Listener {
    /// Listens on `address`: a Unix socket path or `host:port` (port 0 picks a free one;
    /// [`address`](Self::address) tells which).
    pub fn bind(address: &Address, options: Options) -> Result<Listener, ConnectError> {
        let io_err = |source| ConnectError::Io {
            address: address.clone(),
            source,
        };
        let (socket, address) = match address {
            Address::Unix(path) => (
                Socket::Unix(UnixListener::bind(path).map_err(io_err)?, path.clone()),
                address.clone(),
            ),
            Address::Tcp(addr) => {
                let l = TcpListener::bind(addr).map_err(io_err)?;
                let bound = l.local_addr().map_err(io_err)?;
                (Socket::Tcp(l), Address::Tcp(bound))
            }
        };
        Ok(Listener {
            socket,
            address,
            options,
        })
    }

    /// The address it listens on.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// Waits for a peer (for as long as it takes), then runs the handshake (challenge,
    /// then answer) within the [`Options::timeout`]: Python's `listener.accept()`.
    pub fn accept(&self) -> Result<Connection, ConnectError> {
        self.accept_within(None)
    }

    /// [`accept`](Self::accept), waiting at most `timeout` for a peer to connect.
    pub fn accept_timeout(&self, timeout: Duration) -> Result<Connection, ConnectError> {
        self.accept_within(Some(timeout))
    }

    fn accept_within(&self, timeout: Option<Duration>) -> Result<Connection, ConnectError> {
        let io_err = |source| ConnectError::Io {
            address: self.address.clone(),
            source,
        };
        let fd = match &self.socket {
            Socket::Unix(l, _) => l.as_fd(),
            Socket::Tcp(l) => l.as_fd(),
        };
        if !poll_readable(fd, timeout).map_err(io_err)? {
            return Err(ConnectError::Timeout {
                address: self.address.clone(),
                timeout: timeout.unwrap_or(Duration::MAX),
            });
        }
        let stream = match &self.socket {
            Socket::Unix(l, _) => Stream::Unix(l.accept().map_err(io_err)?.0),
            Socket::Tcp(l) => {
                let s = l.accept().map_err(io_err)?.0;
                s.set_nodelay(true).map_err(io_err)?;
                Stream::Tcp(s)
            }
        };
        let mut conn = Connection::new(stream, self.address.clone(), self.options.clone());
        conn.handshake(true)?;
        Ok(conn)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        // Python's Listener.close() unlinks its socket file; a failure leaves a stale
        // file, which the next bind reports.
        if let Socket::Unix(_, path) = &self.socket {
            let _ = std::fs::remove_file(path);
        }
    }
}
