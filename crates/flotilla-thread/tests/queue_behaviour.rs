//! Behaviour of the queues as a user sees it: order per discipline, bounded blocking and
//! timeouts, close, task_done / join, and the auto traits of the public types.
//!
//! Every wait here is bounded: threads report through channels read with a generous
//! timeout, so a broken queue fails a test instead of hanging it. Nothing asserts speed.

use std::cmp::Reverse;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use flotilla_thread::queue::{Fifo, GenericQueue, Iter, Lifo, Priority, TryIter};
use flotilla_thread::{
    GetError, GetTimeoutError, LifoQueue, PriorityQueue, PutError, PutTimeoutError, Queue,
    TaskDoneError, TryGetError, TryPutError,
};

/// Long enough that a healthy test never meets it.
const PATIENCE: Duration = Duration::from_secs(30);
/// How long to let a thread run into a wait before poking it. The tests pass whether or
/// not the thread got there in time; they only test less if it did not.
const SETTLE: Duration = Duration::from_millis(50);
/// A timeout the tests expect to run out.
const SHORT: Duration = Duration::from_millis(20);

/// A thread whose result is awaited with [`PATIENCE`].
struct Task<R> {
    rx: mpsc::Receiver<R>,
}

fn spawn<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> Task<R> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    Task { rx }
}

impl<R> Task<R> {
    #[track_caller]
    fn wait(self) -> R {
        self.rx
            .recv_timeout(PATIENCE)
            .expect("the thread hung or panicked")
    }

    /// Whether the thread has finished (it must not have, for the callers).
    fn finished(&self) -> bool {
        !matches!(self.rx.try_recv(), Err(mpsc::TryRecvError::Empty))
    }
}

// ---- order ----------------------------------------------------------------------------

#[test]
fn fifo_hands_out_in_put_order() {
    let q = Queue::new();
    for i in [3, 1, 4, 1, 5] {
        q.put(i).unwrap();
    }
    assert_eq!(q.try_iter().collect::<Vec<_>>(), [3, 1, 4, 1, 5]);
}

#[test]
fn lifo_hands_out_the_newest_first() {
    let q = LifoQueue::new();
    for i in [3, 1, 4, 1, 5] {
        q.put(i).unwrap();
    }
    assert_eq!(q.try_iter().collect::<Vec<_>>(), [5, 1, 4, 1, 3]);
}

#[test]
fn priority_hands_out_the_smallest_first() {
    let q = PriorityQueue::new();
    for i in [3, 1, 4, 1, 5] {
        q.put(i).unwrap();
    }
    assert_eq!(q.try_iter().collect::<Vec<_>>(), [1, 1, 3, 4, 5]);
}

#[test]
fn priority_with_reverse_hands_out_the_largest_first() {
    let q = PriorityQueue::new();
    for i in [3, 1, 4, 1, 5] {
        q.put(Reverse(i)).unwrap();
    }
    let out: Vec<_> = q.try_iter().map(|Reverse(i)| i).collect();
    assert_eq!(out, [5, 4, 3, 1, 1]);
}

#[test]
fn priority_pairs_sort_by_priority_then_payload() {
    let q = PriorityQueue::new();
    q.put((2, "write docs")).unwrap();
    q.put((1, "fix bug")).unwrap();
    q.put((3, "refactor")).unwrap();
    q.put((1, "answer email")).unwrap();
    let out: Vec<_> = q.try_iter().map(|(_, job)| job).collect();
    assert_eq!(out, ["answer email", "fix bug", "write docs", "refactor"]);
}

// ---- sizes ----------------------------------------------------------------------------

#[test]
fn sizes_track_puts_and_gets() {
    let q = Queue::bounded(2);
    assert_eq!((q.len(), q.is_empty(), q.is_full()), (0, true, false));
    q.put('a').unwrap();
    assert_eq!((q.len(), q.is_empty(), q.is_full()), (1, false, false));
    q.put('b').unwrap();
    assert_eq!((q.len(), q.is_empty(), q.is_full()), (2, false, true));
    q.get().unwrap();
    assert_eq!((q.len(), q.is_empty(), q.is_full()), (1, false, false));
    assert_eq!(q.maxsize(), Some(2));
}

#[test]
fn unbounded_is_never_full() {
    let q = Queue::new();
    for i in 0..10_000 {
        q.try_put(i).unwrap();
    }
    assert!(!q.is_full());
    assert_eq!(q.len(), 10_000);
    assert_eq!(q.maxsize(), None);
}

/// Python's `Queue(maxsize=0)` is unbounded, and so is `bounded(0)` (no panic).
#[test]
fn bounded_to_zero_is_unbounded_as_in_python() {
    let q = Queue::bounded(0);
    assert_eq!(q.maxsize(), None);
    for i in 0..1_000 {
        q.try_put(i).unwrap();
    }
    assert!(!q.is_full());
}

