//! The connection figures' contenders: a parent and a child process exchanging messages
//! of one size over flotilla's duplex `Connection`, ipc-channel's byte channels, and a
//! bare `AF_UNIX` socket pair.
//!
//! Two kinds of work, each against a child started untimed when the contender is set
//! up: *round trip* (send one message, wait for the child's echo of it) and *throughput*
//! (send n messages one way, then wait for the child's one acknowledgement saying how
//! many messages and bytes it received). Every message is the figure's size in bytes, of
//! a fixed pattern whose first and last bytes change with every message, so a stale or
//! torn echo fails the untimed check.

use std::os::fd::OwnedFd;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use flotilla::multiprocessing::{Connection, Process, RecvError, StartMethod, get_context, pipe};
use ipc_channel::ipc::{self, IpcBytesReceiver, IpcBytesSender, IpcOneShotServer, IpcSender};

use crate::figures::{Batch, Calls};
use crate::os;

/// The one-byte message that ends a throughput batch (every real message is longer).
const END_OF_BATCH: &[u8] = b"!";

/// How long the parent waits for a child to end after closing its end.
const JOIN_TIMEOUT: Duration = Duration::from_secs(60);

/// The conditions of the `connection-round-trip-*` figures, for `docs/benchmarks.md`.
pub(crate) const ROUND_TRIP_CONDITIONS: &str = "\
Each timed call sends one message of the figure's size from the parent to a child \
process and waits until the child's echo of it is back; the value is the median call, \
in microseconds. The child is started once per round, untimed, and echoes every message \
until end of file. A round is a fresh process that times 5,000 calls at 64 B and 4 KiB, \
2,000 at 64 KiB and 300 at 1 MiB (a fifth as many with `--quick`), after a tenth as many \
untimed. The message is a fixed pattern whose first and last bytes change with each \
call; after each call, untimed, the echo is compared with what was sent, byte for byte.

- **flotilla**: `pipe(true)` (a socket pair); the child is \
`get_context(Some(StartMethod::ForkServer)).process(echo, child_end)`, the end passed \
as an argument (its descriptor travels by `SCM_RIGHTS`). Parent: `send_bytes`, then \
`recv_bytes` (a fresh `Vec<u8>`); child: `recv_bytes` then `send_bytes` of it.
- **cpython**: `multiprocessing.get_context(\"forkserver\")`, `pipe()` (duplex), the \
child end passed to `Process(target=echo, args=(child_end,))` and closed in the \
parent. Parent: `send_bytes(msg)`, then `recv_bytes()`; child: `recv_bytes()` then \
`send_bytes(m)`.
- **ipc-channel**: the child, started with `procspawn::spawn`, connects to the \
parent's `IpcOneShotServer` (whose name it gets as its argument, the way \
ipc-channel's own cross-process tests do) and sends it an `IpcBytesSender` and an \
`IpcBytesReceiver` of two `ipc::bytes_channel()`s it made. Parent: `send(&msg)`, then \
`recv()`; child: `recv()` then `send(&m)`.
- **os-limit**: a raw `socketpair(AF_UNIX, SOCK_STREAM)` and a `fork`ed child. Parent: \
`write` until the message is out, then `read` until its echo is in, into a buffer \
allocated once; child: the same, the other way round. No header, no framing, no \
allocation per message.

Every contender but flotilla blocks in the kernel while it waits for the other end, so on \
a machine whose idle CPUs halt at once (see *Idle CPUs* under *The run*) a round trip \
between two CPUs pays two vCPU wake-ups: 50-80 µs instead of 4-7. Which mode a round \
gets depends on where the scheduler puts the two processes (on one CPU neither halts), \
so those columns are bimodal. flotilla's waits poll the socket for up to 50 µs, \
yielding the CPU between polls, before they block, and catch the echo awake.";

/// The conditions of the `connection-throughput-*` figures, for `docs/benchmarks.md`.
pub(crate) const THROUGHPUT_CONDITIONS: &str = "\
Each timed call sends n messages of the figure's size one way, from the parent to a \
child process, then a one-byte end-of-batch message, and waits for the child's \
acknowledgement: the count of messages and bytes it received since the last one. The \
value is n × size divided by the call's time, in MB/s (10^6 bytes). n is 100,000 at \
64 B, 40,000 at 4 KiB, 8,000 at 64 KiB and 512 at 1 MiB (6.4, 164, 524 and 537 MB); \
a round is a fresh process whose child is started untimed, then one untimed call of \
n/10 messages and 3 timed calls (1 with `--quick`), of which it keeps the median. \
After each call, untimed, the acknowledged counts must equal what was sent.

