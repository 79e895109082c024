//! Queues when things go wrong: a consumer SIGKILLed in the middle of a get and a
//! producer SIGKILLed in the middle of a put leave the queue whole for the others; a
//! bounded queue never holds more than its maxsize; an item that cannot be encoded is
//! handed back with the queue unchanged; every timed and non-blocking form gives up.

use std::time::{Duration, Instant};

use flotilla_ipc::{
    Connection, GetTimeoutError, PutError, PutTimeoutError, Queue, QueueBuilder, QueueError,
    RecvError, RecvTimeoutError, TryPutError, pipe,
};
use flotilla_process::{Process, StartMethod, get_context};
use serde::{Deserialize, Serialize};

const LONG: Duration = Duration::from_secs(120);
const RING: usize = 4096;
/// Far larger than the ring: it takes many hand-overs to stream.
const BIG: usize = 32 << 20;

fn start<F, A, R>(method: StartMethod, target: F, args: A) -> Process<R>
where
    F: Fn(A) -> R + 'static,
    A: Serialize + serde::de::DeserializeOwned + 'static,
    R: Serialize + serde::de::DeserializeOwned + 'static,
{
    let builder = get_context(Some(method)).process(target, args);
    // SAFETY: under fork the child only uses the queue and its connection end (shared
    // memory, process-shared mutexes, futexes, a socket) and allocates; it takes no lock
    // another thread of the harness could hold.
    unsafe { builder.start_unchecked() }.unwrap()
}

fn pattern(seed: u8, len: usize) -> Bytes {
    Bytes(
        (0..len)
            .map(|i| seed.wrapping_add((i % 251) as u8))
            .collect(),
    )
}

/// Bytes encoded as one block (as `serde_bytes` does), not byte by byte, so that a long
/// item is encoded at the speed of a copy even in a debug build, and the time a put takes
/// is the time of streaming it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Bytes(Vec<u8>);

impl Bytes {
    fn len(&self) -> usize {
        self.0.len()
    }
}

impl Serialize for Bytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Bytes;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Bytes, E> {
                Ok(Bytes(v))
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Bytes, E> {
                Ok(Bytes(v.to_vec()))
            }
        }
        d.deserialize_byte_buf(Visitor)
    }
}

fn get_one(args: (Queue<Bytes>, Connection)) {
    let (q, conn) = args;
    conn.send(&"getting").unwrap();
    let got = q.get().unwrap();
    conn.send(&got.len()).unwrap();
}

fn put_big_then_small(args: (Queue<Bytes>, Connection)) {
    let (q, conn) = args;
    let big = pattern(1, BIG);
    conn.send(&"putting").unwrap();
    q.put(big).unwrap();
    for i in 0..10 {
        q.put(pattern(i, 100 + usize::from(i))).unwrap();
    }
    conn.send(&"done").unwrap();
}

/// One try at killing a consumer `delay` after a producer began putting a long item;
/// `true` if it was in the middle of reading it (the item never came out, and the
/// consumer never returned), `false` if the kill came before it began or after it ended.
/// Either way nothing else may be lost or corrupted.
fn kill_a_consumer_mid_get(method: StartMethod, delay: Duration) -> bool {
    let q: Queue<Bytes> = QueueBuilder::new().capacity(RING).build().unwrap();
    let (consumer_conn, theirs) = pipe(true).unwrap();
    let consumer = start(method, get_one, (q.clone(), theirs));
    assert_eq!(
        consumer_conn.recv_timeout::<String>(LONG).unwrap(),
        "getting"
    );
    std::thread::sleep(Duration::from_millis(20));

    let (producer_conn, theirs) = pipe(true).unwrap();
    let producer = start(method, put_big_then_small, (q.clone(), theirs));
    assert_eq!(
        producer_conn.recv_timeout::<String>(LONG).unwrap(),
        "putting"
    );
    std::thread::sleep(delay);
    consumer.kill().unwrap();
    let joined = consumer.join_timeout(LONG);
    // Whether the killed consumer finished its get: it reported a length before dying.
    let finished = consumer_conn.recv_timeout::<usize>(LONG).is_ok();
    // A kill that came after the consumer's get (the long item streams fast) may find it
    // already gone, or past its report: its join may then succeed. A kill mid-get may not.
    assert!(
        joined.is_err() || finished,
        "{method}: a consumer killed in the middle of its get joined successfully"
    );

    // Another consumer gets everything else, whole.
    let mut got = Vec::new();
    while got.len() < 10 {
        let item = q.get_timeout(LONG).unwrap();
        if item.len() == BIG {
            assert_eq!(item, pattern(1, BIG), "the long item came out corrupted");
            got.push(None);
        } else {
            let i = (item.len() - 100) as u8;
            assert_eq!(item, pattern(i, 100 + usize::from(i)), "corrupted");
            got.push(Some(i));
        }
    }
    let long_came_out = got.contains(&None);
    got.retain(Option::is_some);
    while got.len() < 10 {
        let item = q.get_timeout(LONG).unwrap();
        let i = (item.len() - 100) as u8;
        assert_eq!(item, pattern(i, 100 + usize::from(i)));
        got.push(Some(i));
    }
    assert_eq!(got, (0..10).map(Some).collect::<Vec<_>>(), "{method}");
    assert_eq!(producer_conn.recv_timeout::<String>(LONG).unwrap(), "done");
    producer.join_timeout(LONG).unwrap();
    assert!(q.is_empty());
    !long_came_out && !finished
}

