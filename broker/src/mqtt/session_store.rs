//! Stored persistent sessions: two entries per client (and its QoS 2 receipts) in the log's key/value store (LMDB), so
//! they survive a restart and `kill -9` (see [`super::session`] for what is kept and the exact
//! guarantee).
//!
//! - `mqtt/session/<client id>` ([`SESSION_PREFIX`]): the [`SessionRecord`] (filters, expiry,
//!   time of disconnect), JSON, rewritten when the filters change and when a connection ends.
//! - `mqtt/cursor/<client id>` ([`CURSOR_PREFIX`]): the saved cursors, JSON, rewritten at most
//!   every [`super::session::SAVE_INTERVAL`] while they move.
//! - one key per QoS 2 message received and not yet released ([`super::receipts`]), written
//!   with the message and deleted by its PUBREL.
//!
//! In memory: an index of stored client ids with their expiry time, loaded at startup, bounding
//! the number of sessions (`mqtt.max_sessions`) and finding expired ones; about 100 bytes a
//! session. Expired sessions are never resumed; their entries are deleted when their client
//! connects again or when room is needed for a new session.
//!
//! One connection at a time works on a client id's session: a connection takes the client's
//! [`Lease`] before reading the session and gives it back after its final save, so a connection
//! taking over a client id reads what the one it replaced saved last.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

use crate::log::{Log, LogError, MetaUpdate, Ticket};

use super::receipts;
use super::routing::Router;
use super::session::{SavedCursors, SessionRecord};
use super::shared;
use super::shared::ShareGroup;
use super::shared_groups::ShareGroups;
use super::shared_member::{Away, Held};

/// Key prefix of session records.
pub const SESSION_PREFIX: &str = "mqtt/session/";
/// Key prefix of saved cursors.
pub const CURSOR_PREFIX: &str = "mqtt/cursor/";
/// Longest client id (bytes) with a persistent session: LMDB keys are at most 511 bytes.
pub const MAX_CLIENT_ID_BYTES: usize = 480;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("session store of client {client_id:?}: {source}")]
    Log {
        client_id: String,
        #[source]
        source: LogError,
    },
    #[error("stored session of client {client_id:?} is unreadable: {source}")]
    Corrupt {
        client_id: String,
        #[source]
        source: serde_json::Error,
    },
}

impl SessionError {
    /// Whether the log refused the write for want of room (retried, not fatal).
    pub fn is_full(&self) -> bool {
        matches!(self, SessionError::Log { source, .. } if source.is_full())
    }
}

type Locks = Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>;

pub struct SessionStore {
    log: Log,
    /// `mqtt.max_sessions`.
    max_sessions: usize,
    /// Stored sessions: client id → when it expires (ms since the epoch; `None` while connected
    /// or never).
    index: Arc<Mutex<HashMap<String, Option<i64>>>>,
    /// Per client id, held by the connection working on its session.
    locks: Locks,
}

/// Exclusive use of one client id's stored session; released on drop.
pub struct Lease {
    client_id: String,
    locks: Locks,
    guard: Option<OwnedMutexGuard<()>>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        self.guard = None;
        // Nobody else holds or waits for it: forget it, so the map only holds live clients.
        if locks
            .get(&self.client_id)
            .is_some_and(|m| Arc::strong_count(m) == 1)
        {
            locks.remove(&self.client_id);
        }
    }
}

impl SessionStore {
    /// Loads the index of stored sessions. A session saved while connected (the broker did
    /// not stop cleanly) counts as disconnected at `now_ms`.
    pub fn load(log: Log, max_sessions: usize, now_ms: i64) -> Result<SessionStore, SessionError> {
        let entries = log
            .scan_meta(SESSION_PREFIX)
            .map_err(|source| SessionError::Log {
                client_id: String::new(),
                source,
            })?;
        let mut index = HashMap::new();
        for (key, value) in entries {
            let Some(client_id) = key.strip_prefix(SESSION_PREFIX) else {
                continue;
            };
            match serde_json::from_slice::<SessionRecord>(&value) {
                Ok(mut r) => {
                    r.disconnected_ms = r.disconnected_ms.or(Some(now_ms));
                    index.insert(client_id.to_string(), r.expires_at());
                }
                Err(e) => {
                    tracing::warn!(client_id, error = %e, "mqtt: unreadable stored session ignored")
                }
            }
        }
        if !index.is_empty() {
            tracing::info!(sessions = index.len(), "mqtt: persistent sessions loaded");
        }
        Ok(SessionStore::with_index(log, max_sessions, index))
    }

