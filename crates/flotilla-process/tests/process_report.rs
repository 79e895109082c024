//! The child's report, whichever way it travels: a fork child stores a small report in
//! a page shared with its parent and sends a larger one (or one with descriptors) on
//! the result channel. Each case must come back whole, or as the clear error it is.

use std::time::{Duration, Instant};

use flotilla_process::{Error, Process};
use serde::{Serialize, Serializer};

/// Runs `f` on a thread and fails the test if it has not finished within 60 s.
fn within_60s<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("{what}: not finished within 60 s"))
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Values on both sides of the shared page's size (4096 bytes less its 8-byte length
/// word, and the report's own framing), on both sides of the 512-byte buffer the parent
/// sets aside for the child's value (`boot::REPORT_BUFFER_SIZE`), and far beyond a
/// socket buffer, come back whole from a fork child.
#[test]
fn fork_values_on_both_sides_of_the_report_page_come_back_whole() {
    within_60s("fork values of many sizes", || {
        for len in [
            0,
            1,
            503,
            504,
            511,
            512,
            513,
            4000,
            4060,
            4070,
            4080,
            4088,
            4089,
            4096,
            5000,
            300 << 10,
            4 << 20,
        ] {
            // SAFETY: the child only builds a vector (the allocator is fork-safe).
            let child = unsafe { Process::fork(move || pattern(len)).start_unchecked() }.unwrap();
            let value = child.join().unwrap();
            assert_eq!(value.len(), len, "a value of {len} bytes");
            assert!(
                value == pattern(len),
                "a value of {len} bytes came back changed"
            );
            assert_eq!(child.exitcode(), Some(0));
        }
    });
}

/// A value whose `Serialize` fails.
struct Unencodable;

impl Serialize for Unencodable {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom(
            "this value refuses to be encoded",
        ))
    }
}

impl<'de> serde::Deserialize<'de> for Unencodable {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(serde::de::Error::custom("never sent"))
    }
}

/// A fork child whose value cannot be encoded ends with exit code 1, and `join` says
/// why (the report of the failure travels like any small report).
#[test]
fn a_fork_child_whose_value_fails_to_encode_reports_it() {
    within_60s("an unencodable value", || {
        // SAFETY: the child only returns a value.
        let child = unsafe { Process::fork(|| Unencodable).start_unchecked() }.unwrap();
        match child.join() {
            Err(Error::Panicked { message }) => assert!(
                message.contains("could not be encoded")
                    && message.contains("refuses to be encoded"),
                "{message}"
            ),
            other => panic!("expected the encoding failure, got {:?}", other.map(|_| ())),
        }
        assert_eq!(child.exitcode(), Some(1));
    });
}

/// A fork child killed before it reports (it never stores a report in its page) joins
/// as killed, not with a value or a hang, and a fork child that exits by itself without
/// a value reports its exit code.
#[test]
fn a_fork_child_without_a_report_joins_with_how_it_ended() {
    within_60s("fork children without a report", || {
        // SAFETY: the child only sleeps.
        let child = unsafe {
            Process::fork(|| {
                std::thread::sleep(Duration::from_secs(60));
                7u64
            })
            .start_unchecked()
        }
        .unwrap();
        let started = Instant::now();
        assert!(matches!(
            child.join_timeout(Duration::from_millis(100)),
            Err(Error::Timeout(_))
        ));
        child.kill().unwrap();
        match child.join() {
            Err(Error::Signaled { signal, .. }) => assert_eq!(signal, libc::SIGKILL),
            other => panic!("expected SIGKILL, got {other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(50));

        // SAFETY: the child only exits.
        let child = unsafe { Process::fork(|| -> u64 { std::process::exit(3) }).start_unchecked() }
            .unwrap();
        match child.join() {
            Err(Error::Exited { code }) => assert_eq!(code, 3),
            other => panic!("expected exit code 3, got {other:?}"),
        }
    });
}
