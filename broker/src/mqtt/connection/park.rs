//! Parking a quiet connection ([`crate::mqtt::parking`]): which connections may park, and how
//! one continues when the parking resumes it.

use tokio_util::sync::CancellationToken;

use crate::mqtt::link::Link;
use crate::mqtt::parking::{Entry, Parked, Unparked};

use super::{drive, Closed, Connection};

/// Parks `conn` if it may: a publish-only connection (a subscriber waits for the log too) that
/// is registered and runs on a stream that can leave the reactor. Otherwise gives it back, to
/// wait in its task.
pub(super) fn park<S: Link>(
    mut conn: Box<Connection<S>>,
    shutdown: &CancellationToken,
) -> Result<(), Box<Connection<S>>> {
    let Some(connection) = conn.registration.as_ref().map(|r| r.connection) else {
        return Err(conn);
    };
    if conn.outbound.is_some() || shutdown.is_cancelled() || !conn.ctx.inner.parking.available() {
        return Err(conn);
    }
    let fd = match conn.stream.detach() {
        Ok(Some(fd)) => fd,
        Ok(None) => return Err(conn),
        Err(e) => {
            // The socket is lost with it; the wait in the task fails at once and says why.
            tracing::warn!(client_id = %conn.client_id, peer = %conn.peer, error = %e, "mqtt: cannot take a quiet connection out of the reactor");
            return Err(conn);
        }
    };
    let silent_after = conn.keep_alive.map(|k| conn.last_heard + k);
    let ctx = conn.ctx.clone();
    ctx.inner.parking.park(Entry {
        conn,
        shutdown: shutdown.clone(),
        fd,
        connection,
        silent_after,
    });
    Ok(())
}

impl<S: Link> Parked for Connection<S> {
    fn cancelled(&self) -> bool {
        self.registration
            .as_ref()
            .is_some_and(|r| r.taken_over.is_cancelled())
    }

    fn resume(self: Box<Self>, why: Unparked, shutdown: CancellationToken) {
        tokio::spawn(drive(self, shutdown, Some(why)));
    }
}

impl<S: Link> Connection<S> {
    /// Back from the parking: the socket returns to the reactor, and the reason it was resumed
    /// either ends the connection or hands it to the busy loop (which reads what the client sent).
    pub(super) fn unparked(
        &mut self,
        why: Unparked,
        shutdown: &CancellationToken,
    ) -> Result<(), Closed> {
        self.stream.reattach()?;
        match why {
            Unparked::Readable => Ok(()),
            Unparked::Silent => Err(Closed::KeepAlive(self.keep_alive.unwrap_or_default())),
            Unparked::Cancelled if shutdown.is_cancelled() => Err(Closed::Shutdown),
            Unparked::Cancelled => Err(Closed::TakenOver),
        }
    }
}
