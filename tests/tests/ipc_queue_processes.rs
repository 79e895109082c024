//! Queues between real processes under every start method: producers × consumers with
//! messages of random sizes (larger than the ring too) lose and duplicate nothing; a
//! child that exits right after `put` can be joined before anyone reads; close ends the
//! consumers' loops; JoinableQueue's task_done and join across processes; a queue
//! reaches a child as an argument, by fork, and over a Connection.

use std::time::Duration;

use flotilla_ipc::{JoinableQueue, Queue, QueueBuilder, SimpleQueue, pipe};
use flotilla_process::{Process, StartMethod, get_context};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

const LONG: Duration = Duration::from_secs(120);
/// A small ring, so that large messages stream through it in pieces.
const RING: usize = 8192;

fn start<F, A, R>(method: StartMethod, target: F, args: A) -> Process<R>
where
    F: Fn(A) -> R + 'static,
    A: Serialize + serde::de::DeserializeOwned + 'static,
    R: Serialize + serde::de::DeserializeOwned + 'static,
{
    let builder = get_context(Some(method)).process(target, args);
    // SAFETY: under fork the child only uses the queues (process-shared mutexes,
    // atomics and futexes in shared memory) and allocates (glibc's malloc is fork-safe);
    // it takes no lock another thread of the harness could hold.
    unsafe { builder.start_unchecked() }.unwrap()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Message {
    producer: u32,
    index: u32,
    body: Vec<u8>,
}

fn body(producer: u32, index: u32, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (producer as usize * 131 + index as usize * 17 + i) as u8)
        .collect()
}

fn produce(args: (Queue<Message>, u32, Vec<usize>)) {
    let (q, producer, sizes) = args;
    for (index, len) in sizes.into_iter().enumerate() {
        let index = index as u32;
        q.put(Message {
            producer,
            index,
            body: body(producer, index, len),
        })
        .unwrap();
    }
}

/// Gets until the queue is closed; returns (producer, index, length) of each message,
/// after checking its bytes.
fn consume(q: Queue<Message>) -> Vec<(u32, u32, usize)> {
    q.iter()
        .map(|m| {
            let m = m.unwrap();
            assert_eq!(m.body, body(m.producer, m.index, m.body.len()), "corrupted");
            (m.producer, m.index, m.body.len())
        })
        .collect()
}

fn size() -> impl Strategy<Value = usize> {
    prop_oneof![
        8 => 0usize..300,
        2 => 300usize..RING,
        1 => RING..RING * 5,
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(5))]

    #[test]
    fn producers_and_consumers_lose_and_duplicate_nothing(
        sizes in proptest::collection::vec(proptest::collection::vec(size(), 1..40), 1..=3),
        consumers in 1usize..=3,
    ) {
        for method in StartMethod::ALL {
            let q: Queue<Message> = QueueBuilder::new().capacity(RING).build().unwrap();
            let readers: Vec<_> = (0..consumers).map(|_| start(method, consume, q.clone())).collect();
            let writers: Vec<_> = sizes
                .iter()
                .enumerate()
                .map(|(p, sizes)| start(method, produce, (q.clone(), p as u32, sizes.clone())))
                .collect();
            for w in writers {
                w.join_timeout(LONG).unwrap();
            }
            q.close();
            let mut got: Vec<_> = readers
                .into_iter()
                .flat_map(|r| r.join_timeout(LONG).unwrap())
                .collect();
            got.sort_unstable();
            let mut sent: Vec<_> = sizes
                .iter()
                .enumerate()
                .flat_map(|(p, sizes)| {
                    sizes.iter().enumerate().map(move |(i, &len)| (p as u32, i as u32, len))
                })
                .collect();
            sent.sort_unstable();
            prop_assert_eq!(got, sent, "{}", method);
            prop_assert!(q.is_empty());
        }
    }
}

#[test]
fn one_producer_s_items_come_out_in_its_order() {
    for method in StartMethod::ALL {
        let q: Queue<Message> = QueueBuilder::new().capacity(RING).build().unwrap();
        let sizes: Vec<usize> = (0..200).map(|i| (i * 97) % (3 * RING)).collect();
        let writer = start(method, produce, (q.clone(), 0, sizes.clone()));
        for (i, &len) in sizes.iter().enumerate() {
            let m = q.get_timeout(LONG).unwrap();
            assert_eq!((m.index as usize, m.body.len()), (i, len), "{method}");
            assert_eq!(m.body, body(0, i as u32, len));
        }
        writer.join_timeout(LONG).unwrap();
    }
}

