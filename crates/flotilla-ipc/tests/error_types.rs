//! Each operation's error type: what it is (Send + Sync + 'static, convertible into the
//! umbrella `Error` and into `Box<dyn Error + Send + Sync>`), and that each real fault
//! gives the variant the docs name. (Exhaustive matches over each type, which catch a
//! variant added by mistake, are a unit test inside the crate: outside it a
//! `#[non_exhaustive]` enum needs a wildcard.)

use std::time::Duration;

use flotilla_ipc::{
    Barrier, BarrierError, BoundedSemaphore, Error, PollError, RecvError, RecvIntoError,
    RecvTimeoutError, ReleaseError, SendError, pipe,
};

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
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "send_to_a_closed_peer_is_disconnected_without_sigpipe",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .stdout(std::process::Stdio::null())
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
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), None, "the child was killed by a signal");
    assert!(status.success(), "{status:?}");
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
