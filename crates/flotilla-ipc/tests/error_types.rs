//! Each operation's error type: what it is (Send + Sync + 'static, convertible into the
//! umbrella `Error` and into `Box<dyn Error + Send + Sync>`), and that each real fault
//! gives the variant the docs name. (Exhaustive matches over each type, which catch a
//! variant added by mistake, are a unit test inside the crate: outside it a
//! `#[non_exhaustive]` enum needs a wildcard.)

use std::time::Duration;

use flotilla_ipc::{
    AccessError, AcquireError, Array, Barrier, BarrierError, BoundedSemaphore, CopyError,
    CreateError, Error, FrameStartError, FrameWriter, IndexError, IndexOutOfRange, LengthMismatch,
    Lock, LockError, OsError, PollError, Queue, RecvError, RecvIntoError, RecvTimeoutError,
    ReleaseError, Semaphore, SendError, SharedMemory, ShmError, Value, WaitError, pipe,
};
use flotilla_ipc::{GetTimeoutError, PutError, QueueError};

/// Compiles only for types that can cross threads and be boxed as `dyn Error`.
const fn assert_error<T: std::error::Error + Send + Sync + 'static>() {}

const _: () = {
    assert_error::<Error>();
    assert_error::<SendError>();
    assert_error::<RecvError>();
    assert_error::<RecvTimeoutError>();
    assert_error::<RecvIntoError>();
    assert_error::<PollError>();
    assert_error::<BarrierError>();
    assert_error::<ReleaseError>();
    assert_error::<OsError>();
    assert_error::<ShmError>();
    assert_error::<CreateError>();
    assert_error::<AccessError>();
    assert_error::<IndexOutOfRange>();
    assert_error::<LengthMismatch>();
    assert_error::<IndexError>();
    assert_error::<CopyError>();
    assert_error::<WaitError>();
    assert_error::<LockError>();
    assert_error::<FrameStartError>();
    assert_error::<QueueError>();
};

/// `AcquireError` carries the guard of a lock whose holder died (so the data under it
/// can be repaired), and a guard stays on its thread; `?` drops the guard and gives an
/// `Error::OwnerDied` that is `Send + Sync`, so the issue's `lock.acquire(t)?` into a
/// boxed error compiles.
#[test]
fn lock_acquire_question_mark_into_a_boxed_error() {
    fn take(lock: &flotilla_ipc::Lock) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let _guard = lock.acquire_timeout(Duration::from_secs(30))?;
        Ok(())
    }
    let lock = flotilla_ipc::Lock::new().unwrap();
    take(&lock).unwrap();
}

/// `?` takes every per-operation error into the umbrella `Error` and into a boxed one.
#[test]
fn question_mark_converts_into_the_umbrella_and_a_box() {
    fn umbrella() -> Result<(), Error> {
        let (a, b) = pipe(true)?;
        a.send(&1u8)?;
        let _: u8 = b.recv()?;
        let _: Option<u8> = b.try_recv()?;
        let _ = b.recv_bytes_timeout(Duration::from_millis(1)).err();
        b.poll()?;
        let shm = SharedMemory::new(8)?;
        shm.write_at(0, b"eight by")?;
        let a = Array::from_slice(&[1u8, 2])?;
        a.set(0, a.get(1)?)?;
        a.copy_from_slice(&[3, 4])?;
        let _: Vec<u8> = a.to_vec()?;
        Value::new(0u32)?.wake_all()?;
        drop(Lock::new()?.try_acquire()?);
        BoundedSemaphore::new(1)?.release(1)?;
        Ok(())
    }
    fn boxed() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let (a, b) = pipe(true)?;
        drop(a);
        b.recv::<u8>()?;
        Ok(())
    }
    assert!(matches!(
        umbrella(),
        Err(Error::SemaphoreOverReleased { bound: 1 })
    ));
    let err = boxed().unwrap_err();
    assert!(err.downcast_ref::<RecvError>().is_some(), "{err}");
}

#[test]
fn peer_closed_is_disconnected_on_receive() {
    let (a, b) = pipe(true).unwrap();
    drop(a);
    assert!(matches!(b.recv::<u8>(), Err(RecvError::Disconnected)));
    assert!(matches!(
        b.recv_timeout::<u8>(Duration::from_secs(30)),
        Err(RecvTimeoutError::Recv(RecvError::Disconnected))
    ));
    assert!(matches!(
        b.recv_bytes_into(&mut [0; 4]),
        Err(RecvIntoError::Recv(RecvError::Disconnected))
    ));
}

