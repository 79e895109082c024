//! The authkey handshake: CPython 3.12+'s mutual HMAC challenge-response, byte for byte.
//!
//! ```text
//! serving side (deliver_challenge)                connecting side (answer_challenge)
//! M = b"{sha256}" + 40 random bytes
//! send  b"#CHALLENGE#" + M                 ──►   check the "#CHALLENGE#" prefix and the
//!                                                 "{sha256}" prefix of M
//!                                          ◄──   send b"{sha256}" + HMAC-SHA256(authkey, M)
//! check the prefix and the MAC length, compare in constant time
//! send b"#WELCOME#" (or b"#FAILURE#")      ──►   the reply must be b"#WELCOME#"
//! ```
//!
//! Then the roles swap and the same runs the other way, so each side proves it holds the
//! key: the server of a connection runs `deliver_challenge` then `answer_challenge`,
//! the client the reverse. Every frame of the handshake is read with CPython's 256-byte
//! limit, and one deadline bounds the whole handshake, both halves together: a peer
//! that answers the first half late has only what is left for the second. The MAC covers `M` with its `{sha256}` prefix, so the digest
//! cannot be downgraded by a peer in the middle.
//!
//! Only SHA-256 is spoken. Python 3.11 and older use the legacy form (a bare 20-byte
//! challenge, a raw 16-byte HMAC-MD5 reply); such a peer is refused with
//! [`AuthError::LegacyPeer`], which says so. CPython 3.12+ also accepts `sha384`,
//! `sha3_256`, `sha3_384` and `md5` prefixes in replies, but always sends `sha256` itself,
//! so a CPython 3.12+ peer passes.
//!
//! For peers outside flotilla's own manager (flotilla-pycompat's connections),
//! [`serve_handshake`] and [`connect_handshake`] run the same handshake on any stream,
//! and can also accept the legacy HMAC-MD5 form (off unless asked for).

use std::fmt;
use std::io::{Read, Write};
use std::time::Duration;

use flotilla_core::Deadline;
use hmac::{Hmac, KeyInit, Mac};
use md5::Md5;
use sha2::Sha256;

use crate::wire::{self, FrameError, HANDSHAKE_MAX_FRAME, Idle, Stream};

const CHALLENGE: &[u8] = b"#CHALLENGE#";
const WELCOME: &[u8] = b"#WELCOME#";
const FAILURE: &[u8] = b"#FAILURE#";
const PREFIX: &[u8] = b"{sha256}";
/// Random bytes in a challenge, as CPython's `MESSAGE_LENGTH`.
const MESSAGE_LENGTH: usize = 40;
/// A legacy (≤ 3.11) challenge: 20 bytes, no prefix.
const LEGACY_CHALLENGE: usize = 20;
/// A legacy reply: a raw 16-byte HMAC-MD5.
const LEGACY_REPLY: usize = 16;
const SHA256_LEN: usize = 32;

/// A manager's shared secret: Python's `authkey`.
///
/// Its `Debug` form never shows the bytes.
///
/// ```
/// use flotilla_manager::AuthKey;
///
/// let key = AuthKey::new(b"secret".to_vec());
/// assert_eq!(format!("{key:?}"), "AuthKey(6 bytes)");
/// assert_eq!(AuthKey::random().unwrap().as_bytes().len(), 32);
/// ```
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuthKey(Vec<u8>);

impl AuthKey {
    /// A key of these bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        AuthKey(bytes.into())
    }

    /// 32 random bytes from the OS.
    pub fn random() -> Result<Self, getrandom::Error> {
        let mut key = vec![0u8; 32];
        getrandom::fill(&mut key)?;
        Ok(AuthKey(key))
    }

    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for AuthKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuthKey({} bytes)", self.0.len())
    }
}

