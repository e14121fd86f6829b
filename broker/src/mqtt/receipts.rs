//! Stored QoS 2 receipts of persistent sessions: the packet ids of QoS 2 publishes a client
//! sent, that were stored, and whose PUBREL has not been handled yet (MQTT §4.3.3, "Method B":
//! the receiver keeps the id until PUBREL and stores a resent PUBLISH with that id only once).
//!
//! A connection keeps them in memory ([`super::inflight::AwaitingRelease`]); a persistent
//! session also keeps them in LMDB, so exactly-once holds across a reconnect, a broker restart
//! and `kill -9`:
//! - an id is written in the same commit as its message, so once PUBREC is sent the id is
//!   durable with it: a resent PUBLISH (the PUBREC was lost, the client reconnected) is
//!   acknowledged, not stored again;
//! - the id is deleted by its PUBREL, and PUBCOMP is sent only once that deletion is durable:
//!   the client reuses an id only after PUBCOMP, so a new message with a reused id is never
//!   taken for a resend (which would lose it).
//!
//! One key per id (`mqtt/qos2in/{len}:{client id}/{id}`), not one list per client: each key is
//! written once, with its message, and deleted once, after it, so no two writes of a
//! connection can overtake each other. The client id's length makes the prefix unambiguous
//! (client ids may hold `/`).

use crate::log::{Log, LogError};

const KEY_PREFIX: &str = "mqtt/qos2in/";

/// Meta entries to write (`Some`) or delete (`None`), as [`Log::put_meta`] takes them.
pub type Entries = Vec<(String, Option<Vec<u8>>)>;

/// The prefix of `client_id`'s keys.
fn prefix(client_id: &str) -> String {
    format!("{KEY_PREFIX}{}:{client_id}/", client_id.len())
}

/// The key of receipt `pkid` of `client_id`.
fn key(client_id: &str, pkid: u16) -> String {
    format!("{}{pkid}", prefix(client_id))
}

/// Entries recording `pkids` as received (to write with their messages).
pub fn received(client_id: &str, pkids: &[u16]) -> Entries {
    pkids
        .iter()
        .map(|&pkid| (key(client_id, pkid), Some(Vec::new())))
        .collect()
}

/// Entries deleting `pkids` (released).
pub fn released(client_id: &str, pkids: &[u16]) -> Entries {
    pkids
        .iter()
        .map(|&pkid| (key(client_id, pkid), None))
        .collect()
}

/// The stored receipts of `client_id`.
pub fn load(log: &Log, client_id: &str) -> Result<Vec<u16>, LogError> {
    let prefix = prefix(client_id);
    let entries = log.scan_meta(&prefix)?;
    Ok(entries
        .iter()
        .filter_map(|(key, _)| key.strip_prefix(&prefix)?.parse().ok())
        .collect())
}

/// Entries deleting every stored receipt of `client_id` (with its session).
pub fn forget(log: &Log, client_id: &str) -> Result<Entries, LogError> {
    let prefix = prefix(client_id);
    Ok(log
        .scan_meta(&prefix)?
        .into_iter()
        .map(|(key, _)| (key, None))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::LogOptions;

    #[tokio::test]
    async fn receipts_are_kept_per_client_even_when_one_id_prefixes_another() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(&LogOptions::for_tests(dir.path(), 64 << 20)).unwrap();
        let mut entries = received("a", &[1, 65535]);
        entries.extend(received("a/b", &[2]));
        entries.extend(received("a/", &[3]));
        log.put_meta(entries).await.unwrap();
        let mut a = load(&log, "a").unwrap();
        a.sort();
        assert_eq!(a, vec![1, 65535]);
        assert_eq!(load(&log, "a/b").unwrap(), vec![2]);
        assert_eq!(load(&log, "a/").unwrap(), vec![3]);

        log.put_meta(released("a", &[1])).await.unwrap();
        assert_eq!(load(&log, "a").unwrap(), vec![65535]);
        log.put_meta(forget(&log, "a/b").unwrap()).await.unwrap();
        assert!(load(&log, "a/b").unwrap().is_empty());
        assert_eq!(load(&log, "a").unwrap(), vec![65535], "others untouched");
        assert_eq!(load(&log, "a/").unwrap(), vec![3]);
    }
}