/// Run in a child (this test binary again) with `SIGPIPE` at its default action, which
/// kills: a send to a closed peer must come back as an error, not a signal.
#[test]
fn send_to_a_closed_peer_is_disconnected_without_sigpipe() {
    const CHILD: &str = "FLOTILLA_IPC_SIGPIPE_CHILD";
    if std::env::var_os(CHILD).is_some() {
        // SAFETY: restoring a signal's default action; this child runs only this test.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
        let (a, b) = pipe(true).unwrap();
        drop(b);
        match a.send_bytes(b"nobody reads this") {
            Err(SendError::Disconnected) => {}
            other => panic!("expected SendError::Disconnected, got {other:?}"),
        }
        return;
    }
    pass_in_a_child(
        "send_to_a_closed_peer_is_disconnected_without_sigpipe",
        CHILD,
    );
}

#[test]
fn oversized_frame_is_too_large_and_then_closed() {
    let (a, mut b) = pipe(true).unwrap();
    b.set_max_frame(1000);
    a.send_bytes(&[7; 2000]).unwrap();
    assert!(matches!(
        b.recv_bytes(),
        Err(RecvError::TooLarge {
            len: 2000,
            max: 1000
        })
    ));
    assert!(matches!(b.recv_bytes(), Err(RecvError::Closed)));
}

#[test]
fn nothing_within_the_timeout_is_timeout() {
    let (_a, b) = pipe(true).unwrap();
    assert!(matches!(
        b.recv_timeout::<u8>(Duration::from_millis(20)),
        Err(RecvTimeoutError::Timeout(_))
    ));
    assert!(matches!(b.try_recv::<u8>(), Ok(None)));
}

#[test]
fn a_wrong_type_is_decode_and_the_stream_stays_in_step() {
    let (a, b) = pipe(true).unwrap();
    a.send(&1u8).unwrap();
    a.send(&5u64).unwrap();
    let wrong = b.recv::<String>();
    assert!(matches!(wrong, Err(RecvError::Decode(_))), "{wrong:?}");
    assert_eq!(b.recv::<u64>().unwrap(), 5);
}

#[test]
fn a_small_buffer_gets_the_message_back() {
    let (a, b) = pipe(true).unwrap();
    a.send_bytes(b"twelve bytes").unwrap();
    match b.recv_bytes_into(&mut [0; 4]) {
        Err(RecvIntoError::BufferTooSmall { capacity, message }) => {
            assert_eq!((capacity, message.as_slice()), (4, &b"twelve bytes"[..]));
        }
        other => panic!("expected BufferTooSmall, got {other:?}"),
    }
}

#[test]
fn wrong_directions_on_a_simplex_pipe() {
    let (reader, writer) = pipe(false).unwrap();
    assert!(matches!(
        reader.send(&1u8),
        Err(SendError::WrongDirection(_))
    ));
    assert!(matches!(
        writer.recv::<u8>(),
        Err(RecvError::WrongDirection(_))
    ));
    assert!(matches!(writer.poll(), Err(PollError::WrongDirection(_))));
}

#[test]
fn a_broken_barrier_is_broken() {
    let barrier = Barrier::new(2).unwrap();
    assert!(matches!(
        barrier.wait_timeout(Duration::from_millis(10)),
        Err(BarrierError::Broken)
    ));
    assert!(matches!(barrier.wait(), Err(BarrierError::Broken)));
    barrier.reset().unwrap();
    barrier.abort().unwrap();
    assert!(matches!(barrier.wait(), Err(BarrierError::Broken)));
}

#[test]
fn an_over_released_bounded_semaphore_is_over_released() {
    let sem = BoundedSemaphore::new(2).unwrap();
    assert_eq!(sem.release(1), Err(ReleaseError::OverReleased { bound: 2 }));
    assert!(sem.try_acquire());
    sem.release(1).unwrap();
    assert_eq!(sem.value(), 2);
}