impl From<&[u8]> for AuthKey {
    fn from(bytes: &[u8]) -> Self {
        AuthKey(bytes.to_vec())
    }
}

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// Our reply to the peer's challenge was refused: the keys differ.
    #[error("digest sent was rejected: the peer holds a different authkey")]
    Rejected,
    /// The peer's reply to our challenge was wrong: the keys differ (or it is replaying
    /// an old reply).
    #[error("digest received was wrong: the peer holds a different authkey")]
    WrongDigest,
    /// The peer speaks the legacy HMAC-MD5 handshake of Python 3.11 and older.
    #[error(
        "the peer speaks the legacy HMAC-MD5 handshake of Python 3.11 or older ({0}); \
         flotilla speaks only CPython 3.12+'s HMAC-SHA256: use Python 3.12 or newer"
    )]
    LegacyPeer(&'static str),
    /// The peer sent something that is not a step of the handshake (it may hold no
    /// authkey at all, and be sending its first request).
    #[error("protocol error in the handshake: {0}")]
    Protocol(String),
    /// The server did not go on with the handshake in time (no challenge, or no answer
    /// to our reply): it may be no manager, or one serving TLS to a plain client.
    #[error(
        "the server did not go on with the handshake within {0:?}: it may not be a \
         manager, or may be serving TLS (connect with TLS)"
    )]
    ServerSilent(Duration),
    /// The handshake's frames could not be read or written (timeouts included).
    #[error("the handshake failed: {0}")]
    Frame(#[from] FrameError),
}

fn mac(key: &AuthKey) -> Hmac<Sha256> {
    // HMAC takes keys of any length; this cannot fail.
    <Hmac<Sha256> as KeyInit>::new_from_slice(key.as_bytes()).expect("HMAC accepts any key length")
}

/// CPython's reply to challenge `message` (the bytes after `#CHALLENGE#`):
/// `b"{sha256}" + HMAC-SHA256(key, message)`.
///
/// ```
/// let reply = flotilla_manager::auth::response(
///     &flotilla_manager::AuthKey::new(b"key".to_vec()),
///     b"{sha256}0123456789012345678901234567890123456789",
/// );
/// assert!(reply.starts_with(b"{sha256}"));
/// assert_eq!(reply.len(), 8 + 32);
/// ```
pub fn response(key: &AuthKey, message: &[u8]) -> Vec<u8> {
    let mut m = mac(key);
    m.update(message);
    let mut out = PREFIX.to_vec();
    out.extend_from_slice(&m.finalize().into_bytes());
    out
}

/// A stream the handshake reads: one whose reads it can cap at the time the handshake
/// has left, so the whole handshake ends within its one timeout.
pub(crate) trait Bounded: Read + Write {
    /// Caps each following read's blocking at `left`. Streams that cannot (any stream
    /// handed to [`serve_handshake`]) keep their own read timeout.
    fn cap_reads(&mut self, left: Duration) -> std::io::Result<()> {
        let _ = left;
        Ok(())
    }
}

impl Bounded for Stream {
    fn cap_reads(&mut self, left: Duration) -> std::io::Result<()> {
        // A zero timeout is refused by the OS; the deadline check ends the read loop.
        self.set_read_timeout(Some(left.max(Duration::from_millis(1))))
    }
}

/// Any stream, its read timeout left as its owner set it.
struct Uncapped<'a, S>(&'a mut S);

impl<S: Read> Read for Uncapped<'_, S> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl<S: Write> Write for Uncapped<'_, S> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl<S: Read + Write> Bounded for Uncapped<'_, S> {}

/// The handshake's frames, all under one deadline.
struct Io<'a, S> {
    stream: &'a mut S,
    deadline: Deadline,
    timeout: Duration,
}

impl<S: Bounded> Io<'_, S> {
    fn send(&mut self, bytes: &[u8]) -> Result<(), AuthError> {
        wire::write_frame(self.stream, bytes).map_err(|e| AuthError::Frame(FrameError::Io(e)))
    }

    /// Reads one frame, within what is left of the deadline: no frame (and no read of a
    /// capped stream) outlasts it.
    fn recv(&mut self) -> Result<Vec<u8>, AuthError> {
        let (idle, budget) = match (self.deadline.instant(), self.deadline.remaining()) {
            (Some(end), Some(left)) => {
                if left.is_zero() {
                    return Err(AuthError::Frame(FrameError::Idle));
                }
                self.stream
                    .cap_reads(left.min(self.timeout))
                    .map_err(|e| AuthError::Frame(FrameError::Io(e)))?;
                (Idle::Until(end), left.min(self.timeout))
            }
            _ => (Idle::Forever, self.timeout),
        };
        Ok(wire::read_frame(
            self.stream,
            HANDSHAKE_MAX_FRAME,
            idle,
            budget,
        )?)
    }
}

