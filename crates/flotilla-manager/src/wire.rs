//! The manager's transport: addresses, streams, and CPython's `multiprocessing.connection`
//! framing, with the frame limit checked before allocating and a timeout on every read.
//!
//! # Frames, byte by byte
//!
//! ```text
//! small frame (payload ≤ 0x7fff_ffff bytes):
//!   [len: i32, big-endian, ≥ 0] [payload: len bytes]
//! large frame:
//!   [0xff 0xff 0xff 0xff  (i32 −1)] [len: u64, big-endian] [payload: len bytes]
//! ```
//!
//! This is exactly CPython's framing on sockets (3.8+), so a Python
//! `multiprocessing.connection.Connection` can exchange frames with this module. Any other
//! negative length is refused. A frame whose announced length is over the reader's limit is
//! refused *before* anything is allocated, and the buffer of an accepted frame grows as its
//! bytes arrive (at most doubling), so a header that lies costs nothing.
//!
//! # Timeouts
//!
//! Streams carry a read timeout (the `frame_timeout`), so no read blocks for ever: while
//! waiting for the first byte of a frame a timeout only means "idle", and the reader
//! decides whether to keep waiting; once a frame has
//! begun, a stretch of `frame_timeout` without progress is [`FrameError::Stalled`].

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The largest payload sent with the 4-byte header; larger ones use the −1 + 8-byte form.
const SMALL_MAX: u64 = 0x7fff_ffff;
/// Frames up to this size are written with one `write` (header and payload together), as
/// CPython does (issue 20540: so Nagle's algorithm does not delay the payload on TCP).
const ONE_WRITE_MAX: usize = 16 * 1024;
/// The first buffer of a frame is at most this large, whatever its header announces.
const FIRST_CHUNK: usize = 64 * 1024;

/// The default largest frame the manager accepts after the handshake: 64 MiB.
pub const DEFAULT_MAX_FRAME: u64 = 64 << 20;
/// The largest frame read during the handshake, as CPython's `recv_bytes(256)`.
pub const HANDSHAKE_MAX_FRAME: u64 = 256;

/// Where a manager listens: a Unix socket path or a TCP address.
///
/// Parsed from a string as Python spells its two families: anything holding a `/` is a
/// Unix socket path, anything else `host:port` on TCP.
///
/// ```
/// use flotilla_manager::Address;
///
/// let unix: Address = "/tmp/manager.sock".parse().unwrap();
/// assert!(matches!(unix, Address::Unix(_)));
/// let tcp: Address = "127.0.0.1:50000".parse().unwrap();
/// assert!(matches!(tcp, Address::Tcp(_)));
/// assert!("no-port".parse::<Address>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Address {
    /// A Unix socket at this path.
    Unix(PathBuf),
    /// A TCP socket.
    Tcp(SocketAddr),
}

impl Address {
    /// Whether a peer on another host could reach this address: TCP on an address that is
    /// not loopback. Such a listener needs an authkey.
    pub fn is_remote(&self) -> bool {
        match self {
            Address::Unix(_) => false,
            Address::Tcp(addr) => !addr.ip().is_loopback(),
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Unix(path) => write!(f, "{}", path.display()),
            Address::Tcp(addr) => write!(f, "{addr}"),
        }
    }
}

impl From<SocketAddr> for Address {
    fn from(addr: SocketAddr) -> Self {
        Address::Tcp(addr)
    }
}

impl From<PathBuf> for Address {
    fn from(path: PathBuf) -> Self {
        Address::Unix(path)
    }
}

impl From<&Path> for Address {
    fn from(path: &Path) -> Self {
        Address::Unix(path.to_owned())
    }
}

/// An address string that is neither a path nor a resolvable `host:port`.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "`{input}` is not a manager address (a Unix socket path holding `/`, or `host:port`): {reason}"
)]
pub struct AddressParseError {
    input: String,
    reason: String,
}

impl std::str::FromStr for Address {
    type Err = AddressParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.contains('/') {
            return Ok(Address::Unix(PathBuf::from(s)));
        }
        let err = |reason: String| AddressParseError {
            input: s.to_owned(),
            reason,
        };
        let mut addrs = s.to_socket_addrs().map_err(|e| err(e.to_string()))?;
        addrs
            .next()
            .map(Address::Tcp)
            .ok_or_else(|| err("the name resolved to no address".to_owned()))
    }
}

