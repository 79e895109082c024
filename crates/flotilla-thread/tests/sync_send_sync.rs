//! Static checks that the public types are `Send` and `Sync` where they should be, and
//! that guards stay on the thread that took them where that matters.

#![allow(dead_code)] // The functions below are only type-checked, never called.

use std::cell::{Cell, RefCell};

use flotilla_thread::{
    Barrier, BoundedSemaphore, Condition, ConditionGuard, Error, Event, RLock, RLockGuard,
    Semaphore, SemaphorePermit, Thread, ThreadBuilder,
};

fn send<T: Send>() {}
fn sync<T: Sync>() {}
fn send_sync<T: Send + Sync>() {}

fn primitives_are_send_and_sync() {
    send_sync::<Event>();
    send_sync::<Semaphore>();
    send_sync::<BoundedSemaphore>();
    send_sync::<SemaphorePermit<'static>>();
    send_sync::<Barrier>();
    send_sync::<Condition<Vec<u8>>>();
    send_sync::<RLock<Vec<u8>>>();
    send_sync::<RLock>();
    send_sync::<Error>();
    send_sync::<ThreadBuilder>();
    send_sync::<Thread<String>>();
}

fn rlock_needs_only_send_data_to_be_shared() {
    // Only the owning thread reaches the data, as with `Mutex<T>`.
    send_sync::<RLock<RefCell<u8>>>();
    send_sync::<RLock<Cell<u8>>>();
}

fn condition_guard_is_sync_for_sync_data() {
    sync::<ConditionGuard<'static, u8>>();
}

fn thread_handle_is_send_for_send_values() {
    send::<Thread<Vec<u8>>>();
}

// That the guards are not `Send` is checked by `compile_fail` examples on
// `RLockGuard` and `ConditionGuard` (doctests do not run in integration tests).
fn guard_types_exist() {
    let _ = std::any::type_name::<RLockGuard<'static, ()>>();
}
