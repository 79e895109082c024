//! The reference counting of a future's allocation (`Handle` in `future.rs`): however
//! its handles (futures, clones, the completer, the task) are dropped, on whichever
//! threads and in whichever order, the value and the closure are dropped exactly once,
//! and every allocation is freed.
//!
//! This binary counts its allocations with a global allocator, so it holds one test:
//! another running beside it would move the count.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::Duration;

use flotilla_core::{Completer, Future, Task, TaskError};

/// Counts live allocations and their bytes, so that a leak (or a double free turned
/// into a negative count) shows. Bytes, too, because futures are carved from 4 KiB
/// blocks (`slab.rs`): a leak of every future of this test is a few dozen blocks, but
/// hundreds of kilobytes.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is passed on to the system allocator unchanged; the count is a
// side effect.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(1, Ordering::SeqCst);
        LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::SeqCst);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(1, Ordering::SeqCst);
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::SeqCst);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Counts its drops.
struct Tracked(Arc<AtomicUsize>);

impl Drop for Tracked {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

const ROUNDS: usize = 2_000;

/// One round: a task whose closure and value are tracked, its future cloned to threads
/// that wait on it, take it or just drop it, while a worker runs, cancels, fails or
/// drops the task. Returns how many values and closures were made.
fn round(i: usize, values: &Arc<AtomicUsize>, closures: &Arc<AtomicUsize>) {
    let in_closure = Tracked(Arc::clone(closures));
    let value_drops = Arc::clone(values);
    let (task, fut): (Task, Future<Tracked>) = Task::new(move || {
        let _keep = &in_closure;
        Ok(Tracked(value_drops))
    });
    let observers: Vec<_> = (0..3)
        .map(|k| {
            let fut = fut.clone();
            thread::spawn(move || match (i + k) % 3 {
                0 => drop(fut.into_result_timeout(Duration::from_secs(30))),
                1 => drop(fut.wait_timeout(Duration::from_secs(30))),
                _ => drop(fut),
            })
        })
        .collect();
    let worker = thread::spawn(move || match i % 4 {
        0 | 1 => {
            task.run(&|| {});
        }
        2 => task.fail(TaskError::ShutDown),
        _ => drop(task),
    });
    if i.is_multiple_of(5) {
        fut.cancel();
    }
    match i % 2 {
        0 => drop(fut.into_result_timeout(Duration::from_secs(30))),
        _ => drop(fut),
    }
    worker.join().unwrap();
    for observer in observers {
        observer.join().unwrap();
    }
}

#[test]
fn every_value_closure_and_allocation_goes_exactly_once() {
    let (done, finished) = mpsc::channel();
    let body = thread::spawn(move || {
        let values = Arc::new(AtomicUsize::new(0));
        let closures = Arc::new(AtomicUsize::new(0));
        // Warm up what allocates once (thread-local state, the allocator's own).
        for i in 0..50 {
            round(i, &values, &closures);
        }
        let (values_before, closures_before) = (
            values.load(Ordering::SeqCst),
            closures.load(Ordering::SeqCst),
        );
        let live_before = (
            LIVE.load(Ordering::SeqCst),
            LIVE_BYTES.load(Ordering::SeqCst),
        );
        // Tasks that run (`i % 4 < 2`) make their value, unless the cancel of every
        // fifth round came first.
        let (mut must_run, mut may_run) = (0, 0);
        for i in 0..ROUNDS {
            round(i, &values, &closures);
            if i % 4 < 2 {
                may_run += 1;
                must_run += usize::from(i % 5 != 0);
            }
        }
        // Completers too: dropped unfinished, finished, or cancelled, from other threads.
        for i in 0..ROUNDS {
            let (completer, fut) = Completer::<Tracked>::new();
            let value = Tracked(Arc::clone(&values));
            let clone = fut.clone();
            let finisher = thread::spawn(move || match i % 3 {
                0 => completer.set_result(value),
                1 => drop((completer, value)),
                _ => {
                    completer.cancel();
                    drop(value)
                }
            });
            drop(clone.into_result_timeout(Duration::from_secs(30)));
            drop(fut);
            finisher.join().unwrap();
        }
        let live_after = (
            LIVE.load(Ordering::SeqCst),
            LIVE_BYTES.load(Ordering::SeqCst),
        );
        let closures_dropped = closures.load(Ordering::SeqCst) - closures_before;
        let values_dropped = values.load(Ordering::SeqCst) - values_before;
        let _ = done.send((
            (live_after.0 - live_before.0, live_after.1 - live_before.1),
            closures_dropped,
            values_dropped,
            (must_run, may_run),
        ));
    });
    let ((leaked, leaked_bytes), closures_dropped, values_dropped, (must_run, may_run)) = finished
        .recv_timeout(Duration::from_secs(120))
        .expect("the rounds did not finish within two minutes");
    body.join().unwrap();
    assert_eq!(closures_dropped, ROUNDS, "closures dropped");
    // A cancelled task never makes its value; one that ran makes one, and every
    // completer's round makes one.
    assert!(
        (must_run + ROUNDS..=may_run + ROUNDS).contains(&values_dropped),
        "{values_dropped} values dropped for {must_run}-{may_run} tasks that ran and \
         {ROUNDS} completers"
    );
    // Thread stacks and the like come and go; futures must not stay behind: at most a
    // handful of allocations apart, not one per round.
    assert!(
        leaked.abs() < 100,
        "{leaked} allocations more after {} rounds than before",
        2 * ROUNDS
    );
    // The calling thread keeps its partly used block of each size class it used.
    assert!(
        leaked_bytes.abs() <= 16 * 1024,
        "{leaked_bytes} bytes more after {} rounds than before",
        2 * ROUNDS
    );
}
