//! The queue figures' contenders: items through flotilla's process `Queue` from P
//! producer processes to C consumer processes, and the 1×1 baselines that have no
//! many-to-many queue (ipc-channel, a raw socket, memcpy).
//!
//! Every contender is set up untimed: P producers and C consumers, all forkserver
//! children, wait on a control queue. A timed call of n items tells each producer how
//! many to put (n/P, the remainder to the first); each puts them, then one end-of-batch
//! item per consumer it serves (C/P); each consumer gets items until an end-of-batch one
//! and reports how many items and bytes it got. The call ends when every report is in;
//! its results are the totals, which the untimed check compares with what was put.

use std::sync::Arc;
use std::time::Duration;

use anyhow::ensure;
use flotilla::multiprocessing::{Process, Queue, StartMethod, get_context};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::figures::{Batch, Calls};

/// How long the parent waits for a report, and for a child to end after the close.
const TIMEOUT: Duration = Duration::from_secs(120);

/// The conditions of the `queue-*` figures, for `docs/benchmarks.md`.
pub(crate) const CONDITIONS: &str = "\
Items go from P producer processes to C consumer processes through one queue. Every \
process is a forkserver child started untimed, waiting on a control queue. A timed call \
of n items tells each producer to put n/P of them, then one end-of-batch item per \
consumer; each consumer, told to go on another control queue, gets items until an \
end-of-batch item, reports the count and bytes it got on a result queue, and waits for \
the next go; the call ends when all C reports are in. Untimed, the \
totals must equal what was put. The small items are integers (`u64`, the loop index; \
Python `int`s); the 64 KiB and 1 MiB items are one byte block made once per producer and \
put again and again (`bytes` in Python; in Rust an `Arc<Vec<u8>>` serialized as one byte block, as \
`serde_bytes` does, so putting it copies nothing before encoding). A round times 3 calls \
(1 with `--quick`) after an untimed one of a tenth.

- **flotilla**: `flotilla::multiprocessing::Queue` with the default ring (4 MiB), unbounded; \
`put` and `get` per item; the control and result queues are flotilla queues too.
- **cpython**: `multiprocessing.Queue()` from a forkserver context, with the same \
processes and protocol (`None` ends a batch).
- **ipc-channel** (1×1 only: its receiver cannot be shared by consumers): the one-way \
byte-channel contender of the connection figures, 8-byte messages for the small items.
- **os-limit**: for the small items, the connection figures' raw `AF_UNIX` socket pair \
with a `write` per 8-byte item (a stream: the child reads 64 KiB at a time); for the \
byte blocks, `memcpy` of the item into a buffer in one process, once per item: the copy that no \
queue between processes can avoid.";

/// An item of a queue figure.
pub(crate) trait Item: Serialize + DeserializeOwned + Clone + 'static {
    /// The item a producer puts, made once.
    fn make() -> Self;
    /// The item that ends a consumer's batch.
    fn end() -> Self;
    fn is_end(&self) -> bool;
    /// What a consumer counts for it, checked against the figure's size.
    fn bytes(&self) -> u64;
}

/// A small item: an integer, counted as 8 bytes.
impl Item for u64 {
    fn make() -> Self {
        0
    }

    fn end() -> Self {
        u64::MAX
    }

    fn is_end(&self) -> bool {
        *self == u64::MAX
    }

    fn bytes(&self) -> u64 {
        8
    }
}

/// A block of `SIZE` bytes, shared by the puts of one producer, encoded as one block.
#[derive(Clone)]
pub(crate) struct Block<const SIZE: usize>(Arc<Vec<u8>>);

impl<const SIZE: usize> Serialize for Block<SIZE> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de, const SIZE: usize> Deserialize<'de> for Block<SIZE> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor<const SIZE: usize>;
        impl<const SIZE: usize> serde::de::Visitor<'_> for Visitor<SIZE> {
            type Value = Block<SIZE>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Block<SIZE>, E> {
                Ok(Block(Arc::new(v)))
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Block<SIZE>, E> {
                Ok(Block(Arc::new(v.to_vec())))
            }
        }
        d.deserialize_byte_buf(Visitor::<SIZE>)
    }
}

