//! The claim words of held tasks: how a task waiting in a worker's pipeline is started
//! by the worker or cancelled by the user, with exactly one winner and no message
//! between the processes.
//!
//! A pool shares one table of `u64` words with all its workers. A task sent into a busy
//! worker's pipeline (*held*) gets a slot in it for as long as it is the pool's, and its
//! future is bound to the slot's token ([`flotilla_core::Completer::bind`]). The word
//! holds, from the high bits down:
//!
//! ```text
//!   63            20 19            2 1    0
//!   [  generation  ][     hop      ][state]
//!         44 bits        18 bits    2 bits
//! ```
//!
//! - **generation**: which use of the slot this is (counted by the manager from 1); the
//!   token is the generation and the slot, so a cancel of a task whose slot has since
//!   been reused finds another generation, and knows its task is long past starting.
//! - **hop**: how many times the task was sent again (taken back for an idle worker, or
//!   requeued after its worker died before starting it); each request carries the word
//!   it expects, so only the worker holding the latest copy can start it.
//! - **state**: [`QUEUED`], [`STARTED`] or [`REVOKED`] (0 in a slot never used).
//!
//! Every change is one compare-exchange from a QUEUED word: the worker's start (to
//! STARTED), a cancel's revoke (to REVOKED, via [`StartClaim::revoke`]), and the
//! manager's own moves (to the next hop, or to STARTED when it sends the task to run at
//! once, or to REVOKED to withdraw it). A slot is freed only once its word is STARTED or
//! REVOKED, which nothing changes again until the slot is reused.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use flotilla_core::StartClaim;
use flotilla_ipc::SharedMemory;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The slot's word was never used.
#[cfg(test)]
const FREE: u64 = 0;
/// The task waits in a worker's pipeline.
const QUEUED: u64 = 1;
/// A worker started it (or the manager, sending it to run at once).
const STARTED: u64 = 2;
/// It will never start: cancelled, or withdrawn by the manager.
const REVOKED: u64 = 3;
const STATE: u64 = 0b11;

const HOP_SHIFT: u32 = 2;
const HOP_BITS: u32 = 18;
const GEN_SHIFT: u32 = HOP_SHIFT + HOP_BITS;
/// The largest generation: 44 bits.
const GEN_MAX: u64 = u64::MAX >> GEN_SHIFT;

/// A token is the generation above the slot.
const SLOT_BITS: u32 = 20;

/// The most slots a table has: enough for 65,536 workers' deepest pipelines.
pub(super) const MAX_SLOTS: usize = 1 << SLOT_BITS;

/// What a slot's word says of the task a request or a job expects there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Seen {
    /// It waits, in the copy the word names.
    Queued,
    /// It started.
    Started,
    /// It will never start.
    Revoked,
    /// It was sent again: a later copy is the one that may start.
    Moved,
}

/// A table of claim words in memory shared with the workers.
#[derive(Clone)]
pub(super) struct Claims(Arc<SharedMemory>);

impl Claims {
    /// A table of `slots` words (at least 1, at most [`MAX_SLOTS`]), all unused.
    pub(super) fn new(slots: usize) -> Result<Claims, flotilla_ipc::ShmError> {
        let slots = slots.clamp(1, MAX_SLOTS);
        Ok(Claims(Arc::new(SharedMemory::new(slots * 8)?)))
    }

    /// How many slots the table has.
    pub(super) fn len(&self) -> usize {
        self.0.size() / 8
    }

    /// The word of `slot`, if the table has it.
    fn word(&self, slot: u32) -> Option<&AtomicU64> {
        let slot = slot as usize;
        if slot >= self.len() {
            return None;
        }
        let base = self.0.as_ptr().cast::<AtomicU64>();
        // SAFETY: the mapping is page-aligned and `len()` whole words long, so word
        // `slot` is in it and aligned; it lives as long as `self`. Every process touches
        // these words only atomically (this module), so a shared `AtomicU64` reference
        // is sound; the other processes are other threads as far as the memory model
        // goes.
        Some(unsafe { &*base.add(slot) })
    }

