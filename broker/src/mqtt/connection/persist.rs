//! The connection's side of persistent sessions ([`crate::mqtt::session`]): open (or discard)
//! the stored session at CONNECT, save it while connected and when the connection ends.

use crate::mqtt::link::Link;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::log::Ticket;
use crate::mqtt::inflight::AwaitingRelease;
use crate::mqtt::packet::{reason, ConnectCode, Version};
use crate::mqtt::session::{self, SavedCursors, SessionRecord, StoredSub, SAVE_INTERVAL};
use crate::mqtt::session_store::{SessionError, MAX_CLIENT_ID_BYTES};

use super::{now_ms, Closed, Connection, DRAIN_TIMEOUT};

/// A session kept beyond this connection (or resumed by it).
pub(super) struct Persist {
    /// Whether it outlives the connection; false for an MQTT 5 session resumed with a session
    /// expiry of 0, which is deleted when the connection ends.
    keep: bool,
    /// Seconds it outlives its connection; `None` never.
    expiry: Option<u32>,
    /// What was saved last, to write only what changed.
    saved_subs: Vec<StoredSub>,
    saved_cursors: SavedCursors,
    /// Next periodic save.
    pub(super) next_save: Instant,
}

/// What CONNACK says about the session.
pub(super) struct Opened {
    pub present: bool,
    /// MQTT 5: the session expiry granted, when it differs from the one asked for.
    pub expiry: Option<u32>,
    /// Packet ids of released QoS 2 deliveries to send PUBREL for again, after CONNACK.
    pub release: Vec<u16>,
}

/// Why CONNECT was refused by the session layer.
pub(super) enum Refusal {
    Code(ConnectCode, String),
    Shutdown,
}

impl From<SessionError> for Refusal {
    fn from(e: SessionError) -> Refusal {
        tracing::error!(error = %e, "mqtt: session store failed");
        Refusal::Code(ConnectCode::ServerUnavailable, e.to_string())
    }
}

