//! How a client reads its replies: with no thread set aside for it, by the waiting callers
//! themselves (or a background thread for async and timed waits), so calls sent and not
//! yet waited for must never leave the server blocked writing their replies.

mod common;

use common::{LONG, with_deadline};
use flotilla_manager::{Manager, WaitTimeoutError};

#[test]
fn a_long_pipeline_of_unwaited_calls_with_large_replies_completes() {
    with_deadline(LONG, "long pipeline", || {
        let manager = Manager::start().unwrap();
        let d = manager.dict::<u32, Vec<u8>>().unwrap();
        d.set(&0, &vec![7u8; 2 * 1024]).unwrap();
        // 2 KiB replies, 600 of them sent before any is waited for: over 1 MiB, far more
        // than a socket holds, and more requests than fit unread in ours (each its own
        // write). Nobody waits while they are sent, so someone must read the replies as
        // they come, or the server blocks writing them and stops reading us while we
        // block writing to it.
        let gets: Vec<_> = (0..600).map(|_| d.get_pending(&0).unwrap()).collect();
        for g in gets {
            assert_eq!(g.wait().unwrap().map(|v| v.len()), Some(2 * 1024));
        }
    });
}

#[test]
fn threads_waiting_together_each_get_their_own_replies() {
    with_deadline(LONG, "threads together", || {
        let manager = Manager::start().unwrap();
        let d = manager.dict::<u32, u32>().unwrap();
        let q = manager.queue::<u32>(0).unwrap();
        std::thread::scope(|s| {
            // One thread parked on the server for a while: it may hold the reading role
            // while the others' replies come.
            let parked = s.spawn(|| q.get_timeout(LONG).unwrap());
            let workers: Vec<_> = (0..8u32)
                .map(|t| {
                    let d = d.clone();
                    s.spawn(move || {
                        for i in 0..500 {
                            d.set(&t, &i).unwrap();
                            assert_eq!(d.get(&t).unwrap(), Some(i));
                        }
                    })
                })
                .collect();
            for w in workers {
                w.join().unwrap();
            }
            // And an async task awaiting a reply while no thread waits.
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .unwrap();
            let got = rt.block_on(async { d.get_pending(&3).unwrap().await.unwrap() });
            assert_eq!(got, Some(499));
            q.put(&42).unwrap();
            assert_eq!(parked.join().unwrap(), Some(42));
        });
    });
}

#[test]
fn a_pipelined_call_goes_out_though_nobody_waits_for_it_or_it_is_dropped() {
    with_deadline(LONG, "pipelined calls go out", || {
        let manager = Manager::start().unwrap();
        let q = manager.queue::<u32>(0).unwrap();
        let other = flotilla_manager::connect(manager.address(), Some(manager.authkey())).unwrap();
        let theirs =
            flotilla_manager::QueueProxy::<u32>::from_token(&other, &q.share().unwrap()).unwrap();
        // Held, never waited for: the client's background thread sends it.
        let held = q.put_pending(&1).unwrap();
        assert_eq!(theirs.get_timeout(LONG).unwrap(), Some(1));
        // Dropped unwaited: it goes as it is dropped.
        drop(q.put_pending(&2).unwrap());
        assert_eq!(theirs.get_timeout(LONG).unwrap(), Some(2));
        held.wait().unwrap();
    });
}

#[test]
fn a_pending_call_whose_reply_does_not_come_in_time_is_handed_back() {
    with_deadline(LONG, "pending wait_timeout", || {
        let manager = Manager::start().unwrap();
        let q = manager.queue::<u32>(0).unwrap();
        // The queue is empty: the server parks the get, and no reply comes.
        let get = q.get_pending().unwrap();
        let short = std::time::Duration::from_millis(50);
        let get = match get.wait_timeout(short) {
            Err(WaitTimeoutError::Timeout(get)) => get,
            other => panic!("a reply that cannot come yet came: {other:?}"),
        };
        // Twice: a timed-out wait leaves the call in flight and waitable.
        let get = match get.wait_timeout(short) {
            Err(WaitTimeoutError::Timeout(get)) => get,
            other => panic!("a reply that cannot come yet came: {other:?}"),
        };
        q.put(&7).unwrap();
        assert_eq!(get.wait_timeout(LONG).unwrap(), Some(7));
        // The connection still serves ordinary calls, and a later pending one in time.
        q.put(&8).unwrap();
        assert_eq!(
            q.get_pending().unwrap().wait_timeout(LONG).unwrap(),
            Some(8)
        );
        // An error is handed on as the untimed wait's.
        drop(manager);
        let gone = q.get_pending().and_then(|p| match p.wait_timeout(LONG) {
            Ok(v) => Ok(v),
            Err(WaitTimeoutError::Call(e)) => Err(e),
            Err(WaitTimeoutError::Timeout(_)) => panic!("a gone manager timed out"),
        });
        assert!(gone.unwrap_err().is_manager_gone());
    });
}