/// Runs the test `name` of this binary again, in a child whose environment has `var`
/// set, and fails unless it ran and passed within 60 s, not killed by a signal (for
/// faults that must not touch this process: the descriptor limit, `SIGPIPE` at its
/// default action).
fn pass_in_a_child(name: &str, var: &str) {
    let out = std::env::temp_dir().join(format!("{}.{}.out", unique("child"), name));
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--test-threads=1"])
        .env(var, "1")
        .stdout(std::fs::File::create(&out).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the child did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let report = std::fs::read_to_string(&out).unwrap_or_default();
    let _ = std::fs::remove_file(&out);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        None,
        "{name}: the child was killed by a signal\n{report}"
    );
    assert!(
        status.success(),
        "{name} failed in its child: {status:?}\n{report}"
    );
    assert!(
        report.contains("1 passed"),
        "the child did not run {name}:\n{report}"
    );
}

fn unique(tag: &str) -> String {
    format!("flotilla-error-types-{}-{tag}", std::process::id())
}

#[test]
fn shared_memory_faults_are_shm_errors() {
    assert!(matches!(
        SharedMemory::new(0),
        Err(ShmError::InvalidSize { size: 0, .. })
    ));
    assert!(matches!(
        SharedMemory::create("a/b", 8),
        Err(ShmError::InvalidName { .. })
    ));
    let missing = unique("missing");
    assert!(matches!(
        SharedMemory::open(&missing),
        Err(ShmError::NotFound { name }) if name == missing
    ));

    let name = unique("taken");
    let shm = SharedMemory::create(&name, 16).unwrap();
    assert!(matches!(
        SharedMemory::create(&name, 16),
        Err(ShmError::AlreadyExists { name: taken }) if taken == name
    ));
    let mut buf = [0u8; 8];
    assert!(matches!(
        shm.read_at(12, &mut buf),
        Err(ShmError::OutOfBounds {
            offset: 12,
            end: 20,
            size: 16
        })
    ));
    assert!(matches!(
        shm.write_at(usize::MAX, b"x"),
        Err(ShmError::OutOfBounds {
            end: usize::MAX,
            ..
        })
    ));
    assert_eq!(buf, [0; 8], "nothing was read");

    // Unlinked, then the name reused by another segment: left alone.
    shm.unlink().unwrap();
    let again = SharedMemory::create(&name, 16).unwrap();
    assert!(matches!(shm.unlink(), Err(ShmError::NameReused { .. })));
    drop(again);
    assert!(matches!(shm.unlink(), Err(ShmError::NotFound { .. })));
    assert!(matches!(
        SharedMemory::new(8).unwrap().unlink(),
        Err(ShmError::Anonymous)
    ));

    // A name whose creator has not sized it yet (a file in /dev/shm, as `shm_open`
    // with `O_CREAT` leaves it before `ftruncate`).
    let unsized_name = unique("unsized");
    let path = format!("/dev/shm/{unsized_name}");
    std::fs::File::create(&path).unwrap();
    let opened = SharedMemory::open(&unsized_name);
    std::fs::remove_file(&path).unwrap();
    assert!(
        matches!(&opened, Err(ShmError::Unsized { name }) if *name == unsized_name),
        "{opened:?}"
    );
}

#[test]
fn invalid_arguments_to_constructors_are_create_errors() {
    assert!(matches!(
        Semaphore::new(1 << 40),
        Err(CreateError::InvalidArgument(_))
    ));
    assert!(matches!(
        BoundedSemaphore::new(usize::MAX),
        Err(CreateError::InvalidArgument(_))
    ));
    assert!(matches!(
        Barrier::new(1 << 40),
        Err(CreateError::InvalidArgument(_))
    ));
    assert!(matches!(
        Array::<u64>::new(usize::MAX),
        Err(CreateError::InvalidArgument(_))
    ));
    assert!(matches!(
        Queue::<u8>::builder().capacity(usize::MAX).build::<u8>(),
        Err(CreateError::InvalidArgument(_))
    ));
}