/// Python 3.13's `shutdown(immediate=True)`: the items left are dropped (here: handed
/// back in get order), `join` no longer waits for them, and a blocked getter wakes to
/// `Closed`.
#[test]
fn close_immediately_hands_back_the_items_and_wakes_everyone() {
    const LONG: Duration = Duration::from_secs(60);
    let q = Queue::new();
    q.put(1).unwrap();
    q.put(2).unwrap();
    let joiner = {
        let q = q.clone();
        thread::spawn(move || q.join_timeout(LONG))
    };
    assert_eq!(q.close_immediately(), [1, 2]);
    assert!(
        joiner.join().unwrap(),
        "join still waited for the dropped items"
    );
    assert!(q.is_closed() && q.is_empty() && q.unfinished_tasks() == 0);
    assert!(q.put(3).is_err());
    assert!(q.close_immediately().is_empty());

    let empty = Queue::<u8>::new();
    let getter = {
        let empty = empty.clone();
        thread::spawn(move || empty.get_timeout(LONG))
    };
    thread::sleep(Duration::from_millis(20));
    assert!(empty.close_immediately().is_empty());
    assert!(getter.join().unwrap().unwrap_err().is_closed());
}

#[test]
fn clones_share_one_queue() {
    let a = Queue::new();
    let b = a.clone();
    a.put(1).unwrap();
    assert_eq!(b.len(), 1);
    b.close();
    assert!(a.is_closed());
}

// ---- non-blocking forms ---------------------------------------------------------------

#[test]
fn try_put_on_full_hands_the_item_back() {
    let q = Queue::bounded(1);
    q.try_put(String::from("first")).unwrap();
    let err = q.try_put(String::from("second")).unwrap_err();
    assert!(err.is_full());
    assert_eq!(err.into_inner(), "second");
    assert_eq!(q.len(), 1);
    assert_eq!(q.unfinished_tasks(), 1, "a refused put adds no task");
}

#[test]
fn try_get_on_empty_is_empty() {
    let q = Queue::<u8>::new();
    assert_eq!(q.try_get(), Err(TryGetError::Empty));
    assert!(q.try_get().unwrap_err().is_empty());
}

// ---- blocking and timeouts ------------------------------------------------------------

#[test]
fn put_on_full_waits_for_a_get() {
    let q = Queue::bounded(1);
    q.put(1).unwrap();
    let putter = spawn({
        let q = q.clone();
        move || q.put(2)
    });
    thread::sleep(SETTLE);
    assert!(!putter.finished(), "put returned while the queue was full");
    assert_eq!(q.get(), Ok(1));
    assert_eq!(putter.wait(), Ok(()));
    assert_eq!(q.get(), Ok(2));
}

#[test]
fn get_on_empty_waits_for_a_put() {
    let q = Queue::new();
    let getter = spawn({
        let q = q.clone();
        move || q.get()
    });
    thread::sleep(SETTLE);
    assert!(!getter.finished(), "get returned while the queue was empty");
    q.put("hello").unwrap();
    assert_eq!(getter.wait(), Ok("hello"));
}

#[test]
fn put_timeout_on_full_times_out_with_the_item() {
    let q = Queue::bounded(1);
    q.put(vec![1]).unwrap();
    let start = Instant::now();
    let err = q.put_timeout(vec![2], SHORT).unwrap_err();
    assert!(start.elapsed() >= SHORT, "timed out before the timeout");
    assert_eq!(err, PutTimeoutError::Timeout(vec![2]));
    assert_eq!(q.len(), 1);
}

#[test]
fn get_timeout_on_empty_times_out() {
    let q = LifoQueue::<u8>::new();
    let start = Instant::now();
    assert_eq!(q.get_timeout(SHORT), Err(GetTimeoutError::Timeout));
    assert!(start.elapsed() >= SHORT, "timed out before the timeout");
}

#[test]
fn put_timeout_succeeds_when_room_comes_in_time() {
    let q = Queue::bounded(1);
    q.put(1).unwrap();
    let putter = spawn({
        let q = q.clone();
        move || q.put_timeout(2, PATIENCE)
    });
    thread::sleep(SETTLE);
    assert_eq!(q.get(), Ok(1));
    assert_eq!(putter.wait(), Ok(()));
}

#[test]
fn get_timeout_succeeds_when_an_item_comes_in_time() {
    let q = PriorityQueue::new();
    let getter = spawn({
        let q = q.clone();
        move || q.get_timeout(PATIENCE)
    });
    thread::sleep(SETTLE);
    q.put(5).unwrap();
    assert_eq!(getter.wait(), Ok(5));
}

