//! thread-local: Python's `threading.local()` student example. Each thread stores its
//! own "student" in a thread-local and a shared helper reads it back without it being
//! passed along. Rust's `thread_local!` is the tool; flotilla threads are ordinary
//! threads, so it works in them unchanged.

use std::cell::RefCell;

use anyhow::ensure;
use flotilla::threading::ThreadBuilder;

use super::Clock;

thread_local! {
    static STUDENT: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Reads the calling thread's student, as Python's `process_student()` reads
/// `local_school.student`.
fn greet() -> String {
    let student = STUDENT.with_borrow(|s| s.clone()).unwrap_or_default();
    let thread = std::thread::current().name().unwrap_or("?").to_owned();
    format!("Hello, {student} (in {thread})")
}

pub(crate) fn run(clock: &Clock) -> anyhow::Result<()> {
    let pause = clock.units(0.5);
    let mut threads = Vec::new();
    for (student, thread) in [("Alice", "Thread-A"), ("Bob", "Thread-B")] {
        threads.push(ThreadBuilder::new().name(thread).spawn(move || {
            STUDENT.with_borrow_mut(|s| *s = Some(student.to_owned()));
            // Give the other thread time to set its own student meanwhile.
            std::thread::sleep(pause);
            greet()
        })?);
    }
    for (thread, expected) in threads.into_iter().zip(["Alice", "Bob"]) {
        let greeting = thread.join_timeout(clock.units(50.0))?;
        clock.say(&greeting);
        ensure!(
            greeting == format!("Hello, {expected} (in {})", thread.name()),
            "a thread saw another thread's student: {greeting}"
        );
    }
    let here = STUDENT.with_borrow(|s| s.clone());
    clock.say(format_args!("the main thread's own student: {here:?}"));
    ensure!(here.is_none(), "the main thread saw a student it never set");
    Ok(())
}
