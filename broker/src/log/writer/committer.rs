//! Who commits the queued commands: the writer thread, or a task waiting for its own command
//! when nobody else is committing.
//!
//! Handing every group to a thread costs two wake-ups per commit (the writer's, then the
//! waiting task's), and on a small VM each can cost tens of microseconds at the tail: more than
//! the loopback round trip and a good part of an fsync. So a task about to wait for its command
//! first tries to take the commit lock itself and commits what is queued on its own thread (in
//! `block_in_place`, so the runtime's other tasks move on meanwhile). Only when another commit
//! is running, or the task cannot block (a current-thread runtime), does it wake the writer
//! thread, which then commits everything queued for as long as there is some. Under load the
//! writer thread does nearly all commits; when the log is quiet, the waiting task does.
//!
//! LMDB still sees one writer at a time: the lock is the single writer.

use std::sync::{Arc, Mutex, MutexGuard, OnceLock, TryLockError};
use std::time::Duration;

use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::sync::mpsc::{self, error::TryRecvError};

use super::{commit_group, Command, MAX_GROUP_BYTES, MAX_GROUP_COMMANDS};
use crate::log::producers::Producers;
use crate::log::LogInner;

/// How long the writer thread sleeps before looking at the queue unasked: a safety net for a
/// command queued by a caller that neither waits for it nor drops its ticket for a while.
const UNASKED_CHECK: Duration = Duration::from_millis(50);

/// Lives in [`LogInner`]: the commit lock and the writer thread to wake.
pub struct Committer {
    turn: Mutex<Turn>,
    writer: OnceLock<std::thread::Thread>,
}

/// What only the one committing holds.
struct Turn {
    rx: mpsc::Receiver<Command>,
    /// The idempotent producers' state: read and changed only by the one committing.
    producers: Producers,
    /// Set once a `Stop` has been committed: the writer thread ends.
    stopped: bool,
}

/// What one round of [`Turn::commit_next`] found.
enum Round {
    Committed,
    Empty,
    /// A `Stop` was committed, or every sender is gone.
    Finished,
}

impl Committer {
    /// `rx` is the queue every [`crate::log::Log`] handle sends to.
    pub fn new(rx: mpsc::Receiver<Command>, producers: Producers) -> Committer {
        Committer {
            turn: Mutex::new(Turn {
                rx,
                producers,
                stopped: false,
            }),
            writer: OnceLock::new(),
        }
    }

    /// Starts the writer thread of `inner`'s committer.
    pub fn start_writer(inner: Arc<LogInner>) -> std::thread::JoinHandle<()> {
        let thread = inner.clone();
        let handle = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || thread.committer.run_writer(&thread))
            .expect("spawning the log writer thread at startup");
        let _ = inner.committer.writer.set(handle.thread().clone());
        handle
    }

    /// Has the writer thread look at the queue (cheap when it is already awake).
    pub fn wake_writer(&self) {
        if let Some(thread) = self.writer.get() {
            thread.unpark();
        }
    }

    /// Whether a task on this thread can commit inline instead of waking the writer thread.
    pub fn may_commit_here() -> bool {
        Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread)
    }

    /// Called by a task about to wait for a command it queued: commits what is queued on this
    /// thread if nobody else is committing, else leaves it to the writer thread.
    pub fn help(&self, inner: &LogInner) {
        if !Self::may_commit_here() {
            return self.wake_writer();
        }
        let mut turn = match self.turn.try_lock() {
            Ok(turn) => turn,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return self.wake_writer(),
        };
        // Only block when there is work: the command may be committed already.
        let Ok(first) = turn.rx.try_recv() else {
            return;
        };
        let round = tokio::task::block_in_place(|| turn.commit(inner, first));
        drop(turn);
        if matches!(round, Round::Finished) {
            self.wake_writer();
        }
    }

    fn lock(&self) -> MutexGuard<'_, Turn> {
        self.turn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn run_writer(&self, inner: &LogInner) {
        loop {
            {
                let mut turn = self.lock();
                loop {
                    match turn.commit_next(inner) {
                        Round::Committed => continue,
                        Round::Empty => break,
                        Round::Finished => {
                            tracing::debug!("log writer stopped");
                            return;
                        }
                    }
                }
            }
            std::thread::park_timeout(UNASKED_CHECK);
        }
    }
}

impl Turn {
    /// Commits the next group of queued commands, if any.
    fn commit_next(&mut self, inner: &LogInner) -> Round {
        if self.stopped {
            return Round::Finished;
        }
        match self.rx.try_recv() {
            Ok(first) => self.commit(inner, first),
            Err(TryRecvError::Empty) => Round::Empty,
            Err(TryRecvError::Disconnected) => Round::Finished,
        }
    }

    /// Commits `first` and whatever is queued behind it, within the group's limits.
    fn commit(&mut self, inner: &LogInner, first: Command) -> Round {
        let mut bytes = first.weight();
        let mut group = vec![first];
        while group.len() < MAX_GROUP_COMMANDS && bytes < MAX_GROUP_BYTES {
            match self.rx.try_recv() {
                Ok(cmd) => {
                    bytes += cmd.weight();
                    group.push(cmd);
                }
                Err(_) => break,
            }
        }
        let stop = group.iter().any(|c| matches!(c, Command::Stop { .. }));
        commit_group(inner, &mut self.producers, group);
        if stop {
            // Later sends fail with `Stopped`, and what is still queued is dropped: its callers
            // hear `Stopped` too, as when the thread ended with the channel.
            self.rx.close();
            while self.rx.try_recv().is_ok() {}
            self.stopped = true;
            return Round::Finished;
        }
        Round::Committed
    }
}