#[test]
fn a_consumer_killed_mid_get_takes_at_most_its_item() {
    for method in [StartMethod::ForkServer, StartMethod::Spawn] {
        let mut caught_mid_get = false;
        // How long streaming the item takes depends on the machine: try several delays.
        for delay in [50, 20, 100, 10, 200, 5, 400, 2] {
            if kill_a_consumer_mid_get(method, Duration::from_millis(delay)) {
                caught_mid_get = true;
                break;
            }
        }
        assert!(
            caught_mid_get,
            "{method}: never caught a consumer in the middle of a get"
        );
    }
}

fn put_forever(args: (Queue<Bytes>, Connection)) {
    let (q, conn) = args;
    let big = pattern(2, BIG);
    conn.send(&"putting").unwrap();
    // Nobody reads: this streams the first pieces and then waits for room, until killed.
    q.put(big).unwrap();
    conn.send(&"returned").unwrap();
}

#[test]
fn a_producer_killed_mid_put_leaves_no_partial_item() {
    for method in [StartMethod::ForkServer, StartMethod::Spawn] {
        let q: Queue<Bytes> = QueueBuilder::new().capacity(RING).build().unwrap();
        q.put(Bytes(b"before".to_vec())).unwrap();
        let (ours, theirs) = pipe(true).unwrap();
        let producer = start(method, put_forever, (q.clone(), theirs));
        assert_eq!(ours.recv_timeout::<String>(LONG).unwrap(), "putting");
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(q.len(), 1, "a partial item is not counted");
        producer.kill().unwrap();
        assert!(producer.join_timeout(LONG).is_err());
        assert!(
            matches!(
                ours.recv_timeout::<String>(LONG),
                Err(RecvTimeoutError::Recv(RecvError::Disconnected))
            ),
            "the put never returned"
        );

        std::thread::scope(|s| {
            // A consumer reads on: the item before, then into the dead producer's
            // partial item, which it drops when it finds the producer gone.
            let consumer = s.spawn(|| (q.get_timeout(LONG), q.get_timeout(LONG)));
            std::thread::sleep(Duration::from_millis(300));
            q.put(Bytes(b"after".to_vec())).unwrap();
            let (first, second) = consumer.join().unwrap();
            assert_eq!(first.unwrap().0, b"before", "{method}");
            assert_eq!(second.unwrap().0, b"after", "{method}");
        });
        assert!(q.is_empty());
        q.put(Bytes(b"still works".to_vec())).unwrap();
        assert_eq!(q.get().unwrap().0, b"still works");
    }
}

fn fill(args: (Queue<u32>, u32)) -> usize {
    let (q, base) = args;
    let mut most = 0;
    for i in 0..100 {
        q.put(base + i).unwrap();
        most = most.max(q.len());
    }
    most
}

#[test]
fn a_bounded_queue_never_holds_more_than_maxsize() {
    for method in StartMethod::ALL {
        let q = Queue::<u32>::bounded(3).unwrap();
        let producers: Vec<_> = (0..3)
            .map(|p| start(method, fill, (q.clone(), p * 1000)))
            .collect();
        // Let the producers fill it and block.
        let deadline = Instant::now() + LONG;
        while !q.is_full() {
            assert!(Instant::now() < deadline, "{method}: never filled");
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(q.len(), 3, "{method}");
        assert!(q.try_put(0).unwrap_err().is_full());
        let mut got = Vec::new();
        while got.len() < 300 {
            assert!(q.len() <= 3, "{method}: {} items", q.len());
            got.push(q.get_timeout(LONG).unwrap());
        }
        let most: usize = producers
            .into_iter()
            .map(|p| p.join_timeout(LONG).unwrap())
            .max()
            .unwrap();
        assert!(most <= 3, "{method}: a producer saw {most} items");
        got.sort_unstable();
        let mut sent: Vec<u32> = (0..3)
            .flat_map(|p| (0..100).map(move |i| p * 1000 + i))
            .collect();
        sent.sort_unstable();
        assert_eq!(got, sent);
    }
}

/// Serializes only when it is `Good`.
#[derive(Debug, PartialEq, Deserialize)]
enum Picky {
    Good(u32),
    Bad,
}

impl Serialize for Picky {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Picky::Good(n) => s.serialize_newtype_variant("Picky", 0, "Good", n),
            Picky::Bad => Err(serde::ser::Error::custom("Bad refuses to be encoded")),
        }
    }
}