fn put_and_exit(q: Queue<String>) {
    q.put("first".into()).unwrap();
    q.put("x".repeat(100_000)).unwrap();
    q.put("last".into()).unwrap();
}

#[test]
fn a_child_that_puts_and_exits_can_be_joined_before_anyone_reads() {
    for method in StartMethod::ALL {
        // Python deadlocks here: the child's feeder thread waits for a reader. Here the
        // items are in shared memory when put returns; the ring is large enough for them.
        let q: Queue<String> = QueueBuilder::new().capacity(1 << 18).build().unwrap();
        let child = start(method, put_and_exit, q.clone());
        child.join_timeout(LONG).unwrap();
        assert_eq!(child.exitcode(), Some(0));
        assert_eq!(q.len(), 3, "{method}");
        assert_eq!(q.get().unwrap(), "first");
        assert_eq!(q.get().unwrap().len(), 100_000);
        assert_eq!(q.get().unwrap(), "last");
        assert!(q.try_get().unwrap_err().is_empty());
    }
}

fn count_until_closed(q: Queue<u64>) -> (usize, u64) {
    let mut n = 0;
    let mut sum = 0;
    for item in &q {
        n += 1;
        sum += item.unwrap();
    }
    // Closed for good: every form says so at once.
    assert!(q.get().unwrap_err().is_closed());
    assert!(q.try_get().unwrap_err().is_closed());
    assert!(q.put(1).unwrap_err().is_closed());
    (n, sum)
}

#[test]
fn close_ends_the_consumers_loops_in_other_processes() {
    for method in StartMethod::ALL {
        let q = Queue::<u64>::new().unwrap();
        let consumers: Vec<_> = (0..2)
            .map(|_| start(method, count_until_closed, q.clone()))
            .collect();
        for i in 1..=1000 {
            q.put(i).unwrap();
        }
        q.close();
        let (n, sum) = consumers
            .into_iter()
            .map(|c| c.join_timeout(LONG).unwrap())
            .fold((0, 0), |(n, s), (n2, s2)| (n + n2, s + s2));
        assert_eq!((n, sum), (1000, 500_500), "{method}");
    }
}

fn work_and_mark_done(q: JoinableQueue<u32>) -> u32 {
    let mut done = 0;
    for item in &q {
        let _: u32 = item.unwrap();
        done += 1;
        q.task_done().unwrap();
    }
    done
}

#[test]
fn joinable_queue_join_waits_for_task_done_in_other_processes() {
    for method in StartMethod::ALL {
        let q = JoinableQueue::<u32>::new().unwrap();
        let workers: Vec<_> = (0..2)
            .map(|_| start(method, work_and_mark_done, q.clone()))
            .collect();
        for i in 0..300 {
            q.put(i).unwrap();
        }
        assert!(q.join_timeout(LONG).unwrap(), "{method}: join timed out");
        assert_eq!(q.unfinished_tasks(), 0);
        assert!(q.task_done().is_err(), "more task_done than items");
        q.close();
        let total: u32 = workers
            .into_iter()
            .map(|w| w.join_timeout(LONG).unwrap())
            .sum();
        assert_eq!(total, 300, "{method}");
    }
}

fn join_from_a_child(q: JoinableQueue<u32>) -> bool {
    q.join_timeout(LONG).unwrap()
}

#[test]
fn a_child_can_join_what_the_parent_marks_done() {
    let q = JoinableQueue::<u32>::new().unwrap();
    q.put(7).unwrap();
    let joiner = start(StartMethod::Spawn, join_from_a_child, q.clone());
    std::thread::sleep(Duration::from_millis(100));
    assert!(joiner.is_alive(), "the item is not done yet");
    assert_eq!(q.get().unwrap(), 7);
    q.task_done().unwrap();
    assert!(joiner.join_timeout(LONG).unwrap());
}

fn echo_twice(args: (Queue<String>, SimpleQueue<String>)) {
    let (from, to) = args;
    for s in from.iter().take(2) {
        to.put(s.unwrap() + "!").unwrap();
    }
}

