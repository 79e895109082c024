//! The OS resources this process holds do not grow with use. Open descriptors (its own
//! and its descendants'), descendant processes (zombies included), threads and names in
//! `/dev/shm` are counted after a warm-up and again after many more rounds of starting,
//! using and dropping processes, pipes, queues, locks, shared values, pools and managers,
//! under every start method.
//!
//! One `#[test]` runs every case in turn, so no other test of this binary opens or
//! starts anything at the same time. A leak of one descriptor, child or thread per round
//! shows as growth of at least [`ROUNDS`], far above the slack.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use flotilla::futures::ProcessPoolExecutor;
use flotilla::managers::Manager;
use flotilla::multiprocessing::{
    Array, Barrier, Condition, Event, JoinableQueue, Lock, Pool, Queue, RLock, Semaphore,
    StartMethod, Value, get_context, pipe,
};

const LONG: Duration = Duration::from_secs(60);

/// Rounds measured after the warm-up rounds.
const ROUNDS: usize = 12;

/// Growth allowed between the two counts: a runtime's lazily made thread, a descriptor
/// cached by the allocator or the forkserver's own bookkeeping. A leak per round over
/// [`ROUNDS`] rounds is far above it.
const SLACK: i64 = 3;

/// What this process holds, by kind.
#[derive(Debug, Clone, PartialEq)]
struct Held(BTreeMap<&'static str, i64>);

fn held() -> Held {
    let me = std::process::id();
    let mut counts = BTreeMap::new();
    counts.insert("descriptors", count_dir("/proc/self/fd"));
    counts.insert("threads", count_dir("/proc/self/task"));
    counts.insert("/dev/shm names", count_dir("/dev/shm"));
    // Descendants, living or zombie (pool workers are the forkserver's children): every
    // process whose chain of parents leads here.
    let mut parent_of = BTreeMap::new();
    let mut zombie = BTreeMap::new();
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: the comm may hold spaces, so split after its ')'.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().unwrap_or("");
        if let Some(ppid) = fields.next().and_then(|p| p.parse::<u32>().ok()) {
            parent_of.insert(pid, ppid);
            zombie.insert(pid, state == "Z");
        }
    }
    let descends = |mut pid: u32| {
        for _ in 0..64 {
            match parent_of.get(&pid) {
                Some(&ppid) if ppid == me => return true,
                Some(&ppid) if ppid > 1 => pid = ppid,
                _ => return false,
            }
        }
        false
    };
    let ours: Vec<u32> = parent_of.keys().copied().filter(|&p| descends(p)).collect();
    let children = ours.len() as i64;
    let zombies = ours.iter().filter(|p| zombie[*p]).count() as i64;
    counts.insert("descendant processes", children);
    // The forkserver (and a manager or pool still running) could leak on our behalf.
    let their_fds = ours
        .iter()
        .map(|p| count_dir(&format!("/proc/{p}/fd")))
        .sum();
    counts.insert("descendants' descriptors", their_fds);
    counts.insert("zombies", zombies);
    Held(counts)
}

fn count_dir(path: &str) -> i64 {
    std::fs::read_dir(path).map_or(0, |d| d.count() as i64)
}

/// Runs `round` twice to warm up, then [`ROUNDS`] times, and records in `failures` every
/// kind of resource that grew by more than [`SLACK`] (children are given a moment to be
/// reaped: a pool or process that was just dropped may still be ending).
fn check_flat(failures: &mut Vec<String>, what: &str, mut round: impl FnMut()) {
    round();
    round();
    let before = settled(None);
    for _ in 0..ROUNDS {
        round();
    }
    let after = settled(Some(&before));
    for (kind, &n) in &after.0 {
        let was = before.0[kind];
        if n - was > SLACK {
            failures.push(format!(
                "{what}: {kind} grew from {was} to {n} over {ROUNDS} rounds"
            ));
        }
    }
}

/// The counts once they stop falling (children and threads that were told to end may
/// take a moment), bounded by a generous wait. With `target`, stops as soon as no kind is
/// above it by more than the slack.
fn settled(target: Option<&Held>) -> Held {
    let until = Instant::now() + Duration::from_secs(10);
    let mut last = held();
    loop {
        std::thread::sleep(Duration::from_millis(50));
        let now = held();
        let within = target.is_some_and(|t| now.0.iter().all(|(k, &n)| n - t.0[k] <= SLACK));
        if within || (target.is_none() && now == last) || Instant::now() > until {
            return now;
        }
        last = now;
    }
}

fn square(x: u64) -> u64 {
    x * x
}

fn put_squares(args: (Queue<u64>, u64)) -> u64 {
    let (queue, n) = args;
    for i in 0..n {
        queue.put(square(i)).unwrap();
    }
    n
}

fn echo(conn: flotilla::multiprocessing::Connection) -> u64 {
    let x: u64 = conn.recv().unwrap();
    conn.send(&(x + 1)).unwrap();
    x
}