    /// Has `groups` hold the share groups of every stored session's shared subscriptions
    /// until the session resumes or expires (see [`ShareGroups`]); run once at startup. A
    /// failed read is logged: those groups are then made when a member joins.
    pub fn park_share_groups(&self, groups: &ShareGroups, router: &Router) {
        let entries = match self.log.scan_meta(SESSION_PREFIX) {
            Ok(entries) => entries,
            Err(e) => {
                tracing::error!(error = %e, "mqtt: cannot read stored sessions' shared subscriptions");
                return;
            }
        };
        for (key, value) in entries {
            let Some(client_id) = key.strip_prefix(SESSION_PREFIX) else {
                continue;
            };
            let Ok(record) = serde_json::from_slice::<SessionRecord>(&value) else {
                continue; // reported by `load`
            };
            let joined: Vec<(String, Arc<ShareGroup>)> = record
                .subs
                .iter()
                .filter_map(|s| match shared::parse(&s.filter) {
                    Some(Ok((name, filter))) => Some((
                        s.filter.clone(),
                        groups.join(name, filter, &self.log, router),
                    )),
                    _ => None,
                })
                .collect();
            let away = self.away(client_id, &joined, groups, router);
            let joined = joined.into_iter().map(|(_, group)| group).collect();
            groups.park(client_id, joined, away, self.expires_at(client_id));
        }
    }

    /// What `client_id`'s saved session keeps of its shared deliveries: the QoS 2 ones not
    /// acknowledged yet, held in their groups again (no other member claims them), and the
    /// released ones. Unreadable cursors keep none.
    fn away(
        &self,
        client_id: &str,
        joined: &[(String, Arc<ShareGroup>)],
        groups: &ShareGroups,
        router: &Router,
    ) -> Away {
        let key = format!("{CURSOR_PREFIX}{client_id}");
        let Ok(Some(bytes)) = self.log.get_meta(&key) else {
            return Away::default();
        };
        let Ok(cursors) = serde_json::from_slice::<SavedCursors>(&bytes) else {
            return Away::default();
        };
        let mut held = Vec::new();
        for s in cursors.shared {
            // The group of a filter unsubscribed since is joined for the delivery alone (a
            // started QoS 2 delivery is completed, MQTT-3.10.4-3).
            let group = match joined.iter().find(|(filter, _)| *filter == s.filter) {
                Some((_, group)) => group.clone(),
                None => match shared::parse(&s.filter) {
                    Some(Ok((name, filter))) => groups.join(name, filter, &self.log, router),
                    _ => continue,
                },
            };
            let at = &s.at;
            let partition =
                (self.log.topic(&at.topic)).and_then(|t| t.partition(at.partition as i32).cloned());
            let Some(partition) = partition else {
                continue;
            };
            group.hold(partition.id, at.offset);
            held.push(Held {
                group,
                filter: s.filter,
                partition_id: partition.id,
                offset: at.offset,
                pkid: s.pkid,
            });
        }
        Away {
            held,
            released: cursors.shared_released,
        }
    }

    /// When the stored session of `client_id` expires (`None`: never, or not stored).
    fn expires_at(&self, client_id: &str) -> Option<i64> {
        let index = self.index.lock().unwrap_or_else(|e| e.into_inner());
        index.get(client_id).copied().flatten()
    }

    pub fn empty(log: Log, max_sessions: usize) -> SessionStore {
        SessionStore::with_index(log, max_sessions, HashMap::new())
    }

    fn with_index(
        log: Log,
        max_sessions: usize,
        index: HashMap<String, Option<i64>>,
    ) -> SessionStore {
        SessionStore {
            log,
            max_sessions,
            index: Arc::new(Mutex::new(index)),
            locks: Arc::default(),
        }
    }

    /// Number of stored sessions (connected or not, expired ones not yet deleted included).
    pub fn len(&self) -> usize {
        self.index.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until no other connection works on `client_id`'s session.
    pub async fn lease(&self, client_id: &str) -> Lease {
        let mutex = self
            .locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(client_id.to_string())
            .or_default()
            .clone();
        let guard = mutex.lock_owned().await;
        Lease {
            client_id: client_id.to_string(),
            locks: self.locks.clone(),
            guard: Some(guard),
        }
    }

    fn err(client_id: &str) -> impl FnOnce(LogError) -> SessionError + '_ {
        move |source| SessionError::Log {
            client_id: client_id.to_string(),
            source,
        }
    }

    /// The stored session of `client_id`, unless there is none or it expired by `now_ms` (an
    /// expired one is deleted).
    pub async fn get(
        &self,
        client_id: &str,
        now_ms: i64,
    ) -> Result<Option<(SessionRecord, SavedCursors)>, SessionError> {
        let key = format!("{SESSION_PREFIX}{client_id}");
        let Some(value) = self.log.get_meta(&key).map_err(Self::err(client_id))? else {
            return Ok(None);
        };
        let record: SessionRecord =
            serde_json::from_slice(&value).map_err(|source| SessionError::Corrupt {
                client_id: client_id.to_string(),
                source,
            })?;
        let lapsed = self
            .index
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(client_id)
            .copied()
            .flatten()
            .is_some_and(|at| at <= now_ms);
        if record.expired(now_ms) || lapsed {
            tracing::info!(
                client_id,
                "mqtt: stored session expired; starting a new one"
            );
            self.remove(client_id).await?;
            return Ok(None);
        }
        let cursors = match self
            .log
            .get_meta(&format!("{CURSOR_PREFIX}{client_id}"))
            .map_err(Self::err(client_id))?
        {
            Some(v) => serde_json::from_slice(&v).map_err(|source| SessionError::Corrupt {
                client_id: client_id.to_string(),
                source,
            })?,
            None => SavedCursors::default(),
        };
        Ok(Some((record, cursors)))
    }

