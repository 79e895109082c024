//! The messages between the client rank and the worker ranks, on a communicator of
//! their own (a duplicate of the user's, so no user message can match them).
//!
//! | tag | from → to | bytes |
//! |---|---|---|
//! | [`TAG_TASK`] | client → worker | the arguments as the codec encoded them, then the task's id and its entry's offset (8 bytes each, little-endian) |
//! | [`TAG_RESULT`] | worker → client | the value as the codec encoded it (or a message), then the task's id (8 bytes) and a kind byte |
//! | [`TAG_STOP`] | client → worker | nothing: serving ends |
//!
//! A trailer rather than an envelope type, as in flotilla-process's pool: the payload is
//! encoded once, on the submitting thread, and crosses with no re-encoding and no copy
//! (appending to the codec's buffer is free, and the receiver truncates it off).
//! MPI keeps the order of messages between two ranks on one communicator and tag, so a
//! worker runs its tasks in the order they were sent.

/// A task, client to worker.
pub(crate) const TAG_TASK: i32 = 0x46_54;
/// A task's answer, worker to client.
pub(crate) const TAG_RESULT: i32 = 0x46_52;
/// Serving ends, client to worker.
pub(crate) const TAG_STOP: i32 = 0x46_53;

/// How a task ended, in an answer's kind byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The payload is the encoded value.
    Done,
    /// The task panicked; the payload is its message.
    Panicked,
    /// The arguments or the value could not be decoded or encoded; the payload says why.
    Failed,
}

impl Kind {
    fn byte(self) -> u8 {
        match self {
            Kind::Done => b'D',
            Kind::Panicked => b'P',
            Kind::Failed => b'F',
        }
    }

    fn from_byte(byte: u8) -> Option<Kind> {
        match byte {
            b'D' => Some(Kind::Done),
            b'P' => Some(Kind::Panicked),
            b'F' => Some(Kind::Failed),
            _ => None,
        }
    }
}

/// Appends a task's trailer to its encoded arguments: the message to send.
pub(crate) fn task_message(mut args: Vec<u8>, id: u64, entry: u64) -> Vec<u8> {
    args.extend_from_slice(&id.to_le_bytes());
    args.extend_from_slice(&entry.to_le_bytes());
    args
}

/// Splits a task message into its id, its entry and its arguments (the message's own
/// buffer, truncated); `None` when it is too short to be one.
pub(crate) fn parse_task(mut message: Vec<u8>) -> Option<(u64, u64, Vec<u8>)> {
    let at = message.len().checked_sub(16)?;
    let id = u64::from_le_bytes(message[at..at + 8].try_into().ok()?);
    let entry = u64::from_le_bytes(message[at + 8..].try_into().ok()?);
    message.truncate(at);
    Some((id, entry, message))
}

/// Appends an answer's trailer to its payload.
pub(crate) fn result_message(mut payload: Vec<u8>, id: u64, kind: Kind) -> Vec<u8> {
    payload.extend_from_slice(&id.to_le_bytes());
    payload.push(kind.byte());
    payload
}

/// Splits an answer into its task's id, its kind and its payload; `None` when it is
/// malformed.
pub(crate) fn parse_result(mut message: Vec<u8>) -> Option<(u64, Kind, Vec<u8>)> {
    let kind = Kind::from_byte(message.pop()?)?;
    let at = message.len().checked_sub(8)?;
    let id = u64::from_le_bytes(message[at..].try_into().ok()?);
    message.truncate(at);
    Some((id, kind, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_garbage_is_refused() {
        let task = task_message(vec![1, 2, 3], 7, 0xdead_beef);
        assert_eq!(parse_task(task), Some((7, 0xdead_beef, vec![1, 2, 3])));
        assert_eq!(
            parse_task(task_message(Vec::new(), u64::MAX, 0)),
            Some((u64::MAX, 0, Vec::new()))
        );
        assert_eq!(parse_task(vec![0; 15]), None);
        for kind in [Kind::Done, Kind::Panicked, Kind::Failed] {
            let answer = result_message(vec![9; 100], 42, kind);
            assert_eq!(parse_result(answer), Some((42, kind, vec![9; 100])));
        }
        assert_eq!(parse_result(Vec::new()), None);
        assert_eq!(parse_result(vec![b'D'; 8]), None);
        assert_eq!(parse_result(vec![0; 20]), None);
        assert_eq!(
            parse_result(result_message(Vec::new(), 1, Kind::Failed)),
            Some((1, Kind::Failed, Vec::new()))
        );
    }
}
