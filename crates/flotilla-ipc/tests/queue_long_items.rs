//! Long items, which a put encodes straight into the queue's ring (beyond 64 KiB
//! encoded) instead of into a buffer first: items on both sides of that threshold, with
//! a consumer that keeps the ring full, and items whose encoding fails, changes length
//! or panics part of the way, which are withdrawn whole while the queue works on.
//!
//! Every scenario runs on a thread of its own and fails if it is not done in a minute.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use flotilla_core::codec::{self, ByteBuf};
use flotilla_ipc::{PutError, Queue, QueueBuilder, QueueError, TryPutError};
use serde::ser::{Error as _, SerializeTuple};
use serde::{Deserialize, Serialize, Serializer};

const LONG: Duration = Duration::from_secs(60);

/// The encoded length from which a put encodes into the ring (the queue's
/// `DIRECT_FROM`, plus one).
const DIRECT: u64 = (64 << 10) + 1;

/// Runs `scenario` on a thread, failing if it has not ended within [`LONG`].
fn within_a_minute(scenario: impl FnOnce() + Send + 'static) {
    let (done, finished) = mpsc::channel();
    let runner = std::thread::spawn(move || {
        scenario();
        let _ = done.send(());
    });
    match finished.recv_timeout(LONG) {
        Ok(()) => runner.join().unwrap(),
        // The scenario panicked: its thread's panic is the failure to report.
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            std::panic::resume_unwind(runner.join().unwrap_err())
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("the scenario hung for {LONG:?}"),
    }
}

/// A byte string whose encoding is `encoded` bytes long, its bytes telling it apart.
fn item(encoded: u64, seed: u8) -> ByteBuf {
    // The length prefix is 3 bytes below 2^16, 5 from there.
    let prefix = if encoded - 3 < 1 << 16 { 3 } else { 5 };
    let bytes: Vec<u8> = (0..encoded - prefix)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect();
    let item = ByteBuf::from(bytes);
    assert_eq!(codec::encoded_size(&item).unwrap(), encoded);
    item
}

fn sizes() -> Vec<u64> {
    vec![DIRECT - 2, DIRECT - 1, DIRECT, DIRECT + 1, 1 << 20, 3 << 20]
}

#[test]
fn items_on_both_sides_of_the_direct_threshold_come_out_whole() {
    within_a_minute(|| {
        // A ring larger than every item, and one that every long item streams through.
        for capacity in [8 << 20, 64 << 10] {
            let q: Queue<ByteBuf> = QueueBuilder::new().capacity(capacity).build().unwrap();
            std::thread::scope(|s| {
                s.spawn(|| {
                    for (seed, &len) in sizes().iter().enumerate() {
                        q.put(item(len, seed as u8)).unwrap();
                    }
                });
                for (seed, &len) in sizes().iter().enumerate() {
                    let got = q.get_timeout(LONG).unwrap();
                    assert!(
                        got == item(len, seed as u8),
                        "ring of {capacity}: the item of {len} bytes differs"
                    );
                }
            });
            assert!(q.is_empty());
        }
    });
}

#[test]
fn a_busy_consumer_keeps_the_ring_full_and_loses_nothing() {
    within_a_minute(|| {
        let q: Queue<ByteBuf> = QueueBuilder::new().capacity(64 << 10).build().unwrap();
        let rounds = 3;
        std::thread::scope(|s| {
            s.spawn(|| {
                for round in 0..rounds {
                    for (i, &len) in sizes().iter().enumerate() {
                        q.put(item(len, (round * 10 + i) as u8)).unwrap();
                    }
                }
            });
            for round in 0..rounds {
                for (i, &len) in sizes().iter().enumerate() {
                    // Slower than the producer: it waits for room in the middle of items.
                    std::thread::sleep(Duration::from_millis(5));
                    let got = q.get_timeout(LONG).unwrap();
                    assert!(
                        got == item(len, (round * 10 + i) as u8),
                        "round {round}: the item of {len} bytes differs"
                    );
                }
            }
        });
        assert!(q.is_empty());
    });
}

#[test]
fn a_long_try_put_that_does_not_fit_is_full_and_leaves_nothing() {
    within_a_minute(|| {
        let q: Queue<ByteBuf> = QueueBuilder::new().capacity(256 << 10).build().unwrap();
        q.put(item(DIRECT, 1)).unwrap();
        q.put(item(DIRECT, 2)).unwrap();
        // Two items of 64 KiB leave less than 200 KiB free: a try_put never streams.
        match q.try_put(item(200 << 10, 3)) {
            Err(TryPutError::Full(back)) => assert!(back == item(200 << 10, 3)),
            other => panic!("expected Full, got {:?}", other.map_err(|e| e.to_string())),
        }
        // One that fits goes in at once, in pieces.
        q.try_put(item(DIRECT + 1, 4)).unwrap();
        assert_eq!(q.len(), 3);
        assert!(q.get().unwrap() == item(DIRECT, 1));
        assert!(q.get().unwrap() == item(DIRECT, 2));
        assert!(q.get().unwrap() == item(DIRECT + 1, 4));
        assert!(q.is_empty());
    });
}