/// The legacy (≤ 3.11) MAC: HMAC-MD5.
fn legacy_mac(key: &AuthKey) -> Hmac<Md5> {
    // HMAC takes keys of any length; this cannot fail.
    <Hmac<Md5> as KeyInit>::new_from_slice(key.as_bytes()).expect("HMAC accepts any key length")
}

/// Checks `reply` against our challenge `message`, in constant time.
fn verify(key: &AuthKey, message: &[u8], reply: &[u8], legacy: bool) -> Result<(), AuthError> {
    if reply.len() == LEGACY_REPLY && legacy {
        let mut m = legacy_mac(key);
        m.update(message);
        return m.verify_slice(reply).map_err(|_| AuthError::WrongDigest);
    }
    if reply.len() == LEGACY_REPLY {
        return Err(AuthError::LegacyPeer(
            "it answered with a raw 16-byte HMAC-MD5",
        ));
    }
    let Some(tag) = reply.strip_prefix(PREFIX) else {
        return Err(AuthError::Protocol(
            "the reply has no {sha256} prefix (flotilla accepts only sha256)".to_owned(),
        ));
    };
    if tag.len() != SHA256_LEN {
        return Err(AuthError::WrongDigest);
    }
    let mut m = mac(key);
    m.update(message);
    m.verify_slice(tag).map_err(|_| AuthError::WrongDigest)
}

/// The serving side's half: send a fresh challenge, check the reply, say welcome or
/// failure, all before `deadline` (each frame also within `timeout`); `legacy` also
/// accepts a raw HMAC-MD5 reply.
fn deliver<S: Bounded>(
    stream: &mut S,
    key: &AuthKey,
    deadline: Deadline,
    timeout: Duration,
    legacy: bool,
) -> Result<(), AuthError> {
    let mut io = Io {
        stream,
        deadline,
        timeout,
    };
    let mut message = PREFIX.to_vec();
    let mut random = [0u8; MESSAGE_LENGTH];
    getrandom::fill(&mut random)
        .map_err(|e| AuthError::Protocol(format!("no randomness for a challenge: {e}")))?;
    message.extend_from_slice(&random);
    let mut frame = CHALLENGE.to_vec();
    frame.extend_from_slice(&message);
    io.send(&frame)?;
    let reply = io.recv()?;
    match verify(key, &message, &reply, legacy) {
        Ok(()) => io.send(WELCOME),
        Err(e) => {
            // The peer learns only that it failed, as in CPython; a send error changes
            // nothing (the connection is closed next).
            let _ = io.send(FAILURE);
            Err(e)
        }
    }
}

/// The connecting side's half: answer the peer's challenge and expect welcome, all
/// before `deadline`; `legacy` also answers a legacy 20-byte challenge with a raw
/// HMAC-MD5.
fn answer<S: Bounded>(
    stream: &mut S,
    key: &AuthKey,
    deadline: Deadline,
    timeout: Duration,
    legacy: bool,
) -> Result<(), AuthError> {
    let mut io = Io {
        stream,
        deadline,
        timeout,
    };
    let frame = io.recv()?;
    let Some(message) = frame.strip_prefix(CHALLENGE) else {
        return Err(AuthError::Protocol(format!(
            "expected a challenge, got {} bytes starting {:?}",
            frame.len(),
            String::from_utf8_lossy(&frame[..frame.len().min(16)])
        )));
    };
    if message.len() == LEGACY_CHALLENGE && legacy {
        let mut m = legacy_mac(key);
        m.update(message);
        io.send(&m.finalize().into_bytes())?;
    } else if message.len() == LEGACY_CHALLENGE {
        return Err(AuthError::LegacyPeer("it sent a 20-byte challenge"));
    } else if !message.starts_with(PREFIX) {
        return Err(AuthError::Protocol(
            "the challenge has no {sha256} prefix (flotilla speaks only sha256)".to_owned(),
        ));
    } else {
        io.send(&response(key, message))?;
    }
    match io.recv()?.as_slice() {
        WELCOME => Ok(()),
        FAILURE => Err(AuthError::Rejected),
        other => Err(AuthError::Protocol(format!(
            "expected #WELCOME# or #FAILURE#, got {} bytes",
            other.len()
        ))),
    }
}

