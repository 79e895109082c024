//! Shared memory segments across processes: anonymous ones passed by every route, named
//! ones attached by name, and who unlinks a name (only its creator, only in its own
//! process, and never from under a mapping).

use std::time::Duration;

use flotilla_ipc::{Connection, SharedMemory, ShmError, pipe};
use flotilla_process::{Process, StartMethod, get_context};

const LONG: Duration = Duration::from_secs(120);

fn unique(tag: &str) -> String {
    format!("flotilla-test-{}-{tag}", std::process::id())
}

fn not_found(result: Result<SharedMemory, ShmError>) -> bool {
    matches!(result, Err(ShmError::NotFound { .. }))
}

fn read_then_write(shm: SharedMemory) -> Vec<u8> {
    let seen = shm.to_vec();
    shm.write_at(0, b"written by the child").unwrap();
    seen
}

#[test]
fn an_anonymous_segment_crosses_into_children_under_every_method() {
    for method in StartMethod::ALL {
        let shm = SharedMemory::new(64).unwrap();
        shm.write_at(0, b"from the parent").unwrap();
        let builder = get_context(Some(method)).process(read_then_write, second_handle(&shm));
        // SAFETY: under fork the child only copies bytes out of and into the segment and
        // allocates a Vec (glibc's malloc is fork-safe); it takes no other lock.
        let child = unsafe { builder.start_unchecked() }.unwrap();
        let seen = child.join_timeout(LONG).unwrap();
        assert_eq!(&seen[..15], b"from the parent", "{method}");
        assert_eq!(&shm.to_vec()[..20], b"written by the child", "{method}");
    }
}

/// A second handle on the same memory, made by the route every process argument takes.
fn second_handle(shm: &SharedMemory) -> SharedMemory {
    let (bytes, fds) = flotilla_ipc::handle::encode(shm).unwrap();
    flotilla_ipc::handle::decode(&bytes, fds).unwrap()
}

#[test]
fn a_segment_sent_over_a_connection_is_the_same_memory() {
    let (left, right) = pipe(true).unwrap();
    let shm = SharedMemory::new(4096).unwrap();
    left.send(&shm).unwrap();
    let received: SharedMemory = right.recv_timeout(LONG).unwrap();
    assert_eq!(received.size(), 4096);
    assert_eq!(received.name(), None);
    received.write_at(100, b"shared").unwrap();
    let mut buf = [0; 6];
    shm.read_at(100, &mut buf).unwrap();
    assert_eq!(&buf, b"shared");
    drop(shm);
    // The received mapping is its own: it outlives the sender's.
    received.write_at(0, b"still mapped").unwrap();
}

#[test]
fn a_segment_outside_a_transfer_is_an_error_not_a_dangling_descriptor() {
    let shm = SharedMemory::new(8).unwrap();
    assert!(flotilla_core::codec::encode(&shm).is_err());
}

fn attach_write_drop(name: String) -> Vec<u8> {
    let shm = SharedMemory::open(&name).unwrap();
    assert!(!shm.unlinks_on_drop());
    let seen = shm.to_vec()[..5].to_vec();
    shm.write_at(5, b", child").unwrap();
    seen
    // `shm` is dropped here: an attached segment never unlinks the name.
}

#[test]
fn a_named_segment_attached_and_dropped_by_a_child_is_still_usable_by_its_creator() {
    for method in StartMethod::ALL {
        let name = unique(&format!("attach-{method}"));
        let shm = SharedMemory::create(&name, 32).unwrap();
        assert!(shm.unlinks_on_drop());
        shm.write_at(0, b"hello").unwrap();
        let builder = get_context(Some(method)).process(attach_write_drop, name.clone());
        // SAFETY: under fork the child only opens, maps and copies the segment and
        // allocates; it takes no lock another thread could hold.
        let child = unsafe { builder.start_unchecked() }.unwrap();
        assert_eq!(child.join_timeout(LONG).unwrap(), b"hello", "{method}");
        assert_eq!(&shm.to_vec()[..12], b"hello, child", "{method}");
        shm.write_at(0, b"HELLO").unwrap();
        let again = SharedMemory::open(&name).expect("the child left the name alone");
        assert_eq!(&again.to_vec()[..12], b"HELLO, child");
        drop(again);
        drop(shm);
        assert!(
            not_found(SharedMemory::open(&name)),
            "the creator unlinks on drop"
        );
    }
}

