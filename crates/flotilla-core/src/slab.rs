//! Where futures live: small allocations carved, in order, from per-thread blocks.
//!
//! # Why
//!
//! A pool's caller that submits a burst of tasks and collects their futures afterwards
//! holds every future's allocation at once, and frees them all together. Under glibc's
//! allocator, each one taken from the shared arena was a trip through its lock, which the
//! pool's workers also take (to free the channel's blocks); the burst of frees filled the
//! fast bins, which the next large free consolidated under that lock, 100,000 chunks at
//! a time, while the workers waited. Carving futures from 4 KiB blocks makes that one
//! allocation and one free per block, and keeps the per-future work out of the lock.
//! `thread-pool-submit` (100,000 tasks, then their results) went from 0.9× `threadpool`
//! to 2.0×, and its caller's futex calls, nearly all on that lock, from 48,000 to 17,000
//! per 500,000 tasks (`perf stat -e syscalls:sys_enter_futex`).
//!
//! # How
//!
//! Each thread has a current block per size class (8-byte steps up to [`MAX_SIZE`]). An
//! allocation takes the next free slot of its class's block: no atomic, no lock. Slots are
//! never reused: a block is freed, by whichever thread frees its last slot, once every
//! slot it handed out is freed and its thread has moved on to a new block (or exited).
//!
//! The count: a block starts with `refs` = its number of slots, as if all were handed out
//! already. Freeing a slot subtracts one; when the block's thread leaves it (full, or the
//! thread exiting) it subtracts the slots it never handed out. Whoever brings `refs` to
//! zero frees the block. So allocation touches no shared counter, and `refs` cannot reach
//! zero while the thread may still hand out slots.
//!
//! Every slot starts with a word pointing at its block, so a free finds the block from
//! the pointer alone, on any thread. Allocations too big or too aligned for a slot, and
//! those made where the thread's blocks are gone (in a thread-local destructor), go to
//! the global allocator with a null word, which tells the free where they came from.
//!
//! The cost: a block lives while any of its slots does, so one long-lived future can keep
//! up to 4 KiB alive, and each thread keeps a partly used block per size class it has
//! used.

use std::alloc::{Layout, alloc, dealloc, handle_alloc_error};
use std::cell::Cell;
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicUsize, Ordering, fence};

/// The bytes of a block, header included.
const BLOCK_SIZE: usize = 4096;
/// The largest object a slot holds; larger ones go to the global allocator.
const MAX_SIZE: usize = 256;
/// The alignment of every slot's object; more-aligned objects go to the global allocator.
const ALIGN: usize = 8;
/// The word before each object: the address of its block, or 0.
const WORD: usize = size_of::<usize>();
/// Size classes: objects of `8 * (class + 1)` bytes.
const CLASSES: usize = MAX_SIZE / ALIGN;

/// The start of a block: how many of its slots are handed out or may still be.
#[repr(C)]
struct Header {
    refs: AtomicUsize,
}

/// The bytes a slot of `class` takes: its block word and its object.
const fn slot_size(class: usize) -> usize {
    WORD + ALIGN * (class + 1)
}

/// How many slots a block of `class` holds.
fn slots_per_block(class: usize) -> usize {
    SLOTS_PER_BLOCK[class]
}

/// [`slots_per_block`], worked out once: every allocation compares against it, and a
/// division per allocation is a cost the table spares.
const SLOTS_PER_BLOCK: [usize; CLASSES] = {
    let mut slots = [0; CLASSES];
    let mut class = 0;
    while class < CLASSES {
        slots[class] = (BLOCK_SIZE - size_of::<Header>()) / slot_size(class);
        class += 1;
    }
    slots
};

const BLOCK_LAYOUT: Layout = match Layout::from_size_align(BLOCK_SIZE, align_of::<Header>()) {
    Ok(layout) => layout,
    Err(_) => panic!("a block's layout is valid"),
};

/// A thread's current block of one class, and its next free slot.
#[derive(Clone, Copy)]
struct Current {
    block: *mut Header,
    /// Slots handed out from `block`.
    used: usize,
}

