//! Waiting for a word in shared memory to change without blocking the waiting thread:
//! the readiness source behind the queues' `async` operations.
//!
//! A futex has no file descriptor, so no event loop (tokio's included) can watch one.
//! Instead, one thread per process — the *reactor*, started on first use — sleeps in
//! `futex_waitv(2)` on every word that some future awaits, plus a private control word,
//! and wakes the futures' [`Waker`]s when their words change. Runtime threads only ever
//! register and deregister; they never sleep on a futex.
//!
//! # Who touches what
//!
//! - A [`Changed`] future counts itself in its *interest* word (when it has one) for as
//!   long as it lives, before it reads the word it waits on. The side that changes the
//!   word (a queue's producer, say) reads the interest after its change and, seeing it,
//!   bumps the word and wakes it. Both are sequentially consistent, so either the
//!   changer sees the interest or the future sees the change (the pattern of the
//!   queue's ring, see `queue/ring.rs`).
//! - The registrations live in [`Reactor::state`], under its mutex; each holds its
//!   segment, so a word the reactor reads is always mapped. The reactor thread copies
//!   them, then sleeps with the kernel comparing each word to its expected value: a
//!   change between the copy and the sleep makes the sleep return at once.
//! - Every change to the registrations bumps and wakes the control word, so the reactor
//!   never sleeps on a stale list.
//!
//! The reactor waits on at most [`futex::WAIT_ANY_MAX`] words at a time; beyond that
//! (more than 127 futures awaiting queues at once in one process) it polls the rest
//! every millisecond.
//!
//! A child forked from a process whose reactor runs has no reactor thread, and its copy
//! of the registrations' lock may be held: a forked child must not await a queue unless
//! it was forked before the first await (flotilla's safe fork refuses a multi-threaded
//! parent anyway).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::futex::{self, WaitOn};
use crate::shm::SharedMemory;

/// A 32-bit word at an offset of a shared segment, which it keeps mapped.
#[derive(Clone)]
pub(crate) struct Word {
    shm: Arc<SharedMemory>,
    offset: usize,
}

impl Word {
    /// The word at `offset` of `shm`.
    ///
    /// # Panics
    ///
    /// If the word is not inside the segment or not 4-byte aligned: the callers pass
    /// constants of their layouts.
    pub(crate) fn new(shm: Arc<SharedMemory>, offset: usize) -> Word {
        assert!(
            offset.is_multiple_of(4) && offset + 4 <= shm.size(),
            "a word inside the segment"
        );
        Word { shm, offset }
    }

    fn get(&self) -> &AtomicU32 {
        // SAFETY: `new` checked that the 4 bytes at `offset` lie in the segment, and the
        // mapping is page-aligned, so the word is aligned; shared words are only ever
        // accessed atomically, by every process; `self.shm` keeps the mapping alive for
        // as long as the reference (tied to `&self`).
        unsafe { &*self.shm.as_ptr().add(self.offset).cast::<AtomicU32>() }
    }
}

/// Resolves once `word` no longer holds the value it held when the future was made —
/// a hint to look again, as every futex wake-up is. While it lives, it is counted in its
/// interest word, so that whoever changes the word knows to wake it.
pub(crate) struct Changed {
    word: Word,
    seen: u32,
    interest: Option<Word>,
    key: Option<u64>,
}

impl Changed {
    /// Counts itself in `interest`, then reads `word`: the future resolves once that
    /// value changes.
    pub(crate) fn new(word: Word, interest: Option<Word>) -> Changed {
        if let Some(interest) = &interest {
            interest.get().fetch_add(1, Ordering::SeqCst);
        }
        let seen = word.get().load(Ordering::SeqCst);
        Changed {
            word,
            seen,
            interest,
            key: None,
        }
    }
}