#[test]
fn deadline_forms_share_one_deadline() {
    let q = Queue::bounded(1);
    let deadline = Instant::now() + SHORT;
    q.put_deadline(1, deadline).unwrap();
    assert!(q.put_deadline(2, deadline).unwrap_err().is_timeout());
    assert_eq!(q.get_deadline(deadline), Ok(1));
    assert!(q.get_deadline(deadline).unwrap_err().is_timeout());
    assert!(Instant::now() >= deadline);
}

#[test]
fn many_blocked_putters_all_get_through() {
    let q = Queue::bounded(1);
    let putters: Vec<_> = (0..4)
        .map(|i| {
            let q = q.clone();
            spawn(move || q.put(i))
        })
        .collect();
    let mut got: Vec<_> = (0..4).map(|_| q.get_timeout(PATIENCE).unwrap()).collect();
    got.sort();
    assert_eq!(got, [0, 1, 2, 3]);
    for putter in putters {
        assert_eq!(putter.wait(), Ok(()));
    }
}

// ---- close ----------------------------------------------------------------------------

#[test]
fn put_after_close_hands_the_item_back() {
    let q = Queue::bounded(4);
    q.close();
    assert_eq!(q.put(1), Err(PutError::Closed(1)));
    assert_eq!(q.try_put(2), Err(TryPutError::Closed(2)));
    assert_eq!(q.put_timeout(3, SHORT), Err(PutTimeoutError::Closed(3)));
    assert_eq!(q.unfinished_tasks(), 0);
}

#[test]
fn get_after_close_drains_then_reports_closed() {
    let q = Queue::new();
    q.put(1).unwrap();
    q.put(2).unwrap();
    q.close();
    assert_eq!(q.get(), Ok(1));
    assert_eq!(q.get_timeout(PATIENCE), Ok(2));
    assert_eq!(q.get(), Err(GetError::Closed));
    assert_eq!(q.get_timeout(PATIENCE), Err(GetTimeoutError::Closed));
    assert_eq!(q.try_get(), Err(TryGetError::Closed));
}

#[test]
fn close_wakes_a_blocked_getter() {
    let q = Queue::<u8>::new();
    let getter = spawn({
        let q = q.clone();
        move || q.get()
    });
    let timed_getter = spawn({
        let q = q.clone();
        move || q.get_timeout(PATIENCE)
    });
    thread::sleep(SETTLE);
    q.close();
    assert_eq!(getter.wait(), Err(GetError::Closed));
    assert_eq!(timed_getter.wait(), Err(GetTimeoutError::Closed));
}

#[test]
fn close_wakes_a_blocked_putter_with_its_item() {
    let q = Queue::bounded(1);
    q.put(String::from("in")).unwrap();
    let putter = spawn({
        let q = q.clone();
        move || q.put(String::from("out"))
    });
    let timed_putter = spawn({
        let q = q.clone();
        move || q.put_timeout(String::from("timed"), PATIENCE)
    });
    thread::sleep(SETTLE);
    q.close();
    assert_eq!(putter.wait(), Err(PutError::Closed(String::from("out"))));
    assert_eq!(
        timed_putter.wait(),
        Err(PutTimeoutError::Closed(String::from("timed")))
    );
    // The item put before close is still there.
    assert_eq!(q.get().as_deref(), Ok("in"));
}

#[test]
fn iteration_ends_once_closed_and_drained() {
    let q = Queue::new();
    let consumer = spawn({
        let q = q.clone();
        move || q.iter().collect::<Vec<_>>()
    });
    for i in 0..5 {
        q.put(i).unwrap();
    }
    q.close();
    assert_eq!(consumer.wait(), [0, 1, 2, 3, 4]);
}

#[test]
fn for_loop_over_a_reference_iterates() {
    let q = LifoQueue::new();
    q.put(1).unwrap();
    q.put(2).unwrap();
    q.close();
    let mut seen = Vec::new();
    for item in &q {
        seen.push(item);
    }
    assert_eq!(seen, [2, 1]);
}

#[test]
fn try_iter_stops_at_empty_without_closing() {
    let q = Queue::new();
    q.put(1).unwrap();
    assert_eq!(q.try_iter().collect::<Vec<_>>(), [1]);
    assert!(!q.is_closed());
    q.put(2).unwrap();
    assert_eq!(q.try_iter().collect::<Vec<_>>(), [2]);
}

#[test]
fn close_twice_is_harmless() {
    let q = Queue::<()>::new();
    q.close();
    q.close();
    assert!(q.is_closed());
}

// ---- task_done / join -----------------------------------------------------------------

#[test]
fn join_returns_at_once_with_nothing_put() {
    let q = Queue::<()>::new();
    q.join();
    assert!(q.join_timeout(Duration::ZERO));
}