/// A connected stream of either family.
#[derive(Debug)]
pub(crate) enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
    /// TLS over TCP (the `tls` feature).
    #[cfg(feature = "tls")]
    Tls(crate::tls::TlsStream),
}

impl Stream {
    /// Connects to `address`, waiting at most `timeout` for a TCP connection.
    pub(crate) fn connect(address: &Address, timeout: Duration) -> io::Result<Stream> {
        match address {
            Address::Unix(path) => UnixStream::connect(path).map(Stream::Unix),
            Address::Tcp(addr) => {
                let s = TcpStream::connect_timeout(addr, timeout)?;
                s.set_nodelay(true)?;
                Ok(Stream::Tcp(s))
            }
        }
    }

    pub(crate) fn try_clone(&self) -> io::Result<Stream> {
        match self {
            Stream::Unix(s) => s.try_clone().map(Stream::Unix),
            Stream::Tcp(s) => s.try_clone().map(Stream::Tcp),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.try_clone().map(Stream::Tls),
        }
    }

    pub(crate) fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_read_timeout(t),
            Stream::Tcp(s) => s.set_read_timeout(t),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.socket().set_read_timeout(t),
        }
    }

    pub(crate) fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_write_timeout(t),
            Stream::Tcp(s) => s.set_write_timeout(t),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.socket().set_write_timeout(t),
        }
    }

    /// Polls the socket briefly when nothing is buffered (see
    /// [`flotilla_ipc::poll_briefly`]), so that a read about to block catches a reply or
    /// request that comes within microseconds without letting this CPU go idle: on a
    /// VM, waking an idle vCPU costs 50-120 µs, twice per call when both ends block.
    /// Not under TLS, whose buffered plaintext the socket does not show.
    pub(crate) fn poll_briefly(&self, buffered: &[u8]) {
        use std::os::fd::AsFd;
        if !buffered.is_empty() {
            return;
        }
        let fd = match self {
            Stream::Unix(s) => s.as_fd(),
            Stream::Tcp(s) => s.as_fd(),
            #[cfg(feature = "tls")]
            Stream::Tls(_) => return,
        };
        flotilla_ipc::poll_briefly(fd);
    }

    /// What a look at the socket, without reading or waiting, finds: `Some(true)` when
    /// bytes wait to be read, `Some(false)` at end of file (or an error: the stream is
    /// done for), `None` when nothing has come yet. Under TLS it sees the raw socket.
    pub(crate) fn peek_now(&self) -> Option<bool> {
        use std::os::fd::AsRawFd;
        let fd = match self {
            Stream::Unix(s) => s.as_raw_fd(),
            Stream::Tcp(s) => s.as_raw_fd(),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.socket().as_raw_fd(),
        };
        let mut byte = [0u8; 1];
        let flags = nix::sys::socket::MsgFlags::MSG_PEEK | nix::sys::socket::MsgFlags::MSG_DONTWAIT;
        match nix::sys::socket::recv(fd, &mut byte, flags) {
            Ok(0) => Some(false),
            Ok(_) => Some(true),
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => None,
            Err(_) => Some(false),
        }
    }

    /// Shuts the stream down both ways: a thread blocked reading it wakes with end of file.
    pub(crate) fn shutdown(&self) {
        // An error means it is shut down or gone already: either way nothing is left to do.
        let _ = match self {
            Stream::Unix(s) => s.shutdown(Shutdown::Both),
            Stream::Tcp(s) => s.shutdown(Shutdown::Both),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.socket().shutdown(Shutdown::Both),
        };
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(buf),
            Stream::Tcp(s) => s.write(buf),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.flush(),
            _ => Ok(()),
        }
    }
}

/// A bound listener of either family.
#[derive(Debug)]
pub(crate) enum Listener {
    Unix(UnixListener),
    Tcp(TcpListener),
}

impl Listener {
    pub(crate) fn bind(address: &Address) -> io::Result<Listener> {
        match address {
            Address::Unix(path) => UnixListener::bind(path).map(Listener::Unix),
            Address::Tcp(addr) => TcpListener::bind(addr).map(Listener::Tcp),
        }
    }

