//! The cross-process queues from async code: `put_async`, `get_async` and `join_async`
//! with a process on the other side, on a current-thread runtime whose timers keep
//! ticking while a task awaits the queue — no runtime thread ever blocks on it.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{LONG, bounded, ticker};
use flotilla_ipc::{GetError, JoinableQueue, Queue, QueueBuilder};
use flotilla_process::{StartMethod, get_context};

/// The other side: answers each number on `requests` with its square on `replies`,
/// after a pause, until `requests` is closed.
fn squarer((requests, replies): (Queue<u64>, Queue<u64>)) {
    for n in &requests {
        let n = n.unwrap();
        std::thread::sleep(Duration::from_millis(20));
        replies.put(n * n).unwrap();
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_process_answers_through_queues_while_timers_tick() {
    for method in [StartMethod::Spawn, StartMethod::ForkServer] {
        let requests = Queue::bounded(2).unwrap();
        let replies = Queue::new().unwrap();
        let child = get_context(Some(method))
            .process(squarer, (requests.clone(), replies.clone()))
            .start()
            .unwrap();
        // A ticker on the same (only) runtime thread: it advances only if awaiting the
        // queues never blocks that thread.
        let (ticks, ticker) = ticker(Duration::from_millis(5));
        let producer = async {
            // maxsize 2 against a slow consumer: these puts wait for room.
            for n in 1..=10u64 {
                requests.put_async(n).await.unwrap();
            }
            requests.close();
        };
        let consumer = async {
            let mut got = Vec::new();
            for _ in 1..=10 {
                got.push(replies.get_async().await.unwrap());
            }
            got
        };
        let ((), got) = bounded(async { tokio::join!(producer, consumer) }).await;
        assert_eq!(
            got,
            (1..=10u64).map(|n| n * n).collect::<Vec<_>>(),
            "{method}"
        );
        // Ten replies 20 ms apart: the 5 ms ticker ran meanwhile.
        assert!(
            ticks.load(Ordering::Relaxed) >= 10,
            "{method}: the runtime was blocked"
        );
        ticker.abort();
        tokio::task::spawn_blocking(move || child.join_timeout(LONG))
            .await
            .unwrap()
            .unwrap();
    }
}

/// Takes every item, marking each done after a pause, until the queue is closed.
fn worker(jobs: JoinableQueue<u32>) {
    for job in &*jobs {
        job.unwrap();
        std::thread::sleep(Duration::from_millis(5));
        jobs.task_done().unwrap();
    }
}

#[tokio::test(flavor = "current_thread")]
async fn join_async_waits_for_a_processs_task_done() {
    let jobs = JoinableQueue::new().unwrap();
    let child = get_context(Some(StartMethod::ForkServer))
        .process(worker, jobs.clone())
        .start()
        .unwrap();
    for n in 0..20u32 {
        jobs.put_async(n).await.unwrap();
    }
    bounded(jobs.join_async()).await.unwrap();
    assert_eq!(jobs.unfinished_tasks(), 0);
    jobs.close();
    tokio::task::spawn_blocking(move || child.join_timeout(LONG))
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn an_item_longer_than_the_ring_goes_through_and_close_ends_a_waiting_get() {
    let queue: Queue<Vec<u8>> = QueueBuilder::new().capacity(4096).build().unwrap();
    let long: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
    let (put, got) =
        bounded(async { tokio::join!(queue.put_async(long.clone()), queue.get_async()) }).await;
    put.unwrap();
    assert_eq!(got.unwrap(), long);

    // A get waiting on an empty queue ends when another task closes it.
    let (got, ()) = bounded(async {
        tokio::join!(queue.get_async(), async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            queue.close();
        })
    })
    .await;
    assert!(matches!(got, Err(GetError::Closed)));
}

#[tokio::test]
async fn a_dropped_get_takes_nothing() {
    let queue = Queue::<u8>::new().unwrap();
    // Times out while waiting: the future is dropped mid-wait.
    assert!(
        tokio::time::timeout(Duration::from_millis(20), queue.get_async())
            .await
            .is_err()
    );
    queue.put(7).unwrap();
    assert_eq!(bounded(queue.get_async()).await.unwrap(), 7);
}
