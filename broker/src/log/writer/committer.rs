//! Who commits the queued commands: the writer thread, or a task waiting for its own command
//! when nobody else is committing.
//!
//! Handing every group to a thread costs wake-ups on the way (the writer's, then the waiting
//! task's), and on a small VM each can cost tens of microseconds at the tail: more than the
//! loopback round trip and a good part of an fsync. So a task about to wait for its command first
//! tries to take the commit lock itself and commits what is queued on its own thread (in
//! `block_in_place`, so the runtime's other tasks move on meanwhile). Only when another commit is
//! running, or the task cannot block (a current-thread runtime), does it wake the writer thread,
//! which then commits everything queued for as long as there is some. Under load the writer
//! thread does nearly all commits; when the log is quiet, the waiting task does. A task committing
//! inline takes a bounded group and leaves heavy commands (retention, topic deletion) to the
//! writer thread, so it is held for about one fsync (on a slow disk, plus up to 2 ms waiting for
//! the last group's callers: `followers`).
//!
//! LMDB still sees one writer at a time: the lock is the single writer. A panic while committing
//! stops the log (every waiting and later write gets `Stopped`): the in-memory state may no longer
//! match what is on disk, and going on could reuse offsets.

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::followers::Followers;
use super::{commit_group, Command, Queued, MAX_GROUP_BYTES, MAX_GROUP_COMMANDS};
use crate::blocking::{panic_message, try_lock_for_inline};
use crate::log::producers::Producers;
use crate::log::LogInner;

/// How often the writer thread looks at the queue unasked: a command that has waited a whole
/// period without its caller waiting for it (or dropping its ticket) is committed then.
const UNASKED_CHECK: Duration = Duration::from_millis(50);
/// Most commands a task committing inline takes into its group (the writer thread takes up to
/// `MAX_GROUP_COMMANDS`): staging is CPU work the task's connection waits behind.
const MAX_INLINE_COMMANDS: usize = 512;
/// Most batch bytes a task committing inline takes into its group.
const MAX_INLINE_BYTES: usize = 4 * 1024 * 1024;

/// Lives in [`LogInner`]: the commit lock and the writer thread to wake.
pub struct Committer {
    turn: Mutex<Turn>,
    writer: OnceLock<std::thread::Thread>,
    /// Set by [`Committer::wake_writer`]: the writer's next wake-up was asked for.
    asked: AtomicBool,
}

/// What only the one committing holds.
struct Turn {
    rx: mpsc::Receiver<Queued>,
    /// A command taken from the queue by a task committing inline but left for the writer
    /// thread (see [`Command::is_heavy`]); it goes first in the next group.
    held: Option<Queued>,
    /// The idempotent producers' state: read and changed only by the one committing.
    producers: Producers,
    /// Set once a `Stop` has been committed or a commit panicked: the writer thread ends.
    stopped: bool,
    /// What the last commit leads the next one to wait for (see `followers`).
    followers: Option<Followers<tokio::task::Id>>,
}

/// Who is committing, which sets how much one group may take.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Committing {
    WriterThread,
    Inline,
}

/// What one round of committing found.
enum Round {
    Committed,
    Empty,
    /// The log has stopped (a `Stop`, a panic) or every sender is gone.
    Finished,
}