    /// The address it listens on (with the port the OS chose for port 0).
    pub(crate) fn local_address(&self, asked: &Address) -> io::Result<Address> {
        match self {
            Listener::Unix(_) => Ok(asked.clone()),
            Listener::Tcp(l) => l.local_addr().map(Address::Tcp),
        }
    }

    pub(crate) fn try_clone(&self) -> io::Result<Listener> {
        match self {
            Listener::Unix(l) => l.try_clone().map(Listener::Unix),
            Listener::Tcp(l) => l.try_clone().map(Listener::Tcp),
        }
    }

    /// Wakes every thread blocked in `accept` on this socket (Linux: `shutdown` of a
    /// listening socket makes `accept` fail), so the accept loop can stop without a
    /// connection of its own, even when its socket file was removed.
    pub(crate) fn wake_accept(&self) {
        use std::os::fd::AsRawFd;
        let fd = match self {
            Listener::Unix(l) => l.as_raw_fd(),
            Listener::Tcp(l) => l.as_raw_fd(),
        };
        // An error leaves the loop to the wake-up connection the caller also makes.
        let _ = nix::sys::socket::shutdown(fd, nix::sys::socket::Shutdown::Both);
    }

    pub(crate) fn accept(&self) -> io::Result<Stream> {
        match self {
            Listener::Unix(l) => l.accept().map(|(s, _)| Stream::Unix(s)),
            Listener::Tcp(l) => {
                let (s, _) = l.accept()?;
                s.set_nodelay(true)?;
                Ok(Stream::Tcp(s))
            }
        }
    }
}

/// A frame that could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The peer closed the stream between frames.
    #[error("the peer closed the connection")]
    Closed,
    /// The peer closed the stream in the middle of a frame.
    #[error("the connection ended in the middle of a frame ({got} of {expected} bytes)")]
    Truncated {
        /// Bytes of the frame (header included) that arrived.
        got: u64,
        /// Bytes the frame needed.
        expected: u64,
    },
    /// The header announced more than the reader accepts; nothing was allocated.
    #[error("bad message length: a frame of {len} bytes is over the limit of {max}")]
    TooLarge {
        /// The announced payload length.
        len: u64,
        /// The reader's limit.
        max: u64,
    },
    /// The header held a negative length other than the large-frame marker −1.
    #[error("bad message length: the header holds {0}")]
    BadLength(i32),
    /// Nothing arrived for the whole idle time the caller allowed.
    #[error("no message arrived in time")]
    Idle,
    /// A frame began but made no progress for the frame timeout.
    #[error("a frame stalled: no byte arrived for {0:?}")]
    Stalled(Duration),
    /// The stream failed.
    #[error("the connection failed: {0}")]
    Io(#[from] io::Error),
}

/// Writes one frame holding `payload`.
pub fn write_frame(w: &mut impl Write, payload: &[u8]) -> io::Result<()> {
    write_frame_unflushed(w, payload)?;
    w.flush()
}

/// [`write_frame`] without the flush: for a buffered writer sending several frames at
/// once.
pub(crate) fn write_frame_unflushed(w: &mut impl Write, payload: &[u8]) -> io::Result<()> {
    let len = payload.len() as u64;
    if len > SMALL_MAX {
        w.write_all(&(-1i32).to_be_bytes())?;
        w.write_all(&len.to_be_bytes())?;
        w.write_all(payload)?;
    } else if payload.len() <= ONE_WRITE_MAX {
        let mut buf = Vec::with_capacity(4 + payload.len());
        buf.extend_from_slice(&(len as u32).to_be_bytes());
        buf.extend_from_slice(payload);
        w.write_all(&buf)?;
    } else {
        w.write_all(&(len as u32).to_be_bytes())?;
        w.write_all(payload)?;
    }
    Ok(())
}

/// Whether `buffered` begins with a whole frame (so reading it will not wait).
pub(crate) fn holds_whole_frame(buffered: &[u8]) -> bool {
    match buffered.first_chunk::<4>() {
        Some(header) => {
            let len = i32::from_be_bytes(*header);
            len >= 0 && buffered.len() - 4 >= len as usize
        }
        None => false,
    }
}

/// How long a reader may wait for the first byte of a frame.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Idle {
    /// For ever: a timeout between frames is only a chance to look around.
    Forever,
    /// Until this instant; then [`FrameError::Idle`].
    Until(Instant),
}