impl<S: Link> Connection<S> {
    /// Takes the client id's session lease, then discards (clean start) or resumes the stored
    /// session, and sets up saving if the session is to be kept.
    pub(super) async fn open_session(
        &mut self,
        clean_start: bool,
        asked: Option<u32>,
        shutdown: &CancellationToken,
    ) -> Result<Opened, Refusal> {
        let ctx = self.ctx.clone();
        let store = &ctx.inner.sessions;
        // A connection this one took over saves its session before letting go of the lease.
        let lease = tokio::select! {
            lease = store.lease(&self.client_id) => lease,
            _ = shutdown.cancelled() => return Err(Refusal::Shutdown),
        };
        self.lease = Some(Box::new(lease));
        let v5 = self.wire.version == Version::V5;
        let asked_secs = asked.unwrap_or(0);
        let keep = if v5 { asked_secs > 0 } else { !clean_start };
        let cap = ctx.inner.session_expiry_max_secs;
        let mut expiry = (v5 && asked_secs != u32::MAX).then_some(asked_secs);
        if cap > 0 {
            expiry = Some(expiry.map_or(cap, |e| e.min(cap)));
        }
        let granted = expiry.unwrap_or(u32::MAX);
        let ack_expiry = (v5 && keep && granted != asked_secs).then_some(granted);

        if clean_start {
            store.remove(&self.client_id).await?;
        }
        if keep && self.client_id.len() > MAX_CLIENT_ID_BYTES {
            return Err(Refusal::Code(
                ConnectCode::ClientIdNotValid,
                format!(
                    "client ids of persistent sessions are at most {MAX_CLIENT_ID_BYTES} bytes"
                ),
            ));
        }
        let now = now_ms();
        let stored = if clean_start {
            None
        } else {
            store.get(&self.client_id, now).await?
        };
        if keep && stored.is_none() && !clean_start {
            // A new session starts with no receipts: none left by an earlier one may stand
            // for its messages (clean start removed them above).
            store.remove(&self.client_id).await?;
        }
        if keep && stored.is_none() && !store.admit(&self.client_id, now).await? {
            return Err(Refusal::Code(
                ConnectCode::QuotaExceeded,
                "mqtt.max_sessions persistent sessions are stored already".into(),
            ));
        }
        let present = stored.is_some();
        let log = ctx.inner.ingest.log();
        let (mut saved_subs, mut saved_cursors) = (Vec::new(), SavedCursors::default());
        let mut release = Vec::new();
        if let Some((record, cursors)) = stored {
            // QoS 2 messages received and not released: a resend is not stored again.
            let receipts = store.receipts(&self.client_id)?;
            self.awaiting_rel = AwaitingRelease::restored(receipts);
            let o = self.outbound();
            session::restore_subs(&record.subs, &mut o.subs, log);
            let resolved = session::resolve_cursors(&cursors.cursors, log);
            let max_queued = ctx.inner.max_queued_messages;
            o.delivery
                .resume(resolved, &o.subs, &ctx.inner.router, max_queued);
            let inflight = session::resolve_inflight(&cursors.inflight, log);
            release = o.outgoing.restore(&inflight);
            o.outgoing
                .restore_done(&session::resolve_done(&cursors.done, log));
            let filters = o.subs.len();
            self.rejoin_share_groups();
            tracing::debug!(client_id = %self.client_id, filters, "mqtt: session resumed");
            saved_subs = record.subs;
            saved_cursors = cursors;
        }
        // The connection holds its groups itself now (or, on a clean start, no longer wants
        // them).
        let mut away = ctx.inner.share_groups.unpark(&self.client_id);
        if present {
            let o = self.outbound();
            // Released ones get their PUBREL again (after CONNACK, with the others).
            let released: Vec<u16> = (away.released.iter().copied())
                .filter(|&pkid| o.outgoing.reopen_released(pkid))
                .collect();
            release.extend(&released);
            let held = std::mem::take(&mut away.held);
            o.delivery.shared.resume(held, released, &mut o.outgoing);
        } else {
            away.drop_deliveries();
        }
        if !keep && !present {
            // Nothing of this session is stored or will be: the lease is not needed to save it,
            // and 10,000 idle sensors need not hold 10,000 locks.
            self.lease = None;
        }
        // Stored while anything of the session is: a crash leaves it resumable.
        self.receipts_stored = keep || present;
        self.fence_saves = keep;
        if let (true, Some(o)) = (keep, self.outbound.as_deref_mut()) {
            o.outgoing.keep_done();
        }
        if keep || present {
            self.persist = Some(Box::new(Persist {
                keep,
                expiry,
                saved_subs,
                saved_cursors,
                next_save: Instant::now() + SAVE_INTERVAL,
            }));
        }
        if keep {
            // Stored now: the session exists (and counts) from CONNACK on, with its new expiry.
            self.write_session(None, true).await?;
        }
        Ok(Opened {
            present,
            expiry: ack_expiry,
            release,
        })
    }

    /// MQTT 5 DISCONNECT with a session expiry interval: it replaces the one from CONNECT
    /// (0 deletes the session when the connection ends). Setting one when CONNECT had none is
    /// a protocol error (§3.14.2.2.2).
    pub(super) fn change_session_expiry(&mut self, expiry: u32) -> Result<(), Closed> {
        if self.session_expiry.unwrap_or(0) == 0 && expiry > 0 {
            return Err(Closed::Rejected {
                reason: reason::PROTOCOL_ERROR,
                message: "DISCONNECT sets a session expiry after CONNECT had none".into(),
            });
        }
        self.session_expiry = Some(expiry);
        let cap = self.ctx.inner.session_expiry_max_secs;
        if let Some(p) = &mut self.persist {
            p.keep = expiry > 0;
            let mut granted = (expiry != u32::MAX).then_some(expiry);
            if cap > 0 {
                granted = Some(granted.map_or(cap, |e| e.min(cap)));
            }
            p.expiry = granted;
        }
        Ok(())
    }

    /// Saves the session if it changed since the last save (a no-op for clean sessions).
    /// Failures are logged: the next save tries again.
    pub(super) async fn save_session(&mut self) {
        if let Some(p) = &mut self.persist {
            p.next_save = Instant::now() + SAVE_INTERVAL;
        }
        if let Err(e) = self.write_session(None, false).await {
            tracing::warn!(client_id = %self.client_id, error = %e, "mqtt: cannot save session; retrying later");
        }
    }