    /// The manager's side: `slot` is given to a new task of generation `gen`, queued
    /// (first copy). Returns the word the request carries. The slot must be free.
    pub(super) fn queue(&self, slot: u32, generation: u64) -> u64 {
        let word = (generation << GEN_SHIFT) | QUEUED;
        if let Some(cell) = self.word(slot) {
            // Release: pairs with the acquire of a cancel that reads the token bound
            // after this store, and of the worker that receives the request.
            cell.store(word, Ordering::Release);
        }
        word
    }

    /// The token a future in `slot`, with `word`, is bound to.
    pub(super) fn token(slot: u32, word: u64) -> u64 {
        ((word >> GEN_SHIFT) << SLOT_BITS) | u64::from(slot)
    }

    /// Moves the task from `word` to `new` with one compare-exchange: true when it did,
    /// false when the word had moved on (started, revoked, or sent again).
    fn shift(&self, slot: u32, word: u64, new: u64) -> bool {
        self.word(slot).is_some_and(|cell| {
            cell.compare_exchange(word, new, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        })
    }

    /// The manager's side: the task queued as `word` is to be sent again. Returns its
    /// next word; `None` when it was revoked (cancelled) or started meanwhile.
    pub(super) fn again(&self, slot: u32, word: u64) -> Option<u64> {
        let next = Self::next_hop(word);
        self.shift(slot, word, next).then_some(next)
    }

    /// The manager's side: the task queued as `word` was started by a worker that died
    /// before it said so (so before it ran the task): queues it again. Returns its next
    /// word; `None` when it was not so started.
    pub(super) fn restart(&self, slot: u32, word: u64) -> Option<u64> {
        let next = Self::next_hop(word);
        let started = (word & !STATE) | STARTED;
        self.shift(slot, started, next).then_some(next)
    }

    /// `word` with the next hop.
    fn next_hop(word: u64) -> u64 {
        let mask = ((1 << HOP_BITS) - 1) << HOP_SHIFT;
        (word & !mask) | ((word + (1 << HOP_SHIFT)) & mask)
    }

    /// Starts the task queued as `word`: the worker's side, before it runs it, and the
    /// manager's, when it sends the task again to run at once. False when it was
    /// revoked or sent again (then it must not run); `None` when the table has no such
    /// slot (a request that is not the protocol).
    pub(super) fn start(&self, slot: u32, word: u64) -> Option<bool> {
        self.word(slot)?;
        Some(word & STATE == QUEUED && self.shift(slot, word, (word & !STATE) | STARTED))
    }

    /// The manager's side: keeps the task queued as `word` from starting (its future is
    /// failing, or the pool is stopping). True when it will not start.
    pub(super) fn withdraw(&self, slot: u32, word: u64) -> bool {
        self.shift(slot, word, (word & !STATE) | REVOKED) || self.seen(slot, word) == Seen::Revoked
    }

    /// What has become of the task queued as `word`.
    pub(super) fn seen(&self, slot: u32, word: u64) -> Seen {
        let Some(cell) = self.word(slot) else {
            return Seen::Revoked;
        };
        let now = cell.load(Ordering::Acquire);
        if now >> GEN_SHIFT != word >> GEN_SHIFT {
            // The slot was reused: this task was done with before.
            return Seen::Started;
        }
        match now & STATE {
            STARTED if now & !STATE == word & !STATE => Seen::Started,
            REVOKED => Seen::Revoked,
            QUEUED if now == word => Seen::Queued,
            _ => Seen::Moved,
        }
    }
}

/// The manager's count of slot uses: the next generation.
pub(super) fn next_generation(generation: &mut u64) -> u64 {
    let now = *generation;
    *generation = if now >= GEN_MAX - 1 { 1 } else { now + 1 };
    now
}

impl StartClaim for Claims {
    fn revoke(&self, token: u64) -> bool {
        let slot = (token & ((1 << SLOT_BITS) - 1)) as u32;
        let generation = token >> SLOT_BITS;
        let Some(cell) = self.word(slot) else {
            return false;
        };
        let mut now = cell.load(Ordering::Acquire);
        loop {
            if now >> GEN_SHIFT != generation {
                return false; // the slot was reused: long started
            }
            match now & STATE {
                REVOKED => return true,
                QUEUED => {}
                _ => return false,
            }
            match cell.compare_exchange(
                now,
                (now & !STATE) | REVOKED,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(moved) => now = moved, // started, or sent again: look again
            }
        }
    }
}

impl Serialize for Claims {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Claims {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        SharedMemory::deserialize(deserializer).map(|shm| Claims(Arc::new(shm)))
    }
}

impl std::fmt::Debug for Claims {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Claims")
            .field("slots", &self.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_of_start_revoke_and_move_wins() {
        let claims = Claims::new(4).unwrap();
        assert_eq!(claims.len(), 4);
        let mut generation = 1;
        let g = next_generation(&mut generation);
        let word = claims.queue(2, g);
        let token = Claims::token(2, word);
        assert_ne!(token, 0);
        assert_eq!(claims.seen(2, word), Seen::Queued);

        // Sent again: the old copy can no longer start, the new one can.
        let next = claims.again(2, word).unwrap();
        assert_eq!(claims.seen(2, word), Seen::Moved);
        assert_eq!(claims.start(2, word), Some(false));
        assert_eq!(claims.start(2, next), Some(true));
        assert_eq!(claims.seen(2, next), Seen::Started);
        assert!(!claims.revoke(token), "started: the cancel fails");
        assert_eq!(claims.again(2, next), None);
        assert!(!claims.withdraw(2, next));
        // Its worker died before saying it started: queued again, and only the copy
        // with the next word can start it.
        assert_eq!(
            claims.restart(2, word),
            None,
            "not the word it started with"
        );
        let again = claims.restart(2, next).unwrap();
        assert_eq!(claims.seen(2, again), Seen::Queued);
        assert_eq!(claims.start(2, next), Some(false));
        assert_eq!(claims.restart(2, again), None, "not started");
        assert_eq!(claims.start(2, again), Some(true));

        // Revoked first: nobody starts it, and a second revoke agrees.
        let g = next_generation(&mut generation);
        let word = claims.queue(2, g);
        let token = Claims::token(2, word);
        assert!(claims.revoke(token));
        assert!(claims.revoke(token));
        assert_eq!(claims.start(2, word), Some(false));
        assert_eq!(claims.seen(2, word), Seen::Revoked);
        assert_eq!(claims.again(2, word), None);
        assert!(claims.withdraw(2, word));

        // A stale token (the slot reused) is past starting.
        let g = next_generation(&mut generation);
        let word = claims.queue(2, g);
        assert!(!claims.revoke(token));
        assert_eq!(claims.seen(2, word), Seen::Queued);

        // A slot the table does not have.
        assert_eq!(claims.start(9, word), None);
        assert!(!claims.revoke(Claims::token(9, word)));
        assert_eq!(claims.word(0).unwrap().load(Ordering::Relaxed), FREE);
    }

    #[test]
    fn generations_wrap_and_hops_stay_in_their_bits() {
        let mut generation = GEN_MAX - 1;
        assert_eq!(next_generation(&mut generation), GEN_MAX - 1);
        assert_eq!(generation, 1);
        let claims = Claims::new(1).unwrap();
        let mut word = claims.queue(0, GEN_MAX - 1);
        let token = Claims::token(0, word);
        assert_ne!(token, u64::MAX);
        for _ in 0..(1 << HOP_BITS) + 3 {
            word = claims.again(0, word).unwrap();
            assert_eq!(word >> GEN_SHIFT, GEN_MAX - 1);
            assert_eq!(word & STATE, QUEUED);
        }
        assert!(claims.revoke(token));
    }

    #[test]
    fn a_table_sent_as_its_descriptor_is_the_same_table() {
        // The table crosses to a worker as its descriptor, mapped again there.
        let claims = Claims::new(2).unwrap();
        let word = claims.queue(1, 5);
        let bytes = flotilla_ipc::handle::encode(&claims).unwrap();
        let theirs: Claims = flotilla_ipc::handle::decode(&bytes.0, bytes.1).unwrap();
        assert_eq!(theirs.len(), 2);
        assert_eq!(theirs.start(1, word), Some(true));
        assert_eq!(claims.seen(1, word), Seen::Started);
    }
}
