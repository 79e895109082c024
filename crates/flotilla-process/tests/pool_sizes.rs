//! Arguments and results of every size, on both sides of the pool's old 32 KiB
//! "large arguments" threshold, with 1-4 workers and many tasks in flight (issue 12:
//! a pool with a large argument waiting and its worker's pipeline full hung for ever,
//! its manager spinning).

mod pool_support;

use std::time::Duration;

use flotilla_core::{Future, TaskError};
use flotilla_process::{Pool, ProcessPoolExecutor};

use pool_support::within;

const LONG: Duration = Duration::from_secs(60);
const DEADLINE: Duration = Duration::from_secs(180);
const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

/// The sizes to try: nothing, tiny, both sides of 32 KiB, and larger.
const SIZES: [usize; 9] = [
    0,
    1,
    32 * KIB - 1,
    32 * KIB,
    32 * KIB + 1,
    40_000,
    256 * KIB,
    MIB,
    3 * MIB,
];

fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn echo(v: Vec<u8>) -> Vec<u8> {
    v
}

fn make(len: usize) -> Vec<u8> {
    bytes(len, 7)
}

fn len_of(v: Vec<u8>) -> usize {
    v.len()
}

fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

fn upper(s: String) -> String {
    s.to_uppercase()
}

fn executor(workers: usize) -> ProcessPoolExecutor {
    ProcessPoolExecutor::builder()
        .max_workers(workers)
        .build()
        .unwrap()
}

#[test]
fn the_reported_cases_complete() {
    within(
        DEADLINE,
        "max_workers(1), two 40,000-byte arguments",
        || {
            let pool = executor(1);
            let a = pool.submit(len_of, vec![1u8; 40_000]).unwrap();
            let b = pool.submit(len_of, vec![2u8; 40_000]).unwrap();
            assert_eq!(a.result_timeout(LONG).unwrap(), 40_000);
            assert_eq!(b.result_timeout(LONG).unwrap(), 40_000);
        },
    );
    within(DEADLINE, "max_workers(1), two 256 KiB strings", || {
        let pool = executor(1);
        let s = "a".repeat(256 * KIB);
        let a = pool.submit(upper, s.clone()).unwrap();
        let b = pool.submit(upper, s.clone()).unwrap();
        assert_eq!(a.result_timeout(LONG).unwrap(), s.to_uppercase());
        assert_eq!(b.result_timeout(LONG).unwrap(), s.to_uppercase());
    });
    within(DEADLINE, "2 workers, 3 tasks of 1 MiB", || {
        let pool = executor(2);
        let futs: Vec<_> = (0..3)
            .map(|i| pool.submit(echo, bytes(MIB, i)).unwrap())
            .collect();
        for (i, f) in futs.iter().enumerate() {
            assert_eq!(f.result_timeout(LONG).unwrap(), bytes(MIB, i as u8));
        }
    });
    within(DEADLINE, "Pool::new(2).map over 16 items of 20 KB", || {
        let pool = Pool::new(2).unwrap();
        let items: Vec<Vec<u8>> = (0..16).map(|i| bytes(20_000, i)).collect();
        let lens = pool.map(len_of, items, None).unwrap();
        assert_eq!(lens, vec![20_000; 16]);
    });
    within(DEADLINE, "dropping a pool with large tasks queued", || {
        let pool = executor(1);
        let futs: Vec<_> = (0..4)
            .map(|_| pool.submit(len_of, vec![0u8; 40_000]).unwrap())
            .collect();
        drop(pool);
        assert!(futs.iter().all(Future::done));
    });
}

#[test]
fn every_size_with_one_to_four_workers_and_a_busy_worker() {
    for workers in 1..=4 {
        within(
            DEADLINE,
            &format!("{workers} workers, all sizes"),
            move || {
                let pool = executor(workers);
                // Keep every worker busy first, so that everything after it queues.
                let busy: Vec<_> = (0..workers)
                    .map(|_| pool.submit(sleep_ms, 200).unwrap())
                    .collect();
                let mut echoes = Vec::new();
                let mut made = Vec::new();
                for round in 0..2u8 {
                    for (k, &size) in SIZES.iter().enumerate() {
                        let seed = round.wrapping_mul(16).wrapping_add(k as u8);
                        echoes.push((size, seed, pool.submit(echo, bytes(size, seed)).unwrap()));
                        made.push((size, pool.submit(make, size).unwrap()));
                    }
                }
                for f in busy {
                    f.result_timeout(LONG).unwrap();
                }
                for (size, seed, f) in echoes {
                    let got = f.result_timeout(LONG).unwrap();
                    assert!(
                        got == bytes(size, seed),
                        "echo of {size} bytes, {workers} workers"
                    );
                }
                for (size, f) in made {
                    let got = f.result_timeout(LONG).unwrap();
                    assert!(
                        got == bytes(size, 7),
                        "result of {size} bytes, {workers} workers"
                    );
                }
            },
        );
    }
}

