//! AsyncConnection: round trips with a process on the other side (values, 1 MiB
//! frames, a connection end passed as a handle), cancel-safe receives and sends, and
//! concurrent senders whose frames never interleave.

mod common;

use std::time::Duration;

use common::{LONG, bounded};
use flotilla_async::AsyncConnection;
use flotilla_ipc::{Connection, RecvError, SendError, pipe};
use flotilla_process::{StartMethod, get_context};

/// The other side, in a child process: answers each number with its double and each
/// byte message with its reverse, until end of file.
fn echo(conn: Connection) -> u32 {
    let mut served = 0;
    loop {
        match conn.recv::<Message>() {
            Ok(Message::Number(n)) => conn.send(&Message::Number(n * 2)).unwrap(),
            Ok(Message::Bytes(mut b)) => {
                b.reverse();
                conn.send(&Message::Bytes(b)).unwrap();
            }
            Ok(Message::Reply(end)) => end.send(&"over the passed end").unwrap(),
            Err(RecvError::Disconnected) => return served,
            Err(e) => panic!("the echo side failed: {e}"),
        }
        served += 1;
    }
}

#[derive(serde::Serialize, serde::Deserialize, Debug)]
enum Message {
    Number(u64),
    Bytes(Vec<u8>),
    /// Carries a connection end (its descriptor travels as SCM_RIGHTS).
    Reply(Connection),
}

#[tokio::test]
async fn round_trips_with_a_process_under_each_start_method() {
    for method in [StartMethod::Spawn, StartMethod::ForkServer] {
        let (here, there) = pipe(true).unwrap();
        let child = get_context(Some(method))
            .process(echo, there)
            .start()
            .unwrap();
        let here = AsyncConnection::new(here).unwrap();
        for n in 0..100u64 {
            here.send(&Message::Number(n)).await.unwrap();
            match bounded(here.recv::<Message>()).await.unwrap() {
                Message::Number(m) => assert_eq!(m, 2 * n),
                other => panic!("expected a number, got {other:?}"),
            }
        }
        // Larger than any socket buffer: both directions take many partial writes.
        let big: Vec<u8> = (0..(1 << 20)).map(|i| (i % 251) as u8).collect();
        let message = Message::Bytes(big.clone());
        let (sent, answer) = tokio::join!(here.send(&message), bounded(here.recv::<Message>()));
        sent.unwrap();
        let mut expected = big;
        expected.reverse();
        match answer.unwrap() {
            Message::Bytes(b) => assert!(b == expected, "the 1 MiB answer differs"),
            other => panic!("expected bytes, got {other:?}"),
        }
        // A connection end sent as a handle: the child answers over it.
        let (reply_here, reply_there) = pipe(true).unwrap();
        here.send(&Message::Reply(reply_there)).await.unwrap();
        let reply_here = AsyncConnection::new(reply_here).unwrap();
        assert_eq!(
            bounded(reply_here.recv::<String>()).await.unwrap(),
            "over the passed end"
        );
        drop(here);
        let served = tokio::task::spawn_blocking(move || child.join_timeout(LONG))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(served, 102, "{method:?}");
    }
}

#[tokio::test]
async fn end_of_file_when_the_other_end_closes() {
    let (here, there) = pipe(true).unwrap();
    let here = AsyncConnection::new(here).unwrap();
    there.send(&1u8).unwrap();
    drop(there);
    assert_eq!(bounded(here.recv::<u8>()).await.unwrap(), 1);
    assert!(matches!(
        bounded(here.recv::<u8>()).await,
        Err(RecvError::Disconnected)
    ));
}

#[tokio::test]
async fn a_receive_given_up_midway_loses_nothing() {
    let (here, there) = pipe(true).unwrap();
    let here = AsyncConnection::new(here).unwrap();
    // Nothing there: the receive times out and is dropped.
    assert!(
        tokio::time::timeout(Duration::from_millis(10), here.recv_bytes())
            .await
            .is_err()
    );
    // A frame larger than the socket buffer, written from a thread: the first receive
    // is dropped after part of it arrived; the next one gets it whole.
    let big: Vec<u8> = (0..(4 << 20)).map(|i| (i % 241) as u8).collect();
    let writer = {
        let big = big.clone();
        std::thread::spawn(move || there.send_bytes(&big).map(|()| there))
    };
    loop {
        let attempt = tokio::time::timeout(Duration::from_micros(200), here.recv_bytes()).await;
        match attempt {
            Ok(received) => {
                assert_eq!(received.unwrap(), big);
                break;
            }
            Err(_gave_up) => continue, // the partial frame stays in the connection
        }
    }
    let there = writer.join().unwrap().unwrap();
    there.send(&"next").unwrap();
    assert_eq!(bounded(here.recv::<String>()).await.unwrap(), "next");
}

#[tokio::test]
async fn a_send_given_up_midway_is_finished_by_the_next_send_or_flush() {
    let (here, there) = pipe(true).unwrap();
    let here = AsyncConnection::new(here).unwrap();
    let big: Vec<u8> = vec![7; 4 << 20];
    // Nobody reads yet: the send fills the socket buffer and is given up.
    assert!(
        tokio::time::timeout(Duration::from_millis(20), here.send_bytes(&big))
            .await
            .is_err()
    );
    let reader = std::thread::spawn(move || {
        let first = there.recv_bytes().unwrap();
        let second: String = there.recv().unwrap();
        (first, second)
    });
    here.send(&"after").await.unwrap();
    here.flush().await.unwrap();
    let (first, second) = tokio::task::spawn_blocking(move || reader.join().unwrap())
        .await
        .unwrap();
    assert_eq!(
        first.len(),
        big.len(),
        "the dropped send's frame arrived whole"
    );
    assert_eq!(second, "after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_senders_never_interleave_frames() {
    let (here, there) = pipe(true).unwrap();
    let here = std::sync::Arc::new(AsyncConnection::new(here).unwrap());
    let senders: Vec<_> = (0..4u8)
        .map(|k| {
            let here = std::sync::Arc::clone(&here);
            tokio::spawn(async move {
                for _ in 0..5 {
                    here.send_bytes(&vec![k; 300_000]).await.unwrap();
                }
            })
        })
        .collect();
    let reader = tokio::task::spawn_blocking(move || {
        (0..20)
            .map(|_| there.recv_bytes().unwrap())
            .collect::<Vec<_>>()
    });
    for s in senders {
        bounded(s).await.unwrap();
    }
    let frames = bounded(reader).await.unwrap();
    for frame in frames {
        assert_eq!(frame.len(), 300_000);
        assert!(
            frame.iter().all(|&b| b == frame[0]),
            "a frame mixes two sends"
        );
    }
}

#[tokio::test]
async fn a_simplex_pipe_works_in_its_one_direction_and_comes_back_blocking() {
    let (reader, writer) = pipe(false).unwrap();
    let reader = AsyncConnection::new(reader).unwrap();
    let writer = AsyncConnection::new(writer).unwrap();
    writer.send(&vec![1u32, 2, 3]).await.unwrap();
    assert_eq!(bounded(reader.recv::<Vec<u32>>()).await.unwrap(), [1, 2, 3]);
    assert!(matches!(
        reader.send(&0u8).await,
        Err(SendError::WrongDirection(_))
    ));
    assert!(matches!(
        writer.recv_bytes().await,
        Err(RecvError::WrongDirection(_))
    ));
    let (reader, writer) = (reader.into_inner().unwrap(), writer.into_inner().unwrap());
    writer.send(&9u8).unwrap();
    assert_eq!(reader.recv_timeout::<u8>(LONG).unwrap(), 9);
}
