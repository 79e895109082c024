//! The one codec: how every value that crosses a process boundary becomes bytes and back.
//!
//! Nothing else in flotilla names the serialization crate. Today it is bincode 1.x
//! (finished upstream, RUSTSEC-2025-0141), used with a size limit on every decode; a
//! change of format is a change to this file alone.
//!
//! Why not postcard yet, whose wire format is specified and stable: its serde errors are
//! unit variants, so the message of every custom error is dropped ("Serde Serialization
//! Error"), and flotilla's own errors travel that way — a handle serialized outside a
//! connection, a queue received as the wrong kind, a lock of the wrong type. Moving to it
//! needs those messages carried beside the error first.
//!
//! Decoding never runs code: it builds plain data of the type the caller names, and
//! refuses input that would make it allocate more than the limit.
//!
//! # Decoding as the wrong type
//!
//! The format is not self-describing, so decoding checks what it cheaply can: the bytes
//! must be consumed exactly (trailing bytes are an error, which catches a value read as
//! a shorter type), enum tags and lengths must be in range, strings must be UTF-8. What
//! remains: a value decoded as a *different* type of the same shape (a `u32` read as a
//! `u64`, a struct read as a tuple of the same fields, two enums with the same variants)
//! decodes without error, as with every format that does not describe itself. Typed
//! channels keep both ends agreeing: a `Queue<T>` checks its item type when it is
//! received by another process, a pool task's arguments are typed by its function, and
//! a process's value by its target.
//!
//! [`encode`] and [`encode_into`] call the value's `Serialize` exactly once (no sizing
//! pass first): types that hand out OS handles while being serialized rely on it.
//!
//! The serde functions need the crate feature `codec`; [`CodecError`] is always there,
//! since [`TaskError`](crate::TaskError) can carry one, so a user of the thread crate
//! alone pulls in no serde and no codec.

/// The largest encoded value [`decode`] accepts: 1 GiB.
pub const DEFAULT_LIMIT: u64 = 1 << 30;

/// A value that could not be encoded or decoded.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{what}: {reason}")]
pub struct CodecError {
    what: &'static str,
    reason: String,
}

#[cfg(feature = "codec")]
pub use self::serde_codec::*;

#[cfg(feature = "codec")]
mod serde_codec {
    use bincode::Options;
    use serde::Serialize;
    use serde::de::DeserializeOwned;

    use super::{CodecError, DEFAULT_LIMIT};

    impl CodecError {
        fn new(what: &'static str, err: bincode::Error) -> Self {
            CodecError {
                what,
                reason: err.to_string(),
            }
        }
    }

    /// No bincode limit on either side: when encoding, a limit makes bincode size the value
    /// first, running its `Serialize` twice; when decoding from a slice, bincode ignores it.
    fn options() -> impl Options {
        bincode::DefaultOptions::new().reject_trailing_bytes()
    }

    /// Encodes `value`.
    ///
    /// ```
    /// use flotilla_core::codec;
    ///
    /// let bytes = codec::encode(&(1u8, "two".to_string())).unwrap();
    /// let back: (u8, String) = codec::decode(&bytes).unwrap();
    /// assert_eq!(back, (1, "two".to_string()));
    /// ```
    pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
        let mut buf = Vec::new();
        encode_into(&mut buf, value)?;
        Ok(buf)
    }

    /// Appends the encoding of `value` to `buf` (which keeps its contents on failure
    /// only up to its original length).
    pub fn encode_into<T: Serialize + ?Sized>(
        buf: &mut Vec<u8>,
        value: &T,
    ) -> Result<(), CodecError> {
        let len = buf.len();
        options().serialize_into(&mut *buf, value).map_err(|e| {
            buf.truncate(len);
            CodecError::new("could not encode the value", e)
        })
    }

    /// How many bytes [`encode`] would produce for `value`.
    pub fn encoded_size<T: Serialize + ?Sized>(value: &T) -> Result<u64, CodecError> {
        options()
            .serialized_size(value)
            .map_err(|e| CodecError::new("could not size the value", e))
    }

    /// Decodes a `T` from exactly `bytes`, with the [`DEFAULT_LIMIT`].
    pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
        decode_with_limit(bytes, DEFAULT_LIMIT)
    }

    /// Decodes a `T` from exactly `bytes`, refusing input longer than `limit` bytes.
    ///
    /// Decoding allocates in proportion to the input (serde preallocates cautiously and
    /// every element consumes input), so bounding the input bounds the allocation.
    ///
    /// ```
    /// use flotilla_core::codec;
    ///
    /// let bytes = codec::encode(&vec![0u8; 1000]).unwrap();
    /// assert!(codec::decode_with_limit::<Vec<u8>>(&bytes, 100).is_err());
    /// assert!(codec::decode::<Vec<u8>>(&bytes[..10]).is_err()); // truncated
    /// ```
    pub fn decode_with_limit<T: DeserializeOwned>(
        bytes: &[u8],
        limit: u64,
    ) -> Result<T, CodecError> {
        if bytes.len() as u64 > limit {
            return Err(CodecError {
                what: "refused to decode the value",
                reason: format!("{} bytes is over the limit of {limit}", bytes.len()),
            });
        }
        // bincode ignores its own limit when reading from a slice; the check above is it.
        options()
            .deserialize(bytes)
            .map_err(|e| CodecError::new("could not decode the value", e))
    }
}
