//! Exactly once for a persistent session's QoS 2 deliveries, across a crash too: a QoS 2
//! PUBLISH or PUBREL goes out only once the session's saved state records it (MQTT §4.3.3,
//! the sender's side of "Method B").
//!
//! Were a PUBLISH sent before its delivery was saved, a crash would resume the session from
//! an older save and send the record again as a new delivery (fresh packet id, DUP = 0): a
//! second copy. Were a PUBREL sent before its stage was saved, the client could complete the
//! exchange and forget the id, and after a crash the broker would send the PUBLISH again under
//! it: a second copy too. So output from the first such packet on waits behind a *fence* in
//! the write buffer until a save queued after it is durable; what was before the fence (acks,
//! QoS 0/1 deliveries) goes out meanwhile. One save at a time; packets fenced while it runs
//! wait for the next. A QoS 1-only subscriber never meets a fence, nor does a clean session.

use crate::mqtt::link::Link;
use crate::mqtt::session_store::SessionError;

use super::handlers::FULL_RETRY;
use super::{Closed, Connection, Done};

impl<S: Link> Connection<S> {
    /// Output from `at` (a length of `out`) on waits for the next save, if this session keeps
    /// its QoS 2 deliveries across a crash.
    pub(super) fn fence_from(&mut self, at: usize) {
        if !self.fence_saves {
            return;
        }
        self.fence_len = Some(self.fence_len.map_or(at, |f| f.min(at)));
        self.unsaved = true;
    }

    /// Bytes at the front of `out` that may be written now.
    pub(super) fn writable(&self) -> usize {
        self.fence_len
            .map_or(self.out.len(), |f| f.min(self.out.len()))
    }

    /// Queues a save of the session for the fenced output, unless one is running already.
    pub(super) async fn save_for_fence(&mut self) {
        if !self.unsaved || self.save_in_flight {
            return;
        }
        self.unsaved = false;
        // What lies beyond the fence now is covered by this save.
        let extra = self.out.len() - self.writable();
        let ticket = self.submit_session_save().await;
        let (client_id, closing) = (self.client_id.clone(), self.closing.clone());
        self.save_in_flight = true;
        let background = !self.pending.is_empty();
        self.pending.push_back(Box::pin(async move {
            let result = match ticket {
                None => Ok(()), // saved already: nothing changed since the last save
                Some(Err(e)) => Err(e),
                Some(Ok(mut ticket)) => {
                    if background {
                        ticket.commit_in_background();
                    }
                    let durable = ticket.durable().await;
                    durable.map_err(|source| SessionError::Log { client_id, source })
                }
            };
            if result.as_ref().is_err_and(SessionError::is_full) {
                // Paces the next attempt (see `finish_save`).
                tokio::select! {
                    () = tokio::time::sleep(FULL_RETRY) => {}
                    () = closing.cancelled() => {}
                }
            }
            Done::Saved { extra, result }
        }));
    }

    /// A save for the fence is durable: the output it covers may go out. A failed save ends
    /// the connection without it (the session resumes from its last save).
    pub(super) fn finish_save(
        &mut self,
        extra: usize,
        result: Result<(), SessionError>,
    ) -> Result<(), Closed> {
        self.save_in_flight = false;
        match result {
            // A full log fails whole groups of writes, this save with another's append: the
            // fence stays and the next turn saves again, with what changed since.
            Err(e) if e.is_full() && !self.closing.is_cancelled() => {
                self.unsaved = true;
                return Ok(());
            }
            result => result.map_err(Closed::SessionSave)?,
        }
        self.fence_len = match self.fence_len {
            Some(f) if self.unsaved => Some(f + extra),
            _ => None,
        };
        Ok(())
    }
}