impl Future for Changed {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.word.get().load(Ordering::SeqCst) != this.seen {
            if let Some(key) = this.key.take() {
                Reactor::get().deregister(key);
            }
            return Poll::Ready(());
        }
        let reactor = Reactor::get();
        this.key = Some(reactor.register(this.key, &this.word, this.seen, cx.waker()));
        if !reactor.running.load(Ordering::Relaxed) {
            // No reactor thread to wake us: ask to be polled again, and look again then.
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }
}

impl Drop for Changed {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            Reactor::get().deregister(key);
        }
        if let Some(interest) = &self.interest {
            interest.get().fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl std::fmt::Debug for Changed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Changed")
            .field("seen", &self.seen)
            .field("registered", &self.key.is_some())
            .finish_non_exhaustive()
    }
}

/// One awaited word.
struct Entry {
    word: Word,
    seen: u32,
    waker: Waker,
}

#[derive(Default)]
struct State {
    entries: HashMap<u64, Entry>,
    next_key: u64,
}

/// The process's reactor: its registrations and the control word its thread also
/// sleeps on.
struct Reactor {
    state: Mutex<State>,
    control: AtomicU32,
    /// Whether its thread runs; when it could not start, nothing would ever wake the
    /// registered futures, so they poll instead (see [`Changed::poll`]).
    running: AtomicBool,
}

/// How often the reactor looks at the words it cannot sleep on (beyond the kernel's
/// limit per wait).
const OVERFLOW_POLL: Duration = Duration::from_millis(1);