- **flotilla**: a `pipe(true)` end passed to a forkserver child, as for the round \
trip. Parent: `send_bytes` per message; child: `recv_bytes` per message, and \
`send(&(messages, bytes))` on the end-of-batch message; parent `recv`s that.
- **cpython**: a `pipe()` end passed to a forkserver child. Parent: `send_bytes` per \
message; child: `recv_bytes` per message, and `send((messages, nbytes))` at the end of \
a batch; parent `recv()`s that.
- **ipc-channel**: byte channels to a procspawn child set up as for the round trip. \
Parent: `send(&msg)` per message; child: `recv()` per message, and sends the two \
counts as 16 bytes at the end of a batch.
- **os-limit**: a raw `socketpair(AF_UNIX, SOCK_STREAM)` to a `fork`ed child. The \
parent writes the batch's byte count (8 bytes), then each message with `write` until \
it is out; the child `read`s into a 64 KiB buffer until it has the announced bytes, then \
writes back the count (64 KiB reads measured fastest; 1 MiB ones fall out of the L2 \
cache). A stream has no messages: the child reads whatever has arrived, \
so at small sizes it makes far fewer calls than there are messages, which is the floor \
that a message-framed channel (two reads per message) cannot reach.";

/// The message pattern: `size` bytes, not periodic over short spans.
fn message(size: usize) -> Vec<u8> {
    (0..size as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect()
}

/// Changes the message's first and last bytes, so each call sends different bytes.
fn stamp(message: &mut [u8], counter: &mut u8) {
    *counter = counter.wrapping_add(1);
    let last = message.len() - 1;
    message[0] = *counter;
    message[last] = !*counter;
}

/// The parent's side of one contender's channel to its child.
trait Peer {
    /// Sends one message.
    fn send(&mut self, message: &[u8]) -> anyhow::Result<()>;

    /// Receives one echo of a message of `len` bytes and keeps it; returns its length.
    fn recv_echo(&mut self, len: usize) -> anyhow::Result<usize>;

    /// The echo last received.
    fn last_echo(&self) -> &[u8];

    /// Before a throughput batch of `bytes` bytes: nothing, for a channel of messages.
    fn begin_batch(&mut self, _bytes: u64) -> anyhow::Result<()> {
        Ok(())
    }

    /// Ends a throughput batch and returns the child's acknowledgement: messages and
    /// bytes received.
    fn end_batch(&mut self) -> anyhow::Result<(u64, u64)>;
}

/// The round-trip figure's calls over any [`Peer`] whose child echoes.
struct RoundTrip<P> {
    peer: P,
    message: Vec<u8>,
    counter: u8,
}

impl<P: Peer> Calls for RoundTrip<P> {
    fn call(&mut self, n: usize) -> anyhow::Result<Vec<u64>> {
        let mut lengths = Vec::with_capacity(n);
        for _ in 0..n {
            stamp(&mut self.message, &mut self.counter);
            self.peer.send(&self.message)?;
            lengths.push(self.peer.recv_echo(self.message.len())? as u64);
        }
        Ok(lengths)
    }

    fn verify(&mut self) -> anyhow::Result<()> {
        ensure!(
            self.peer.last_echo() == self.message,
            "the echo differs from the message sent"
        );
        Ok(())
    }
}

/// The throughput figure's calls over any [`Peer`] whose child counts.
struct Throughput<P> {
    peer: P,
    message: Vec<u8>,
    counter: u8,
}

impl<P: Peer> Calls for Throughput<P> {
    fn call(&mut self, n: usize) -> anyhow::Result<Vec<u64>> {
        self.peer.begin_batch((n * self.message.len()) as u64)?;
        for _ in 0..n {
            stamp(&mut self.message, &mut self.counter);
            self.peer.send(&self.message)?;
        }
        let (messages, bytes) = self.peer.end_batch()?;
        Ok(vec![messages, bytes])
    }
}

fn round_trip<P: Peer + 'static>(peer: P, size: usize) -> Batch {
    Box::new(RoundTrip {
        peer,
        message: message(size),
        counter: 0,
    })
}

fn throughput<P: Peer + 'static>(peer: P, size: usize) -> Batch {
    Box::new(Throughput {
        peer,
        message: message(size),
        counter: 0,
    })
}

/// Whether a round-trip call of `n` messages got `n` echoes of `SIZE` bytes.
pub(crate) fn check_round_trip<const SIZE: usize>(n: usize, results: &[u64]) -> bool {
    results.len() == n && results.iter().all(|&len| len == SIZE as u64)
}

