//! In a current-thread runtime, awaiting a process pool's (or a thread pool's) result
//! blocks nothing: timers and other tasks keep running on the one runtime thread.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{LONG, ticker};
use flotilla_async::{gather, run_in_executor, to_thread};
use flotilla_core::CancelToken;
use flotilla_process::ProcessPoolExecutor;

/// Waits in the worker process until `release` says so: the pool result stays pending
/// for as long as the test wants.
fn wait_for_release(release: flotilla_ipc::Connection) -> u32 {
    release.recv::<u32>().unwrap_or(0)
}

#[test]
fn timers_and_other_tasks_run_while_a_task_awaits_a_process_result() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let procs = ProcessPoolExecutor::builder()
        .max_workers(1)
        .build()
        .unwrap();
    let (release_tx, release_rx) = flotilla_ipc::pipe(true).unwrap();
    runtime.block_on(async {
        let result = run_in_executor(&procs, (wait_for_release, release_rx));
        let (ticks, ticker) = ticker(Duration::from_millis(1));
        let awaiting = tokio::spawn(result);
        // The ticker runs on the only runtime thread while `awaiting` waits for the
        // worker process: if awaiting blocked the thread, it would never tick.
        tokio::time::timeout(LONG, async {
            while ticks.load(Ordering::SeqCst) < 20 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the ticker never ran: the runtime thread is blocked");
        assert!(!awaiting.is_finished());
        release_tx.send(&7u32).unwrap();
        let value = tokio::time::timeout(LONG, awaiting)
            .await
            .expect("the process result never arrived")
            .unwrap()
            .unwrap();
        assert_eq!(value, 7);
        ticker.abort();
    });
}

#[test]
fn a_thread_and_a_process_task_overlap_in_a_current_thread_runtime() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let procs = ProcessPoolExecutor::builder()
        .max_workers(1)
        .build()
        .unwrap();
    let (release_tx, release_rx) = flotilla_ipc::pipe(true).unwrap();
    let gate = CancelToken::new();
    runtime.block_on(async {
        let on_thread = {
            let gate = gate.clone();
            to_thread(move || {
                // Both must be in flight at once: the thread releases the process.
                release_tx.send(&5u32).unwrap();
                gate.wait_timeout(LONG);
                5u32
            })
        };
        let in_process = run_in_executor(&procs, (wait_for_release, release_rx));
        let both = tokio::spawn(gather([on_thread, in_process]));
        tokio::time::sleep(Duration::from_millis(5)).await;
        gate.cancel();
        let values = tokio::time::timeout(LONG, both).await.unwrap().unwrap();
        assert_eq!(values.unwrap(), [5, 5]);
    });
}