impl Reactor {
    /// The reactor, with its thread started on first use.
    fn get() -> &'static Reactor {
        static REACTOR: OnceLock<&'static Reactor> = OnceLock::new();
        REACTOR.get_or_init(|| {
            let reactor: &'static Reactor = Box::leak(Box::new(Reactor {
                state: Mutex::new(State::default()),
                control: AtomicU32::new(0),
                running: AtomicBool::new(true),
            }));
            let started = std::thread::Builder::new()
                .name("flotilla-futex-reactor".into())
                .spawn(move || reactor.run());
            if let Err(e) = started {
                reactor.running.store(false, Ordering::Relaxed);
                flotilla_core::event!(flotilla_core::log::Level::ERROR, error = %e, "could not start the futex reactor; async queue waits will poll");
            }
            reactor
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // No user code runs under this lock (wakers are woken after it is released).
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes the reactor thread so it re-reads the registrations.
    fn poke(&self) {
        self.control.fetch_add(1, Ordering::SeqCst);
        if let Err(e) = futex::wake_all(&self.control) {
            flotilla_core::event!(flotilla_core::log::Level::ERROR, error = %e, "futex wake of the reactor failed");
        }
    }

    /// Registers (or, with `key`, updates) interest in `word` changing from `seen`;
    /// the registration's key.
    fn register(&self, key: Option<u64>, word: &Word, seen: u32, waker: &Waker) -> u64 {
        let mut state = self.lock();
        if let Some(key) = key
            && let Some(entry) = state.entries.get_mut(&key)
        {
            // Polled again before its word changed: only the waker may be new, and the
            // reactor already watches the word.
            if !entry.waker.will_wake(waker) {
                entry.waker.clone_from(waker);
            }
            return key;
        }
        let key = state.next_key;
        state.next_key += 1;
        state.entries.insert(
            key,
            Entry {
                word: word.clone(),
                seen,
                waker: waker.clone(),
            },
        );
        drop(state);
        self.poke();
        key
    }

    fn deregister(&self, key: u64) {
        // The reactor finds out at its next wake-up; a word it still sleeps on is mapped
        // (its copy of the entry holds the segment) and merely wakes it once more.
        self.lock().entries.remove(&key);
    }

    /// The reactor thread: sleeps on every registered word and the control word, wakes
    /// the futures whose words changed, and starts over.
    fn run(&self) {
        loop {
            let control = self.control.load(Ordering::SeqCst);
            let (watched, overflow) = self.collect();
            let mut words: Vec<WaitOn<'_>> = Vec::with_capacity(watched.len() + 1);
            words.push(WaitOn {
                word: &self.control,
                expected: control,
            });
            words.extend(watched.iter().map(|(word, seen)| WaitOn {
                word: word.get(),
                expected: *seen,
            }));
            let deadline = overflow.then(|| Instant::now() + OVERFLOW_POLL);
            if let Err(e) = futex::wait_any(&words, deadline) {
                flotilla_core::event!(flotilla_core::log::Level::ERROR, error = %e, "futex_waitv failed; polling");
                std::thread::sleep(OVERFLOW_POLL);
            }
        }
    }

    /// Wakes and drops the registrations whose words changed; returns (a copy of) the
    /// ones to sleep on, at most the kernel's limit less the control word, and whether
    /// there were more.
    fn collect(&self) -> (Vec<(Word, u32)>, bool) {
        let mut woken = Vec::new();
        let (watched, overflow) = {
            let mut state = self.lock();
            state.entries.retain(|_, entry| {
                if entry.word.get().load(Ordering::SeqCst) != entry.seen {
                    woken.push(entry.waker.clone());
                    false
                } else {
                    true
                }
            });
            let watched: Vec<_> = state
                .entries
                .values()
                .take(futex::WAIT_ANY_MAX - 1)
                .map(|entry| (entry.word.clone(), entry.seen))
                .collect();
            let overflow = watched.len() < state.entries.len();
            (watched, overflow)
        };
        for waker in woken {
            waker.wake();
        }
        (watched, overflow)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;
    use std::task::{Wake, Waker};
    use std::time::{Duration, Instant};

    use super::{Changed, Word};
    use crate::SharedMemory;

    /// A waker that counts its wake-ups.
    struct Count(std::sync::atomic::AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn poll(fut: &mut Changed, waker: &Waker) -> bool {
        let mut cx = std::task::Context::from_waker(waker);
        std::pin::Pin::new(fut).poll(&mut cx).is_ready()
    }

    use std::future::Future as _;

    #[test]
    fn a_change_wakes_the_future_and_interest_is_counted_while_it_lives() {
        let shm = Arc::new(SharedMemory::new(64).unwrap());
        let word = Word::new(Arc::clone(&shm), 0);
        let interest = Word::new(Arc::clone(&shm), 4);
        let count = Arc::new(Count(Default::default()));
        let waker = Waker::from(Arc::clone(&count));
        // Many at once: more than one futex_waitv can hold, so the overflow path runs.
        let mut futures: Vec<Changed> = (0..200)
            .map(|_| Changed::new(word.clone(), Some(interest.clone())))
            .collect();
        assert_eq!(interest.get().load(Ordering::SeqCst), 200);
        for fut in &mut futures {
            assert!(!poll(fut, &waker), "nothing changed yet");
        }
        word.get().fetch_add(1, Ordering::SeqCst);
        crate::futex::wake_all(word.get()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while count.0.load(Ordering::SeqCst) < 200 {
            assert!(
                Instant::now() < deadline,
                "woken: {count:?}",
                count = count.0
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        for fut in &mut futures {
            assert!(poll(fut, &waker));
        }
        drop(futures);
        assert_eq!(interest.get().load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_dropped_future_is_forgotten() {
        let shm = Arc::new(SharedMemory::new(64).unwrap());
        let word = Word::new(Arc::clone(&shm), 8);
        let count = Arc::new(Count(Default::default()));
        let waker = Waker::from(Arc::clone(&count));
        let mut fut = Changed::new(word.clone(), None);
        assert!(!poll(&mut fut, &waker));
        drop(fut);
        word.get().fetch_add(1, Ordering::SeqCst);
        crate::futex::wake_all(word.get()).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(
            count.0.load(Ordering::SeqCst),
            0,
            "a dropped future is not woken"
        );
    }
}
