//! [`ForkSlot`]: static memory that a fork child fills without allocating. For
//! flotilla's own crates; not part of the API.

use std::cell::UnsafeCell;
use std::mem::MaybeUninit;

/// Static memory for one `T`, which a fork child fills in place of an allocation (in a
/// fork child, each first allocation copies the allocator's pages). What it held before
/// (the value of the process this one was forked from, if that was a fork child too)
/// is overwritten, never dropped: that process's other threads, which do not exist
/// here, may have held its locks, and what it pointed to stays valid.
pub struct ForkSlot<T>(UnsafeCell<MaybeUninit<T>>);

// SAFETY: written only by `put`, whose caller vouches that the process runs one thread;
// read through the pointer `put` returns, which its caller publishes (with `Release`)
// before anything else can use it. Values only move in, hence `T: Send`.
unsafe impl<T: Send> Sync for ForkSlot<T> {}

impl<T> ForkSlot<T> {
    /// An empty slot.
    #[allow(clippy::new_without_default)] // for statics: `Default` is not const
    pub const fn new() -> Self {
        ForkSlot(UnsafeCell::new(MaybeUninit::uninit()))
    }

    /// Puts `value` in the slot, overwriting what it held, and returns where it is.
    ///
    /// # Safety
    ///
    /// The calling process runs one thread (a fork child that has started none), and
    /// nothing it runs holds a reference into the slot.
    pub unsafe fn put(&self, value: T) -> *mut T {
        let slot = self.0.get();
        // SAFETY: one thread and no reference into the slot, the caller vouches, so
        // this write races with nothing and invalidates nothing.
        unsafe { slot.write(MaybeUninit::new(value)) };
        slot.cast()
    }
}

impl<T> std::fmt::Debug for ForkSlot<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Its contents are not known to be there, nor safe to read from here.
        f.debug_struct("ForkSlot").finish_non_exhaustive()
    }
}