/// Runs both halves before `deadline` (each frame also within `timeout`), then gives
/// the stream back its read timeout of `timeout`.
fn both_halves(
    stream: &mut Stream,
    key: &AuthKey,
    deadline: Deadline,
    timeout: Duration,
    serving: bool,
) -> Result<(), AuthError> {
    let res = if serving {
        deliver(stream, key, deadline, timeout, false)
            .and_then(|()| answer(stream, key, deadline, timeout, false))
    } else {
        // A server that says nothing is most likely not speaking our protocol at all.
        answer(stream, key, deadline, timeout, false)
            .map_err(|e| match e {
                AuthError::Frame(FrameError::Idle) => AuthError::ServerSilent(timeout),
                e => e,
            })
            .and_then(|()| deliver(stream, key, deadline, timeout, false))
    };
    res?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| AuthError::Frame(FrameError::Io(e)))
}

/// The whole handshake from the server's side: challenge, then answer, both before
/// `deadline` (the connection's one deadline, which a TLS handshake before it shares).
pub(crate) fn server_handshake(
    stream: &mut Stream,
    key: &AuthKey,
    deadline: Deadline,
    timeout: Duration,
) -> Result<(), AuthError> {
    both_halves(stream, key, deadline, timeout, true)
}

/// The whole handshake from the client's side: answer, then challenge, both before
/// `deadline`.
pub(crate) fn client_handshake(
    stream: &mut Stream,
    key: &AuthKey,
    deadline: Deadline,
    timeout: Duration,
) -> Result<(), AuthError> {
    both_halves(stream, key, deadline, timeout, false)
}

/// The serving side's whole handshake (challenge, then answer) on any stream: what
/// CPython's `Listener.accept()` runs. One deadline, `timeout` from the call, bounds
/// both halves together. The stream's read timeout must be set, as it bounds every
/// read: the handshake gives up at the first read that returns after the deadline, so
/// it ends within `timeout` plus at most one read timeout.
///
/// With `legacy_md5`, a Python ≤ 3.11 peer's raw HMAC-MD5 replies and challenges are
/// also accepted (as CPython 3.12+ does); without it such a peer gets
/// [`AuthError::LegacyPeer`].
///
/// ```
/// use std::os::unix::net::UnixStream;
/// use std::time::Duration;
/// use flotilla_manager::{AuthKey, auth};
///
/// let (mut a, mut b) = UnixStream::pair().unwrap();
/// let t = Duration::from_secs(10);
/// a.set_read_timeout(Some(t)).unwrap();
/// b.set_read_timeout(Some(t)).unwrap();
/// let key = AuthKey::new(b"k".to_vec());
/// let k2 = key.clone();
/// let server = std::thread::spawn(move || auth::serve_handshake(&mut a, &k2, false, t));
/// auth::connect_handshake(&mut b, &key, false, t).unwrap();
/// server.join().unwrap().unwrap();
/// ```
pub fn serve_handshake<S: Read + Write>(
    stream: &mut S,
    key: &AuthKey,
    legacy_md5: bool,
    timeout: Duration,
) -> Result<(), AuthError> {
    let deadline = Deadline::after(Some(timeout));
    let mut s = Uncapped(stream);
    deliver(&mut s, key, deadline, timeout, legacy_md5)?;
    answer(&mut s, key, deadline, timeout, legacy_md5)
}

/// The connecting side's whole handshake (answer, then challenge) on any stream: what
/// CPython's `Client(address, authkey=...)` runs. As [`serve_handshake`] otherwise.
pub fn connect_handshake<S: Read + Write>(
    stream: &mut S,
    key: &AuthKey,
    legacy_md5: bool,
    timeout: Duration,
) -> Result<(), AuthError> {
    let deadline = Deadline::after(Some(timeout));
    let mut s = Uncapped(stream);
    answer(&mut s, key, deadline, timeout, legacy_md5)?;
    deliver(&mut s, key, deadline, timeout, legacy_md5)
}
