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
//! # Byte strings
//!
//! serde sees a `Vec<u8>` as a sequence of `u8`, so it is encoded and decoded one byte at
//! a time: about a nanosecond per byte, ten times a copy. A field that holds bytes
//! (flotilla's own encoded arguments and results, or a user's file contents) should be a
//! [`ByteBuf`], or carry `#[serde(with = "flotilla_core::codec::bytes")]`: the same bytes
//! on the wire, encoded and decoded as one copy.
//!
//! The serde functions need the crate feature `codec`; [`CodecError`] is always there,
//! since [`TaskError`](crate::TaskError) can carry one, so a user of the thread crate
//! alone pulls in no serde and no codec.

#[cfg(feature = "codec")]
use std::fmt;

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
        options()
            .serialize_into(VecSink(&mut *buf), value)
            .map_err(|e| {
                buf.truncate(len);
                CodecError::new("could not encode the value", e)
            })
    }

    /// Encodes `value` into `writer`, in as many writes as the encoding takes (a byte
    /// string is one write). For a destination that is not a `Vec`, such as a queue's
    /// shared ring.
    ///
    /// ```
    /// use flotilla_core::codec;
    ///
    /// let mut out = std::io::Cursor::new([0u8; 16]);
    /// codec::encode_to(&mut out, &7u8).unwrap();
    /// assert_eq!(out.position(), 1);
    /// assert!(codec::encode_to(&mut [0u8; 2][..], &"too long").is_err());
    /// ```
    pub fn encode_to<W: std::io::Write, T: Serialize + ?Sized>(
        writer: W,
        value: &T,
    ) -> Result<(), CodecError> {
        options()
            .serialize_into(writer, value)
            .map_err(|e| CodecError::new("could not encode the value", e))
    }

    /// Encodes `value` into `writer`, which gets exactly `size` bytes, the value's
    /// [`encoded_size`] measured before: a `Serialize` that writes more (the value
    /// changed in between, or its encoding is not deterministic) fails at the first byte
    /// beyond, before `writer` sees it, and one that writes fewer fails at its end. For
    /// a destination that must know the length first, such as a queue's ring.
    ///
    /// ```
    /// use flotilla_core::codec;
    ///
    /// let value = vec![1u32, 2, 3];
    /// let size = codec::encoded_size(&value).unwrap();
    /// let mut out = Vec::new();
    /// codec::encode_sized(&mut out, &value, size).unwrap();
    /// assert_eq!(out, codec::encode(&value).unwrap());
    /// assert!(codec::encode_sized(&mut Vec::new(), &value, size - 1).is_err());
    /// assert!(codec::encode_sized(&mut Vec::new(), &value, size + 1).is_err());
    /// ```
    pub fn encode_sized<W: std::io::Write, T: Serialize + ?Sized>(
        writer: W,
        value: &T,
        size: u64,
    ) -> Result<(), CodecError> {
        let mut exact = Exact {
            writer,
            left: size,
            over: false,
        };
        let encoded = encode_to(&mut exact, value);
        let wrong = |wrote: &str| CodecError {
            what: "could not encode the value",
            reason: format!("it encoded to {wrote} bytes than the {size} it was sized at"),
        };
        match encoded {
            Err(_) if exact.over => Err(wrong("more")),
            Err(e) => Err(e),
            Ok(()) if exact.left > 0 => Err(wrong("fewer")),
            Ok(()) => Ok(()),
        }
    }

    /// Appends the encoding of `value` to `out` if it is at most `cap` bytes long: true
    /// when it was, false when it is longer (then `out` holds its first bytes, and
    /// encoding stopped there). For a destination that takes short values one way and
    /// long ones another, such as a queue's ring.
    ///
    /// ```
    /// use flotilla_core::codec;
    ///
    /// let mut out = Vec::new();
    /// assert!(codec::encode_capped(&mut out, &[7u8; 4], 4).unwrap());
    /// assert_eq!(out, [7; 4]);
    /// out.clear();
    /// assert!(!codec::encode_capped(&mut out, &[7u8; 5], 4).unwrap());
    /// ```
    pub fn encode_capped<T: Serialize + ?Sized>(
        out: &mut Vec<u8>,
        value: &T,
        cap: usize,
    ) -> Result<bool, CodecError> {
        let mut capped = Exact {
            writer: VecSink(out),
            left: cap as u64,
            over: false,
        };
        match encode_to(&mut capped, value) {
            Ok(()) => Ok(true),
            Err(_) if capped.over => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// A `Vec` as a writer whose long writes go through [`crate::copy::extend`]: a byte
    /// string written after its length lands a few bytes ahead of where its source sits
    /// in its page, where a plain `memcpy` can be ten times slower (see `copy`).
    struct VecSink<'a>(&'a mut Vec<u8>);

    impl std::io::Write for VecSink<'_> {
        #[inline]
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            crate::copy::extend(self.0, buf);
            Ok(buf.len())
        }

        #[inline]
        fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
            crate::copy::extend(self.0, buf);
            Ok(())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A slice as the decoder's reader, as bincode's own but for the copy of an owned
    /// byte buffer (a `String`, a byte string), which goes through [`crate::copy`]
    /// for the reason [`VecSink`] gives.
    struct SliceSource<'a>(&'a [u8]);

    impl<'a> SliceSource<'a> {
        fn take(&mut self, len: usize) -> bincode::Result<&'a [u8]> {
            if len > self.0.len() {
                return Err(Box::new(bincode::ErrorKind::Io(
                    std::io::ErrorKind::UnexpectedEof.into(),
                )));
            }
            let (taken, rest) = self.0.split_at(len);
            self.0 = rest;
            Ok(taken)
        }
    }

    impl std::io::Read for SliceSource<'_> {
        #[inline]
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.0.read(buf)
        }

        #[inline]
        fn read_exact(&mut self, buf: &mut [u8]) -> std::io::Result<()> {
            self.0.read_exact(buf)
        }
    }

    impl<'a> bincode::BincodeRead<'a> for &mut SliceSource<'a> {
        fn forward_read_str<V: serde::de::Visitor<'a>>(
            &mut self,
            length: usize,
            visitor: V,
        ) -> bincode::Result<V::Value> {
            match std::str::from_utf8(self.take(length)?) {
                Ok(s) => visitor.visit_borrowed_str(s),
                Err(e) => Err(Box::new(bincode::ErrorKind::InvalidUtf8Encoding(e))),
            }
        }

        fn get_byte_buffer(&mut self, length: usize) -> bincode::Result<Vec<u8>> {
            let bytes = self.take(length)?;
            let mut owned = Vec::with_capacity(length);
            crate::copy::extend(&mut owned, bytes);
            Ok(owned)
        }

        fn forward_read_bytes<V: serde::de::Visitor<'a>>(
            &mut self,
            length: usize,
            visitor: V,
        ) -> bincode::Result<V::Value> {
            visitor.visit_borrowed_bytes(self.take(length)?)
        }
    }

    /// A writer that takes at most `left` more bytes.
    struct Exact<W> {
        writer: W,
        left: u64,
        over: bool,
    }

    impl<W> Exact<W> {
        /// Refuses a write of `len` bytes that would go beyond, noting it in `over`.
        #[inline]
        fn admit(&mut self, len: usize) -> std::io::Result<()> {
            if len as u64 > self.left {
                self.over = true;
                return Err(std::io::Error::other("more bytes than allowed"));
            }
            Ok(())
        }
    }

    impl<W: std::io::Write> std::io::Write for Exact<W> {
        #[inline]
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.admit(buf.len())?;
            let n = self.writer.write(buf)?;
            self.left -= n as u64;
            Ok(n)
        }

        #[inline]
        fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
            self.admit(buf.len())?;
            self.writer.write_all(buf)?;
            self.left -= buf.len() as u64;
            Ok(())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            self.writer.flush()
        }
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
        let mut source = SliceSource(bytes);
        let value = options()
            .deserialize_from_custom(&mut source)
            .map_err(|e| CodecError::new("could not decode the value", e))?;
        // (bincode checks for bytes left over only in its own slice reader.)
        if !source.0.is_empty() {
            return Err(CodecError {
                what: "could not decode the value",
                reason: format!("{} bytes were left after it", source.0.len()),
            });
        }
        Ok(value)
    }

    /// Decodes a `T` from all the bytes `reader` gives, refusing more than `limit` bytes:
    /// for input that is not in one slice, such as a message read in pieces. Byte
    /// strings ([`ByteBuf`](super::ByteBuf), [`bytes`](super::bytes)) are read straight
    /// into the value, one copy; small reads are served from an 8 KiB buffer.
    ///
    /// As with [`decode`], the value must use the input exactly: bytes left after it
    /// are an error. Only the next buffered read is looked at for them, so a caller that
    /// must consume the whole input (as the queue's ring does) skips what is left itself.
    ///
    /// ```
    /// use flotilla_core::codec::{self, ByteBuf};
    ///
    /// let bytes = codec::encode(&(7u8, ByteBuf::from(vec![1u8; 100_000]))).unwrap();
    /// let (n, data): (u8, ByteBuf) = codec::decode_from(&bytes[..], 1 << 20).unwrap();
    /// assert_eq!((n, data.len()), (7, 100_000));
    /// assert!(codec::decode_from::<u8, _>(&bytes[..], 1 << 20).is_err()); // trailing bytes
    /// assert!(codec::decode_from::<(u8, ByteBuf), _>(&bytes[..], 1000).is_err()); // the limit
    /// ```
    pub fn decode_from<T: DeserializeOwned, R: std::io::Read>(
        reader: R,
        limit: u64,
    ) -> Result<T, CodecError> {
        decode_from_source(Plain(reader), limit)
    }

    /// A reader of bytes that can append a run of them to a `Vec` itself: without the
    /// zero-filling that reading into a slice needs first, and in as few copies as its
    /// storage allows (a queue's ring hands a byte string over chunk by chunk, straight
    /// into the value's `Vec`).
    pub trait ByteSource: std::io::Read {
        /// Appends exactly `len` bytes to `out`, or fails (an `UnexpectedEof` if there
        /// are fewer). The default fills zeros and reads over them.
        ///
        /// # Errors
        ///
        /// What reading fails with; `out` may then hold some of the bytes.
        fn read_into_vec(&mut self, out: &mut Vec<u8>, len: usize) -> std::io::Result<()> {
            let start = out.len();
            out.resize(start + len, 0);
            self.read_exact(&mut out[start..])
        }
    }

    impl<S: ByteSource + ?Sized> ByteSource for &mut S {
        fn read_into_vec(&mut self, out: &mut Vec<u8>, len: usize) -> std::io::Result<()> {
            (**self).read_into_vec(out, len)
        }
    }

    /// [`decode_from`] for a [`ByteSource`]: byte strings and strings are appended to
    /// their `Vec` by the source itself, not read over zeros.
    ///
    /// ```
    /// use flotilla_core::codec::{self, ByteBuf, ByteSource};
    ///
    /// struct Slice<'a>(&'a [u8]);
    /// impl std::io::Read for Slice<'_> {
    ///     fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
    ///         self.0.read(buf)
    ///     }
    /// }
    /// impl ByteSource for Slice<'_> {
    ///     fn read_into_vec(&mut self, out: &mut Vec<u8>, len: usize) -> std::io::Result<()> {
    ///         let (run, rest) = self.0.split_at_checked(len).ok_or(std::io::ErrorKind::UnexpectedEof)?;
    ///         out.extend_from_slice(run);
    ///         self.0 = rest;
    ///         Ok(())
    ///     }
    /// }
    ///
    /// let bytes = codec::encode(&(7u8, ByteBuf::from(vec![1u8; 100_000]))).unwrap();
    /// let (n, data): (u8, ByteBuf) = codec::decode_from_source(Slice(&bytes), 1 << 20).unwrap();
    /// assert_eq!((n, data.len()), (7, 100_000));
    /// assert!(codec::decode_from_source::<u8, _>(Slice(&bytes), 1 << 20).is_err()); // trailing bytes
    /// ```
    pub fn decode_from_source<T: DeserializeOwned, S: ByteSource>(
        source: S,
        limit: u64,
    ) -> Result<T, CodecError> {
        use std::io::BufRead;
        let mut reader = Buffered {
            reader: std::io::BufReader::with_capacity(8 << 10, source),
            scratch: Vec::new(),
        };
        let value = options()
            .with_limit(limit)
            .deserialize_from_custom(&mut reader)
            .map_err(|e| CodecError::new("could not decode the value", e))?;
        match reader.reader.fill_buf() {
            Ok([]) => Ok(value),
            Ok(_) => Err(CodecError {
                what: "could not decode the value",
                reason: "bytes were left after it".into(),
            }),
            Err(e) => Err(CodecError::new("could not decode the value", e.into())),
        }
    }

    /// A plain reader as a [`ByteSource`] (the default, zero-filling `read_into_vec`).
    struct Plain<R>(R);

    impl<R: std::io::Read> std::io::Read for Plain<R> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.0.read(buf)
        }
    }

    impl<R: std::io::Read> ByteSource for Plain<R> {}

    /// A source behind a buffer for the decoder's small reads; runs of bytes longer than
    /// what is buffered go to the source's [`ByteSource::read_into_vec`].
    struct Buffered<S> {
        reader: std::io::BufReader<S>,
        /// Reused for the runs that are only lent to the visitor.
        scratch: Vec<u8>,
    }

    impl<S: ByteSource> Buffered<S> {
        /// Appends the next `len` bytes to `out`.
        fn take(&mut self, out: &mut Vec<u8>, len: usize) -> bincode::Result<()> {
            use std::io::BufRead;
            // `len` is within the decoder's limit (checked before it asks), as the
            // allocation of bincode's own reader is.
            out.reserve_exact(len);
            let buffered = self.reader.buffer();
            let n = buffered.len().min(len);
            crate::copy::extend(out, &buffered[..n]);
            self.reader.consume(n);
            if n < len {
                // The buffer is empty: the source goes on where it left off.
                self.reader.get_mut().read_into_vec(out, len - n)?;
            }
            Ok(())
        }

        /// Lends the next `len` bytes to `visit`, in the reused scratch buffer.
        fn visit_lent<R>(
            &mut self,
            len: usize,
            visit: impl FnOnce(&[u8]) -> bincode::Result<R>,
        ) -> bincode::Result<R> {
            let mut bytes = std::mem::take(&mut self.scratch);
            bytes.clear();
            self.take(&mut bytes, len)?;
            let visited = visit(&bytes);
            self.scratch = bytes;
            visited
        }
    }

    impl<S: std::io::Read> std::io::Read for Buffered<S> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.reader.read(buf)
        }

        fn read_exact(&mut self, buf: &mut [u8]) -> std::io::Result<()> {
            self.reader.read_exact(buf)
        }
    }

    /// On a reference, so that the caller keeps the reader to look for trailing bytes.
    impl<'de, S: ByteSource> bincode::BincodeRead<'de> for &mut Buffered<S> {
        fn forward_read_str<V: serde::de::Visitor<'de>>(
            &mut self,
            length: usize,
            visitor: V,
        ) -> bincode::Result<V::Value> {
            self.visit_lent(length, |bytes| match std::str::from_utf8(bytes) {
                Ok(s) => visitor.visit_str(s),
                Err(e) => Err(Box::new(bincode::ErrorKind::InvalidUtf8Encoding(e))),
            })
        }

        fn get_byte_buffer(&mut self, length: usize) -> bincode::Result<Vec<u8>> {
            let mut bytes = Vec::new();
            self.take(&mut bytes, length)?;
            Ok(bytes)
        }

        fn forward_read_bytes<V: serde::de::Visitor<'de>>(
            &mut self,
            length: usize,
            visitor: V,
        ) -> bincode::Result<V::Value> {
            self.visit_lent(length, |bytes| visitor.visit_bytes(bytes))
        }
    }
}