    /// Final save when the connection ends (or deletion of a session that does not outlive
    /// it), then releases the client id's lease.
    pub(super) async fn close_session(&mut self, closed: &Closed) {
        let keep = self.persist.as_ref().map(|p| p.keep);
        // Writes waiting for room in a full log give up (their acks will not be sent).
        self.closing.cancel();
        if keep.is_some() {
            // Appends and releases already queued commit before the lease goes: a connection
            // taking the session over reads their receipts (acks are not sent any more).
            let queued = std::mem::take(&mut self.pending);
            // They resolve (the writer answers every command, retries stop on `closing`), so
            // this waits for them however long the disk takes: the lease must not go before.
            let mut all = std::pin::pin!(async {
                for done in queued {
                    done.await;
                }
            });
            if tokio::time::timeout(DRAIN_TIMEOUT, &mut all).await.is_err() {
                tracing::warn!(client_id = %self.client_id, "mqtt: waiting for appends still in flight before saving the session");
                all.await;
            }
        }
        let result = match keep {
            None => Ok(()),
            Some(false) => self.ctx.inner.sessions.remove(&self.client_id).await,
            Some(true) => self.write_session(Some(now_ms()), true).await,
        };
        if keep == Some(true) {
            // The session's share groups keep their place for it while it is away, and it
            // keeps its QoS 2 deliveries of them (saved above).
            let expiry = self.persist.as_ref().and_then(|p| p.expiry);
            let expires_at = expiry.map(|secs| now_ms().saturating_add(i64::from(secs) * 1000));
            let (groups, away) = match self.outbound.as_deref_mut() {
                Some(o) => (o.delivery.shared.groups(), o.delivery.shared.take_away()),
                None => Default::default(),
            };
            let share_groups = &self.ctx.inner.share_groups;
            share_groups.park(&self.client_id, groups, away, expires_at);
        }
        if result.is_ok() {
            // Saved with everything sent so far: the last output may go (see `fence`).
            self.fence_len = None;
        }
        if let Err(e) = result {
            tracing::error!(client_id = %self.client_id, reason = %closed, error = %e, "mqtt: cannot save session at disconnect; it resumes from its last save");
        }
        self.persist = None;
        self.lease = None;
    }

    /// Writes the cursors if they moved and the record if the filters changed (or `force`).
    async fn write_session(
        &mut self,
        disconnected_ms: Option<i64>,
        force: bool,
    ) -> Result<(), SessionError> {
        let Some(save) = self.session_changes(disconnected_ms, force) else {
            return Ok(());
        };
        let sessions = &self.ctx.inner.sessions;
        (sessions.save(&self.client_id, save.record.as_ref(), &save.cursors)).await?;
        self.saved(save);
        Ok(())
    }

    /// Queues a save of the session's cursors (and its record if the filters changed) with the
    /// log writer; the ticket resolves once it is durable. `None` for a session not kept.
    pub(super) async fn submit_session_save(&mut self) -> Option<Result<Ticket<()>, SessionError>> {
        let save = self.session_changes(None, false)?;
        let sessions = &self.ctx.inner.sessions;
        let ticket = sessions.submit_save(&self.client_id, save.record.as_ref(), &save.cursors);
        let ticket = ticket.await;
        if ticket.is_ok() {
            self.saved(save);
        }
        Some(ticket)
    }

    /// What a save writes now: `None` for a session not kept, or when nothing changed and
    /// not `force`.
    fn session_changes(
        &mut self,
        disconnected_ms: Option<i64>,
        force: bool,
    ) -> Option<SessionSave> {
        let p = self.persist.as_ref().filter(|p| p.keep)?;
        let log = self.ctx.inner.ingest.log();
        let (subs, cursors) = match self.outbound.as_deref_mut() {
            Some(o) => {
                let (delivery, outgoing) = (&o.delivery, &mut o.outgoing);
                let cursors =
                    session::save_cursors(delivery.positions(), outgoing, &delivery.shared, log);
                (session::save_subs(&o.subs, log), cursors)
            }
            None => Default::default(),
        };
        let subs_changed = subs != p.saved_subs;
        if !force && !subs_changed && cursors == p.saved_cursors {
            return None;
        }
        let record = (force || subs_changed).then(|| SessionRecord {
            expiry_secs: p.expiry,
            disconnected_ms,
            subs: subs.clone(),
        });
        Some(SessionSave {
            record,
            subs,
            cursors,
        })
    }

    fn saved(&mut self, save: SessionSave) {
        if let Some(p) = &mut self.persist {
            p.saved_subs = save.subs;
            p.saved_cursors = save.cursors;
        }
    }
}

/// One save of a session: the record when it changed, the subscriptions and the cursors.
struct SessionSave {
    record: Option<SessionRecord>,
    subs: Vec<StoredSub>,
    cursors: SavedCursors,
}
