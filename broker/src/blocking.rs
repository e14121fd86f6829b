//! Blocking work inside async code without stalling the other tasks of a runtime worker.

use std::sync::{Mutex, MutexGuard, TryLockError};

use tokio::runtime::{Handle, RuntimeFlavor};

/// Whether this thread may call `tokio::task::block_in_place`: on the broker's multi-threaded
/// runtime the worker's other tasks then move to another thread. Single-threaded runtimes (most
/// tests) cannot hand their tasks over.
pub fn can_block_in_place() -> bool {
    Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread)
}

/// Runs `work` (CPU-heavy or blocking, but bounded) in `block_in_place` where that is allowed,
/// else simply runs it.
pub fn off_the_reactor<T>(work: impl FnOnce() -> T) -> T {
    if can_block_in_place() {
        tokio::task::block_in_place(work)
    } else {
        work()
    }
}

/// The lock, for a task that would do the guarded work inline (in `block_in_place`): `None`
/// when this thread cannot block or someone else holds it (then the work is left to whoever
/// does). A poisoned lock is taken anyway: the users of this (the log's commit lock, a plugin's
/// worker) mark their state stopped before a panic can leave it.
pub fn try_lock_for_inline<T>(lock: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
    if !can_block_in_place() {
        return None;
    }
    match lock.try_lock() {
        Ok(guard) => Some(guard),
        Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}

/// The message of a caught panic, for the log.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".into()
    }
}