#[cfg(feature = "codec")]
pub mod bytes {
    //! `#[serde(with = "flotilla_core::codec::bytes")]` for a `Vec<u8>` field: encoded as
    //! one byte string instead of a sequence of `u8`.
    //!
    //! The encoding is the same as the field's without the attribute (a length, then the
    //! bytes), so adding it changes no wire format; only the speed changes.
    //!
    //! ```
    //! use flotilla_core::codec;
    //! use serde::{Deserialize, Serialize};
    //!
    //! #[derive(Serialize, Deserialize)]
    //! struct Chunk {
    //!     offset: u64,
    //!     #[serde(with = "flotilla_core::codec::bytes")]
    //!     data: Vec<u8>,
    //! }
    //!
    //! let chunk = Chunk { offset: 7, data: vec![1; 1 << 20] };
    //! let back: Chunk = codec::decode(&codec::encode(&chunk).unwrap()).unwrap();
    //! assert_eq!((back.offset, back.data.len()), (7, 1 << 20));
    //! ```

    use std::fmt;

    use serde::de::{self, SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};

    /// Encodes `bytes` as one byte string.
    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(bytes)
    }

    /// Decodes a byte string (or, from a format that gives a sequence, a sequence of
    /// `u8`).
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        deserializer.deserialize_byte_buf(ByteBufVisitor)
    }

    struct ByteBufVisitor;

    impl<'de> Visitor<'de> for ByteBufVisitor {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a byte string")
        }

        fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }

        fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            // Cautious preallocation: a length from the input is not trusted.
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
            while let Some(b) = seq.next_element()? {
                out.push(b);
            }
            Ok(out)
        }
    }
}

