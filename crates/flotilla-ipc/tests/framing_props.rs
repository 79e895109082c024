//! Properties of the framing: arbitrary messages round-trip, and arbitrary bytes on the
//! wire never make the receiver panic.

use std::time::Duration;

use flotilla_ipc::{Connection, RecvError, pipe};
use proptest::prelude::*;

const LONG: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
enum Value {
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
    List(Vec<(u8, Option<f32>)>),
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::Int),
        ".{0,40}".prop_map(Value::Text),
        proptest::collection::vec(any::<u8>(), 0..2000).prop_map(Value::Bytes),
        proptest::collection::vec(
            any::<(u8, Option<f32>)>()
                .prop_filter("no NaN", |(_, f)| f.is_none_or(|f| !f.is_nan())),
            0..20
        )
        .prop_map(Value::List),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn byte_messages_round_trip(messages in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..70_000), 0..12),
                                duplex in any::<bool>()) {
        let (rx, tx) = if duplex { pipe(true).unwrap() } else { pipe(false).unwrap() };
        let expected = messages.clone();
        // A writer thread, so messages larger than the kernel buffer cannot deadlock.
        let writer = std::thread::spawn(move || {
            for m in &messages {
                tx.send_bytes(m).unwrap();
            }
        });
        for m in &expected {
            prop_assert_eq!(&rx.recv_bytes().unwrap(), m);
        }
        writer.join().unwrap();
        prop_assert!(matches!(rx.recv_bytes(), Err(RecvError::Disconnected)));
    }

    #[test]
    fn value_sequences_round_trip(values in proptest::collection::vec(value(), 0..30)) {
        let (a, b) = pipe(true).unwrap();
        let expected = values.clone();
        let writer = std::thread::spawn(move || {
            for v in &values {
                a.send(v).unwrap();
            }
        });
        for v in &expected {
            prop_assert_eq!(&b.recv_timeout::<Value>(LONG).unwrap(), v);
        }
        writer.join().unwrap();
    }

    #[test]
    fn arbitrary_bytes_on_the_wire_never_panic(junk in proptest::collection::vec(any::<u8>(), 0..512),
                                               with_header in any::<bool>(), len in 0u64..600) {
        let (a, mut b) = pipe(true).unwrap();
        b.set_max_frame(512);
        let mut bytes = Vec::new();
        if with_header {
            // A well-formed header over arbitrary content.
            bytes.extend_from_slice(&len.to_le_bytes());
            bytes.extend_from_slice(&0u32.to_le_bytes());
            bytes.extend_from_slice(b"FLT1");
        }
        bytes.extend_from_slice(&junk);
        let raw = Connection::from_socket(std::os::fd::AsFd::as_fd(&a).try_clone_to_owned().unwrap());
        drop(a);
        // Write the raw bytes through a frame-free route: a plain write on the socket.
        let written = nix::unistd::write(&raw, &bytes).unwrap();
        prop_assert_eq!(written, bytes.len());
        drop(raw);
        for _ in 0..4 {
            // Every outcome is a value or an error; none is a panic or a hang.
            let _ = b.recv_timeout::<Value>(LONG);
        }
    }
}
