//! How IPC handles cross a process boundary: one mechanism for every route and type.
//!
//! A value is sent as two parts: its bytes, from the codec (`flotilla_core::codec`), and
//! the file descriptors it holds, which travel out of band (`SCM_RIGHTS` on a Unix
//! socket, or inheritance into a new process). In the bytes, each descriptor is only
//! its index among the descriptors of that message.
//!
//! The link between the two is [`Fd`]: a descriptor that serializes as an index. While
//! [`encode`] runs, serializing an [`Fd`] duplicates the descriptor into the outgoing
//! list; while [`decode`] runs, deserializing one takes the descriptor at its index from
//! the incoming list. Any type that holds an [`Fd`] and derives serde's traits — a
//! `Connection` end, later a queue, a shared segment, a lock, or a user's struct
//! containing any of them — can therefore be sent as a message, passed as a process
//! argument, or given to a pool task, with no code of its own.
//!
//! Serializing an [`Fd`] outside [`encode`] (say, with the plain codec) is an error
//! that names the problem, never a silently broken handle.

use std::cell::RefCell;
use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use flotilla_core::codec::{self, CodecError};
use serde::de::{DeserializeOwned, Error as _};
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

thread_local! {
    /// Descriptors collected by the `encode` running on this thread, if any.
    static OUTGOING: RefCell<Option<Vec<OwnedFd>>> = const { RefCell::new(None) };
    /// Descriptors offered to the `decode` running on this thread, if any.
    static INCOMING: RefCell<Option<Vec<Option<OwnedFd>>>> = const { RefCell::new(None) };
}

/// Why a handle cannot cross while this thread's locals are being destroyed.
const TORN_DOWN: &str = "this thread is exiting (its thread-locals are gone): OS handles can no longer be sent or received";

/// A file descriptor that can be part of a message: it serializes as an index, and the
/// descriptor itself travels beside the bytes.
///
/// ```
/// use std::os::fd::AsFd;
/// use flotilla_ipc::handle::{self, Fd};
///
/// let file = std::fs::File::open("/dev/null").unwrap();
/// let (bytes, fds) = handle::encode(&("a file", Fd::from(file.as_fd().try_clone_to_owned().unwrap()))).unwrap();
/// assert_eq!(fds.len(), 1);
/// let (name, fd): (String, Fd) = handle::decode(&bytes, fds).unwrap();
/// assert_eq!(name, "a file");
/// drop(fd); // closes the received duplicate
/// ```
pub struct Fd(OwnedFd);

impl Fd {
    /// The descriptor.
    pub fn into_inner(self) -> OwnedFd {
        self.0
    }
}

impl From<OwnedFd> for Fd {
    fn from(fd: OwnedFd) -> Self {
        Fd(fd)
    }
}

impl AsFd for Fd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl fmt::Debug for Fd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Fd").field(&self.0).finish()
    }
}

impl Serialize for Fd {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        export(self.0.as_fd(), serializer)
    }
}

impl<'de> Deserialize<'de> for Fd {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        import(deserializer).map(Fd)
    }
}

/// A borrowed descriptor that serializes like an [`Fd`] (through [`export`]), so a type
/// that owns its descriptor can send it without duplicating it first.
pub(crate) struct Exported<'a>(pub(crate) BorrowedFd<'a>);

impl Serialize for Exported<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        export(self.0, serializer)
    }
}

/// Serializes `fd` as its index in the message being encoded, duplicating it into the
/// message's descriptors. For `Serialize` impls of types that hold a descriptor without
/// an [`Fd`] field.
pub fn export<S: Serializer>(fd: BorrowedFd<'_>, serializer: S) -> Result<S::Ok, S::Error> {
    let index = OUTGOING.try_with(|out| -> Result<u32, String> {
        let mut out = out.borrow_mut();
        let Some(out) = out.as_mut() else {
            return Err(
                "this value holds an OS handle (a file descriptor); send it through a \
                 flotilla Connection or pass it to a flotilla process, not through the plain codec"
                    .into(),
            );
        };
        let dup = fd
            .try_clone_to_owned()
            .map_err(|e| format!("could not duplicate a file descriptor to send it: {e}"))?;
        out.push(dup);
        u32::try_from(out.len() - 1).map_err(|_| "too many descriptors in one message".into())
    });
    let index = index.unwrap_or_else(|_| Err(TORN_DOWN.into()));
    index.map_err(S::Error::custom)?.serialize(serializer)
}

