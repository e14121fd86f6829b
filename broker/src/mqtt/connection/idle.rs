//! A connection's quiet stretches. Most connections of a gateway are sensors between two
//! readings, so what a quiet connection holds is what 10,000 of them cost: once there has been
//! nothing to do for `QUIET_BEFORE_IDLE`, [`Connection::quiet`] gives back the read and write
//! buffers. Then a publish-only connection on plain TCP is parked (see [`super::park`]); any
//! other waits in [`Connection::idle`]'s small future of its own (the busy loop's future, with
//! room for every branch and append, is dropped meanwhile), reading the client's next bytes
//! through a few bytes on the stack.

use std::future::Future;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::mqtt::delivery::Wake;
use crate::mqtt::link::Link;

use super::{buffers, Closed, Connection};

/// Bytes a quiet connection reads at a time, on its stack.
const IDLE_PROBE: usize = 64;

/// What ended a quiet stretch.
enum Woke {
    /// Bytes from the client (appended to the read buffer), or the end of the stream.
    Read(std::io::Result<usize>),
    Log(Wake),
    /// The keep-alive deadline.
    Timer,
    /// Shutdown or takeover.
    Cancelled,
}

impl<S: Link> Connection<S> {
    /// Nothing to do but wait for the client, the log or a timer: no bytes buffered either way,
    /// no append in flight or queued (the caller also checks nothing is left to deliver).
    pub(super) fn is_quiet(&self) -> bool {
        self.inbuf.is_empty()
            && self.out.is_empty()
            && !self.needs_flush
            && self.pending.is_empty()
            && self.releasing.is_empty()
            && !self.unsaved
            && self.held.is_none()
            && self.inbound.is_empty()
    }

    /// Begins a quiet stretch: gives back the buffers and saves a persistent session (if it
    /// changed). Not on a timer during the stretch: nothing changes the session until the
    /// connection is busy again, whose loop saves it.
    pub(super) async fn quiet(&mut self) {
        self.inbuf = BytesMut::new();
        self.out = BytesMut::new();
        if self.persist.is_some() {
            // Boxed: a save's future is large, and not needed while waiting.
            Box::pin(self.save_session()).await;
        }
    }

    /// Waits out a quiet stretch in this task: for the client's next bytes, a log event for a
    /// subscriber, the keep-alive deadline, takeover or shutdown. `Ok` means there may be work
    /// again for the busy loop.
    pub(super) async fn idle(&mut self, shutdown: &CancellationToken) -> Result<(), Closed> {
        let silent_until = self.keep_alive.map(|k| self.last_heard + k);
        // The registration's token is a child of `shutdown`: one wait for both.
        let cancelled = match &self.registration {
            Some(r) => &r.taken_over,
            None => shutdown,
        };
        let (reader, inbuf) = (&mut self.stream, &mut self.inbuf);
        // Boxed, each at its own size: a publish-only connection waits for no log events.
        let woke = match self.outbound.as_deref_mut() {
            Some(o) => {
                let wake = o.delivery.wake();
                Box::pin(wait(reader, inbuf, wake, silent_until, cancelled)).await
            }
            None => {
                let never = std::future::pending();
                Box::pin(wait(reader, inbuf, never, silent_until, cancelled)).await
            }
        };
        match woke {
            // Nothing is in flight: neither the end of the stream nor a shutdown needs a drain.
            Woke::Read(Ok(0)) => Err(Closed::PeerClosed),
            Woke::Read(Ok(n)) => {
                self.read_hint = buffers::next_hint(n, IDLE_PROBE);
                self.last_heard = Instant::now();
                Ok(())
            }
            Woke::Read(Err(e)) => Err(Closed::Io(e)),
            Woke::Log(wake) => {
                self.on_delivery_wake(wake);
                Ok(())
            }
            Woke::Timer => Err(Closed::KeepAlive(self.keep_alive.unwrap_or_default())),
            Woke::Cancelled if shutdown.is_cancelled() => Err(Closed::Shutdown),
            Woke::Cancelled => Err(Closed::TakenOver),
        }
    }
}

async fn wait<R: AsyncRead + Unpin>(
    reader: &mut R,
    inbuf: &mut BytesMut,
    log: impl Future<Output = Wake>,
    timer: Option<Instant>,
    cancelled: &CancellationToken,
) -> Woke {
    let far = Instant::now() + Duration::from_secs(86_400);
    let mut probe = [0u8; IDLE_PROBE];
    tokio::select! {
        read = reader.read(&mut probe) => {
            Woke::Read(read.inspect(|&n| inbuf.extend_from_slice(&probe[..n])))
        }
        wake = log => Woke::Log(wake),
        _ = tokio::time::sleep_until(timer.unwrap_or(far)), if timer.is_some() => Woke::Timer,
        _ = cancelled.cancelled() => Woke::Cancelled,
    }
}