const NONE: Current = Current {
    block: ptr::null_mut(),
    used: 0,
};

/// A thread's current blocks. Dropped with the thread: each block is left.
struct Blocks([Cell<Current>; CLASSES]);

impl Drop for Blocks {
    fn drop(&mut self) {
        for (class, current) in self.0.iter().enumerate() {
            let current = current.replace(NONE);
            if !current.block.is_null() {
                // SAFETY: the thread's block of this class, with `used` slots handed out.
                unsafe { leave(current.block, class, current.used) };
            }
        }
    }
}

thread_local! {
    static BLOCKS: Blocks = const { Blocks([const { Cell::new(NONE) }; CLASSES]) };
}

/// The size class of `layout`, if a slot can hold it.
fn class_of(layout: Layout) -> Option<usize> {
    (layout.size() <= MAX_SIZE && layout.align() <= ALIGN)
        .then(|| layout.size().max(1).div_ceil(ALIGN) - 1)
}

/// Memory for an object of `layout`, to be freed with [`free`] and the same layout.
pub(crate) fn allocate(layout: Layout) -> NonNull<u8> {
    if let Some(class) = class_of(layout)
        && let Ok(Some(object)) = BLOCKS.try_with(|blocks| take_slot(&blocks.0[class], class))
    {
        return object;
    }
    let (outer, offset) = outer_layout(layout);
    // SAFETY: `outer` is not zero-sized (it holds the word).
    let base = unsafe { alloc(outer) };
    if base.is_null() {
        handle_alloc_error(outer);
    }
    // SAFETY: `base` is `outer.size()` bytes, the word at `offset - WORD` among them,
    // aligned for a `usize` (offset and base are multiples of the word's alignment).
    unsafe {
        base.add(offset - WORD).cast::<usize>().write(0);
        NonNull::new_unchecked(base.add(offset))
    }
}

/// Frees what [`allocate`] returned.
///
/// # Safety
///
/// `object` came from `allocate(layout)` and is not used again.
pub(crate) unsafe fn free(object: NonNull<u8>, layout: Layout) {
    // SAFETY: every allocation has its word just before the object.
    let block = unsafe { object.as_ptr().sub(WORD).cast::<*mut Header>().read() };
    if block.is_null() {
        let (outer, offset) = outer_layout(layout);
        // SAFETY: allocated by the global allocator with `outer`, `offset` bytes before.
        unsafe { dealloc(object.as_ptr().sub(offset), outer) };
        return;
    }
    // SAFETY: a slot's word points at its live block, which this slot keeps alive.
    unsafe { release(block, 1) };
}

/// The layout of a global allocation holding `layout`'s object after a word, and the
/// object's offset in it.
fn outer_layout(layout: Layout) -> (Layout, usize) {
    Layout::new::<usize>()
        .extend(layout)
        .expect("an object's layout plus one word")
}

/// The next slot of the thread's current block of `class`, starting a new block when
/// that one is full; `None` when no block could be allocated.
fn take_slot(current: &Cell<Current>, class: usize) -> Option<NonNull<u8>> {
    let mut now = current.get();
    if now.block.is_null() || now.used == slots_per_block(class) {
        // SAFETY: `BLOCK_LAYOUT` is not zero-sized.
        let block = unsafe { alloc(BLOCK_LAYOUT) }.cast::<Header>();
        if block.is_null() {
            return None;
        }
        // SAFETY: a fresh block, aligned for its header.
        unsafe {
            block.write(Header {
                refs: AtomicUsize::new(slots_per_block(class)),
            });
        }
        // The full block the thread leaves owes no count: it handed out every slot, and
        // their frees free it.
        now = Current { block, used: 0 };
    }
    let offset = size_of::<Header>() + now.used * slot_size(class);
    now.used += 1;
    current.set(now);
    // SAFETY: slot `used - 1` of the block lies within it (`used <= slots_per_block`),
    // word-aligned (header and slot sizes are multiples of the word); its word says
    // which block it is in.
    unsafe {
        let slot = now.block.cast::<u8>().add(offset);
        slot.cast::<*mut Header>().write(now.block);
        Some(NonNull::new_unchecked(slot.add(WORD)))
    }
}