/// With no descriptor left (`RLIMIT_NOFILE` of 0, in a child), everything that needs one
/// reports the OS error in its own type.
#[test]
fn out_of_descriptors_is_an_os_error_of_each_type() {
    const CHILD: &str = "FLOTILLA_IPC_NOFILE_CHILD";
    if std::env::var_os(CHILD).is_none() {
        pass_in_a_child("out_of_descriptors_is_an_os_error_of_each_type", CHILD);
        return;
    }
    let none = libc::rlimit {
        rlim_cur: 0,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: `setrlimit` reads the struct; this child runs only this test.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &none) };
    if rc != 0 {
        // The hard limit may be below infinity: lower the soft one only.
        let mut now = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: as above; `getrlimit` writes the struct.
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut now) };
        now.rlim_cur = 0;
        // SAFETY: as above.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &now) }, 0);
    }
    let emfile = |source: &std::io::Error| source.raw_os_error() == Some(libc::EMFILE);
    match pipe(true) {
        Err(OsError { op, source }) => assert!(op == "socketpair" && emfile(&source)),
        Ok(_) => panic!("a socket pair with no descriptor left"),
    }
    match SharedMemory::new(8) {
        Err(ShmError::Os { op, source }) => assert!(op == "memfd_create" && emfile(&source)),
        other => panic!("{other:?}"),
    }
    match Lock::new() {
        Err(CreateError::Os { source, .. }) => assert!(emfile(&source)),
        other => panic!("{other:?}"),
    }
    match Queue::<u8>::new() {
        Err(CreateError::Os { source, .. }) => assert!(emfile(&source)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn array_indexes_and_lengths_are_their_own_errors() {
    let a = Array::from_slice(&[1u16, 2, 3]).unwrap();
    assert!(matches!(
        a.get(3),
        Err(IndexError::OutOfRange(IndexOutOfRange { index: 3, len: 3 }))
    ));
    assert!(matches!(
        a.set(7, 0),
        Err(IndexError::OutOfRange(IndexOutOfRange { index: 7, len: 3 }))
    ));
    assert!(matches!(
        a.copy_from_slice(&[1]),
        Err(CopyError::LengthMismatch(LengthMismatch { got: 1, len: 3 }))
    ));
    let section = a.lock().unwrap();
    assert_eq!(section.get(3), Err(IndexOutOfRange { index: 3, len: 3 }));
    assert_eq!(section.set(3, 0), Err(IndexOutOfRange { index: 3, len: 3 }));
    assert_eq!(
        section.copy_from_slice(&[0; 4]),
        Err(LengthMismatch { got: 4, len: 3 })
    );
    drop(section);
    assert_eq!(a.to_vec().unwrap(), [1, 2, 3], "nothing was written");
}

/// A forked child takes the locks of a `Value` and an `Array` and is killed holding
/// them: every locked accessor then reports the owner's death, in its own type.
#[test]
fn a_lock_holder_killed_is_owner_died_for_every_accessor() {
    const LONG: Duration = Duration::from_secs(30);
    let v = Value::new(1i32).unwrap();
    let a = Array::from_slice(&[1i32, 2]).unwrap();
    let holding = Value::raw(0u32).unwrap();
    // SAFETY: between fork and its death the child only takes two robust mutexes, stores
    // to atomics and makes futex and pause system calls, all safe after a fork whatever
    // the other threads of the test harness were doing; it never returns.
    let child = match unsafe { nix::unistd::fork() }.unwrap() {
        nix::unistd::ForkResult::Child => {
            let value = v.lock();
            let array = a.lock();
            if let (Ok(value), Ok(array)) = (&value, &array) {
                value.set(-1);
                let _ = array.set(0, -1); // a torn update: element 1 stays
                holding.store(1);
                let _ = holding.wake_all();
            }
            loop {
                // SAFETY: `pause` only sleeps until a signal; SIGKILL ends the child.
                unsafe { libc::pause() };
            }
        }
        nix::unistd::ForkResult::Parent { child } => child,
    };
    let deadline = std::time::Instant::now() + LONG;
    while holding.load() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the child never held the locks"
        );
        holding
            .wait_while_timeout(0, Duration::from_millis(100))
            .unwrap();
    }
    nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL).unwrap();
    nix::sys::wait::waitpid(child, None).unwrap();

    assert!(matches!(v.get(), Err(AccessError::OwnerDied)));
    assert!(matches!(v.set(2), Err(AccessError::OwnerDied)));
    assert!(matches!(
        a.get(1),
        Err(IndexError::Access(AccessError::OwnerDied))
    ));
    assert!(matches!(
        a.set(1, 0),
        Err(IndexError::Access(AccessError::OwnerDied))
    ));
    assert!(matches!(a.to_vec(), Err(AccessError::OwnerDied)));
    assert!(matches!(
        a.copy_from_slice(&[0, 0]),
        Err(CopyError::Access(AccessError::OwnerDied))
    ));
    // The umbrella keeps its name for it.
    assert!(matches!(
        Error::from(v.get().unwrap_err()),
        Error::OwnerDied
    ));
    // Repaired under the lock, the accessors work again.
    match v.lock_timeout(LONG) {
        Err(AcquireError::OwnerDied(guard)) | Ok(guard) => {
            guard.set(1);
            guard.mark_recovered();
        }
        Err(e) => panic!("{e}"),
    }
    assert_eq!(v.get().unwrap(), 1);
}