/// A `Vec<u8>` that crosses a process boundary as one copy: return it from a process
/// target or a pool task, put it on a queue, send it on a connection.
///
/// A plain `Vec<u8>` works too, but serde encodes and decodes it one byte at a time (see
/// [Byte strings](self#byte-strings)); for a megabyte that is about a millisecond each
/// way, for a `ByteBuf` a copy. Both encode to the same bytes, so either end may use
/// either type.
///
/// ```
/// use flotilla_core::codec::{self, ByteBuf};
///
/// let data = ByteBuf::from(vec![7u8; 1 << 20]);
/// let bytes = codec::encode(&data).unwrap();
/// assert_eq!(bytes, codec::encode(&vec![7u8; 1 << 20]).unwrap()); // the same wire bytes
/// let back: ByteBuf = codec::decode(&bytes).unwrap();
/// assert_eq!(back.len(), 1 << 20);
/// let plain: Vec<u8> = back.into_vec();
/// # drop(plain);
/// ```
#[cfg(feature = "codec")]
#[derive(
    Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct ByteBuf(#[serde(with = "bytes")] Vec<u8>);

#[cfg(feature = "codec")]
impl ByteBuf {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// The bytes, as a `Vec`.
    pub fn into_vec(self) -> Vec<u8> {
        self.0
    }
}

#[cfg(feature = "codec")]
impl fmt::Debug for ByteBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ByteBuf({} bytes)", self.0.len())
    }
}