#[test]
fn join_waits_for_every_task_done() {
    let q = Queue::new();
    for i in 0..3 {
        q.put(i).unwrap();
    }
    assert!(
        !q.join_timeout(SHORT),
        "join returned with 3 unfinished tasks"
    );
    for _ in 0..3 {
        q.get().unwrap();
    }
    assert!(!q.join_timeout(SHORT), "getting is not finishing");
    q.task_done().unwrap();
    q.task_done().unwrap();
    assert_eq!(q.unfinished_tasks(), 1);
    assert!(!q.join_timeout(SHORT));
    q.task_done().unwrap();
    assert!(q.join_timeout(PATIENCE));
}

#[test]
fn join_wakes_when_workers_finish() {
    let q = Queue::new();
    let joiners: Vec<_> = (0..2)
        .map(|_| {
            let q = q.clone();
            spawn(move || q.join_timeout(PATIENCE))
        })
        .collect();
    let blocking_joiner = spawn({
        let q = q.clone();
        move || q.join()
    });
    for i in 0..10 {
        q.put(i).unwrap();
    }
    let worker = spawn({
        let q = q.clone();
        move || {
            for _ in &q {
                q.task_done().unwrap();
            }
        }
    });
    for joiner in joiners {
        joiner.wait();
    }
    blocking_joiner.wait();
    q.close();
    worker.wait();
}

#[test]
fn task_done_too_many_times_is_an_error() {
    let q = Queue::new();
    assert_eq!(q.task_done(), Err(TaskDoneError));
    q.put(1).unwrap();
    q.get().unwrap();
    assert_eq!(q.task_done(), Ok(()));
    assert_eq!(q.task_done(), Err(TaskDoneError));
    assert_eq!(
        q.unfinished_tasks(),
        0,
        "a refused task_done changes nothing"
    );
    q.put(2).unwrap();
    assert_eq!(q.unfinished_tasks(), 1);
}

#[test]
fn close_does_not_end_a_join() {
    let q = Queue::new();
    q.put(1).unwrap();
    q.close();
    assert!(!q.join_timeout(SHORT));
    q.get().unwrap();
    q.task_done().unwrap();
    assert!(q.join_timeout(PATIENCE));
}

// ---- errors ---------------------------------------------------------------------------

#[test]
fn errors_read_well_and_debug_without_item_debug() {
    struct Opaque;
    assert_eq!(
        PutError::Closed(Opaque).to_string(),
        "putting on a closed queue"
    );
    assert_eq!(format!("{:?}", PutError::Closed(Opaque)), "PutError { .. }");
    assert_eq!(format!("{:?}", TryPutError::Full(Opaque)), "Full(..)");
    assert_eq!(TryPutError::Full(()).to_string(), "putting on a full queue");
    assert_eq!(
        PutTimeoutError::Timeout(()).to_string(),
        "timed out putting on a full queue"
    );
    assert_eq!(
        TryGetError::Empty.to_string(),
        "getting from an empty queue"
    );
    assert_eq!(
        GetTimeoutError::Timeout.to_string(),
        "timed out getting from an empty queue"
    );
    assert_eq!(
        GetError::Closed.to_string(),
        "getting from a closed and empty queue"
    );
    assert!(TaskDoneError.to_string().contains("task_done()"));

    // They are errors, boxable and usable with `?`.
    let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(PutError::Closed(1));
    assert!(boxed.to_string().contains("closed"));
    assert_eq!(
        TryPutError::from(PutError::Closed(1)),
        TryPutError::Closed(1)
    );
    assert_eq!(TryGetError::from(GetError::Closed), TryGetError::Closed);
}

#[test]
fn queue_debug_shows_state_not_items() {
    struct Opaque;
    let q = Queue::bounded(3);
    q.put(Opaque).unwrap();
    let shown = format!("{q:?}");
    assert!(shown.contains("len: 1"), "{shown}");
    assert!(shown.contains("maxsize: Some(3)"), "{shown}");
    assert!(format!("{:?}", q.iter()).starts_with("Iter"));
}

// ---- auto traits ----------------------------------------------------------------------

#[test]
fn public_types_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Queue<String>>();
    send_sync::<LifoQueue<String>>();
    send_sync::<PriorityQueue<String>>();
    send_sync::<GenericQueue<Fifo<Vec<u8>>>>();
    send_sync::<Fifo<String>>();
    send_sync::<Lifo<String>>();
    send_sync::<Priority<String>>();
    send_sync::<Iter<'static, Fifo<String>>>();
    send_sync::<TryIter<'static, Priority<String>>>();
    send_sync::<PutError<String>>();
    send_sync::<TryPutError<String>>();
    send_sync::<PutTimeoutError<String>>();
    send_sync::<GetError>();
    send_sync::<TryGetError>();
    send_sync::<GetTimeoutError>();
    send_sync::<TaskDoneError>();
    // A queue of `Send + !Sync` items is still `Sync`: the lock makes it so.
    send_sync::<Queue<std::cell::Cell<u8>>>();
}