#[test]
fn a_forked_copy_of_the_creators_segment_does_not_unlink_it() {
    let name = unique("forked-copy");
    let shm = SharedMemory::create(&name, 8).unwrap();
    let creator = &shm;
    let builder = Process::fork(move || {
        // The child's memory is a copy of the parent's, `shm` included: this is the
        // creator's value, with the creator's duty to unlink. The child never drops the
        // original (it ends with `_exit`), so reading it out makes no double drop.
        // SAFETY: `creator` points to a live value, and only this copy is dropped.
        let copy = unsafe { std::ptr::read(creator) };
        let unlinks = copy.unlinks_on_drop();
        drop(copy);
        unlinks
    });
    // SAFETY: the child only drops its copy of the segment (munmap, getpid, and the
    // checks around unlinking) and returns; it takes no lock another thread could hold.
    let child = unsafe { builder.start_unchecked() }.unwrap();
    assert!(
        !child.join_timeout(LONG).unwrap(),
        "the duty stays with the creator's pid"
    );
    assert!(
        SharedMemory::open(&name).is_ok(),
        "the child left the name alone"
    );
    assert!(shm.unlinks_on_drop());
    drop(shm);
    assert!(not_found(SharedMemory::open(&name)));
}

fn attach_then_wait(args: (String, Connection)) -> Vec<u8> {
    let (name, conn) = args;
    let shm = SharedMemory::open(&name).unwrap();
    conn.send(&"attached").unwrap();
    let _: String = conn.recv().unwrap(); // the name is gone now
    let before = shm.to_vec()[..5].to_vec();
    shm.write_at(0, b"after unlink").unwrap();
    conn.send(&"written").unwrap();
    before
}

#[test]
fn memory_mapped_elsewhere_stays_valid_after_the_name_is_unlinked() {
    for method in [StartMethod::Spawn, StartMethod::ForkServer] {
        let name = unique(&format!("unlinked-{method}"));
        let shm = SharedMemory::create(&name, 16).unwrap();
        shm.write_at(0, b"first").unwrap();
        let (ours, theirs) = pipe(true).unwrap();
        let child = get_context(Some(method))
            .process(attach_then_wait, (name.clone(), theirs))
            .start()
            .unwrap();
        assert_eq!(ours.recv_timeout::<String>(LONG).unwrap(), "attached");
        shm.unlink().unwrap();
        assert!(!shm.unlinks_on_drop());
        assert!(not_found(SharedMemory::open(&name)));
        ours.send(&"go").unwrap();
        assert_eq!(ours.recv_timeout::<String>(LONG).unwrap(), "written");
        assert_eq!(child.join_timeout(LONG).unwrap(), b"first", "{method}");
        assert_eq!(&shm.to_vec()[..12], b"after unlink", "{method}");
    }
}

#[test]
fn a_creator_may_keep_the_name() {
    let name = unique("kept");
    let shm = SharedMemory::create(&name, 8).unwrap();
    shm.set_unlink_on_drop(false);
    drop(shm);
    let attached = SharedMemory::open(&name).unwrap();
    attached.unlink().unwrap();
    assert!(not_found(SharedMemory::open(&name)));
    assert!(matches!(attached.unlink(), Err(ShmError::NotFound { name: gone }) if gone == name));
}

#[test]
fn a_name_that_now_names_another_segment_is_left_alone() {
    let name = unique("renamed");
    let old = SharedMemory::create(&name, 8).unwrap();
    old.unlink().unwrap();
    let new = SharedMemory::create(&name, 8).unwrap();
    old.set_unlink_on_drop(true);
    drop(old); // must not unlink `new`'s name
    assert!(SharedMemory::open(&name).is_ok());
    drop(new);
    assert!(not_found(SharedMemory::open(&name)));
}

#[test]
fn names_sizes_and_existence_are_checked() {
    let name = unique("checks");
    let shm = SharedMemory::create(&format!("/{name}"), 10).unwrap();
    assert_eq!(shm.name(), Some(name.as_str()));
    assert!(matches!(
        SharedMemory::create(&name, 10),
        Err(ShmError::AlreadyExists { name: taken }) if taken == name
    ));
    assert_eq!(SharedMemory::open(&name).unwrap().size(), 10);
    assert!(matches!(
        SharedMemory::create(&unique("zero"), 0),
        Err(ShmError::InvalidSize { size: 0, .. })
    ));
    assert!(matches!(
        SharedMemory::create("a/b", 8),
        Err(ShmError::InvalidName { .. })
    ));
    assert!(not_found(SharedMemory::open(&unique("never-created"))));
    assert!(matches!(
        SharedMemory::new(8).unwrap().unlink(),
        Err(ShmError::Anonymous)
    ));
}

#[test]
fn shared_types_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<SharedMemory>();
    send_sync::<flotilla_ipc::Lock>();
    send_sync::<flotilla_ipc::RLock>();
    send_sync::<flotilla_ipc::Value<u64>>();
    send_sync::<flotilla_ipc::Array<f32>>();
}