/// Whether the child acknowledged `n` messages and `n × SIZE` bytes.
pub(crate) fn check_throughput<const SIZE: usize>(n: usize, results: &[u64]) -> bool {
    results == [n as u64, (n * SIZE) as u64]
}

// ---------------------------------------------------------------------------------------
// flotilla

/// The parent's end of a flotilla `Connection` to a forkserver child.
struct FlotillaPeer {
    conn: Option<Connection>,
    child: Option<Process<u64>>,
    echo: Vec<u8>,
}

impl FlotillaPeer {
    /// Starts `target` in a forkserver child, with the other end of a duplex pipe.
    fn start<F>(target: F) -> anyhow::Result<FlotillaPeer>
    where
        F: Fn(Connection) -> u64 + 'static,
    {
        let (ours, theirs) = pipe(true)?;
        let child = get_context(Some(StartMethod::ForkServer))
            .process(target, theirs)
            .start()?;
        Ok(FlotillaPeer {
            conn: Some(ours),
            child: Some(child),
            echo: Vec::new(),
        })
    }

    fn conn(&self) -> &Connection {
        self.conn.as_ref().expect("open until dropped")
    }
}

impl Peer for FlotillaPeer {
    fn send(&mut self, message: &[u8]) -> anyhow::Result<()> {
        Ok(self.conn().send_bytes(message)?)
    }

    fn recv_echo(&mut self, _len: usize) -> anyhow::Result<usize> {
        self.echo = self.conn().recv_bytes()?;
        Ok(self.echo.len())
    }

    fn last_echo(&self) -> &[u8] {
        &self.echo
    }

    fn end_batch(&mut self) -> anyhow::Result<(u64, u64)> {
        self.conn().send_bytes(END_OF_BATCH)?;
        Ok(self.conn().recv()?)
    }
}

impl Drop for FlotillaPeer {
    fn drop(&mut self) {
        // Closing our end is the child's end of file.
        drop(self.conn.take());
        if let Some(child) = self.child.take() {
            let _ = child.join_timeout(JOIN_TIMEOUT);
        }
    }
}

/// flotilla's echo child: echoes every message until end of file; returns the count.
fn flotilla_echo(conn: Connection) -> u64 {
    let mut echoed = 0;
    loop {
        match conn.recv_bytes() {
            Ok(message) => conn.send_bytes(&message).expect("the parent waits for it"),
            Err(RecvError::Disconnected) => return echoed,
            Err(e) => panic!("echo child: {e}"),
        }
        echoed += 1;
    }
}

/// flotilla's counting child: counts messages and bytes, acknowledges each batch.
fn flotilla_sink(conn: Connection) -> u64 {
    let (mut messages, mut bytes, mut batches) = (0u64, 0u64, 0);
    loop {
        match conn.recv_bytes() {
            Ok(message) if message == END_OF_BATCH => {
                conn.send(&(messages, bytes))
                    .expect("the parent waits for it");
                (messages, bytes) = (0, 0);
                batches += 1;
            }
            Ok(message) => {
                messages += 1;
                bytes += message.len() as u64;
            }
            Err(RecvError::Disconnected) => return batches,
            Err(e) => panic!("counting child: {e}"),
        }
    }
}

/// flotilla: round trips of `SIZE` bytes.
pub(crate) fn flotilla_round_trip<const SIZE: usize>(_threads: usize) -> anyhow::Result<Batch> {
    Ok(round_trip(FlotillaPeer::start(flotilla_echo)?, SIZE))
}

/// flotilla: one-way messages of `SIZE` bytes.
pub(crate) fn flotilla_throughput<const SIZE: usize>(_threads: usize) -> anyhow::Result<Batch> {
    Ok(throughput(FlotillaPeer::start(flotilla_sink)?, SIZE))
}

// ---------------------------------------------------------------------------------------
// ipc-channel

/// What an ipc-channel child sends its parent: the sending side of the parent-to-child
/// channel and the receiving side of the child-to-parent one.
type Channels = (IpcBytesSender, IpcBytesReceiver);

/// The parent's ends of ipc-channel byte channels to a procspawn child.
struct IpcChannelPeer {
    to_child: Option<IpcBytesSender>,
    from_child: IpcBytesReceiver,
    child: Option<procspawn::JoinHandle<u64>>,
    echo: Vec<u8>,
}

impl IpcChannelPeer {
    /// Starts `child` with procspawn, giving it the name of a one-shot server through
    /// which it sends back its channels.
    fn start(child: fn(String) -> u64) -> anyhow::Result<IpcChannelPeer> {
        let (server, name) = IpcOneShotServer::<Channels>::new()?;
        let child = procspawn::spawn(name, child);
        let (_, (to_child, from_child)) = server
            .accept()
            .context("the ipc-channel child never connected")?;
        Ok(IpcChannelPeer {
            to_child: Some(to_child),
            from_child,
            child: Some(child),
            echo: Vec::new(),
        })
    }