fn sleep_long(_: ()) {
    std::thread::sleep(LONG);
}

fn start<A, R>(
    method: StartMethod,
    target: fn(A) -> R,
    args: A,
) -> flotilla::multiprocessing::Process<R>
where
    A: serde::Serialize + serde::de::DeserializeOwned + 'static,
    R: serde::Serialize + serde::de::DeserializeOwned + 'static,
{
    let builder = get_context(Some(method)).process(target, args);
    // SAFETY: under fork the child runs only the targets above, which use flotilla's
    // shared queues and connections (atomics, futexes, sockets) and the allocator; they
    // take no lock another thread of the test harness could have held at the fork.
    unsafe { builder.start_unchecked() }.unwrap()
}

#[test]
fn resources_do_not_grow_with_use() {
    let mut failures = Vec::new();

    for method in StartMethod::ALL {
        check_flat(
            &mut failures,
            &format!("{method:?}: start and join"),
            || {
                let child = start(method, square, 7);
                assert_eq!(child.join_timeout(LONG).unwrap(), 49);
            },
        );
        check_flat(
            &mut failures,
            &format!("{method:?}: a pipe end passed to a child"),
            || {
                let (here, there) = pipe(true).unwrap();
                let child = start(method, echo, there);
                here.send(&41u64).unwrap();
                assert_eq!(here.recv::<u64>().unwrap(), 42);
                assert_eq!(child.join_timeout(LONG).unwrap(), 41);
            },
        );
        check_flat(
            &mut failures,
            &format!("{method:?}: a queue filled by a child"),
            || {
                let queue = Queue::new().unwrap();
                let child = start(method, put_squares, (queue.clone(), 50));
                let total: u64 = (0..50).map(|_| queue.get_timeout(LONG).unwrap()).sum();
                assert_eq!(total, (0..50).map(square).sum());
                assert_eq!(child.join_timeout(LONG).unwrap(), 50);
            },
        );
        check_flat(
            &mut failures,
            &format!("{method:?}: a child killed"),
            || {
                let child = start(method, sleep_long, ());
                child.kill().unwrap();
                assert!(child.join_timeout(LONG).is_err());
            },
        );
    }

    check_flat(
        &mut failures,
        "pipes, queues and shared primitives made and dropped",
        || {
            for _ in 0..20 {
                let (a, b) = pipe(true).unwrap();
                a.send(&1u8).unwrap();
                assert_eq!(b.recv::<u8>().unwrap(), 1);
                let q = JoinableQueue::<u32>::new().unwrap();
                q.put(1).unwrap();
                assert_eq!(q.get().unwrap(), 1);
                q.task_done().unwrap();
                let _ = (
                    Lock::new().unwrap(),
                    RLock::new().unwrap(),
                    Event::new().unwrap(),
                );
                let _ = (Semaphore::new(2).unwrap(), Condition::new().unwrap());
                let _ = (Barrier::new(2).unwrap(), Value::new(5u64).unwrap());
                let _ = Array::<u32>::new(16).unwrap();
            }
        },
    );

    check_flat(&mut failures, "Pool: build, map, close, join", || {
        let pool = Pool::new(2).unwrap();
        let squares = pool.map(square, 0..20u64, None).unwrap();
        assert_eq!(squares[19], 361);
        pool.close();
        pool.join().unwrap();
    });

    check_flat(
        &mut failures,
        "ProcessPoolExecutor: submit, then drop",
        || {
            let executor = ProcessPoolExecutor::builder()
                .max_workers(2)
                .build()
                .unwrap();
            let futures: Vec<_> = (0..20)
                .map(|i| executor.submit(square, i).unwrap())
                .collect();
            for (i, f) in futures.iter().enumerate() {
                assert_eq!(f.result_timeout(LONG).unwrap(), (i * i) as u64);
            }
        },
    );

    check_flat(
        &mut failures,
        "ProcessPoolExecutor: a worker killed mid-task",
        || {
            let executor = ProcessPoolExecutor::builder()
                .max_workers(1)
                .build()
                .unwrap();
            let doomed = executor.submit(sleep_long, ()).unwrap();
            while !doomed.running() {
                std::thread::sleep(Duration::from_millis(1));
            }
            assert!(executor.stop(&doomed));
            assert!(doomed.result_timeout(LONG).is_err());
            assert_eq!(
                executor
                    .submit(square, 3)
                    .unwrap()
                    .result_timeout(LONG)
                    .unwrap(),
                9
            );
        },
    );

    check_flat(&mut failures, "Manager: start, use, shut down", || {
        let manager = Manager::start().unwrap();
        let d = manager.dict::<String, u64>().unwrap();
        d.set(&"k".to_string(), &1).unwrap();
        assert_eq!(d.get(&"k".to_string()).unwrap(), Some(1));
        drop(d);
        drop(manager);
    });

    assert!(
        failures.is_empty(),
        "resources grew:\n{}",
        failures.join("\n")
    );
}
