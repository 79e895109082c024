//! Memory does not grow with the number of futures: a counting global allocator watches
//! the bytes this process holds while every executor completes many futures.
//!
//! One `#[test]` runs every case in turn, so no other test of this binary allocates at
//! the same time. Each case runs a warm-up round (pools started, channels and buffers at
//! their working size), takes the live byte count, runs many more rounds and takes it
//! again; a leak of even a few bytes per future shows as growth far above the slack.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use flotilla::asyncio::{run_in_executor, to_thread, wrap_future};
use flotilla::futures::{
    Completer, ProcessPoolExecutor, ReturnWhen, ThreadPoolExecutor, as_completed_timeout,
    wait_timeout,
};
use flotilla::multiprocessing::Pool;

/// The system allocator, counting the bytes it has handed out and not had back.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every method forwards to `System` with the caller's own arguments, which
// satisfy `System`'s contract because they satisfy ours; the counter has no effect on
// the memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged (see the impl's comment).
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged (see the impl's comment).
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged (see the impl's comment).
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded unchanged (see the impl's comment).
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            LIVE.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const LONG: Duration = Duration::from_secs(60);

/// How much a case may grow between its two measurements: allocator and runtime noise
/// (a thread's buffers, a channel block), far below what a leak of one small allocation
/// per future over [`ROUNDS`] rounds adds up to.
const SLACK: isize = 256 * 1024;

/// Rounds measured after the warm-up round.
const ROUNDS: usize = 10;

/// Runs `round` twice to warm up, then [`ROUNDS`] times, and records a failure in
/// `failures` if the live bytes grew by more than [`SLACK`] (every case runs, so one
/// failure names every executor that leaks).
fn check_flat(failures: &mut Vec<String>, what: &str, mut round: impl FnMut()) {
    round();
    round();
    let before = LIVE.load(Ordering::SeqCst);
    for _ in 0..ROUNDS {
        round();
    }
    let grown = LIVE.load(Ordering::SeqCst) - before;
    if grown > SLACK {
        failures.push(format!(
            "{what}: {grown} bytes more live after {ROUNDS} rounds (slack {SLACK})"
        ));
    }
}

fn square(x: u64) -> u64 {
    x * x
}

fn kilobytes(n: usize) -> Vec<u8> {
    vec![7; n * 1024]
}

#[test]
fn futures_of_every_executor_leave_nothing_behind() {
    let mut failures = Vec::new();
    // Completed by hand: value read with result(), moved out with into_result(), a
    // failure, a cancellation, a done callback, a completer dropped unfinished.
    check_flat(&mut failures, "Completer", || {
        for i in 0..2_000u64 {
            let (c, f) = Completer::new();
            f.add_done_callback(|f| assert!(f.done()));
            c.set_result(vec![i; 16]);
            assert_eq!(f.result_timeout(LONG).unwrap().len(), 16);
            assert_eq!(f.into_result_timeout(LONG).unwrap()[0], i);

            let (c, f) = Completer::<String>::new();
            drop(c);
            assert!(f.result_timeout(LONG).is_err());

            let (c, f) = Completer::<u64>::new();
            assert!(f.cancel());
            c.set_result(i);
            assert!(f.cancelled());
        }
    });

    let threads = ThreadPoolExecutor::builder()
        .max_workers(2)
        .build()
        .unwrap();
    check_flat(&mut failures, "ThreadPoolExecutor::submit", || {
        let futures: Vec<_> = (0..500)
            .map(|_| threads.submit(|| kilobytes(10)).unwrap())
            .collect();
        let (done, not_done) = wait_timeout(&futures, ReturnWhen::AllCompleted, LONG);
        assert_eq!((done.len(), not_done.len()), (500, 0));
        for f in as_completed_timeout(futures, LONG) {
            assert_eq!(f.unwrap().result().unwrap().len(), 10 * 1024);
        }
    });
    check_flat(&mut failures, "ThreadPoolExecutor::map", || {
        let total: usize = threads
            .map(|x: usize| x + 1, 0..1_000)
            .map(|r| r.unwrap())
            .sum();
        assert_eq!(total, 500_500);
    });

    let processes = ProcessPoolExecutor::builder()
        .max_workers(2)
        .build()
        .unwrap();
    check_flat(&mut failures, "ProcessPoolExecutor::submit", || {
        let futures: Vec<_> = (0..1_000)
            .map(|i| processes.submit(square, i).unwrap())
            .collect();
        for (i, f) in futures.into_iter().enumerate() {
            assert_eq!(f.result_timeout(LONG).unwrap(), (i * i) as u64);
        }
    });
    check_flat(&mut failures, "ProcessPoolExecutor::map", || {
        let total: u64 = processes
            .map(square, 0..200u64, 8)
            .map(|r| r.unwrap())
            .sum();
        assert_eq!(total, (0..200u64).map(square).sum());
    });

    let pool = Pool::new(2).unwrap();
    check_flat(&mut failures, "Pool::apply_async", || {
        let results: Vec<_> = (0..1_000)
            .map(|i| pool.apply_async(square, i).unwrap())
            .collect();
        for (i, r) in results.iter().enumerate() {
            assert_eq!(r.get_timeout(LONG).unwrap(), (i * i) as u64);
        }
    });

    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    check_flat(&mut failures, "asyncio", || {
        runtime.block_on(async {
            for i in 0..300u64 {
                assert_eq!(run_in_executor(&threads, move || i).await.unwrap(), i);
                assert_eq!(
                    run_in_executor(&processes, (square, i)).await.unwrap(),
                    i * i
                );
                assert_eq!(to_thread(move || i + 1).await.unwrap(), i + 1);
                let (c, f) = Completer::new();
                c.set_result(i);
                assert_eq!(wrap_future(f).await.unwrap(), i);
            }
        })
    });
    assert!(failures.is_empty(), "memory grew:\n{}", failures.join("\n"));
}