    fn to_child(&self) -> &IpcBytesSender {
        self.to_child.as_ref().expect("open until dropped")
    }
}

impl Peer for IpcChannelPeer {
    fn send(&mut self, message: &[u8]) -> anyhow::Result<()> {
        Ok(self.to_child().send(message)?)
    }

    fn recv_echo(&mut self, _len: usize) -> anyhow::Result<usize> {
        self.echo = self.from_child.recv()?;
        Ok(self.echo.len())
    }

    fn last_echo(&self) -> &[u8] {
        &self.echo
    }

    fn end_batch(&mut self) -> anyhow::Result<(u64, u64)> {
        self.to_child().send(END_OF_BATCH)?;
        let ack = self.from_child.recv()?;
        let Ok(ack) = <[u8; 16]>::try_from(ack.as_slice()) else {
            bail!(
                "the ipc-channel child's acknowledgement is {} bytes",
                ack.len()
            );
        };
        let (messages, bytes) = ack.split_at(8);
        Ok((
            u64::from_le_bytes(messages.try_into()?),
            u64::from_le_bytes(bytes.try_into()?),
        ))
    }
}

impl Drop for IpcChannelPeer {
    fn drop(&mut self) {
        // Dropping the only sender disconnects the child's receiver.
        drop(self.to_child.take());
        if let Some(mut child) = self.child.take() {
            let _ = child.join_timeout(JOIN_TIMEOUT);
        }
    }
}

/// Makes the child's two channels and sends the parent its ends through the one-shot
/// server named `server`.
fn ipc_channel_connect(server: String) -> (IpcBytesReceiver, IpcBytesSender) {
    let (to_child, from_parent) = ipc::bytes_channel().expect("a bytes channel");
    let (to_parent, from_child) = ipc::bytes_channel().expect("a bytes channel");
    let boot: IpcSender<Channels> = IpcSender::connect(server).expect("the parent's server");
    boot.send((to_child, from_child))
        .expect("the parent accepts");
    (from_parent, to_parent)
}

/// The next message from the parent, or `None` once the parent's sender is gone. Any
/// other failure ends the child with the error in its message, so that a failed round
/// says why instead of showing up as the parent's broken pipe.
fn ipc_channel_next(from_parent: &IpcBytesReceiver) -> Option<Vec<u8>> {
    match from_parent.recv() {
        Ok(message) => Some(message),
        Err(ipc_channel::IpcError::Disconnected) => None,
        Err(e) => panic!("the ipc-channel child's receive failed: {e:?}"),
    }
}

/// ipc-channel's echo child.
fn ipc_channel_echo(server: String) -> u64 {
    let (from_parent, to_parent) = ipc_channel_connect(server);
    let mut echoed = 0;
    while let Some(message) = ipc_channel_next(&from_parent) {
        to_parent.send(&message).expect("the parent waits for it");
        echoed += 1;
    }
    echoed
}

/// ipc-channel's counting child.
fn ipc_channel_sink(server: String) -> u64 {
    let (from_parent, to_parent) = ipc_channel_connect(server);
    let (mut messages, mut bytes, mut batches) = (0u64, 0u64, 0);
    while let Some(message) = ipc_channel_next(&from_parent) {
        if message == END_OF_BATCH {
            let mut ack = [0u8; 16];
            ack[..8].copy_from_slice(&messages.to_le_bytes());
            ack[8..].copy_from_slice(&bytes.to_le_bytes());
            to_parent.send(&ack).expect("the parent waits for it");
            (messages, bytes) = (0, 0);
            batches += 1;
        } else {
            messages += 1;
            bytes += message.len() as u64;
        }
    }
    batches
}

/// ipc-channel: round trips of `SIZE` bytes.
pub(crate) fn ipc_channel_round_trip<const SIZE: usize>(_threads: usize) -> anyhow::Result<Batch> {
    Ok(round_trip(IpcChannelPeer::start(ipc_channel_echo)?, SIZE))
}

/// ipc-channel: one-way messages of `SIZE` bytes.
pub(crate) fn ipc_channel_throughput<const SIZE: usize>(_threads: usize) -> anyhow::Result<Batch> {
    Ok(throughput(IpcChannelPeer::start(ipc_channel_sink)?, SIZE))
}

// ---------------------------------------------------------------------------------------
// os-limit

/// The parent's end of a raw socket pair to a forked child.
struct RawPeer {
    fd: Option<OwnedFd>,
    pid: libc::pid_t,
    buffer: Vec<u8>,
    /// The length of the echo in `buffer`.
    echo_len: usize,
}

