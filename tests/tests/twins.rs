//! The thread and process forms of each concept are twins: the same scenario, written
//! once in a macro, runs against both and means the same. A method missing from one
//! twin, or a result of another meaning, fails to build or fails here.
//!
//! What stays different, on purpose: a process-shared object lives in shared memory,
//! so making one can fail (`new` returns a `Result`), and an operation that takes its
//! robust lock can report a holder's death (a `Result` where the thread form returns
//! `()`). [`ok`] reads both the same way.

use std::time::Duration;

const SHORT: Duration = Duration::from_millis(20);
const LONG: Duration = Duration::from_secs(60);

/// `()` or `Ok(())`, the two shapes of "done": true when it is done.
trait Done {
    fn ok(self) -> bool;
}
impl Done for () {
    fn ok(self) -> bool {
        true
    }
}
impl<E: std::fmt::Debug> Done for Result<(), E> {
    fn ok(self) -> bool {
        self.is_ok()
    }
}
fn ok(done: impl Done) -> bool {
    done.ok()
}

macro_rules! event_scenario {
    ($event:expr) => {{
        let event = $event;
        assert!(!event.is_set());
        assert!(!event.wait_timeout(SHORT), "wait times out while clear");
        event.set();
        assert!(event.is_set() && event.wait_timeout(LONG));
        event.wait(); // returns at once: the flag is set
        event.clear();
        assert!(!event.is_set());
    }};
}

#[test]
fn event() {
    event_scenario!(flotilla::threading::Event::new());
    event_scenario!(flotilla::multiprocessing::Event::new().unwrap());
}

macro_rules! semaphore_scenario {
    ($sem:expr, $bounded:expr) => {{
        let sem = $sem;
        assert_eq!(sem.value(), 2);
        assert!(sem.try_acquire() && sem.acquire_timeout(LONG));
        assert!(!sem.try_acquire() && !sem.acquire_timeout(SHORT), "empty");
        assert!(ok(sem.release(2)));
        {
            let permit = sem.acquire_permit_timeout(LONG).expect("a permit");
            assert_eq!(sem.value(), 1);
            drop(permit);
        }
        assert_eq!(sem.value(), 2);
        assert!(sem.try_acquire_permit().is_some());
        let bounded = $bounded;
        assert_eq!(bounded.bound(), 1);
        assert!(
            bounded.release(1).is_err(),
            "a release past the bound is an error"
        );
        assert!(bounded.try_acquire() && bounded.release(1).is_ok());
    }};
}

#[test]
fn semaphore() {
    semaphore_scenario!(
        flotilla::threading::Semaphore::new(2),
        flotilla::threading::BoundedSemaphore::new(1)
    );
    semaphore_scenario!(
        flotilla::multiprocessing::Semaphore::new(2).unwrap(),
        flotilla::multiprocessing::BoundedSemaphore::new(1).unwrap()
    );
}

macro_rules! barrier_scenario {
    ($barrier:expr) => {{
        let barrier = $barrier;
        assert_eq!(
            (barrier.parties(), barrier.n_waiting(), barrier.broken()),
            (2, 0, false)
        );
        let mut indices: Vec<usize> = std::thread::scope(|s| {
            let other = s.spawn(|| barrier.wait_timeout(LONG).unwrap());
            let mine = barrier.wait_timeout(LONG).unwrap();
            vec![mine, other.join().unwrap()]
        });
        indices.sort();
        assert_eq!(indices, [0, 1], "each party gets its arrival index");
        // Alone, the wait times out, which breaks the barrier for everyone.
        assert!(barrier.wait_timeout(SHORT).is_err());
        assert!(barrier.broken());
        assert!(ok(barrier.reset()));
        assert!(!barrier.broken());
        assert!(ok(barrier.abort()));
        assert!(barrier.broken() && barrier.wait_timeout(LONG).is_err());
    }};
}

#[test]
fn barrier() {
    barrier_scenario!(flotilla::threading::Barrier::new(2));
    barrier_scenario!(flotilla::multiprocessing::Barrier::new(2).unwrap());
}