/// Deserializes an index written by [`export`] and takes that descriptor from the
/// message being decoded.
pub fn import<'de, D: Deserializer<'de>>(deserializer: D) -> Result<OwnedFd, D::Error> {
    let index = u32::deserialize(deserializer)? as usize;
    let claimed = INCOMING.try_with(|incoming| {
        let mut incoming = incoming.borrow_mut();
        let Some(incoming) = incoming.as_mut() else {
            return Err(D::Error::custom(
                "a handle can only be received through a flotilla Connection or process",
            ));
        };
        match incoming.get_mut(index).map(Option::take) {
            Some(Some(fd)) => Ok(fd),
            Some(None) => Err(D::Error::custom(format!(
                "descriptor {index} of the message is claimed twice"
            ))),
            None => Err(D::Error::custom(format!(
                "the message refers to descriptor {index} but carries {}",
                incoming.len()
            ))),
        }
    });
    claimed.unwrap_or_else(|_| Err(D::Error::custom(TORN_DOWN)))
}

/// Encodes `value`, collecting the descriptors its handles hold: the bytes and the
/// descriptors to send beside them.
///
/// # Errors
///
/// The codec's [`CodecError`] when `value` cannot be encoded (a handle outside a
/// transfer, a serializer's own error, ...): the only failure an encode has.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<(Vec<u8>, Vec<OwnedFd>), CodecError> {
    let mut buf = Vec::new();
    let fds = encode_into(&mut buf, value)?;
    Ok((buf, fds))
}

/// Like [`encode`], appending the bytes to `buf`.
///
/// # Errors
///
/// As for [`encode`].
pub fn encode_into<T: Serialize + ?Sized>(
    buf: &mut Vec<u8>,
    value: &T,
) -> Result<Vec<OwnedFd>, CodecError> {
    // Restore whatever an enclosing encode on this thread had collected, so encodes nest.
    // Once this thread's locals are torn down (an exit handler), `export` refuses
    // handles, and values without any still encode.
    let outer = OUTGOING.try_with(|out| out.replace(Some(Vec::new()))).ok();
    let result = codec::encode_into(buf, value);
    let fds = match outer {
        Some(outer) => OUTGOING.try_with(|out| out.replace(outer)).ok().flatten(),
        None => None,
    }
    .unwrap_or_default();
    result.map(|()| fds)
}

/// Decodes a `T` from `bytes`, its handles taking their descriptors from `fds`.
/// Descriptors the value does not claim are closed. Uses the codec's default size limit.
///
/// # Errors
///
/// The codec's [`CodecError`] when the bytes are not a `T` (or its handles' descriptors
/// are missing or claimed twice): the only failure a decode has.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], fds: Vec<OwnedFd>) -> Result<T, CodecError> {
    decode_with_limit(bytes, fds, codec::DEFAULT_LIMIT)
}

/// Like [`decode`], refusing to allocate beyond `limit` bytes.
///
/// # Errors
///
/// As for [`decode`], and the codec's limit error past `limit`.
pub fn decode_with_limit<T: DeserializeOwned>(
    bytes: &[u8],
    fds: Vec<OwnedFd>,
    limit: u64,
) -> Result<T, CodecError> {
    let incoming = fds.into_iter().map(Some).collect();
    // Once this thread's locals are torn down (an exit handler reading a child's exit
    // status, say), the descriptors are closed and values without handles still decode.
    let outer = INCOMING.try_with(|inc| inc.replace(Some(incoming))).ok();
    let result = codec::decode_with_limit(bytes, limit);
    if let Some(outer) = outer {
        // Dropping what is left closes the descriptors nobody claimed.
        drop(INCOMING.try_with(|inc| inc.replace(outer)));
    }
    result
}