/// How a [`Fickle`] item misbehaves on its third serialization: the first is the put's
/// try into its buffer, the second measures it, the third writes it into the ring.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    /// Its `Serialize` fails after the long byte string is written.
    FailsLate,
    /// It encodes to more bytes than it measured at.
    Grows,
    /// It encodes to fewer bytes than it measured at.
    Shrinks,
    /// Its `Serialize` panics after the long byte string is written.
    Panics,
}

/// A long item that behaves on its first two serializations only.
#[derive(Debug, Clone)]
struct Fickle {
    fault: Fault,
    calls: Arc<AtomicUsize>,
    /// What a consumer decoded.
    got: Option<(usize, u64)>,
}

impl Serialize for Fickle {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let third = self.calls.fetch_add(1, Ordering::SeqCst) == 2;
        let body = vec![7u8; 1 << 20];
        let mut tuple = serializer.serialize_tuple(2)?;
        tuple.serialize_element(serde_bytes_ref(&body))?;
        match (third, self.fault) {
            (true, Fault::FailsLate) => return Err(S::Error::custom("fickle refuses")),
            (true, Fault::Panics) => panic!("fickle panics"),
            (true, Fault::Grows) => tuple.serialize_element(&u64::MAX)?,
            (true, Fault::Shrinks) => tuple.serialize_element(&0u64)?,
            (false, _) => tuple.serialize_element(&1000u64)?,
        }
        tuple.end()
    }
}

fn serde_bytes_ref(bytes: &[u8]) -> &serde_bytes_like::Bytes {
    serde_bytes_like::Bytes::new(bytes)
}

mod serde_bytes_like {
    //! A borrowed byte string that serializes as one (as `serde_bytes::Bytes` does).

    #[repr(transparent)]
    pub(crate) struct Bytes([u8]);

    impl Bytes {
        pub(crate) fn new(bytes: &[u8]) -> &Bytes {
            // SAFETY: `Bytes` is a transparent wrapper of `[u8]`.
            unsafe { &*(std::ptr::from_ref::<[u8]>(bytes) as *const Bytes) }
        }
    }

    impl serde::Serialize for Bytes {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(&self.0)
        }
    }
}

/// What a consumer decodes: the byte string's length and the number after it.
impl<'de> Deserialize<'de> for Fickle {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (body, n) = <(ByteBuf, u64)>::deserialize(deserializer)?;
        Ok(Fickle {
            fault: Fault::FailsLate,
            calls: Arc::new(AtomicUsize::new(0)),
            got: Some((body.len(), n)),
        })
    }
}

#[test]
fn a_long_item_whose_encoding_goes_wrong_in_the_ring_is_withdrawn_whole() {
    within_a_minute(|| {
        for fault in [
            Fault::FailsLate,
            Fault::Grows,
            Fault::Shrinks,
            Fault::Panics,
        ] {
            // A small ring: part of the item is published (and read) before the fault.
            let q: Queue<Fickle> = QueueBuilder::new().capacity(64 << 10).build().unwrap();
            let fickle = Fickle {
                fault,
                calls: Arc::new(AtomicUsize::new(0)),
                got: None,
            };
            std::thread::scope(|s| {
                let reader = s.spawn(|| q.get_timeout(LONG));
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    q.put(fickle.clone())
                }));
                match (fault, outcome) {
                    (Fault::Panics, Err(_)) => {}
                    (Fault::FailsLate | Fault::Grows | Fault::Shrinks, Ok(Err(e))) => {
                        assert!(
                            matches!(e, PutError::Failed(_, QueueError::Encode(_))),
                            "{fault:?}: {e:?}"
                        );
                    }
                    (_, other) => panic!("{fault:?}: unexpected {:?}", other.map(|r| r.is_ok())),
                }
                // The queue works on: the next item is the one the reader gets.
                let good = Fickle {
                    fault,
                    calls: Arc::new(AtomicUsize::new(10)),
                    got: None,
                };
                q.put(good).unwrap();
                let got = reader.join().unwrap().map(|item| item.got);
                assert_eq!(got.ok(), Some(Some((1 << 20, 1000))), "{fault:?}");
            });
            assert!(q.is_empty(), "{fault:?}");
        }
    });
}