impl Committer {
    /// `rx` is the queue every [`crate::log::Log`] handle sends to.
    pub fn new(rx: mpsc::Receiver<Queued>, producers: Producers) -> Committer {
        Committer {
            turn: Mutex::new(Turn {
                rx,
                held: None,
                producers,
                stopped: false,
                followers: None,
            }),
            writer: OnceLock::new(),
            asked: AtomicBool::new(false),
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

    /// Has the writer thread commit what is queued (cheap when it is already awake).
    pub fn wake_writer(&self) {
        if let Some(thread) = self.writer.get() {
            self.asked.store(true, Ordering::Release);
            thread.unpark();
        }
    }

    /// Called by a task about to wait for a command it queued: commits what is queued on this
    /// thread if nobody else is committing, else has the writer thread do it.
    pub fn commit_or_wake(&self, inner: &LogInner) {
        let Some(mut turn) = try_lock_for_inline(&self.turn) else {
            return self.wake_writer();
        };
        // Only block when there is work: the command may be committed already. (`try_recv` can
        // spin for the moment another sender takes to finish its send.)
        let Some(first) = turn.take_next() else {
            return;
        };
        if first.cmd.is_heavy() {
            turn.held = Some(first);
            drop(turn);
            return self.wake_writer();
        }
        let round = tokio::task::block_in_place(|| turn.commit(inner, first, Committing::Inline));
        let more = turn.held.is_some() || !turn.rx.is_empty();
        drop(turn);
        if more || matches!(round, Round::Finished) {
            self.wake_writer();
        }
    }

    fn lock(&self) -> MutexGuard<'_, Turn> {
        // Poisoned only by a panic while committing, which stopped the log first.
        self.turn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn run_writer(&self, inner: &LogInner) {
        let mut waiting_before = false;
        loop {
            std::thread::park_timeout(UNASKED_CHECK);
            let asked = self.asked.swap(false, Ordering::AcqRel);
            let mut turn = self.lock();
            if turn.stopped || turn.rx.is_closed() && !turn.has_waiting() {
                tracing::debug!("log writer stopped");
                return;
            }
            if !asked {
                // A timed look: what is queued now gets one more period for its caller to
                // commit it or ask for it; what was queued at the last look too is committed.
                let waiting = turn.has_waiting();
                let overdue = waiting && waiting_before;
                waiting_before = waiting && !overdue;
                if !overdue {
                    continue;
                }
            }
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
    }
}

impl Turn {
    fn has_waiting(&self) -> bool {
        self.held.is_some() || !self.rx.is_empty()
    }

    fn take_next(&mut self) -> Option<Queued> {
        self.held.take().or_else(|| self.rx.try_recv().ok())
    }

    /// Commits the next group of queued commands, if any (for the writer thread).
    fn commit_next(&mut self, inner: &LogInner) -> Round {
        if self.stopped {
            return Round::Finished;
        }
        match self.take_next() {
            Some(first) => self.commit(inner, first, Committing::WriterThread),
            // Closed and empty: every sender is gone.
            None if self.rx.is_closed() => Round::Finished,
            None => Round::Empty,
        }
    }

    /// Commits `first` and whatever is queued behind it, within the group's limits.
    fn commit(&mut self, inner: &LogInner, first: Queued, who: Committing) -> Round {
        let (max_commands, max_bytes) = match who {
            Committing::WriterThread => (MAX_GROUP_COMMANDS, MAX_GROUP_BYTES),
            Committing::Inline => (MAX_INLINE_COMMANDS, MAX_INLINE_BYTES),
        };
        if !matches!(first.cmd, Command::Stop { .. }) {
            self.wait_for_followers(max_commands);
        }
        let mut bytes = first.cmd.weight();
        let mut callers = vec![first.caller];
        let mut group = vec![first.cmd];
        while group.len() < max_commands && bytes < max_bytes {
            let Ok(next) = self.rx.try_recv() else {
                break;
            };
            if who == Committing::Inline && next.cmd.is_heavy() {
                self.held = Some(next);
                break;
            }
            bytes += next.cmd.weight();
            callers.push(next.caller);
            group.push(next.cmd);
        }
        let stop = group.iter().any(|c| matches!(c, Command::Stop { .. }));
        let started = Instant::now();
        let committed = panic::catch_unwind(AssertUnwindSafe(|| {
            commit_group(inner, &mut self.producers, group)
        }));
        let ended = Instant::now();
        let queued = self.rx.len() + usize::from(self.held.is_some());
        let took = ended - started;
        self.followers = Some(Followers::after(callers.into_iter(), queued, took, ended));
        // Caught rather than let through: on a task's thread it would end that task (a
        // connection); every caller of this group and later ones gets `Stopped` instead.
        if let Err(panicked) = committed {
            let reason = panic_message(panicked.as_ref());
            tracing::error!(%reason, "a group commit panicked; the log stops taking writes");
            self.stop();
            return Round::Finished;
        }
        if stop {
            self.stop();
            return Round::Finished;
        }
        Round::Committed
    }

    /// Before a group: gives the callers the last commit answered a moment to send their next
    /// commands, so that they join this group instead of waiting for the next (see `followers`).
    /// `max`: the most commands the group may take.
    fn wait_for_followers(&self, max: usize) {
        let Some(followers) = &self.followers else {
            return;
        };
        // The task committing inline (none on the writer thread) is not waited for.
        let me = tokio::task::try_id();
        // The command in hand (taken from the queue or `held`) counts.
        while let Some(pause) = followers.pause(1 + self.rx.len(), max, me, Instant::now()) {
            std::thread::sleep(pause);
        }
    }

    /// Refuses later sends (`Stopped`) and drops what is still queued: its callers hear
    /// `Stopped` too.
    fn stop(&mut self) {
        self.rx.close();
        self.held = None;
        while self.rx.try_recv().is_ok() {}
        self.stopped = true;
    }
}