#[test]
fn lock_faults_are_lock_errors() {
    let lock = Lock::new().unwrap();
    let held = lock.acquire().unwrap();
    assert!(matches!(
        lock.acquire(),
        Err(AcquireError::Failed(LockError::WouldDeadlock))
    ));
    std::thread::scope(|s| {
        s.spawn(|| {
            assert!(matches!(
                lock.try_acquire(),
                Err(AcquireError::Failed(LockError::WouldBlock))
            ));
            assert!(matches!(
                lock.acquire_timeout(Duration::from_millis(10)),
                Err(AcquireError::Failed(LockError::Timeout(_)))
            ));
        });
    });
    drop(held);
    assert!(matches!(
        Value::raw(0u8).unwrap().lock(),
        Err(AcquireError::Failed(LockError::NoLock))
    ));
}

#[test]
fn a_frame_writer_refuses_a_second_frame_and_too_many_handles() {
    let mut writer = FrameWriter::default();
    writer.start(b"one".to_vec(), Vec::new()).unwrap();
    assert_eq!(
        writer.start(b"two".to_vec(), Vec::new()),
        Err(FrameStartError::InProgress)
    );
    let mut fresh = FrameWriter::default();
    let fds: Vec<std::os::fd::OwnedFd> = (0..254)
        .map(|_| std::fs::File::open("/dev/null").unwrap().into())
        .collect();
    assert!(matches!(
        fresh.start(Vec::new(), fds),
        Err(FrameStartError::HandlesNotSupported(_))
    ));
    assert!(!fresh.in_progress(), "nothing was loaded");
}

/// `WaitError::OwnerDied` (a condition's lock holder killed while this process waited
/// to take it back) is produced by a real killed process in the workspace's
/// `tests/ipc_sync_conditions.rs`; here, the umbrella keeps its name for it.
#[test]
fn a_wait_error_converts_into_the_umbrella() {
    assert!(matches!(
        Error::from(WaitError::OwnerDied),
        Error::OwnerDied
    ));
}

/// Encodes as a byte, refuses to encode 255, and refuses to decode 0.
#[derive(Debug, PartialEq)]
struct Picky(u8);

impl serde::Serialize for Picky {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.0 == 255 {
            return Err(serde::ser::Error::custom("255 refuses to be encoded"));
        }
        serializer.serialize_u8(self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Picky {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match <u8 as serde::Deserialize>::deserialize(deserializer)? {
            0 => Err(serde::de::Error::custom("0 refuses to be decoded")),
            n => Ok(Picky(n)),
        }
    }
}

#[test]
fn queue_faults_are_queue_errors() {
    let q: Queue<Picky> = Queue::new().unwrap();
    match q.put(Picky(255)) {
        Err(PutError::Failed(item, QueueError::Encode(_))) => assert_eq!(item, Picky(255)),
        other => panic!("{other:?}"),
    }
    q.put(Picky(0)).unwrap();
    q.put(Picky(1)).unwrap();
    match q.get_timeout(Duration::from_secs(30)) {
        Err(GetTimeoutError::Failed(e @ QueueError::Decode(_))) => {
            assert!(
                matches!(Error::from(e), Error::Codec(_)),
                "the umbrella's name"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(q.get().unwrap(), Picky(1), "the queue goes on");

    let small: Queue<Vec<u8>> = flotilla_ipc::QueueBuilder::new()
        .max_message(100)
        .build()
        .unwrap();
    let err = small.put(vec![7; 1000]).unwrap_err();
    assert!(matches!(
        err.error(),
        Some(QueueError::MessageTooLarge { max: 100, .. })
    ));
    assert_eq!(err.into_inner().len(), 1000, "the item is handed back");
}
