//! The one door into the log for every protocol.
//!
//! Kafka produce, MQTT publish and QUIC all call [`Ingest`]: it picks the partition, runs the
//! topic's ingest plugins (if any) and appends durably. Keeping this in one place is what makes
//! "one log, many doors" true: a record looks the same whichever protocol brought it.

mod claims;
mod via_plugins;

use std::sync::Arc;

use bytes::Bytes;

use claims::ClaimLocks;
pub use via_plugins::ChainedAppend;

use crate::log::{
    self, AppendTicket, Appended, BatchHeader, Log, LogError, MetaUpdate, NewRecord,
    PartitionHandle,
};
use crate::plugin::IngestPlugins;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Batch(#[from] log::BatchError),
    #[error("unknown partition {partition} of topic {topic}")]
    UnknownPartition { topic: String, partition: i32 },
    #[error("ingest plugin failed: {0}")]
    Plugin(String),
}

/// A produce handed to the log: queued with the writer, or already finished.
pub enum Submitted {
    Queued(AppendTicket),
    /// What a topic's ingest plugins made of the records, queued.
    Chained(ChainedAppend),
    Finished(Result<Appended, IngestError>),
}

impl Submitted {
    /// See [`AppendTicket::commit_in_background`].
    pub fn commit_in_background(&mut self) {
        match self {
            Submitted::Queued(ticket) => ticket.commit_in_background(),
            Submitted::Chained(chained) => chained.commit_in_background(),
            Submitted::Finished(_) => {}
        }
    }

    /// Where the records landed once durable, or why they were refused.
    pub async fn outcome(self) -> Result<Appended, IngestError> {
        match self {
            Submitted::Queued(ticket) => Ok(ticket.durable().await?),
            Submitted::Chained(chained) => chained.outcome().await,
            Submitted::Finished(result) => result,
        }
    }
}

/// Appends records to the log on behalf of every protocol.
#[derive(Clone)]
pub struct Ingest {
    log: Log,
    plugins: Arc<IngestPlugins>,
    /// Idempotent requests on the plugin path, one at a time per producer and partition.
    claims: Arc<ClaimLocks>,
}

impl Ingest {
    pub fn new(log: Log, plugins: Arc<IngestPlugins>) -> Ingest {
        Ingest {
            log,
            plugins,
            claims: Arc::default(),
        }
    }

    pub fn log(&self) -> &Log {
        &self.log
    }

    /// Whether `topic` has an ingest chain (whose appends can fail apart from each other).
    pub fn has_plugins(&self, topic: &str) -> bool {
        self.plugins.has_plugins(topic)
    }

    /// Deletes a topic with its records, the metadata it owns in the log, and the states its
    /// ingest plugins hold for it: a topic created again under the same name starts afresh.
    pub async fn delete_topic(&self, name: &str) -> Result<(), LogError> {
        let deletion = self.log.delete_topic(name);
        self.plugins.forget_topic(name, deletion).await
    }

    /// Kafka produce: already-validated batches for one partition. Stored as received unless an
    /// ingest plugin is attached to the topic.
    pub async fn produce_batches(
        &self,
        topic: &str,
        partition: i32,
        batches: Vec<(BatchHeader, Bytes)>,
    ) -> Result<Appended, IngestError> {
        self.submit_batches(topic, partition, batches)
            .await
            .outcome()
            .await
    }

    /// [`Ingest::produce_batches`] in two steps: this returns once the append is queued with
    /// the log writer (so appends keep the order of the calls), and [`Submitted::outcome`]
    /// waits until it is durable. With ingest plugins the chain runs here, before its output is
    /// queued; an idempotent producer's request through them finishes here (see
    /// `via_plugins`).
    pub async fn submit_batches(
        &self,
        topic: &str,
        partition: i32,
        batches: Vec<(BatchHeader, Bytes)>,
    ) -> Submitted {
        let handle = match self.partition(topic, partition).await {
            Ok(handle) => handle,
            Err(e) => return Submitted::Finished(Err(e)),
        };
        if self.plugins.has_plugins(topic) {
            return (self.produce_via_plugins(topic, handle, batches).await)
                .unwrap_or_else(|e| Submitted::Finished(Err(e)));
        }
        match self.log.submit_batches(&handle, batches).await {
            Ok(ticket) => Submitted::Queued(ticket),
            Err(e) => Submitted::Finished(Err(e.into())),
        }
    }

