//! Where the states of ingest plugins are stored (ABI.md, "State"): in the log's meta database,
//! one entry per topic and plugin, written in the transaction that appends the records the
//! state goes with. After a restart each plugin starts from the state of the last batch whose
//! records are durable, so a downsampler neither lets an extra record through nor drops one
//! because of the restart.

use crate::log::{topic_meta_prefix, Log, LogError};

/// A namespace of [`crate::log::TOPIC_META_NAMESPACES`]: the states go with their topic.
const NAMESPACE: &str = "ingest/state";

/// Meta key of `plugin`'s state for `topic`. Topic names cannot hold a `/`, so the first one
/// after the prefix ends the topic, whatever the plugin's name.
fn key(topic: &str, plugin: &str) -> String {
    format!("{}{plugin}", topic_meta_prefix(NAMESPACE, topic))
}

/// Meta entries that store the `changed` states of `topic`'s plugins (`None` deletes).
pub fn entries(
    topic: &str,
    changed: impl IntoIterator<Item = (String, Option<Vec<u8>>)>,
) -> Vec<(String, Option<Vec<u8>>)> {
    changed
        .into_iter()
        .map(|(plugin, state)| (key(topic, &plugin), state))
        .collect()
}

/// Every stored state, as (topic, plugin, state).
pub fn load(log: &Log) -> Result<Vec<(String, String, Vec<u8>)>, LogError> {
    let prefix = format!("{NAMESPACE}/");
    Ok(log
        .scan_meta(&prefix)?
        .into_iter()
        .filter_map(|(key, state)| {
            let (topic, plugin) = key.strip_prefix(&prefix)?.split_once('/')?;
            Some((topic.to_string(), plugin.to_string(), state))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stored_entries_load_back_by_topic_and_plugin() {
        let dir = tempfile::tempdir().unwrap();
        let options = crate::log::LogOptions::for_tests(dir.path(), 16 << 20);
        let log = Log::open(&options).unwrap();
        let changed = vec![
            ("every/second".to_string(), Some(vec![1, 2])),
            ("gone".to_string(), None),
        ];
        log.put_meta(entries("sensors", changed)).await.unwrap();
        log.put_meta(entries("t", vec![("p".into(), Some(vec![3]))]))
            .await
            .unwrap();
        let mut loaded = load(&log).unwrap();
        loaded.sort();
        assert_eq!(
            loaded,
            [
                ("sensors".into(), "every/second".into(), vec![1, 2]),
                ("t".into(), "p".into(), vec![3]),
            ]
        );
        log.close().await;
    }
}
