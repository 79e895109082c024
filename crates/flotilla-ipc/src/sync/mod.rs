//! Python's `multiprocessing` synchronization primitives beyond the locks: [`Semaphore`],
//! [`BoundedSemaphore`], [`Event`], [`Condition`] and [`Barrier`], living in shared
//! memory and sleeping on futexes, with the methods of their `flotilla-thread` twins.
//!
//! # The segment and who may touch it
//!
//! Each primitive owns one small [`SharedMemory`] segment (one page once mapped):
//!
//! ```text
//! offset 0     magic: which primitive the segment holds, checked by a receiver
//! offset 4..64 the primitive's 32- and 64-bit atomic words
//! offset 64    a Barrier's internal pthread mutex
//! ```
//!
//! So each primitive costs one descriptor and one page in every process that holds it
//! (a [`Condition`] made with [`Condition::new`] two: it has its own [`RLock`](crate::RLock)),
//! as each `Lock` and `Value` does; Python's semaphores cost a page each too. Packing
//! several primitives into one segment would save both, at the price of a shared
//! allocator; nothing needs that many primitives yet.
//!
//! 1. **Initialised once, before anyone else can see it**: the constructor fills the
//!    words of a segment it has just created, then writes the magic; a receiver checks
//!    the size and the magic and never initialises anything.
//! 2. **After that, the words are touched only through atomics and futex calls**, from
//!    any process mapping the segment (and the Barrier's mutex only through pthread
//!    calls); no Rust reference into the segment exists but to atomics.
//! 3. **Sleepers announce themselves before they sleep.** A waiter counts itself in a
//!    waiters word, *then* reads the word it sleeps on; a waker changes that word,
//!    *then* reads the waiters word and skips the wake-up syscall when nobody waits.
//!    Both sides are `SeqCst`, so at least one of them sees the other: either the waker
//!    sees the waiter and wakes it, or the waiter sees the change and does not sleep.
//!    (The kernel's compare-and-sleep closes the rest of the window.)
//!
//! Before sleeping, waiters spin briefly (the crate's one spin, in `futex`): a wake-up
//! across CPUs costs tens of microseconds, and a partner process often answers sooner.
//!
//! # When a process dies
//!
//! The words hold counts, never pointers, so a process killed at any instruction leaves
//! them valid. What it can take with it is documented on each type: a semaphore permit
//! it held; a notification meant for it, if it died waiting on a [`Condition`]. A
//! [`Barrier`] whose participant dies before arriving times out for the others and
//! breaks, as Python's does on any timeout.

mod barrier;
mod condition;
mod event;
mod semaphore;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{CreateError, Error};
use crate::shm::SharedMemory;

pub use self::barrier::{Barrier, BarrierBuilder};
pub use self::condition::{Condition, ConditionGuard, ConditionLock};
pub use self::event::Event;
pub use self::semaphore::{BoundedSemaphore, Semaphore, SemaphorePermit};

/// Which primitive a segment holds: the low byte of its magic word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
enum Kind {
    Semaphore = 1,
    BoundedSemaphore = 2,
    Event = 3,
    Condition = 4,
    Barrier = 5,
}

impl Kind {
    /// "FLs" and the kind: a segment of any other content is refused on receipt.
    const fn magic(self) -> u32 {
        0x464C_7300 | self as u32
    }

    const fn name(self) -> &'static str {
        match self {
            Kind::Semaphore => "a Semaphore",
            Kind::BoundedSemaphore => "a BoundedSemaphore",
            Kind::Event => "an Event",
            Kind::Condition => "a Condition",
            Kind::Barrier => "a Barrier",
        }
    }
}

/// A primitive's segment: its words, at offsets fixed by each primitive below
/// [`Segment::SIZE`]. Clones share the segment.
#[derive(Debug, Clone)]
struct Segment {
    shm: Arc<SharedMemory>,
}

impl Segment {
    /// The bytes a segment has: the words, then room for a pthread mutex at
    /// [`Segment::MUTEX`].
    const SIZE: usize = 128;
    /// Where a Barrier's mutex lives.
    const MUTEX: usize = 64;
    const MAGIC: usize = 0;

    /// A new segment for `kind`; `init` fills its words (and returns what else it made
    /// in the segment) before the magic marks it complete (rule 1).
    fn new<R>(
        kind: Kind,
        init: impl FnOnce(&Segment) -> Result<R, CreateError>,
    ) -> Result<(Self, R), CreateError> {
        let segment = Segment {
            shm: Arc::new(SharedMemory::new(Self::SIZE).map_err(CreateError::shm)?),
        };
        let made = init(&segment)?;
        segment
            .u32_at(Self::MAGIC)
            .store(kind.magic(), Ordering::Release);
        Ok((segment, made))
    }

    /// A segment received from another process, which must hold `kind`.
    fn received(shm: SharedMemory, kind: Kind) -> Result<Self, Error> {
        if shm.size() < Self::SIZE {
            return Err(Error::InvalidSegment(format!(
                "a segment of {} bytes cannot hold {}",
                shm.size(),
                kind.name()
            )));
        }
        let segment = Segment { shm: Arc::new(shm) };
        if segment.u32_at(Self::MAGIC).load(Ordering::Acquire) != kind.magic() {
            return Err(Error::InvalidSegment(format!(
                "the segment received does not hold {}",
                kind.name()
            )));
        }
        Ok(segment)
    }

    /// The 32-bit word at `offset`, a constant of the primitive's layout.
    fn u32_at(&self, offset: usize) -> &AtomicU32 {
        debug_assert!(
            offset + 4 <= Self::MUTEX && offset.is_multiple_of(4),
            "a word of the layout"
        );
        // SAFETY: the segment holds at least `SIZE` bytes (checked when made or
        // received) and the mapping is page-aligned, so `offset`, a multiple of 4
        // below `MUTEX`, is an aligned word inside it; atomics are the access that stays
        // defined while other processes write the word (rule 2); the mapping lives as
        // long as `&self`.
        unsafe { &*self.shm.as_ptr().add(offset).cast::<AtomicU32>() }
    }

    /// The 64-bit word at `offset`, a constant of the primitive's layout.
    fn u64_at(&self, offset: usize) -> &AtomicU64 {
        debug_assert!(
            offset + 8 <= Self::MUTEX && offset.is_multiple_of(8),
            "a word of the layout"
        );
        // SAFETY: as in `u32_at`, with `offset` a multiple of 8.
        unsafe { &*self.shm.as_ptr().add(offset).cast::<AtomicU64>() }
    }
}

impl Serialize for Segment {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.shm.serialize(serializer)
    }
}

impl Segment {
    fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
        kind: Kind,
    ) -> Result<Self, D::Error> {
        let shm = SharedMemory::deserialize(deserializer)?;
        Segment::received(shm, kind).map_err(D::Error::custom)
    }
}

/// A 32-bit count from a `usize` argument.
fn to_u32(value: usize, what: &str) -> Result<u32, CreateError> {
    u32::try_from(value).map_err(|_| {
        CreateError::InvalidArgument(format!("{what} {value} does not fit in 32 bits"))
    })
}

#[cfg(test)]
mod tests;