    /// Records for a topic; the partition is chosen from each record's key (Kafka's murmur2
    /// partitioner, so Kafka producers and MQTT agree on where a device's records go).
    pub async fn publish(
        &self,
        topic: &str,
        records: Vec<NewRecord>,
    ) -> Result<Appended, IngestError> {
        self.publish_with_meta(topic, records, None).await
    }

    /// [`Ingest::publish`] with metadata written in the same transaction as the records kept for
    /// `topic` (alone, after the chain's appends, when a plugin chain keeps none of them).
    pub async fn publish_with_meta(
        &self,
        topic: &str,
        records: Vec<NewRecord>,
        meta: Option<MetaUpdate>,
    ) -> Result<Appended, IngestError> {
        if self.plugins.has_plugins(topic) {
            let chained = self
                .chain_and_queue(topic, None, records, None, meta)
                .await?;
            return chained.outcome().await;
        }
        let handle = self.partition_for_key(topic, records.first()).await?;
        Ok(self
            .log
            .append_records_with_meta(&handle, &records, meta)
            .await?)
    }

    /// [`Ingest::publish`] in two steps, as [`Ingest::submit_batches`]: returns once the
    /// append is queued with the log writer (so a connection's appends keep their order), and
    /// [`Submitted::outcome`] waits until it is durable. With ingest plugins the chain runs
    /// here, before its output is queued.
    pub async fn submit_publish(&self, topic: &str, records: Vec<NewRecord>) -> Submitted {
        self.submit_publish_with_meta(topic, records, None).await
    }

    /// [`Ingest::submit_publish`] with metadata written in the same transaction, as
    /// [`Ingest::publish_with_meta`].
    pub async fn submit_publish_with_meta(
        &self,
        topic: &str,
        records: Vec<NewRecord>,
        meta: Option<MetaUpdate>,
    ) -> Submitted {
        if self.plugins.has_plugins(topic) {
            return match self.chain_and_queue(topic, None, records, None, meta).await {
                Ok(chained) => chained.submitted().await,
                Err(e) => Submitted::Finished(Err(e)),
            };
        }
        let handle = match self.partition_for_key(topic, records.first()).await {
            Ok(handle) => handle,
            Err(e) => return Submitted::Finished(Err(e)),
        };
        match self.log.submit_records(&handle, &records, meta).await {
            Ok(ticket) => Submitted::Queued(ticket),
            Err(e) => Submitted::Finished(Err(e.into())),
        }
    }

    async fn partition(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<Arc<PartitionHandle>, IngestError> {
        let t = self.log.topic_for_write(topic).await?;
        t.partition(partition)
            .cloned()
            .ok_or_else(|| IngestError::UnknownPartition {
                topic: topic.to_string(),
                partition,
            })
    }

    async fn partition_for_key(
        &self,
        topic: &str,
        first: Option<&NewRecord>,
    ) -> Result<Arc<PartitionHandle>, IngestError> {
        let t = self.log.topic_for_write(topic).await?;
        let n = t.partitions.len() as u32;
        let index = match first.and_then(|r| r.key.as_ref()) {
            Some(key) => (murmur2(key) & 0x7fff_ffff) % n,
            None => 0,
        };
        Ok(t.partitions[index as usize].clone())
    }
}

/// Kafka's default partitioner hash (murmur2, seed 0x9747b28c), as in the Java client.
pub fn murmur2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h: u32 = 0x9747_b28c ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= (rest[2] as u32) << 16;
    }
    if rest.len() >= 2 {
        h ^= (rest[1] as u32) << 8;
    }
    if !rest.is_empty() {
        h ^= rest[0] as u32;
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

#[cfg(test)]
mod tests {
    use super::murmur2;

    #[test]
    fn murmur2_matches_kafka_java_client() {
        // Values from Kafka's UtilsTest.testMurmur2.
        assert_eq!(murmur2(b"21") as i32, -973932308);
        assert_eq!(murmur2(b"foobar") as i32, -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string") as i32, -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string") as i32, -1486304829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") as i32,
            -58897971
        );
        assert_eq!(murmur2(b"abc") as i32, 479470107);
    }
}
