//! The manager's messages after the handshake: requests carrying a request id, replies
//! carrying the same id, both encoded with flotilla's one codec inside a frame.
//!
//! A client may send many requests before reading any reply (pipelining); the server may
//! answer them in any order (a parked `Queue::get` answers late), and the id pairs them.
//! Request id 0 asks for no reply (releases, sent from `Drop`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// An object's id on its server: a counter, never an address, and never reused while the
/// server runs.
pub(crate) type ObjectId = u64;

/// A request from a client.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Request {
    /// Chosen by the client; 0 means "send no reply".
    pub(crate) id: u64,
    pub(crate) op: Op,
}

/// What a request asks.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Op {
    /// Nothing: checks the server answers (Python's `dummy`).
    Ping,
    /// A new object of a registered type; the reply is its [`ObjectId`], and the calling
    /// connection holds the one reference.
    Create {
        typeid: String,
        #[serde(with = "flotilla_core::codec::bytes")]
        args: Vec<u8>,
    },
    /// A method of an object the calling connection holds. `timeout` bounds a blocking
    /// method on the server (None: no bound). `refs`: the tickets of the proxies
    /// serialized into `args`; a method that stores a value holding one of them keeps
    /// that proxy's object alive while the value is stored (a stored proxy).
    Call {
        object: ObjectId,
        method: String,
        #[serde(with = "flotilla_core::codec::bytes")]
        args: Vec<u8>,
        timeout: Option<Duration>,
        refs: Vec<Ticket>,
    },
    /// Drops one of the calling connection's references to `object`.
    Release { object: ObjectId },
    /// Makes a transfer ticket for `object` (the ticket holds a reference of its own until
    /// claimed); the reply is the [`Ticket`].
    Share { object: ObjectId },
    /// Turns a ticket into a reference of the calling connection; the reply is
    /// `(ObjectId, typeid)`.
    Claim { ticket: Ticket },
    /// How many objects the server holds (Python's `number_of_objects`).
    NumberOfObjects,
    /// Stop the server once this request is answered.
    Shutdown,
    /// A reference to the object the server program registered under `name`
    /// (Python's `BaseManager.register("get_queue", callable)` then `m.get_queue()`); the
    /// reply is `(ObjectId, typeid)`.
    Lookup { name: String },
}

/// A transfer ticket: 128 random bits naming a reference in transit.
pub(crate) type Ticket = [u8; 16];

/// A reply.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Response {
    pub(crate) id: u64,
    #[serde(with = "reply_bytes")]
    pub(crate) result: Result<Vec<u8>, RemoteError>,
}

/// A reply's result with its bytes encoded as one byte string (see
/// `flotilla_core::codec::bytes`): the same wire bytes as the plain `Result`, without
/// serde's byte-at-a-time `Vec<u8>`, which made a large value's reply cost more than its
/// trip.
mod reply_bytes {
    use flotilla_core::codec::ByteBuf;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::RemoteError;

    /// Borrowed bytes serialized as one byte string.
    struct Bytes<'a>(&'a [u8]);

    impl Serialize for Bytes<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.serialize_bytes(self.0)
        }
    }

    pub(super) fn serialize<S: Serializer>(
        result: &Result<Vec<u8>, RemoteError>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        // As serde's own `Result` impl does, variant by variant.
        match result {
            Ok(bytes) => serializer.serialize_newtype_variant("Result", 0, "Ok", &Bytes(bytes)),
            Err(e) => serializer.serialize_newtype_variant("Result", 1, "Err", e),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Result<Vec<u8>, RemoteError>, D::Error> {
        Ok(Result::<ByteBuf, RemoteError>::deserialize(deserializer)?.map(ByteBuf::into_vec))
    }
}

/// An error the server reports for one request; the connection goes on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct RemoteError {
    /// What kind of failure.
    pub kind: RemoteErrorKind,
    /// The server's message.
    pub message: String,
}

impl RemoteError {
    /// An error of `kind` saying `message`.
    pub fn new(kind: RemoteErrorKind, message: impl Into<String>) -> Self {
        RemoteError {
            kind,
            message: message.into(),
        }
    }
}

/// The kinds of [`RemoteError`], named after the Python exception each stands for where
/// there is one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum RemoteErrorKind {
    /// No object of that id is held by this connection.
    NoSuchObject,
    /// No type of that name is registered on the server.
    NoSuchType,
    /// The object has no method of that name.
    NoSuchMethod,
    /// The arguments did not decode as the method's.
    BadArguments,
    /// Python's `KeyError`.
    KeyError,
    /// Python's `IndexError`.
    IndexError,
    /// Python's `AttributeError` (a `Namespace` without that name).
    AttributeError,
    /// Python's `ValueError` (e.g. a stored value of another type than the operation
    /// needs).
    ValueError,
    /// Python's `RuntimeError` (e.g. releasing an unlocked lock).
    RuntimeError,
    /// The method panicked; the message is the panic's. The server goes on.
    Panicked,
    /// The request was not answered because its object went away or the server is
    /// shutting down.
    Gone,
    /// The ticket is unknown or was claimed already.
    BadTicket,
    /// No object is registered under that name on the server.
    NoSuchName,
    /// Python's `BrokenBarrierError`: the barrier was aborted, or a wait timed out, or a
    /// waiting client went away.
    BrokenBarrier,
}

impl std::fmt::Display for RemoteErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use flotilla_core::codec;
    use serde::Serialize;

    use super::*;

    /// The byte fields' encoding changed only in speed: the same bytes as a plain
    /// `Vec<u8>` (what a peer built before it sent), both ways.
    #[test]
    fn byte_fields_keep_the_plain_wire_format() {
        #[derive(Serialize)]
        struct PlainResponse {
            id: u64,
            result: Result<Vec<u8>, RemoteError>,
        }
        #[derive(Serialize)]
        enum PlainOp {
            #[allow(dead_code)]
            Ping,
            Create {
                typeid: String,
                args: Vec<u8>,
            },
        }
        for len in [0, 1, 250, 251, 70_000] {
            let bytes: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
            let ok = Response {
                id: 7,
                result: Ok(bytes.clone()),
            };
            let plain = PlainResponse {
                id: 7,
                result: Ok(bytes.clone()),
            };
            let wire = codec::encode(&ok).unwrap();
            assert_eq!(wire, codec::encode(&plain).unwrap(), "length {len}");
            let back: Response = codec::decode(&wire).unwrap();
            assert_eq!(back.result.unwrap(), bytes);

            let create = Op::Create {
                typeid: "dict".into(),
                args: bytes.clone(),
            };
            let plain = PlainOp::Create {
                typeid: "dict".into(),
                args: bytes.clone(),
            };
            assert_eq!(
                codec::encode(&create).unwrap(),
                codec::encode(&plain).unwrap()
            );
        }
        let err = Response {
            id: 9,
            result: Err(RemoteError {
                kind: RemoteErrorKind::ValueError,
                message: "no".into(),
            }),
        };
        let plain = PlainResponse {
            id: 9,
            result: Err(RemoteError {
                kind: RemoteErrorKind::ValueError,
                message: "no".into(),
            }),
        };
        let wire = codec::encode(&err).unwrap();
        assert_eq!(wire, codec::encode(&plain).unwrap());
        let back: Response = codec::decode(&wire).unwrap();
        assert_eq!(back.result.unwrap_err().message, "no");
    }
}