    /// The QoS 2 receipts stored for `client_id`'s session (see [`receipts`]).
    pub fn receipts(&self, client_id: &str) -> Result<Vec<u16>, SessionError> {
        receipts::load(&self.log, client_id).map_err(Self::err(client_id))
    }

    /// Whether `client_id` may store a session: it has one, or there is room (expired sessions
    /// are deleted to make room).
    pub async fn admit(&self, client_id: &str, now_ms: i64) -> Result<bool, SessionError> {
        let expired: Vec<String> = {
            let index = self.index.lock().unwrap_or_else(|p| p.into_inner());
            if index.contains_key(client_id) || index.len() < self.max_sessions {
                return Ok(true);
            }
            index
                .iter()
                .filter(|(_, at)| at.is_some_and(|at| at <= now_ms))
                .map(|(id, _)| id.clone())
                .collect()
        };
        let mut entries = Vec::with_capacity(expired.len() * 2);
        for id in &expired {
            entries.push((format!("{SESSION_PREFIX}{id}"), None));
            entries.push((format!("{CURSOR_PREFIX}{id}"), None));
            entries.extend(receipts::forget(&self.log, id).map_err(Self::err(id))?);
        }
        if !entries.is_empty() {
            self.log
                .put_meta(entries)
                .await
                .map_err(Self::err(client_id))?;
            tracing::info!(
                sessions = expired.len(),
                "mqtt: expired sessions deleted to make room"
            );
        }
        let mut index = self.index.lock().unwrap_or_else(|p| p.into_inner());
        for id in &expired {
            index.remove(id);
        }
        Ok(index.len() < self.max_sessions)
    }

    /// Writes the session (when `record` is given) and its cursors in one commit.
    pub async fn save(
        &self,
        client_id: &str,
        record: Option<&SessionRecord>,
        cursors: &SavedCursors,
    ) -> Result<(), SessionError> {
        let ticket = self.submit_save(client_id, record, cursors).await?;
        ticket.durable().await.map_err(Self::err(client_id))
    }

    /// [`SessionStore::save`] in two steps: this returns once the entries are queued with the
    /// log writer (after whatever the caller queued before), the ticket resolves once durable.
    pub async fn submit_save(
        &self,
        client_id: &str,
        record: Option<&SessionRecord>,
        cursors: &SavedCursors,
    ) -> Result<Ticket<()>, SessionError> {
        let mut entries = Vec::with_capacity(2);
        if let Some(r) = record {
            let value = serde_json::to_vec(r).map_err(|source| SessionError::Corrupt {
                client_id: client_id.to_string(),
                source,
            })?;
            entries.push((format!("{SESSION_PREFIX}{client_id}"), Some(value)));
        }
        let value = serde_json::to_vec(cursors).map_err(|source| SessionError::Corrupt {
            client_id: client_id.to_string(),
            source,
        })?;
        entries.push((format!("{CURSOR_PREFIX}{client_id}"), Some(value)));
        let mut update = MetaUpdate::new(entries);
        if let Some(r) = record {
            // Counted once stored.
            let (index, id, expires_at) =
                (self.index.clone(), client_id.to_string(), r.expires_at());
            update.on_commit = Box::new(move || {
                let mut index = index.lock().unwrap_or_else(|p| p.into_inner());
                index.insert(id, expires_at);
            });
        }
        (self.log.submit_meta_then(update).await).map_err(Self::err(client_id))
    }

    /// Deletes `client_id`'s session, if it has one.
    pub async fn remove(&self, client_id: &str) -> Result<(), SessionError> {
        let known = self
            .index
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(client_id);
        let key = format!("{SESSION_PREFIX}{client_id}");
        // Receipts are looked for even without a session: one deleted by `admit` while its
        // connection ran may have left some behind.
        let receipts = receipts::forget(&self.log, client_id).map_err(Self::err(client_id))?;
        if !known
            && receipts.is_empty()
            && self
                .log
                .get_meta(&key)
                .map_err(Self::err(client_id))?
                .is_none()
        {
            return Ok(());
        }
        let mut entries = vec![(key, None), (format!("{CURSOR_PREFIX}{client_id}"), None)];
        entries.extend(receipts);
        self.log
            .put_meta(entries)
            .await
            .map_err(Self::err(client_id))?;
        self.index
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(client_id);
        Ok(())
    }
}