impl RawPeer {
    /// Forks a child that runs `body` on its end of a new socket pair.
    fn start(body: fn(&OwnedFd) -> i32, size: usize) -> anyhow::Result<RawPeer> {
        let (ours, theirs) = os::socketpair()?;
        // SAFETY: the measuring process is single-threaded: contenders run in a fresh
        // process of their own, on its main thread, and this one starts no threads.
        let pid = unsafe { os::fork_with(theirs, &ours, body)? };
        Ok(RawPeer {
            fd: Some(ours),
            pid,
            buffer: vec![0; size],
            echo_len: 0,
        })
    }

    fn fd(&self) -> &OwnedFd {
        self.fd.as_ref().expect("open until dropped")
    }
}

/// An errno from the raw helpers, as an error.
fn errno(op: &'static str) -> impl FnOnce(i32) -> anyhow::Error {
    move |e| anyhow::Error::from(std::io::Error::from_raw_os_error(e)).context(op)
}

impl Peer for RawPeer {
    fn send(&mut self, message: &[u8]) -> anyhow::Result<()> {
        os::write_all(self.fd(), message).map_err(errno("write"))
    }

    fn recv_echo(&mut self, len: usize) -> anyhow::Result<usize> {
        let fd = self.fd.as_ref().expect("open until dropped");
        ensure!(
            os::read_exact(fd, &mut self.buffer[..len]).map_err(errno("read"))?,
            "the raw child closed its end"
        );
        self.echo_len = len;
        Ok(len)
    }

    fn last_echo(&self) -> &[u8] {
        &self.buffer[..self.echo_len]
    }

    fn begin_batch(&mut self, bytes: u64) -> anyhow::Result<()> {
        os::write_all(self.fd(), &bytes.to_le_bytes()).map_err(errno("write"))
    }

    fn end_batch(&mut self) -> anyhow::Result<(u64, u64)> {
        let mut ack = [0u8; 8];
        ensure!(
            os::read_exact(self.fd(), &mut ack).map_err(errno("read"))?,
            "the raw child closed its end"
        );
        let bytes = u64::from_le_bytes(ack);
        // A stream has no messages: count them from the bytes.
        Ok((bytes / self.buffer.len() as u64, bytes))
    }
}

impl Drop for RawPeer {
    fn drop(&mut self) {
        drop(self.fd.take());
        let _ = os::wait_exit_code(self.pid);
    }
}

/// The raw echo child: reads `SIZE` bytes, writes them back, until end of file.
fn raw_echo<const SIZE: usize>(fd: &OwnedFd) -> i32 {
    let mut buffer = vec![0u8; SIZE];
    loop {
        match os::read_exact(fd, &mut buffer) {
            Ok(true) => {
                if os::write_all(fd, &buffer).is_err() {
                    return 1;
                }
            }
            Ok(false) => return 0,
            Err(_) => return 1,
        }
    }
}

/// The raw counting child: for each batch, reads the announced byte count, then that
/// many bytes in reads of up to 64 KiB, and writes the count back. (64 KiB measured
/// fastest here at every size: a 1 MiB buffer falls out of the L2 cache, and at 64 KiB
/// messages halved the rate.)
fn raw_sink(fd: &OwnedFd) -> i32 {
    let mut buffer = vec![0u8; 64 << 10];
    loop {
        let mut header = [0u8; 8];
        match os::read_exact(fd, &mut header) {
            Ok(true) => {}
            Ok(false) => return 0,
            Err(_) => return 1,
        }
        let total = u64::from_le_bytes(header);
        let mut received = 0u64;
        while received < total {
            let want = buffer.len().min((total - received) as usize);
            match os::read_some(fd, &mut buffer[..want]) {
                Ok(0) | Err(_) => return 1,
                Ok(n) => received += n as u64,
            }
        }
        if os::write_all(fd, &received.to_le_bytes()).is_err() {
            return 1;
        }
    }
}

/// os-limit: round trips of `SIZE` bytes on a raw socket pair.
pub(crate) fn os_round_trip<const SIZE: usize>(_threads: usize) -> anyhow::Result<Batch> {
    Ok(round_trip(RawPeer::start(raw_echo::<SIZE>, SIZE)?, SIZE))
}

/// os-limit: one-way bytes in `SIZE`-byte writes on a raw socket pair.
pub(crate) fn os_throughput<const SIZE: usize>(_threads: usize) -> anyhow::Result<Batch> {
    Ok(throughput(RawPeer::start(raw_sink, SIZE)?, SIZE))
}