/// The thread leaves `block` of `class`, having handed out `used` of its slots.
///
/// # Safety
///
/// `block` is live, and its thread hands out no more slots from it.
unsafe fn leave(block: *mut Header, class: usize, used: usize) {
    let never = slots_per_block(class) - used;
    if never > 0 {
        // SAFETY: as the caller vouches.
        unsafe { release(block, never) };
    }
}

/// Subtracts `n` from `block`'s count; frees it at zero.
///
/// # Safety
///
/// `block` is live and the caller holds `n` of its counts.
unsafe fn release(block: *mut Header, n: usize) {
    // SAFETY: live, as the caller vouches.
    let refs = unsafe { &(*block).refs };
    // As `Arc`: every release happens before the free.
    if refs.fetch_sub(n, Ordering::Release) != n {
        return;
    }
    fence(Ordering::Acquire);
    #[cfg(test)]
    tests::FREED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(block.addr());
    // SAFETY: the last count: nobody else can reach the block.
    unsafe { dealloc(block.cast(), BLOCK_LAYOUT) };
}

#[cfg(test)]
mod tests {
    use std::sync::{Mutex, mpsc};
    use std::thread;

    use super::*;

    /// The addresses of the blocks freed so far, by every thread. A block's address is
    /// its own while it lives, so a test can tell whether its block was freed since a
    /// moment it knew it live, whatever the tests beside it free.
    pub(super) static FREED: Mutex<Vec<usize>> = Mutex::new(Vec::new());

    /// How many entries `FREED` has: where to look from, for blocks freed later.
    fn freed_mark() -> usize {
        FREED.lock().unwrap().len()
    }

    /// Whether the block of `object` was freed since `mark`.
    fn freed_since(mark: usize, block: usize) -> bool {
        FREED.lock().unwrap()[mark..].contains(&block)
    }

    fn block_of(object: NonNull<u8>) -> usize {
        // SAFETY: every allocation has its word just before it.
        unsafe { object.as_ptr().sub(WORD).cast::<usize>().read() }
    }

    /// An allocation's address, to send between threads.
    struct Sent(NonNull<u8>, Layout);
    // SAFETY: the memory is the receiver's to use and free from then on.
    unsafe impl Send for Sent {}

    /// Fills `n` bytes at `object` with a pattern of `seed`.
    fn fill(object: NonNull<u8>, n: usize, seed: usize) {
        for i in 0..n {
            // SAFETY: the allocation holds `n` bytes.
            unsafe {
                object
                    .as_ptr()
                    .add(i)
                    .write((seed.wrapping_mul(31) + i) as u8)
            };
        }
    }

    fn holds(object: NonNull<u8>, n: usize, seed: usize) -> bool {
        // SAFETY: as in `fill`.
        (0..n)
            .all(|i| unsafe { object.as_ptr().add(i).read() } == (seed.wrapping_mul(31) + i) as u8)
    }

    #[test]
    fn every_size_and_alignment_holds_its_bytes() {
        let mut held = Vec::new();
        for size in (0..=MAX_SIZE + 24).chain([1000, 5000]) {
            for align in [1, 2, 4, 8, 16, 64] {
                let layout = Layout::from_size_align(size, align).unwrap();
                let object = allocate(layout);
                assert!(object.as_ptr().addr().is_multiple_of(align), "{layout:?}");
                fill(object, size, held.len());
                held.push((object, layout));
            }
        }
        for (seed, &(object, layout)) in held.iter().enumerate() {
            assert!(
                holds(object, layout.size(), seed),
                "{layout:?} was overwritten"
            );
        }
        for (object, layout) in held {
            // SAFETY: allocated above with `layout`, freed once.
            unsafe { free(object, layout) };
        }
    }

