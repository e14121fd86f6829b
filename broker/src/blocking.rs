//! Blocking work inside async code without stalling the other tasks of a runtime worker.

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
