//! Parked connections: quiet sensors cost their state and nothing else.
//!
//! Most connections of a gateway are sensors between two readings. A quiet connection waiting
//! in its own task holds the task, its future and a reactor registration besides its state
//! (about 1.3 KiB of the 2.3 KiB an idle connection cost; see BENCHMARKS.md). So a quiet
//! publish-only connection on plain TCP ([`super::link::TcpLink`]) is parked instead: its socket
//! moves to one epoll set (mio) watched by one task, its own task ends, and the connection is
//! resumed in a new task when the client sends something (or hangs up), its keep-alive runs out,
//! it is taken over ([`Parking::kick`]) or the broker shuts down ([`Parking::wake_all`]). This is
//! how Mosquitto holds idle clients too: one poll set, a small struct per client.
//!
//! The parking's own task owns every parked connection, so a runtime that goes away takes them
//! with it. Its command channel is unbounded on purpose: each connection is parked at most once
//! at a time and `mqtt.max_connections` bounds them.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token};
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A connection that can wait in the parking.
pub trait Parked: Send {
    /// It was taken over, or the broker is shutting down: it must not stay parked.
    fn cancelled(&self) -> bool;
    /// Continues the connection in a task of its own (called inside the runtime).
    fn resume(self: Box<Self>, why: Unparked, shutdown: CancellationToken);
}

/// Why a parked connection was resumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unparked {
    /// The client sent bytes or closed its end (or the parking gave up waiting for it).
    Readable,
    /// Nothing was heard from the client before its keep-alive deadline.
    Silent,
    /// Taken over, or shutdown.
    Cancelled,
}

/// One parked connection.
pub struct Entry {
    pub conn: Box<dyn Parked>,
    pub shutdown: CancellationToken,
    /// The socket, registered in the parking's epoll set while parked.
    pub fd: RawFd,
    /// The registry's number of the connection, for [`Parking::kick`].
    pub connection: u64,
    /// The keep-alive deadline.
    pub silent_after: Option<Instant>,
}

enum Command {
    Park(Entry),
    Kick(u64),
    WakeAll,
}

/// The parking of one MQTT context, started with the first connection parked.
#[derive(Default)]
pub struct Parking {
    /// `None` inside: parking could not start here (no epoll), connections wait in tasks.
    commands: OnceLock<Option<mpsc::UnboundedSender<Command>>>,
    parked: Arc<AtomicUsize>,
}

impl Parking {
    /// Whether a connection may park (starting the parking if needed; call inside the runtime).
    pub fn available(&self) -> bool {
        self.sender().is_some_and(|s| !s.is_closed())
    }

    /// Parks `entry`. If the parking is gone, the connection is resumed at once instead.
    pub fn park(&self, entry: Entry) {
        let Some(sender) = self.sender() else {
            return entry.conn.resume(Unparked::Readable, entry.shutdown);
        };
        if let Err(mpsc::error::SendError(Command::Park(entry))) = sender.send(Command::Park(entry))
        {
            entry.conn.resume(Unparked::Readable, entry.shutdown);
        }
    }

    /// Resumes connection `connection` if it is parked: it was taken over (its token is
    /// cancelled already, so one parked meanwhile resumes as it arrives).
    pub fn kick(&self, connection: u64) {
        if let Some(Some(sender)) = self.commands.get() {
            let _ = sender.send(Command::Kick(connection));
        }
    }

    /// Resumes every parked connection; for shutdown, after the shutdown token is cancelled.
    pub fn wake_all(&self) {
        if let Some(Some(sender)) = self.commands.get() {
            let _ = sender.send(Command::WakeAll);
        }
    }

    /// Connections parked now.
    pub fn len(&self) -> usize {
        self.parked.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn sender(&self) -> Option<&mpsc::UnboundedSender<Command>> {
        self.commands
            .get_or_init(|| match Lot::new(self.parked.clone()) {
                Ok(lot) => {
                    let (sender, commands) = mpsc::unbounded_channel();
                    tokio::spawn(lot.serve(commands));
                    Some(sender)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "mqtt: cannot start the parking of quiet connections; each waits in a task");
                    None
                }
            })
            .as_ref()
    }
}

/// The parking's task state: the epoll set and who is in it.
struct Lot {
    reactor: AsyncFd<Poll>,
    registry: Registry,
    /// By mio token; `None` slots are free (listed in `free`).
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    /// Keep-alive deadlines: (deadline, slot, parking number); stale ones are skipped.
    deadlines: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    /// Numbers each parking, so a deadline is not taken for a later tenant of its slot.
    next_number: u64,
    parked: Arc<AtomicUsize>,
}

struct Slot {
    entry: Entry,
    number: u64,
}