#[test]
fn sixteen_mib_arguments_and_results() {
    for workers in [1, 2] {
        within(DEADLINE, &format!("16 MiB, {workers} workers"), move || {
            let pool = executor(workers);
            let big = bytes(16 * MIB, 3);
            let futs: Vec<_> = (0..3)
                .map(|_| pool.submit(echo, big.clone()).unwrap())
                .collect();
            let made = pool.submit(make, 16 * MIB).unwrap();
            for f in futs {
                assert!(f.result_timeout(LONG).unwrap() == big);
            }
            assert!(made.result_timeout(LONG).unwrap() == bytes(16 * MIB, 7));
        });
    }
}

#[test]
fn pool_map_imap_and_apply_async_across_the_threshold() {
    for workers in 1..=4 {
        within(DEADLINE, &format!("Pool of {workers}"), move || {
            let pool = Pool::new(workers).unwrap();
            let items: Vec<Vec<u8>> = SIZES
                .iter()
                .chain(SIZES.iter())
                .enumerate()
                .map(|(i, &size)| bytes(size, i as u8))
                .collect();
            let expected: Vec<usize> = items.iter().map(Vec::len).collect();
            assert_eq!(pool.map(len_of, items.clone(), None).unwrap(), expected);
            assert_eq!(pool.map(len_of, items.clone(), Some(1)).unwrap(), expected);
            let echoed: Vec<Vec<u8>> = pool
                .imap(echo, items.clone(), 2)
                .unwrap()
                .collect::<Result<_, TaskError>>()
                .unwrap();
            assert!(echoed == items);
            let pending: Vec<_> = items
                .iter()
                .map(|item| pool.apply_async(echo, item.clone()).unwrap())
                .collect();
            for (item, result) in items.iter().zip(pending) {
                assert!(&result.get_timeout(LONG).unwrap() == item);
            }
            let mut lens: Vec<usize> = pool
                .imap_unordered(len_of, items.clone(), 3)
                .unwrap()
                .collect::<Result<_, TaskError>>()
                .unwrap();
            let mut sorted = expected.clone();
            sorted.sort_unstable();
            lens.sort_unstable();
            assert_eq!(lens, sorted);
        });
    }
}

fn digest(v: Vec<u8>) -> (usize, u64) {
    (v.len(), v.iter().map(|&b| u64::from(b)).sum())
}

/// Small requests travel several to a frame (a batch): up to 4 KiB a request, up to
/// 32 KiB a batch. Arguments on both sides of the request limit (a frame is the encoded
/// argument plus a 16-byte length and trailer, so 4,080 bytes of `Vec<u8>` make exactly
/// 4 KiB), mixed with enough small ones to fill several batches, submitted while the
/// worker is busy and then as a map's chunks (handed over many at a time, so they share
/// batches): each runs once, with its own argument.
#[test]
fn requests_on_both_sides_of_the_batch_limits_run_once_each() {
    within(DEADLINE, "batch limits", || {
        for workers in [1, 2] {
            let pool = executor(workers);
            // Short tasks first, so the workers' pipelines deepen (to 16) and the next
            // requests go in batches.
            let warm: Vec<_> = (0..200)
                .map(|_| pool.submit(digest, Vec::new()).unwrap())
                .collect();
            for f in warm {
                f.result_timeout(LONG).unwrap();
            }
            let busy = pool.submit(sleep_ms, 100).unwrap();
            let mut sizes: Vec<usize> = (4_060..=4_100).collect();
            // 120 small ones of about 900 bytes: more than 3 batches' worth.
            sizes.extend((0..120).map(|i| 850 + i));
            let futures: Vec<(usize, Future<(usize, u64)>)> = sizes
                .iter()
                .enumerate()
                .map(|(i, &len)| {
                    let arg = bytes(len, i as u8);
                    (i, pool.submit(digest, arg).unwrap())
                })
                .collect();
            for (i, f) in futures {
                let len = sizes[i];
                let expected = digest(bytes(len, i as u8));
                assert_eq!(
                    f.result_timeout(LONG).unwrap(),
                    expected,
                    "{workers} workers, argument of {len} bytes"
                );
            }
            busy.result_timeout(LONG).unwrap();
            // A map hands its chunks over many at a time: these go in shared batches.
            let args: Vec<Vec<u8>> = sizes
                .iter()
                .enumerate()
                .map(|(i, &len)| bytes(len, i as u8))
                .collect();
            let expected: Vec<_> = args.iter().cloned().map(digest).collect();
            let got: Vec<_> = pool.map(digest, args, 1).collect::<Result<_, _>>().unwrap();
            assert_eq!(got, expected, "{workers} workers, map");
        }
    });
}