/// The condition twins have the same methods; the process form answers with `Result`s
/// (its lock is robust, its futex wait can fail), the thread form with the guard or an
/// `Option` (a timed lock) and `bool` (a timed wait).
#[test]
fn condition() {
    let cond = flotilla::threading::Condition::new(());
    {
        let mut guard = cond.lock();
        assert_eq!(guard.waiting(), 0);
        assert!(
            !guard.wait_timeout(SHORT),
            "nobody notifies: the timed wait says so"
        );
        guard.notify(1);
        guard.notify_all();
    }
    drop(cond.try_lock().expect("free"));
    drop(cond.try_acquire().expect("free"));
    drop(cond.acquire_timeout(LONG).expect("free"));

    let cond = flotilla::multiprocessing::Condition::new().unwrap();
    {
        let mut guard = cond.lock().unwrap();
        assert_eq!(guard.waiting(), 0);
        assert!(
            !guard.wait_timeout(SHORT).unwrap(),
            "nobody notifies: the timed wait says so"
        );
        guard.notify(1);
        guard.notify_all();
    }
    drop(cond.try_lock().expect("free"));
    drop(cond.try_acquire().expect("free"));
    drop(cond.acquire_timeout(LONG).expect("free"));
}

macro_rules! queue_scenario {
    ($q:expr) => {{
        let q = $q;
        assert_eq!(q.maxsize(), Some(2));
        q.put(1).unwrap();
        assert!(q.try_put(2).is_ok());
        assert!(q.is_full() && q.len() == 2);
        assert!(q.try_put(3).unwrap_err().is_full());
        assert!(q.put_timeout(3, SHORT).unwrap_err().is_timeout());
        assert_eq!(q.get().unwrap(), 1);
        assert_eq!(q.try_get().unwrap(), 2);
        assert!(q.try_get().unwrap_err().is_empty());
        assert!(q.get_timeout(SHORT).unwrap_err().is_timeout());
        q.put(4).unwrap();
        q.close();
        assert!(q.is_closed());
        assert!(q.put(5).unwrap_err().is_closed());
        assert_eq!(
            q.get().unwrap(),
            4,
            "a closed queue still gives what it holds"
        );
        assert!(q.get().unwrap_err().is_closed());
        assert!(q.close_immediately().is_empty());
    }};
}

#[test]
fn queue() {
    queue_scenario!(flotilla::queue::Queue::bounded(2));
    queue_scenario!(flotilla::multiprocessing::Queue::bounded(2).unwrap());
    // maxsize 0 is unbounded in both, as in Python.
    assert_eq!(flotilla::queue::Queue::<u8>::bounded(0).maxsize(), None);
    assert_eq!(
        flotilla::multiprocessing::Queue::<u8>::bounded(0)
            .unwrap()
            .maxsize(),
        None
    );
}

fn forty_two(_: ()) -> u8 {
    42
}

#[test]
fn thread_and_process() {
    let thread = flotilla::threading::ThreadBuilder::new()
        .name("twin")
        .daemon(false)
        .spawn(|| 42u8)
        .unwrap();
    assert_eq!((thread.name(), thread.daemon()), ("twin", false));
    let process = flotilla::multiprocessing::Process::new(forty_two, ())
        .name("twin")
        .daemon(false)
        .start()
        .unwrap();
    assert_eq!((process.name(), process.daemon()), ("twin", false));
    assert_eq!(thread.join_timeout(LONG).unwrap(), 42);
    assert_eq!(process.join_timeout(LONG).unwrap(), 42);
    assert!(!thread.is_alive() && !process.is_alive());
    // A second join: the value went to the first, both say so the same way.
    assert!(matches!(
        thread.join_timeout(LONG),
        Err(flotilla::threading::Error::AlreadyJoined(_))
    ));
    assert!(matches!(
        process.join_timeout(LONG),
        Err(flotilla::multiprocessing::Error::AlreadyJoined)
    ));
}

fn sleep_long(_: ()) {
    std::thread::sleep(Duration::from_secs(30));
}

/// A timed join that runs out is an error of the same name in both, and may be tried
/// again.
#[test]
fn a_timed_join_times_out_the_same_way() {
    let thread =
        flotilla::threading::spawn(|| std::thread::sleep(Duration::from_millis(300))).unwrap();
    assert!(matches!(
        thread.join_timeout(SHORT),
        Err(flotilla::threading::Error::Timeout(_))
    ));
    let process = flotilla::multiprocessing::Process::new(sleep_long, ())
        .start()
        .unwrap();
    assert!(matches!(
        process.join_timeout(SHORT),
        Err(flotilla::multiprocessing::Error::Timeout(_))
    ));
    process.kill().unwrap();
    thread.join_timeout(LONG).unwrap();
    assert!(process.join_timeout(LONG).is_err(), "killed");
}