#[test]
fn an_item_that_cannot_be_encoded_is_handed_back_and_the_queue_works_on() {
    let q = Queue::<Picky>::bounded(2).unwrap();
    q.put(Picky::Good(1)).unwrap();
    match q.put(Picky::Bad) {
        Err(PutError::Failed(item, QueueError::Encode(e))) => {
            assert_eq!(item, Picky::Bad);
            assert!(e.to_string().contains("refuses"), "{e}");
        }
        other => panic!("expected an encode error, got {other:?}"),
    }
    assert!(matches!(
        q.try_put(Picky::Bad),
        Err(TryPutError::Failed(Picky::Bad, _))
    ));
    assert!(matches!(
        q.put_timeout(Picky::Bad, LONG),
        Err(PutTimeoutError::Failed(Picky::Bad, _))
    ));
    assert_eq!(q.len(), 1);
    q.put(Picky::Good(2)).unwrap();
    assert_eq!(q.get().unwrap(), Picky::Good(1));
    assert_eq!(q.get().unwrap(), Picky::Good(2));

    // Too long for the queue's maximum: refused before anything is written.
    let q: Queue<Vec<u8>> = QueueBuilder::new().max_message(1000).build().unwrap();
    let err = q.put(vec![0; 2000]).unwrap_err();
    assert!(
        matches!(
            err.error(),
            Some(QueueError::MessageTooLarge { max: 1000, .. })
        ),
        "{err:?}"
    );
    assert_eq!(err.into_inner().len(), 2000);
    q.put(vec![1; 500]).unwrap();
    assert_eq!(q.get().unwrap(), vec![1; 500]);

    // OS handles cannot travel through shared memory: put says so.
    let q = Queue::<Connection>::new().unwrap();
    let (a, _b) = pipe(true).unwrap();
    let err = q.put(a).unwrap_err();
    assert!(err.to_string().contains("OS handle"), "{err}");
}

fn hold_a_get(args: (Queue<u8>, Connection)) -> u8 {
    let (q, conn) = args;
    conn.send(&"waiting").unwrap();
    q.get_timeout(LONG).unwrap()
}

#[test]
fn timeouts_and_non_blocking_forms_give_up() {
    let q = Queue::<u8>::bounded(1).unwrap();
    let short = Duration::from_millis(50);
    let start_at = Instant::now();
    assert!(matches!(
        q.get_timeout(short),
        Err(GetTimeoutError::Timeout)
    ));
    assert!(start_at.elapsed() >= short);
    assert!(q.try_get().unwrap_err().is_empty());
    q.put(1).unwrap();
    let start_at = Instant::now();
    assert!(matches!(
        q.put_timeout(2, short),
        Err(PutTimeoutError::Timeout(2))
    ));
    assert!(start_at.elapsed() >= short);
    assert!(matches!(q.try_put(3), Err(TryPutError::Full(3))));
    assert_eq!(q.get().unwrap(), 1);

    // A get in another process holds the consumers' side: ours times out behind it,
    // then the item put goes to it.
    let (ours, theirs) = pipe(true).unwrap();
    let child = start(StartMethod::Spawn, hold_a_get, (q.clone(), theirs));
    assert_eq!(ours.recv_timeout::<String>(LONG).unwrap(), "waiting");
    std::thread::sleep(Duration::from_millis(50));
    assert!(q.get_timeout(short).unwrap_err().is_timeout());
    q.put(42).unwrap();
    assert_eq!(child.join_timeout(LONG).unwrap(), 42);

    // A put waiting on a full queue wakes to a close and hands its item back.
    let q = Queue::<u8>::bounded(1).unwrap();
    q.put(0).unwrap();
    std::thread::scope(|s| {
        let putter = s.spawn(|| q.put_timeout(5, LONG));
        std::thread::sleep(Duration::from_millis(50));
        q.close();
        assert!(matches!(
            putter.join().unwrap(),
            Err(PutTimeoutError::Closed(5))
        ));
    });
}

#[test]
fn a_consumer_killed_while_waiting_leaves_the_queue_to_the_next() {
    for method in [StartMethod::ForkServer, StartMethod::Spawn] {
        let q = Queue::<u8>::new().unwrap();
        let (ours, theirs) = pipe(true).unwrap();
        let child = start(method, hold_a_get, (q.clone(), theirs));
        assert_eq!(ours.recv_timeout::<String>(LONG).unwrap(), "waiting");
        std::thread::sleep(Duration::from_millis(50));
        // It holds the consumers' lock, asleep; killing it hands the lock on.
        child.kill().unwrap();
        assert!(child.join_timeout(LONG).is_err());
        q.put(7).unwrap();
        assert_eq!(q.get_timeout(LONG).unwrap(), 7, "{method}");
        assert!(q.try_get().unwrap_err().is_empty());
    }
}

/// Queues are handles any thread may use, whatever their items.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Queue<std::rc::Rc<u8>>>();
    send_sync::<flotilla_ipc::JoinableQueue<u8>>();
    send_sync::<flotilla_ipc::SimpleQueue<String>>();
};