impl Lot {
    fn new(parked: Arc<AtomicUsize>) -> io::Result<Lot> {
        let poll = Poll::new()?;
        let registry = poll.registry().try_clone()?;
        // SAFETY: the `Poll` is owned by the `AsyncFd` for the whole registration and never
        // replaced (the task only calls `poll` on it), so its descriptor stays the one registered.
        let reactor =
            unsafe { AsyncFd::register_with_interest(poll, tokio::io::Interest::READABLE) }?;
        Ok(Lot {
            reactor,
            registry,
            slots: Vec::new(),
            free: Vec::new(),
            deadlines: BinaryHeap::new(),
            next_number: 0,
            parked,
        })
    }

    async fn serve(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut events = Events::with_capacity(1024);
        let far = Duration::from_secs(86_400);
        loop {
            let next_deadline = self.deadlines.peek().map(|Reverse((at, _, _))| *at);
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Park(entry)) => self.park(entry),
                    Some(Command::Kick(connection)) => self.kick(connection),
                    Some(Command::WakeAll) => self.wake_all(Unparked::Cancelled),
                    // The context is gone.
                    None => return,
                },
                ready = self.reactor.readable_mut() => {
                    let polled = ready.and_then(|mut guard| {
                        guard.get_inner_mut().poll(&mut events, Some(Duration::ZERO))?;
                        if events.is_empty() {
                            guard.clear_ready();
                        }
                        Ok(())
                    });
                    if let Err(e) = polled {
                        // Never seen; if it happens, no connection is left waiting on a dead set.
                        tracing::error!(error = %e, "mqtt: the parking's epoll set failed; parked connections resume in tasks");
                        self.wake_all(Unparked::Readable);
                        commands.close();
                        while let Some(command) = commands.recv().await {
                            if let Command::Park(entry) = command {
                                entry.conn.resume(Unparked::Readable, entry.shutdown);
                            }
                        }
                        return;
                    }
                    for event in events.iter() {
                        self.resume(event.token().0, Unparked::Readable);
                    }
                },
                _ = tokio::time::sleep_until(next_deadline.unwrap_or_else(|| Instant::now() + far)), if next_deadline.is_some() => {
                    self.expire(Instant::now());
                }
            }
        }
    }

    fn park(&mut self, entry: Entry) {
        let index = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() - 1
        });
        let registered =
            self.registry
                .register(&mut SourceFd(&entry.fd), Token(index), Interest::READABLE);
        if let Err(e) = registered {
            tracing::warn!(error = %e, "mqtt: cannot park a quiet connection; it waits in a task");
            self.free.push(index);
            return entry.conn.resume(Unparked::Readable, entry.shutdown);
        }
        let number = self.next_number;
        self.next_number += 1;
        let (silent_after, cancelled) = (entry.silent_after, entry.conn.cancelled());
        self.slots[index] = Some(Slot { entry, number });
        self.parked.fetch_add(1, Ordering::Relaxed);
        if let Some(at) = silent_after {
            self.deadlines.push(Reverse((at, index, number)));
            self.forget_stale_deadlines();
        }
        // Taken over (or shut down) while on its way here: the kick came first.
        if cancelled {
            self.resume(index, Unparked::Cancelled);
        }
    }

    fn resume(&mut self, index: usize, why: Unparked) {
        let Some(Slot { entry, .. }) = self.slots.get_mut(index).and_then(Option::take) else {
            return;
        };
        self.free.push(index);
        self.parked.fetch_sub(1, Ordering::Relaxed);
        // Out of this set before tokio's reactor takes the socket back.
        let _ = self.registry.deregister(&mut SourceFd(&entry.fd));
        entry.conn.resume(why, entry.shutdown);
    }

    /// A linear search: takeovers are rare, and a number per slot is all it costs.
    fn kick(&mut self, connection: u64) {
        let found = self
            .slots
            .iter()
            .position(|s| s.as_ref().is_some_and(|s| s.entry.connection == connection));
        if let Some(index) = found {
            self.resume(index, Unparked::Cancelled);
        }
    }

    fn wake_all(&mut self, why: Unparked) {
        for index in 0..self.slots.len() {
            self.resume(index, why);
        }
    }

    /// Deadlines of connections resumed since stay in the heap until due; a sensor that wakes
    /// every minute with a 15-minute keep-alive would leave 15 each. Dropped once they outnumber
    /// the live ones.
    fn forget_stale_deadlines(&mut self) {
        if self.deadlines.len() <= 2 * self.parked.load(Ordering::Relaxed) + 64 {
            return;
        }
        let slots = &self.slots;
        self.deadlines.retain(|&Reverse((_, index, number))| {
            slots[index].as_ref().is_some_and(|s| s.number == number)
        });
    }

    fn expire(&mut self, now: Instant) {
        while let Some(&Reverse((at, index, number))) = self.deadlines.peek() {
            if at > now {
                break;
            }
            self.deadlines.pop();
            let current = self.slots.get(index).and_then(Option::as_ref);
            if current.is_some_and(|s| s.number == number) {
                self.resume(index, Unparked::Silent);
            }
        }
    }
}
