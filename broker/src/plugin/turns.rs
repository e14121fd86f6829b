//! Who runs a plugin's queued work: its worker thread, or a task waiting for its own batch when
//! the instance is free.
//!
//! Handing a batch to the plugin's thread and back costs two thread wake-ups, tens of
//! microseconds each on a small VM: as much as the plugin itself spends on a thousand records. So
//! a task that queued a batch first tries to take the worker itself and, when its batch is the
//! only one queued, runs it on its own thread (in `block_in_place`, so the runtime's other tasks
//! move on meanwhile). When the worker is busy or other batches wait, or the task cannot block (a
//! current-thread runtime), it wakes the thread instead, which runs everything queued: under load
//! the plugin's thread keeps working while the producers go on with theirs. Work still runs one item
//! at a time in queue order, so batches and module swaps keep their order.
//!
//! A panic while running (a broker bug: plugin faults are caught by the instance) stops this
//! worker: every batch waiting for it gets `PluginError::Stopped`; later batches go to the
//! plugin's other instances, if it has any (`runner`).

use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use tokio::sync::mpsc;

use super::runner::{Work, Worker};
use crate::blocking::{panic_message, try_lock_for_inline};

/// How often the worker thread looks at its queue unasked (running what is queued, ending when
/// every handle is gone): a safety net, as the last handle's drop wakes it.
const UNASKED_CHECK: Duration = Duration::from_secs(5);

/// Shared by a plugin's handle and its worker thread.
pub(crate) struct Turns {
    turn: Mutex<Turn>,
    thread: OnceLock<std::thread::Thread>,
}

/// The plugin's hold on its [`Turns`]: dropped after the plugin's queue sender (declare it
/// after), it wakes the worker thread, which finds the queue closed and ends.
pub(crate) struct TurnsHandle(Arc<Turns>);

impl std::ops::Deref for TurnsHandle {
    type Target = Turns;
    fn deref(&self) -> &Turns {
        &self.0
    }
}

impl Drop for TurnsHandle {
    fn drop(&mut self) {
        self.0.wake_thread();
    }
}

struct Turn {
    worker: Worker,
    queue: mpsc::Receiver<Work>,
    /// Set after a panic: nothing runs any more.
    stopped: bool,
}

impl Turns {
    /// Starts the worker thread (named `thread_name`) over `queue`.
    pub fn start(
        worker: Worker,
        queue: mpsc::Receiver<Work>,
        thread_name: String,
    ) -> std::io::Result<TurnsHandle> {
        let turns = Arc::new(Turns {
            turn: Mutex::new(Turn {
                worker,
                queue,
                stopped: false,
            }),
            thread: OnceLock::new(),
        });
        let own = turns.clone();
        let handle = std::thread::Builder::new()
            .name(thread_name)
            .spawn(move || own.run_thread())?;
        let _ = turns.thread.set(handle.thread().clone());
        Ok(TurnsHandle(turns))
    }

    /// Has the worker thread run what is queued (cheap when it is already awake).
    pub fn wake_thread(&self) {
        if let Some(thread) = self.thread.get() {
            thread.unpark();
        }
    }

    /// Called by a task right after it queued work: runs it on this thread if the worker is
    /// free and nothing else is queued (`done`: whether the task's work already ran); else wakes
    /// the worker thread.
    pub fn run_or_wake(&self, done: impl FnOnce() -> bool) {
        let Some(mut turn) = try_lock_for_inline(&self.turn) else {
            return self.wake_thread();
        };
        if turn.stopped || turn.queue.is_empty() {
            return;
        }
        // Others' batches queued too: the plugin is busy, and its thread keeps it busy while
        // the callers go on with their own work (a caller running a queue inline does not).
        if turn.queue.len() > 1 {
            drop(turn);
            return self.wake_thread();
        }
        // The one batch queued is this caller's, unless its batch already ran (then it is the
        // next caller's, left to them).
        if !done() {
            if let Ok(work) = turn.queue.try_recv() {
                tokio::task::block_in_place(|| turn.run(work));
            }
        }
        let more = !turn.queue.is_empty();
        drop(turn);
        if more {
            self.wake_thread();
        }
    }

    fn lock(&self) -> MutexGuard<'_, Turn> {
        // Poisoned only after a panic, which stopped the plugin first.
        self.turn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn run_thread(&self) {
        loop {
            {
                let mut turn = self.lock();
                while let Ok(work) = turn.queue.try_recv() {
                    turn.run(work);
                }
                if turn.stopped || turn.queue.is_closed() {
                    return;
                }
            }
            std::thread::park_timeout(UNASKED_CHECK);
        }
    }
}

impl Turn {
    fn run(&mut self, work: Work) {
        if self.stopped {
            return;
        }
        let worker = &mut self.worker;
        // Caught rather than let through: on a caller's thread it would end that caller's task
        // (a connection, the replicator); every caller gets `Stopped` instead.
        if let Err(panicked) = panic::catch_unwind(AssertUnwindSafe(|| worker.run(work))) {
            let reason = panic_message(panicked.as_ref());
            tracing::error!(plugin = %self.worker.name(), %reason, "plugin worker panicked; this instance stops (the plugin goes on with its others, if any)");
            self.queue.close();
            while self.queue.try_recv().is_ok() {}
            self.stopped = true;
        }
    }
}
