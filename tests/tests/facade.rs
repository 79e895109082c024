//! Every re-export of the facade resolves, under the path a user would write, and the
//! facade's types are the sub-crates' own (not copies), so they mix freely.

#[allow(unused_imports, reason = "the test is that these paths resolve")]
use flotilla::futures::{
    AsCompleted, CancelToken, Completer, Executor, Future, Map, ResultFuture, ResultRefFuture,
    ReturnWhen, State, TaskError, ThreadPoolExecutor, ThreadPoolExecutorBuilder, Waitable,
    as_completed, panic_message, wait,
};
#[allow(unused_imports, reason = "the test is that these paths resolve")]
use flotilla::prelude::*;

#[test]
fn facade_types_are_the_sub_crates_types() {
    // These only compile if the facade re-exports the sub-crates' own types.
    fn core_future(f: flotilla_core::Future<u8>) -> flotilla::futures::Future<u8> {
        f
    }
    fn core_error(e: flotilla::futures::TaskError) -> flotilla_core::TaskError {
        e
    }
    fn thread_pool(
        p: &flotilla::futures::ThreadPoolExecutor,
    ) -> &flotilla_thread::ThreadPoolExecutor {
        p
    }
    let pool = ThreadPoolExecutor::builder()
        .max_workers(1)
        .build()
        .unwrap();
    let fut = core_future(thread_pool(&pool).submit(|| 7u8).unwrap());
    assert_eq!(fut.result(None).map_err(core_error).unwrap(), 7);
}

#[test]
fn a_future_from_the_facade_pool_waits_with_the_facade_wait() {
    let pool = ThreadPoolExecutor::builder()
        .max_workers(2)
        .build()
        .unwrap();
    let futures: Vec<Future<u32>> = (0..4)
        .map(|i| pool.submit(move || i * i).unwrap())
        .collect();
    let (done, not_done) = wait(
        &futures,
        Some(std::time::Duration::from_secs(30)),
        ReturnWhen::AllCompleted,
    );
    assert_eq!((done.len(), not_done.len()), (4, 0));
    let total: u32 = futures.iter().map(|f| f.result(None).unwrap()).sum();
    assert_eq!(total, 14);
    let bytes = flotilla::codec::encode(&total).unwrap();
    assert_eq!(flotilla::codec::decode::<u32>(&bytes).unwrap(), 14);
}
