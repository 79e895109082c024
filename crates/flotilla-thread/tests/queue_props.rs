//! Properties of the queues, for every input proptest tries: N producers and M consumers
//! lose and duplicate nothing through any discipline, bounded or not, and `join` sees
//! every task done; single-threaded, each discipline hands items out in its order.
//!
//! Case counts are kept small so the suite stays quick on two cores. Every wait is
//! bounded, so a broken queue fails a case instead of hanging it.

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use flotilla_thread::queue::{Fifo, GenericQueue, Lifo, Priority, Store};
use flotilla_thread::{LifoQueue, PriorityQueue, Queue};
use proptest::prelude::*;

const PATIENCE: Duration = Duration::from_secs(60);

/// An item: who put it, its place in that producer's sequence, and a value.
type Item = (usize, usize, u16);

/// Runs `batches.len()` producers (each putting its batch, in order) and `consumers`
/// consumers (each iterating the queue, marking every item done) through one queue.
/// Returns what each consumer got, in the order it got it.
fn run<S>(batches: &[Vec<u16>], consumers: usize, maxsize: Option<usize>) -> Vec<Vec<Item>>
where
    S: Store<Item = Item> + Default + Send + 'static,
{
    let q = match maxsize {
        Some(max) => GenericQueue::<S>::bounded(max),
        None => GenericQueue::<S>::new(),
    };
    let (got_tx, got_rx) = mpsc::channel();
    for _ in 0..consumers {
        let (q, got_tx) = (q.clone(), got_tx.clone());
        thread::spawn(move || {
            let mut got = Vec::new();
            for item in &q {
                got.push(item);
                q.task_done().unwrap();
            }
            let _ = got_tx.send(got);
        });
    }
    let (put_tx, put_rx) = mpsc::channel();
    for (producer, batch) in batches.iter().enumerate() {
        let (q, put_tx, batch) = (q.clone(), put_tx.clone(), batch.clone());
        thread::spawn(move || {
            for (seq, value) in batch.into_iter().enumerate() {
                q.put((producer, seq, value)).unwrap();
            }
            let _ = put_tx.send(());
        });
    }
    for _ in batches {
        put_rx
            .recv_timeout(PATIENCE)
            .expect("a producer hung or panicked");
    }
    assert!(q.join_timeout(PATIENCE), "join never saw every task done");
    assert_eq!(q.unfinished_tasks(), 0);
    q.close();
    (0..consumers)
        .map(|_| {
            got_rx
                .recv_timeout(PATIENCE)
                .expect("a consumer hung or panicked")
        })
        .collect()
}

/// Every item put came out exactly once.
fn assert_nothing_lost_or_duplicated(batches: &[Vec<u16>], got: &[Vec<Item>]) {
    let mut expected: Vec<Item> = batches
        .iter()
        .enumerate()
        .flat_map(|(p, batch)| batch.iter().enumerate().map(move |(s, &v)| (p, s, v)))
        .collect();
    let mut actual: Vec<Item> = got.iter().flatten().copied().collect();
    expected.sort_unstable();
    actual.sort_unstable();
    assert_eq!(actual, expected);
}

fn batches() -> impl Strategy<Value = Vec<Vec<u16>>> {
    prop::collection::vec(prop::collection::vec(any::<u16>(), 0..200), 1..=4)
}

fn maxsize() -> impl Strategy<Value = Option<usize>> {
    prop::option::of(1usize..=8)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn fifo_loses_and_duplicates_nothing(
        batches in batches(),
        consumers in 1usize..=4,
        maxsize in maxsize(),
    ) {
        let got = run::<Fifo<Item>>(&batches, consumers, maxsize);
        assert_nothing_lost_or_duplicated(&batches, &got);
        // FIFO also keeps each producer's order, as every consumer sees it.
        for items in &got {
            for producer in 0..batches.len() {
                let seqs: Vec<_> = items.iter().filter(|i| i.0 == producer).map(|i| i.1).collect();
                prop_assert!(seqs.is_sorted(), "producer {producer} out of order: {seqs:?}");
            }
        }
    }

    #[test]
    fn lifo_loses_and_duplicates_nothing(
        batches in batches(),
        consumers in 1usize..=4,
        maxsize in maxsize(),
    ) {
        let got = run::<Lifo<Item>>(&batches, consumers, maxsize);
        assert_nothing_lost_or_duplicated(&batches, &got);
    }

    #[test]
    fn priority_loses_and_duplicates_nothing(
        batches in batches(),
        consumers in 1usize..=4,
        maxsize in maxsize(),
    ) {
        let got = run::<Priority<Item>>(&batches, consumers, maxsize);
        assert_nothing_lost_or_duplicated(&batches, &got);
    }

    #[test]
    fn priority_pops_in_sorted_order(items in prop::collection::vec(any::<i32>(), 0..300)) {
        let q = PriorityQueue::new();
        for &i in &items {
            q.put(i).unwrap();
        }
        let mut sorted = items;
        sorted.sort();
        prop_assert_eq!(q.try_iter().collect::<Vec<_>>(), sorted);
    }

    #[test]
    fn priority_interleaved_pops_take_the_current_minimum(
        ops in prop::collection::vec(prop::option::of(any::<u8>()), 0..300),
    ) {
        // Some(x) puts x, None gets; the model is a sorted Vec.
        let q = PriorityQueue::new();
        let mut model: Vec<u8> = Vec::new();
        for op in ops {
            match op {
                Some(x) => {
                    q.put(x).unwrap();
                    let at = model.partition_point(|&m| m <= x);
                    model.insert(at, x);
                }
                None => {
                    let expected = (!model.is_empty()).then(|| model.remove(0));
                    prop_assert_eq!(q.try_get().ok(), expected);
                }
            }
        }
    }

    #[test]
    fn fifo_and_lifo_keep_their_order(items in prop::collection::vec(any::<u16>(), 0..300)) {
        let fifo = Queue::new();
        let lifo = LifoQueue::new();
        for &i in &items {
            fifo.put(i).unwrap();
            lifo.put(i).unwrap();
        }
        prop_assert_eq!(fifo.try_iter().collect::<Vec<_>>(), items.clone());
        let mut reversed = items;
        reversed.reverse();
        prop_assert_eq!(lifo.try_iter().collect::<Vec<_>>(), reversed);
    }
}
