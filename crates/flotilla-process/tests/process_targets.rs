//! What may be a process target: fn items, closures that capture nothing, and fn
//! pointers (a helper that takes its target as `fn(A) -> R`, a table of targets), under
//! spawn and forkserver, for processes and pool tasks alike. A target that captures data
//! is refused with an error that says what to pass.

use std::time::Duration;

use flotilla_process::{Error, Pool, ProcessPoolExecutor, StartMethod, get_context};

const LONG: Duration = Duration::from_secs(60);

/// A target chosen at run time.
type Target = fn(u64) -> u64;

fn double(x: u64) -> u64 {
    x * 2
}

fn square(x: u64) -> u64 {
    x * x
}

/// A helper that takes its target as a fn pointer: the case that failed to build.
fn run_in_child(method: StartMethod, target: fn(u64) -> u64, x: u64) -> u64 {
    let builder = get_context(Some(method)).process(target, x);
    // SAFETY: a fork child only does arithmetic and reports; it takes no lock another
    // test thread could hold.
    let child = unsafe { builder.start_unchecked() }.unwrap();
    child.join_timeout(LONG).unwrap()
}

#[test]
fn fn_pointers_run_as_process_targets() {
    let table: [(&str, Target); 2] = [("double", double), ("square", square)];
    for method in [
        StartMethod::Spawn,
        StartMethod::ForkServer,
        StartMethod::Fork,
    ] {
        for (name, target) in table {
            assert_eq!(
                run_in_child(method, target, 7),
                target(7),
                "{method} {name}"
            );
        }
    }
}

#[test]
fn fn_pointers_run_as_pool_tasks() {
    let pool = ProcessPoolExecutor::builder()
        .max_workers(2)
        .build()
        .unwrap();
    let targets: Vec<fn(u64) -> u64> = vec![double, square];
    for target in &targets {
        assert_eq!(
            pool.submit(*target, 9)
                .unwrap()
                .result_timeout(LONG)
                .unwrap(),
            target(9)
        );
        let mapped: Vec<u64> = pool.map(*target, 0..20, 3).map(Result::unwrap).collect();
        assert_eq!(mapped, (0..20).map(target).collect::<Vec<_>>());
    }
    let classic = Pool::new(2).unwrap();
    let f: fn(u64) -> u64 = square;
    assert_eq!(classic.apply(f, 5).unwrap(), 25);
    assert_eq!(
        classic.map(f, 0..10u64, None).unwrap(),
        (0..10).map(square).collect::<Vec<_>>()
    );
    let mut unordered: Vec<u64> = classic
        .imap_unordered(f, 0..10u64, 2)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    unordered.sort();
    assert_eq!(unordered, (0..10).map(square).collect::<Vec<_>>());
}

#[test]
fn a_closure_that_captures_a_pointer_sized_value_is_refused_with_a_clear_error() {
    // Eight bytes of captured data pass the build-time size check; the run-time check
    // refuses them (the child would have none of this process's data).
    let offset = 40u64;
    let captures = move |x: u64| x + offset;
    let err = get_context(Some(StartMethod::Spawn))
        .process(captures, 2)
        .start()
        .unwrap_err();
    assert!(
        matches!(&err, Error::Unsupported(m) if m.contains("fn pointer")),
        "{err}"
    );

    let pool = ProcessPoolExecutor::builder()
        .max_workers(1)
        .build()
        .unwrap();
    let err = pool.submit(captures, 2).unwrap_err();
    assert!(
        err.to_string().contains("pass data as its argument"),
        "{err}"
    );
    // The same closure under fork is fine: the child is a copy of this process.
    let builder = get_context(Some(StartMethod::Fork)).process(captures, 2);
    // SAFETY: as in `run_in_child`.
    let forked = unsafe { builder.start_unchecked() }
        .unwrap()
        .join_timeout(LONG)
        .unwrap();
    assert_eq!(forked, 42);
}