    #[test]
    fn slots_stay_apart_while_other_threads_free_them() {
        let layout = Layout::from_size_align(72, 8).unwrap();
        let (to_freer, freer_gets) = mpsc::channel::<(Sent, usize)>();
        let freer = thread::spawn(move || {
            let mut pending = Vec::new();
            for (k, (Sent(object, layout), seed)) in freer_gets.into_iter().enumerate() {
                pending.push((object, layout, seed));
                // Free in an order other than the allocations'.
                if k % 3 == 0 {
                    let (object, layout, seed) = pending.swap_remove(pending.len() / 2);
                    assert!(holds(object, layout.size(), seed));
                    // SAFETY: allocated with `layout` by the sender, freed once.
                    unsafe { free(object, layout) };
                }
            }
            for (object, layout, seed) in pending {
                assert!(holds(object, layout.size(), seed));
                // SAFETY: as above.
                unsafe { free(object, layout) };
            }
        });
        for seed in 0..20 * slots_per_block(class_of(layout).unwrap()) {
            let object = allocate(layout);
            fill(object, layout.size(), seed);
            to_freer.send((Sent(object, layout), seed)).unwrap();
        }
        drop(to_freer);
        freer.join().unwrap();
    }

    /// A block is freed once every slot it handed out is freed and its thread left it,
    /// by whichever thread did the last of the two, and not before.
    #[test]
    fn a_block_is_freed_when_its_thread_left_it_and_its_slots_are_freed() {
        let layout = Layout::new::<[u64; 5]>();
        let per_block = slots_per_block(class_of(layout).unwrap());
        // A thread fills two blocks and starts a third, then exits.
        let objects = thread::spawn(move || {
            (0..2 * per_block + 1)
                .map(|_| Sent(allocate(layout), layout))
                .collect::<Vec<_>>()
        })
        .join()
        .unwrap();
        // Each block is live here: it holds slots not yet freed.
        let blocks: Vec<usize> = (0..3).map(|b| block_of(objects[b * per_block].0)).collect();
        let mark = freed_mark();
        let freed = |b: usize| freed_since(mark, blocks[b]);
        for (k, Sent(object, layout)) in objects.into_iter().enumerate() {
            let b = k / per_block;
            assert!(!freed(b), "block {b} freed before its slot {k}");
            // SAFETY: allocated with `layout` by the thread above, freed once.
            unsafe { free(object, layout) };
            // Its last slot frees a block.
            let last = k % per_block == per_block - 1 || k == 2 * per_block;
            assert_eq!(freed(b), last, "block {b} after slot {k}");
        }

        // The other order: a slot freed while its thread still uses the block; the
        // thread's exit frees it.
        let (go, wait) = mpsc::channel::<()>();
        let (sent, objects) = mpsc::channel();
        let user = thread::spawn(move || {
            sent.send(Sent(allocate(layout), layout)).unwrap();
            wait.recv().unwrap();
        });
        let Sent(object, layout) = objects.recv().unwrap();
        let block = block_of(object);
        let mark = freed_mark();
        // SAFETY: as above.
        unsafe { free(object, layout) };
        assert!(
            !freed_since(mark, block),
            "freed while its thread may still use it"
        );
        go.send(()).unwrap();
        user.join().unwrap();
        assert!(
            freed_since(mark, block),
            "its thread's exit did not free it"
        );
    }

    /// Where the thread's blocks are gone (in a thread-local destructor that runs after
    /// theirs), futures come from the global allocator and still work.
    #[test]
    fn futures_outlive_the_threads_blocks() {
        struct MakesAFuture;
        impl Drop for MakesAFuture {
            fn drop(&mut self) {
                let (completer, fut) = crate::Completer::new();
                completer.set_result(7);
                assert_eq!(fut.into_result().unwrap(), 7);
            }
        }
        thread_local! {
            static LATE: MakesAFuture = const { MakesAFuture };
        }
        thread::spawn(|| {
            // Made after `BLOCKS`'s first use, so destroyed before or after it; either
            // way the future in its destructor works.
            let (completer, fut) = crate::Completer::new();
            LATE.with(|_| {});
            completer.set_result(1);
            assert_eq!(fut.into_result().unwrap(), 1);
        })
        .join()
        .unwrap();
        // A thread whose first future is made in a thread-local destructor: `BLOCKS`
        // is first used there, while the thread's locals are being torn down.
        thread::spawn(|| LATE.with(|_| {})).join().unwrap();
    }
}