impl<const SIZE: usize> Item for Block<SIZE> {
    fn make() -> Self {
        Block(Arc::new(
            (0..SIZE as u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
                .collect(),
        ))
    }

    fn end() -> Self {
        Block(Arc::new(Vec::new()))
    }

    fn is_end(&self) -> bool {
        self.0.is_empty()
    }

    fn bytes(&self) -> u64 {
        self.0.len() as u64
    }
}

/// What every child gets: the control queue (a count of items to put, for producers; a
/// go, 0, for consumers), the data queue, the result queue, and how many end-of-batch
/// items a producer puts.
type Queues<I> = (Queue<u64>, Queue<I>, Queue<(u64, u64)>, u64);

fn producer<I: Item>((control, data, _, ends): Queues<I>) {
    let item = I::make();
    for n in &control {
        for _ in 0..n.expect("a count") {
            data.put(item.clone()).expect("the queue is open");
        }
        for _ in 0..ends {
            data.put(I::end()).expect("the queue is open");
        }
    }
}

/// Takes a go, gets items until an end-of-batch one and reports; again, until the
/// parent closes the go queue. A consumer done with its batch waits for the next go, so
/// it cannot take the items of another consumer's batch.
fn consumer<I: Item>((go, data, results, _): Queues<I>) {
    for _ in &go {
        let (mut items, mut bytes) = (0u64, 0u64);
        loop {
            let item = data.get().expect("an item");
            if item.is_end() {
                break;
            }
            items += 1;
            bytes += item.bytes();
        }
        results.put((items, bytes)).expect("the parent waits");
    }
}

/// P producers and C consumers around one data queue.
struct Children<I> {
    control: Queue<u64>,
    go: Queue<u64>,
    data: Queue<I>,
    results: Queue<(u64, u64)>,
    producers: Vec<Process<()>>,
    consumers: Vec<Process<()>>,
}

impl<I: Item> Children<I> {
    fn start(producers: usize, consumers: usize) -> anyhow::Result<Self> {
        ensure!(
            consumers % producers == 0,
            "each producer serves as many consumers"
        );
        let ctx = get_context(Some(StartMethod::ForkServer));
        let (control, data, results) = (Queue::new()?, Queue::new()?, Queue::new()?);
        let go = Queue::new()?;
        let queues = |control: &Queue<u64>| {
            (
                control.clone(),
                data.clone(),
                results.clone(),
                (consumers / producers) as u64,
            )
        };
        let producers = (0..producers)
            .map(|_| ctx.process(producer::<I>, queues(&control)).start())
            .collect::<Result<_, _>>()?;
        let consumers = (0..consumers)
            .map(|_| ctx.process(consumer::<I>, queues(&go)).start())
            .collect::<Result<_, _>>()?;
        Ok(Children {
            control,
            go,
            data,
            results,
            producers,
            consumers,
        })
    }
}

impl<I: Item> Calls for Children<I> {
    fn call(&mut self, n: usize) -> anyhow::Result<Vec<u64>> {
        for _ in 0..self.consumers.len() {
            self.go.put(0)?;
        }
        let p = self.producers.len();
        for i in 0..p {
            let share = n / p + if i == 0 { n % p } else { 0 };
            self.control.put(share as u64)?;
        }
        let (mut items, mut bytes) = (0, 0);
        for _ in 0..self.consumers.len() {
            let (i, b) = self.results.get_timeout(TIMEOUT)?;
            items += i;
            bytes += b;
        }
        Ok(vec![items, bytes])
    }
}

impl<I> Drop for Children<I> {
    fn drop(&mut self) {
        self.control.close();
        self.go.close();
        self.data.close();
        for child in self.producers.drain(..) {
            let _ = child.join_timeout(TIMEOUT);
        }
        for child in self.consumers.drain(..) {
            let _ = child.join_timeout(TIMEOUT);
        }
    }
}

/// flotilla: P producers and C consumers of small items.
pub(crate) fn flotilla_small<const P: usize, const C: usize>(
    _threads: usize,
) -> anyhow::Result<Batch> {
    Ok(Box::new(Children::<u64>::start(P, C)?))
}

/// flotilla: P producers and C consumers of byte blocks of `SIZE` bytes.
pub(crate) fn flotilla_blocks<const SIZE: usize, const P: usize, const C: usize>(
    _threads: usize,
) -> anyhow::Result<Batch> {
    Ok(Box::new(Children::<Block<SIZE>>::start(P, C)?))
}

/// os-limit for byte blocks: one `memcpy` of each item into a buffer, in this process.
pub(crate) fn os_memcpy<const SIZE: usize>(_threads: usize) -> anyhow::Result<Batch> {
    let item = Block::<SIZE>::make();
    let mut buffer = vec![0u8; item.0.len()];
    Ok(Box::new(move |n: usize| {
        for _ in 0..n {
            buffer.copy_from_slice(std::hint::black_box(&item.0));
            std::hint::black_box(&mut buffer);
        }
        ensure!(buffer == *item.0, "the copy differs");
        Ok(vec![n as u64, (n * buffer.len()) as u64])
    }))
}

/// Whether a call of `n` items of `SIZE` bytes was received whole.
pub(crate) fn check<const SIZE: usize>(n: usize, results: &[u64]) -> bool {
    results == [n as u64, (n * SIZE) as u64]
}
