//! Process-shared events: a set in one process wakes waiters in others, under every
//! start method; waits time out; a set that is cleared at once still wakes who waited.

use std::time::Duration;

use flotilla_ipc::{Event, Value};
use flotilla_process::{StartMethod, get_context};

const LONG: Duration = Duration::from_secs(120);

fn wait_for_the_event(args: (Event, Value<u32>)) -> bool {
    let (event, waiting) = args;
    waiting.fetch_add(1);
    event.wait_timeout(LONG)
}

#[test]
fn a_set_wakes_waiters_in_processes_of_every_start_method() {
    let event = Event::new().unwrap();
    let waiting = Value::raw(0u32).unwrap();
    let children: Vec<_> = StartMethod::ALL
        .into_iter()
        .map(|method| {
            let builder = get_context(Some(method))
                .process(wait_for_the_event, (event.clone(), waiting.clone()));
            // SAFETY: under fork the child only uses the shared event and value
            // (atomics and futexes); it takes no lock another harness thread could hold.
            unsafe { builder.start_unchecked() }.unwrap()
        })
        .collect();
    while waiting.load() < 3 {
        std::thread::sleep(Duration::from_millis(5));
    }
    // Some may be asleep in the kernel, some not yet: the set must reach them all.
    event.set();
    for child in children {
        assert!(child.join_timeout(LONG).unwrap());
    }
    assert!(event.is_set());
}

fn wait_briefly(event: Event) -> bool {
    event.wait_timeout(Duration::from_millis(50))
}

#[test]
fn a_wait_in_another_process_times_out_and_a_set_event_returns_at_once() {
    let event = Event::new().unwrap();
    let ctx = get_context(Some(StartMethod::ForkServer));
    let child = ctx.process(wait_briefly, event.clone()).start().unwrap();
    assert!(!child.join_timeout(LONG).unwrap());
    event.set();
    let child = ctx.process(wait_briefly, event.clone()).start().unwrap();
    assert!(child.join_timeout(LONG).unwrap());
    event.clear();
    let child = ctx.process(wait_briefly, event.clone()).start().unwrap();
    assert!(!child.join_timeout(LONG).unwrap());
}

/// Returns once thread `tid` of this process sleeps in the futex syscall, so that what
/// happens next happens while it waits.
fn asleep_on_a_futex(tid: libc::pid_t) {
    let path = format!("/proc/self/task/{tid}/syscall");
    let futex = format!("{} ", libc::SYS_futex);
    let start = std::time::Instant::now();
    while !std::fs::read_to_string(&path).is_ok_and(|s| s.starts_with(&futex)) {
        assert!(
            start.elapsed() < LONG,
            "thread {tid} never slept on a futex"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn set_then_clear(args: (Event, Event)) {
    let (go, pulse) = args;
    assert!(go.wait_timeout(LONG));
    pulse.set();
    pulse.clear();
}

#[test]
fn a_pulse_set_and_cleared_by_another_process_wakes_the_waiter() {
    for method in [StartMethod::Spawn, StartMethod::ForkServer] {
        let (go, pulse) = (Event::new().unwrap(), Event::new().unwrap());
        let child = get_context(Some(method))
            .process(set_then_clear, (go.clone(), pulse.clone()))
            .start()
            .unwrap();
        std::thread::scope(|s| {
            let (tid_tx, tid_rx) = std::sync::mpsc::channel();
            let pulse = &pulse;
            let waiter = s.spawn(move || {
                // SAFETY: gettid has no preconditions.
                tid_tx.send(unsafe { libc::gettid() }).unwrap();
                pulse.wait_timeout(LONG)
            });
            asleep_on_a_futex(tid_rx.recv().unwrap());
            go.set();
            assert!(
                waiter.join().unwrap(),
                "{method}: the pulse happened while it waited"
            );
        });
        child.join_timeout(LONG).unwrap();
        assert!(!pulse.is_set());
    }
}

fn set_it(event: Event) -> bool {
    event.set();
    true
}

#[test]
fn an_event_given_to_a_running_pool_worker_as_a_task_argument_is_the_same_event() {
    let pool = flotilla_process::ProcessPoolExecutor::builder()
        .max_workers(1)
        .build()
        .unwrap();
    // Warm the worker up, so the event reaches an already-running process.
    let warm = Event::new().unwrap();
    assert!(
        pool.submit(set_it, warm)
            .unwrap()
            .result_timeout(LONG)
            .unwrap()
    );
    let event = Event::new().unwrap();
    let done = pool.submit(set_it, event.clone()).unwrap();
    assert!(event.wait_timeout(LONG));
    assert!(done.result_timeout(LONG).unwrap());
}