/// A frame under way: when its first byte came, and how long the whole of it may take.
struct Frame {
    began: Option<Instant>,
    budget: Duration,
}

impl Frame {
    /// Whether the frame has begun and overrun its budget: a peer that trickles bytes
    /// (one just before each read would time out) is cut off as one that stops.
    fn overrun(&self) -> bool {
        self.began
            .is_some_and(|began| began.elapsed() > self.budget)
    }
}

/// Reads `buf.len()` bytes, counting them in `*filled` so a timeout loses nothing. Once
/// `frame` has begun, a read that times out, or a frame past its budget, is a stall.
fn fill(
    r: &mut impl Read,
    buf: &mut [u8],
    filled: &mut usize,
    frame: &mut Frame,
    idle: Idle,
    frame_timeout: Duration,
) -> Result<(), FrameError> {
    while *filled < buf.len() {
        if frame.overrun() {
            return Err(FrameError::Stalled(frame.budget));
        }
        let started = frame.began.is_some();
        match r.read(&mut buf[*filled..]) {
            Ok(0) => {
                return Err(if started || *filled > 0 {
                    FrameError::Truncated {
                        got: *filled as u64,
                        expected: buf.len() as u64,
                    }
                } else {
                    FrameError::Closed
                });
            }
            Ok(n) => {
                *filled += n;
                frame.began.get_or_insert_with(Instant::now);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if started || *filled > 0 {
                    return Err(FrameError::Stalled(frame_timeout));
                }
                if let Idle::Until(deadline) = idle
                    && Instant::now() >= deadline
                {
                    return Err(FrameError::Idle);
                }
            }
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    Ok(())
}

/// Reads one frame of at most `max` payload bytes.
///
/// The stream's read timeout must be set (to `frame_timeout`): it bounds every read.
pub(crate) fn read_frame(
    r: &mut impl Read,
    max: u64,
    idle: Idle,
    frame_timeout: Duration,
) -> Result<Vec<u8>, FrameError> {
    let mut head = [0u8; 4];
    let mut filled = 0;
    // The header must come within one frame timeout of its first byte; the payload
    // gets one more per MiB it announces (at least 1 MiB per timeout on average).
    let mut frame = Frame {
        began: None,
        budget: frame_timeout,
    };
    fill(r, &mut head, &mut filled, &mut frame, idle, frame_timeout)?;
    let announced = i32::from_be_bytes(head);
    // Counted in `Truncated`, which counts the whole frame, header included.
    let mut header = head.len() as u64;
    let len = match announced {
        -1 => {
            let mut long = [0u8; 8];
            let mut filled = 0;
            let res = fill(r, &mut long, &mut filled, &mut frame, idle, frame_timeout);
            if let Err(FrameError::Truncated { got, expected }) = res {
                return Err(FrameError::Truncated {
                    got: header + got,
                    expected: header + expected,
                });
            }
            res?;
            header += long.len() as u64;
            u64::from_be_bytes(long)
        }
        n if n < 0 => return Err(FrameError::BadLength(n)),
        n => n as u64,
    };
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    // `len <= max`, and `max` is a size this process was configured to hold.
    let len = usize::try_from(len).map_err(|_| FrameError::TooLarge { len, max })?;
    let mebibytes = u32::try_from(len >> 20).unwrap_or(u32::MAX);
    frame.budget = frame_timeout.saturating_mul(mebibytes.saturating_add(1));
    let mut buf = Vec::with_capacity(len.min(FIRST_CHUNK));
    while buf.len() < len {
        let old = buf.len();
        let chunk = (len - old).min(old.max(FIRST_CHUNK));
        buf.resize(old + chunk, 0);
        let mut filled = 0;
        let res = fill(
            r,
            &mut buf[old..],
            &mut filled,
            &mut frame,
            idle,
            frame_timeout,
        );
        if let Err(FrameError::Truncated { got, .. }) = res {
            return Err(FrameError::Truncated {
                got: header + (old as u64) + got,
                expected: header + len as u64,
            });
        }
        res?;
    }
    Ok(buf)
}

/// Reads one frame of at most `max` bytes from a blocking reader with no timeouts (a
/// buffer, a pipe): CPython's `recv_bytes(maxlength)`. For tests and tools.
///
/// ```
/// use flotilla_manager::wire::{read_frame_from, write_frame};
///
/// let mut buf = Vec::new();
/// write_frame(&mut buf, b"hello").unwrap();
/// assert_eq!(buf, b"\x00\x00\x00\x05hello");
/// assert_eq!(read_frame_from(&mut &buf[..], 16).unwrap(), b"hello");
/// assert!(read_frame_from(&mut &buf[..], 4).is_err()); // over the limit: refused
/// ```
pub fn read_frame_from(r: &mut impl Read, max: u64) -> Result<Vec<u8>, FrameError> {
    read_frame(r, max, Idle::Forever, Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A peer that sends one byte at a time, each well within the read timeout.
    struct Trickle<'a> {
        bytes: &'a [u8],
        pause: Duration,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            std::thread::sleep(self.pause);
            let Some((&first, rest)) = self.bytes.split_first() else {
                return Ok(0);
            };
            buf[0] = first;
            self.bytes = rest;
            Ok(1)
        }
    }

    /// The frame timeout bounds the whole frame, not each read: a trickling peer is cut
    /// off as a stalled one is, instead of holding the reader for as long as it likes.
    #[test]
    fn a_trickling_peer_is_cut_off_within_the_frame_timeout() {
        let mut frame = Vec::new();
        write_frame(&mut frame, b"sixteen bytes!!!").unwrap();
        let mut peer = Trickle {
            bytes: &frame,
            pause: Duration::from_millis(20),
        };
        let started = Instant::now();
        let read = read_frame(&mut peer, 64, Idle::Forever, Duration::from_millis(100));
        assert!(matches!(read, Err(FrameError::Stalled(_))), "{read:?}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn the_large_form_round_trips_through_the_reader() {
        let payload = b"abc";
        let mut buf = Vec::new();
        buf.extend_from_slice(&(-1i32).to_be_bytes());
        buf.extend_from_slice(&3u64.to_be_bytes());
        buf.extend_from_slice(payload);
        assert_eq!(read_frame_from(&mut &buf[..], 10).unwrap(), payload);
    }

    #[test]
    fn a_lying_header_allocates_nothing_and_is_refused() {
        let buf = [0x7f, 0xff, 0xff, 0xff];
        assert!(matches!(
            read_frame_from(&mut &buf[..], 1 << 40),
            Err(FrameError::Truncated { .. })
        ));
        let mut big = (-1i32).to_be_bytes().to_vec();
        big.extend_from_slice(&u64::MAX.to_be_bytes());
        assert!(matches!(
            read_frame_from(&mut &big[..], 1 << 20),
            Err(FrameError::TooLarge { .. })
        ));
        assert!(matches!(
            read_frame_from(&mut &(-2i32).to_be_bytes()[..], 10),
            Err(FrameError::BadLength(-2))
        ));
    }

    #[test]
    fn end_of_file_between_frames_is_closed_and_inside_one_truncated() {
        assert!(matches!(
            read_frame_from(&mut &[][..], 10),
            Err(FrameError::Closed)
        ));
        assert!(matches!(
            read_frame_from(&mut &[0, 0][..], 10),
            Err(FrameError::Truncated { .. })
        ));
        // Counted over the whole frame, header included.
        assert!(matches!(
            read_frame_from(&mut &[0, 0, 0, 5, 1, 2][..], 10),
            Err(FrameError::Truncated {
                got: 6,
                expected: 9
            })
        ));
    }

    #[test]
    fn truncation_counts_a_long_header_whole() {
        // −1, then 3 of the 8 bytes of the long length.
        let mut cut = (-1i32).to_be_bytes().to_vec();
        cut.extend_from_slice(&[0, 0, 0]);
        let err = read_frame_from(&mut &cut[..], 1 << 20).unwrap_err();
        assert!(
            matches!(
                err,
                FrameError::Truncated {
                    got: 7,
                    expected: 12
                }
            ),
            "{err:?}"
        );
        // A long header, then 2 of 5 payload bytes.
        let mut cut = (-1i32).to_be_bytes().to_vec();
        cut.extend_from_slice(&5u64.to_be_bytes());
        cut.extend_from_slice(&[1, 2]);
        let err = read_frame_from(&mut &cut[..], 1 << 20).unwrap_err();
        assert!(
            matches!(
                err,
                FrameError::Truncated {
                    got: 14,
                    expected: 17
                }
            ),
            "{err:?}"
        );
    }
}
