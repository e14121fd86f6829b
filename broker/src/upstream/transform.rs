//! What leaves for the upstream: records read from the local log, through the topic's upstream
//! plugin chain when it has one, with their origin in headers.
//!
//! The local log stays raw: plugins only shape what is forwarded. Their dead letters are appended
//! to the local log (with source partition and offset in headers) before the cursor moves, so a
//! failed record is never lost, only kept at home. A crash between the upstream's ack and the
//! cursor's commit runs the chain again on the same records: upstream plugins are at least once.

use std::sync::Arc;

use bytes::Bytes;

use super::{UpstreamContext, UpstreamError};
use crate::ingest::murmur2;
use crate::log::{NewRecord, PartitionHandle, StoredRecord};
use crate::plugin::PluginStates;

/// Records to produce, grouped by upstream topic: the source topic first, then topics the
/// plugins routed records to, in the order they first appeared.
pub type Outgoing = Vec<(String, Vec<NewRecord>)>;

/// `states` are the partition's plugin states as committed; they come back as they are after
/// these records, for the caller to commit with the cursor once the upstream acked.
pub async fn outgoing(
    ctx: &UpstreamContext,
    partition: &PartitionHandle,
    records: Vec<StoredRecord>,
    states: &mut PluginStates,
) -> Result<Outgoing, UpstreamError> {
    let topic = partition.topic.to_string();
    if !ctx.plugins.has_plugins(&topic) {
        let records = records
            .into_iter()
            .map(|r| {
                let offset = r.offset;
                with_origin(ctx, partition, Some(offset), stored_to_new(r))
            })
            .collect();
        return Ok(vec![(topic, records)]);
    }
    let output = ctx
        .plugins
        .run(&topic, partition.index as i32, records, states)
        .await
        .map_err(|e| UpstreamError::Plugin(e.to_string()))?;
    let (kept, dead_letters) = output.into_parts();
    for (dead_letter_topic, records) in &dead_letters {
        append_locally(ctx, dead_letter_topic, records).await?;
    }
    // Plugin outputs do not map one to one to inputs, so they carry no origin offset.
    Ok(kept
        .into_iter()
        .filter(|(_, records)| !records.is_empty())
        .map(|(t, records)| {
            let records = records
                .into_iter()
                .map(|r| with_origin(ctx, partition, None, r))
                .collect();
            (t, records)
        })
        .collect())
}

fn stored_to_new(r: StoredRecord) -> NewRecord {
    NewRecord {
        timestamp: r.timestamp,
        key: r.key,
        value: r.value,
        headers: r.headers,
    }
}

/// Appends dead letters to the local `topic`, partitioned by key as producers' records are.
async fn append_locally(
    ctx: &UpstreamContext,
    topic: &str,
    records: &[NewRecord],
) -> Result<(), UpstreamError> {
    let handle = ctx.log.topic_for_write(topic).await?;
    let n = handle.partitions.len() as u32;
    let index = match records.first().and_then(|r| r.key.as_ref()) {
        Some(key) => (murmur2(key) & 0x7fff_ffff) % n,
        None => 0,
    };
    let partition: &Arc<PartitionHandle> = &handle.partitions[index as usize];
    ctx.log.append_records(partition, records).await?;
    Ok(())
}

/// The record as forwarded: same key, value, timestamp and headers, plus its origin (the local
/// offset when the record is forwarded as stored).
fn with_origin(
    ctx: &UpstreamContext,
    partition: &PartitionHandle,
    offset: Option<i64>,
    record: NewRecord,
) -> NewRecord {
    let mut headers = record.headers;
    let origin = |v: String| Some(Bytes::from(v));
    headers.push((
        "hw.origin.gateway".into(),
        origin(ctx.gateway_id.to_string()),
    ));
    headers.push((
        "hw.origin.topic".into(),
        origin(partition.topic.to_string()),
    ));
    headers.push((
        "hw.origin.partition".into(),
        origin(partition.index.to_string()),
    ));
    if let Some(offset) = offset {
        headers.push(("hw.origin.offset".into(), origin(offset.to_string())));
    }
    NewRecord { headers, ..record }
}
