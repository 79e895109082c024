//! Connection ends cross into children by every route — inherited through fork, passed
//! as an argument to spawn and forkserver — and a dead peer is end of file.

use std::time::Duration;

use flotilla_ipc::{Connection, RecvError, RecvTimeoutError, pipe};
use flotilla_process::{Process, StartMethod, get_context};

const LONG: Duration = Duration::from_secs(60);
const STOP: u32 = u32::MAX;

fn ping_pong(conn: Connection) -> u32 {
    let mut rounds = 0;
    while let Ok(n) = conn.recv::<u32>() {
        if n == STOP {
            break;
        }
        conn.send(&(n + 1)).unwrap();
        rounds += 1;
    }
    rounds
}

#[test]
fn a_duplex_end_as_an_argument_under_spawn_and_forkserver() {
    for method in [StartMethod::Spawn, StartMethod::ForkServer] {
        let (ours, theirs) = pipe(true).unwrap();
        let child = get_context(Some(method))
            .process(ping_pong, theirs)
            .start()
            .unwrap();
        for i in 0..10 {
            ours.send(&(i * 2)).unwrap();
            assert_eq!(ours.recv_timeout::<u32>(LONG).unwrap(), i * 2 + 1);
        }
        drop(ours); // end of file ends the child's loop
        assert_eq!(child.join_timeout(LONG).unwrap(), 10, "{method}");
    }
}

#[test]
fn an_end_inherited_through_fork() {
    let (ours, theirs) = pipe(true).unwrap();
    // SAFETY: the child only uses the connection it captured; it takes no lock that
    // another test thread could hold.
    let child = unsafe { Process::fork(move || ping_pong(theirs)).start_unchecked() }.unwrap();
    ours.send(&41u32).unwrap();
    assert_eq!(ours.recv_timeout::<u32>(LONG).unwrap(), 42);
    // Not end of file: a forked child inherits every descriptor, `ours` too, so the
    // pipe stays open while the child lives (as in Python).
    ours.send(&STOP).unwrap();
    assert_eq!(child.join_timeout(LONG).unwrap(), 1);
}

fn write_only(conn: Connection) {
    conn.send(&"only the child writes").unwrap();
}

#[test]
fn a_simplex_write_end_as_an_argument() {
    for method in [StartMethod::Spawn, StartMethod::ForkServer] {
        let (reader, writer) = pipe(false).unwrap();
        let child = get_context(Some(method))
            .process(write_only, writer)
            .start()
            .unwrap();
        assert_eq!(
            reader.recv_timeout::<String>(LONG).unwrap(),
            "only the child writes"
        );
        child.join_timeout(LONG).unwrap();
        assert!(
            matches!(
                reader.recv_timeout::<String>(LONG),
                Err(RecvTimeoutError::Recv(RecvError::Disconnected))
            ),
            "{method}"
        );
    }
}

fn hold_and_wait(conn: Connection) {
    conn.send(&"holding").unwrap();
    std::thread::sleep(Duration::from_secs(300));
}

#[test]
fn end_of_file_when_the_peer_process_dies() {
    for method in [StartMethod::Spawn, StartMethod::ForkServer] {
        let (ours, theirs) = pipe(true).unwrap();
        let child = get_context(Some(method))
            .process(hold_and_wait, theirs)
            .start()
            .unwrap();
        assert_eq!(ours.recv_timeout::<String>(LONG).unwrap(), "holding");
        child.kill().unwrap();
        assert!(
            matches!(
                ours.recv_timeout::<String>(LONG),
                Err(RecvTimeoutError::Recv(RecvError::Disconnected))
            ),
            "{method}"
        );
        let _ = child.join_timeout(LONG);
    }
}

fn make_pipe(_: ()) -> (Connection, String) {
    let (keep, give) = pipe(true).unwrap();
    keep.send(&"sent before the end was handed over").unwrap();
    // `keep` is dropped here, so the parent sees end of file after the message.
    (give, String::from("here is an end"))
}

#[test]
fn a_child_returns_a_connection_end() {
    let child = get_context(Some(StartMethod::Spawn))
        .process(make_pipe, ())
        .start()
        .unwrap();
    let (end, note) = child.join_timeout(LONG).unwrap();
    assert_eq!(note, "here is an end");
    assert_eq!(
        end.recv_timeout::<String>(LONG).unwrap(),
        "sent before the end was handed over"
    );
    assert!(matches!(
        end.recv_timeout::<String>(LONG),
        Err(RecvTimeoutError::Recv(RecvError::Disconnected))
    ));
}

fn big(len: usize) -> Vec<u8> {
    vec![7; len]
}

#[test]
fn a_result_larger_than_any_socket_buffer() {
    for method in [StartMethod::Spawn, StartMethod::ForkServer] {
        let child = get_context(Some(method))
            .process(big, 2 << 20)
            .start()
            .unwrap();
        let value = child.join_timeout(LONG).unwrap();
        assert_eq!(value.len(), 2 << 20, "{method}");
        assert!(value.iter().all(|&b| b == 7));
    }
}
