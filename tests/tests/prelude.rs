//! `use flotilla::prelude::*` leaves std's prelude alone: ordinary edition-2024 code that
//! names std's `Future` trait (in `impl Future`, a bound, `async fn`) still compiles.

use flotilla::prelude::*;

#[allow(
    clippy::manual_async_fn,
    reason = "the test is that `impl Future` names std's trait"
)]
fn deferred(x: u8) -> impl Future<Output = u8> {
    async move { x + 1 }
}

async fn doubled(x: u8) -> u8 {
    deferred(x).await * 2
}

fn boxed<F: Future<Output = u8> + Send + 'static>(
    f: F,
) -> std::pin::Pin<Box<dyn Future<Output = u8> + Send>> {
    Box::pin(f)
}

#[test]
fn std_future_is_still_the_trait_after_the_glob_import() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    assert_eq!(rt.block_on(boxed(doubled(3))), 8);

    // And the prelude's own names work beside it.
    let pool = ThreadPoolExecutor::builder()
        .max_workers(1)
        .build()
        .unwrap();
    let fut = pool.submit(|| 5u8).unwrap();
    let (done, _) = wait([&fut], ReturnWhen::AllCompleted);
    assert_eq!(done.len(), 1);
    let value: Result<u8, TaskError> = fut.result();
    assert_eq!(value.unwrap(), 5);
}