#[cfg(feature = "codec")]
impl From<Vec<u8>> for ByteBuf {
    fn from(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }
}

#[cfg(feature = "codec")]
impl From<&[u8]> for ByteBuf {
    fn from(bytes: &[u8]) -> Self {
        Self(bytes.to_vec())
    }
}

#[cfg(feature = "codec")]
impl From<ByteBuf> for Vec<u8> {
    fn from(bytes: ByteBuf) -> Self {
        bytes.0
    }
}

#[cfg(feature = "codec")]
impl std::ops::Deref for ByteBuf {
    type Target = Vec<u8>;

    fn deref(&self) -> &Vec<u8> {
        &self.0
    }
}

#[cfg(feature = "codec")]
impl std::ops::DerefMut for ByteBuf {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }
}

#[cfg(feature = "codec")]
impl std::borrow::Borrow<[u8]> for ByteBuf {
    fn borrow(&self) -> &[u8] {
        &self.0
    }
}

#[cfg(feature = "codec")]
impl AsRef<[u8]> for ByteBuf {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

#[cfg(all(test, feature = "codec"))]
mod tests {
    use super::*;

    /// A reader that gives at most `step` bytes a read.
    struct Trickle<'a> {
        bytes: &'a [u8],
        step: usize,
    }

    impl std::io::Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.step.min(buf.len()).min(self.bytes.len());
            buf[..n].copy_from_slice(&self.bytes[..n]);
            self.bytes = &self.bytes[n..];
            Ok(n)
        }
    }

    #[test]
    fn decode_from_reads_values_on_both_sides_of_its_buffer() {
        // Byte strings just under, at and over the 8 KiB read buffer, between fields.
        for len in [
            0usize,
            1,
            (8 << 10) - 9,
            (8 << 10) - 8,
            8 << 10,
            (8 << 10) + 1,
            1 << 20,
        ] {
            let value = (3u64, ByteBuf::from(vec![len as u8; len]), vec![1u32, 2, 3]);
            let bytes = encode(&value).unwrap();
            for step in [1, 7, 4096, usize::MAX] {
                if step == 1 && len > 1 << 16 {
                    continue;
                }
                let back: (u64, ByteBuf, Vec<u32>) = decode_from(
                    Trickle {
                        bytes: &bytes,
                        step,
                    },
                    bytes.len() as u64,
                )
                .unwrap();
                assert!(back == value, "len {len}, step {step}");
            }
            // One byte short is an error, as is one byte over.
            let short = &bytes[..bytes.len() - 1];
            assert!(decode_from::<(u64, ByteBuf, Vec<u32>), _>(short, 1 << 30).is_err());
            let mut long = bytes.clone();
            long.push(0);
            assert!(decode_from::<(u64, ByteBuf, Vec<u32>), _>(&long[..], 1 << 30).is_err());
        }
    }

    #[test]
    fn decode_from_refuses_a_length_beyond_the_limit_before_allocating() {
        // A byte string that claims 2^60 bytes.
        let mut bytes = vec![253u8];
        bytes.extend_from_slice(&(1u64 << 60).to_le_bytes());
        let err = decode_from::<ByteBuf, _>(&bytes[..], 1 << 20).unwrap_err();
        assert!(err.to_string().contains("could not decode"), "{err}");
    }
}
