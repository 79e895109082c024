//! Proxies from async code: a pending call is a `Future`, so a get parked on the server
//! blocks no runtime thread, even in a current-thread runtime.

mod common;

use std::time::Duration;

use common::{LONG, with_deadline};
use flotilla_manager::{Manager, RemoteErrorKind};

#[test]
fn a_parked_get_awaited_in_a_current_thread_runtime_blocks_nothing() {
    with_deadline(LONG, "async", || {
        let manager = Manager::start().unwrap();
        let q = manager.queue::<u32>(0).unwrap();
        let d = manager.dict::<u32, u32>().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let (got, put) = rt.block_on(async {
            let getter = {
                let q = q.clone();
                async move { q.get_pending().unwrap().await }
            };
            let putter = {
                let q = q.clone();
                async move {
                    // Runs only if the parked get leaves the runtime's one thread free.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    q.put_pending(&7).unwrap().await
                }
            };
            // Both on the one thread, at once.
            tokio::join!(getter, putter)
        });
        assert_eq!(got.unwrap(), Some(7));
        assert!(put.unwrap());
        // Any method, untyped, awaited; a manager shut down ends a parked future at once.
        rt.block_on(async {
            d.set_pending(&1, &2).unwrap().await.unwrap();
            let n: u64 = d.object().call_pending("len", &()).unwrap().await.unwrap();
            assert_eq!(n, 1);
        });
        let pending = q.get_pending().unwrap();
        drop(manager);
        let err = rt.block_on(pending).unwrap_err();
        // The shutdown answers a parked call `Gone` (or the connection's end does).
        assert!(
            err.is_manager_gone() || err.remote_kind() == Some(RemoteErrorKind::Gone),
            "{err}"
        );
    });
}