#[test]
fn queues_reach_children_by_every_route() {
    for method in StartMethod::ALL {
        let (from, to) = (Queue::new().unwrap(), SimpleQueue::new().unwrap());
        let child = start(method, echo_twice, (from.clone(), to.clone()));
        from.put("as an argument".into()).unwrap();
        from.put("again".into()).unwrap();
        assert_eq!(to.get().unwrap(), "as an argument!", "{method}");
        assert_eq!(to.get().unwrap(), "again!");
        child.join_timeout(LONG).unwrap();
    }

    // Inherited by fork: the closure captures the handle.
    let q = Queue::<u32>::new().unwrap();
    let theirs = q.clone();
    // SAFETY: the child only puts on the queue (shared-memory mutex and atomics) and
    // exits; it takes no lock another thread of the harness could hold.
    let child =
        unsafe { Process::fork(move || theirs.put(99).unwrap()).start_unchecked() }.unwrap();
    child.join_timeout(LONG).unwrap();
    assert_eq!(q.get().unwrap(), 99);

    // Over a Connection, to a process that is already running.
    let (ours, theirs) = pipe(true).unwrap();
    let child = start(StartMethod::Spawn, receive_a_queue, theirs);
    let q = JoinableQueue::<String>::new().unwrap();
    ours.send(&q).unwrap();
    assert_eq!(q.get_timeout(LONG).unwrap(), "received over a connection");
    q.task_done().unwrap();
    child.join_timeout(LONG).unwrap();
}

fn receive_a_queue(conn: flotilla_ipc::Connection) {
    let q: JoinableQueue<String> = conn.recv_timeout(LONG).unwrap();
    q.put("received over a connection".into()).unwrap();
}

#[test]
fn a_queue_is_received_only_as_what_it_is() {
    let (ours, theirs) = pipe(true).unwrap();
    ours.send(&JoinableQueue::<u32>::new().unwrap()).unwrap();
    let err = theirs.recv::<Queue<u32>>().unwrap_err();
    assert!(err.to_string().contains("Joinable"), "{err}");
    ours.send(&Queue::<u32>::new().unwrap()).unwrap();
    let err = theirs.recv::<Queue<i64>>().unwrap_err();
    assert!(err.to_string().contains("i64"), "{err}");
    ours.send(&Queue::<u32>::new().unwrap()).unwrap();
    let q: Queue<u32> = theirs.recv().unwrap();
    q.put(1).unwrap();
    assert_eq!(q.get().unwrap(), 1);
}

fn put_from_a_pool_task(q: Queue<String>) -> u32 {
    q.put(format!("from pool worker {}", std::process::id()))
        .unwrap();
    1
}

#[test]
fn a_queue_is_an_ordinary_pool_task_argument() {
    // Python: "Queue objects should only be shared between processes through
    // inheritance". Here the queue is sent with the task, to a running worker.
    let pool = flotilla_process::Pool::builder()
        .processes(2)
        .build()
        .unwrap();
    let q = Queue::new().unwrap();
    let results = pool
        .map(
            put_from_a_pool_task,
            vec![q.clone(), q.clone(), q.clone()],
            None,
        )
        .unwrap();
    assert_eq!(results, [1, 1, 1]);
    for _ in 0..3 {
        assert!(q.get_timeout(LONG).unwrap().starts_with("from pool worker"));
    }
}

/// Blocks in a get until the queue is closed; reports whether it saw `Closed`.
fn get_until_closed(q: Queue<u32>) -> bool {
    matches!(
        q.get_timeout(LONG),
        Err(flotilla_ipc::GetTimeoutError::Closed)
    )
}

/// Python 3.13's `shutdown(immediate=True)` across processes: the items left are handed
/// back to the closer, a getter blocked in another process wakes to `Closed`, and a
/// joinable queue's `join` stops waiting for the dropped items.
#[test]
fn close_immediately_empties_the_queue_for_every_process() {
    for method in StartMethod::ALL {
        let waiting = Queue::<u32>::new().unwrap();
        let getter = start(method, get_until_closed, waiting.clone());
        std::thread::sleep(Duration::from_millis(100));
        assert!(waiting.close_immediately().is_empty());
        assert!(getter.join_timeout(LONG).unwrap(), "{method}");

        let q = JoinableQueue::<u32>::new().unwrap();
        for i in 0..5 {
            q.put(i).unwrap();
        }
        assert_eq!(q.close_immediately(), [0, 1, 2, 3, 4], "{method}");
        assert!(
            q.join_timeout(LONG).unwrap(),
            "{method}: join waited for dropped items"
        );
        assert!(q.put(9).unwrap_err().is_closed());
    }
}
