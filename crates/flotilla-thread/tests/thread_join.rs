//! Behaviour of `Thread`: join with and without timeout, retrying a timed-out join,
//! panics reported with their message, names, identity, and daemon inheritance.

use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use flotilla_thread::{Error, Event, Thread, ThreadBuilder, spawn};

const LONG: Duration = Duration::from_secs(10);

#[test]
fn join_returns_the_value() {
    let t = spawn(|| vec![1, 2, 3]).unwrap();
    assert_eq!(t.join_timeout(LONG).unwrap(), vec![1, 2, 3]);
    assert!(!t.is_alive());
}

#[test]
fn a_timed_out_join_can_be_retried() {
    let go = Arc::new(Event::new());
    let t = {
        let go = Arc::clone(&go);
        spawn(move || go.wait_timeout(LONG)).unwrap()
    };
    assert!(matches!(
        t.join_timeout(Duration::from_millis(20)),
        Err(Error::Timeout(_))
    ));
    assert!(
        t.is_alive(),
        "a thread blocked on an unset event is not alive"
    );
    assert!(matches!(
        t.join_timeout(Duration::ZERO),
        Err(Error::Timeout(_))
    ));
    go.set();
    assert!(t.join_timeout(LONG).unwrap());
    assert!(!t.is_alive());
}

#[test]
fn a_panic_is_reported_with_its_message_and_thread_name() {
    let t = ThreadBuilder::new()
        .name("doomed")
        .spawn(|| -> u32 { panic!("target failed: {}", 42) })
        .unwrap();
    match t.join_timeout(LONG) {
        Err(Error::Panicked { thread, message }) => {
            assert_eq!(thread, "doomed");
            assert_eq!(message, "target failed: 42");
        }
        other => panic!("expected a panic error, got {other:?}"),
    }
    assert!(!t.is_alive());
    // A failure is told to every join, as for a process.
    assert!(matches!(t.join(), Err(Error::Panicked { .. })));
}

#[test]
fn the_outcome_is_handed_out_once() {
    let t = spawn(|| 1).unwrap();
    assert_eq!(t.join().unwrap(), 1);
    assert!(matches!(t.join(), Err(Error::AlreadyJoined(_))));
    assert!(matches!(
        t.join_timeout(Duration::ZERO),
        Err(Error::AlreadyJoined(_))
    ));
}

#[test]
fn a_thread_cannot_join_itself() {
    let (handle_tx, handle_rx) = mpsc::channel::<Thread<bool>>();
    let (result_tx, result_rx) = mpsc::channel();
    let t = spawn(move || {
        let me = handle_rx.recv().unwrap();
        let refused = matches!(me.join(), Err(Error::JoinSelf(_)));
        result_tx.send(refused).unwrap();
        refused
    })
    .unwrap();
    handle_tx.send(t).unwrap();
    assert!(result_rx.recv_timeout(LONG).unwrap());
}

#[test]
fn names_default_to_thread_n_and_reach_the_os_thread() {
    let unnamed = spawn(|| std::thread::current().name().map(str::to_owned)).unwrap();
    let name = unnamed.name().to_owned();
    let number = name.strip_prefix("Thread-").expect("default name Thread-N");
    assert!(number.parse::<u64>().is_ok(), "{name}");
    assert_eq!(unnamed.join_timeout(LONG).unwrap(), Some(name));

    let named = ThreadBuilder::new()
        .name("a rather long thread name, longer than Linux keeps")
        .spawn(|| std::thread::current().name().map(str::to_owned))
        .unwrap();
    assert_eq!(
        named.join_timeout(LONG).unwrap().as_deref(),
        Some("a rather long thread name, longer than Linux keeps")
    );
}

#[test]
fn a_nul_in_the_name_is_an_error_not_a_panic() {
    let err = ThreadBuilder::new()
        .name("bad\0name")
        .spawn(|| ())
        .unwrap_err();
    assert!(matches!(err, Error::InvalidThreadName(ref n) if n == "bad\0name"));
}

#[test]
fn ident_is_the_threads_own_id() {
    let t = spawn(|| std::thread::current().id()).unwrap();
    let ident = t.ident();
    assert_ne!(ident, std::thread::current().id());
    assert_eq!(t.join_timeout(LONG).unwrap(), ident);
}

#[test]
fn daemon_is_inherited_from_the_spawning_thread_unless_set() {
    let parent = ThreadBuilder::new()
        .daemon(true)
        .spawn(|| {
            let inherited = spawn(|| ()).unwrap();
            let overridden = ThreadBuilder::new().daemon(false).spawn(|| ()).unwrap();
            let flags = (inherited.daemon(), overridden.daemon());
            inherited.join_timeout(LONG).unwrap();
            overridden.join_timeout(LONG).unwrap();
            flags
        })
        .unwrap();
    assert!(parent.daemon());
    assert_eq!(parent.join_timeout(LONG).unwrap(), (true, false));
    let top = spawn(|| ()).unwrap();
    assert!(!top.daemon(), "the main thread's children are not daemons");
    top.join_timeout(LONG).unwrap();
}

#[test]
fn debug_shows_name_and_state() {
    let t = ThreadBuilder::new().name("dbg").spawn(|| ()).unwrap();
    t.join_timeout(LONG).unwrap();
    let shown = format!("{t:?}");
    assert!(
        shown.contains("\"dbg\"") && shown.contains("joined: true"),
        "{shown}"
    );
}
