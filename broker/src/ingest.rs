//! The one door into the log for every protocol.
//!
//! Kafka produce, MQTT publish and QUIC all call [`Ingest`]: it picks the partition, runs the
//! topic's ingest plugins (if any) and appends durably. Keeping this in one place is what makes
//! "one log, many doors" true: a record looks the same whichever protocol brought it.

mod claims;

use std::sync::Arc;

use bytes::Bytes;

use claims::ClaimLocks;

use crate::log::producers::ProducerClaim;
use crate::log::{
    self, AppendTicket, Appended, BatchHeader, Log, LogError, MetaUpdate, NewRecord,
    PartitionHandle,
};
use crate::plugin::{ChainOutput, HeldChanges, IngestPlugins, Turn};

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
    Finished(Result<Appended, IngestError>),
}

impl Submitted {
    /// See [`AppendTicket::commit_in_background`].
    pub fn commit_in_background(&mut self) {
        if let Submitted::Queued(ticket) = self {
            ticket.commit_in_background();
        }
    }

    /// Where the records landed once durable, or why they were refused.
    pub async fn outcome(self) -> Result<Appended, IngestError> {
        match self {
            Submitted::Queued(ticket) => Ok(ticket.durable().await?),
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
    /// waits until it is durable. With ingest plugins the chain and the append run here, so
    /// the outcome is ready at once.
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
            return Submitted::Finished(self.produce_via_plugins(topic, handle, batches).await);
        }
        match self.log.submit_batches(&handle, batches).await {
            Ok(ticket) => Submitted::Queued(ticket),
            Err(e) => Submitted::Finished(Err(e.into())),
        }
    }

    async fn produce_via_plugins(
        &self,
        topic: &str,
        handle: Arc<PartitionHandle>,
        batches: Vec<(BatchHeader, Bytes)>,
    ) -> Result<Appended, IngestError> {
        let partition = handle.index as i32;
        // The chain's output is re-encoded without the producer's id, so an idempotent
        // producer's sequence range is claimed for it instead; a retry of a request already
        // written is answered from the log without running the plugins (and their side effects
        // on other topics) again.
        let headers: Vec<&BatchHeader> = batches.iter().map(|(h, _)| h).collect();
        let claim = ProducerClaim::of_request(&headers).map_err(|reason| LogError::Sequence {
            topic: topic.to_string(),
            partition,
            producer_id: headers.first().map_or(-1, |h| h.producer_id),
            reason,
        })?;
        // A retry overlapping its original waits for it, then finds it here (see `claims`).
        let _claimed = match claim {
            Some(claim) => Some(self.claims.lock(handle.id, claim.producer_id).await),
            None => None,
        };
        if let Some(claim) = claim {
            if let Some(original) = self.log.check_claim(&handle, claim)? {
                return Ok(original);
            }
        }
        let mut records = Vec::new();
        for (_, bytes) in &batches {
            records.extend(log::batch::decode(bytes)?.into_iter().map(|r| NewRecord {
                timestamp: r.timestamp,
                key: r.key,
                value: r.value,
                headers: r.headers,
            }));
        }
        self.append_via_plugins(topic, Some(handle), records, claim, None)
            .await
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
            return self
                .append_via_plugins(topic, None, records, None, meta)
                .await;
        }
        let handle = self.partition_for_key(topic, records.first()).await?;
        Ok(self
            .log
            .append_records_with_meta(&handle, &records, meta)
            .await?)
    }

    /// [`Ingest::publish`] in two steps, as [`Ingest::submit_batches`]: returns once the
    /// append is queued with the log writer (so a connection's appends keep their order), and
    /// [`Submitted::outcome`] waits until it is durable. With ingest plugins the chain and the
    /// append run here, so the outcome is ready at once.
    pub async fn submit_publish(&self, topic: &str, records: Vec<NewRecord>) -> Submitted {
        if self.plugins.has_plugins(topic) {
            return Submitted::Finished(self.publish(topic, records).await);
        }
        let handle = match self.partition_for_key(topic, records.first()).await {
            Ok(handle) => handle,
            Err(e) => return Submitted::Finished(Err(e)),
        };
        match self.log.submit_records(&handle, &records, None).await {
            Ok(ticket) => Submitted::Queued(ticket),
            Err(e) => Submitted::Finished(Err(e.into())),
        }
    }

    async fn append_via_plugins(
        &self,
        topic: &str,
        partition: Option<Arc<PartitionHandle>>,
        records: Vec<NewRecord>,
        claim: Option<ProducerClaim>,
        meta: Option<MetaUpdate>,
    ) -> Result<Appended, IngestError> {
        // The topic's turn (see `IngestPlugins::turn`): a batch that changed the plugins' states
        // keeps it until its appends are queued, so the states reach the log in the order the
        // plugins produced them.
        let mut turn = self.plugins.turn(topic).await;
        let mut output = self
            .plugins
            .run(topic, records)
            .await
            .map_err(|e| IngestError::Plugin(e.to_string()))?;
        let mut held = output.take_held_changes();
        if held.is_empty() {
            turn = None;
        }
        // The changed states ride with the records kept for the source topic: after a crash
        // the plugins resume from the states of the last batch that is durable.
        let meta = MetaUpdate::with_entries(meta, held.entries());
        let appended = self
            .append_output(
                topic,
                partition,
                output,
                (claim, meta),
                (&mut turn, &mut held),
            )
            .await;
        if appended.is_err() {
            // The producer gets an error and may send the records again: the plugins must see
            // them as new (unless the states were stored before the error).
            held.roll_back();
        }
        appended
    }

    /// Appends what an ingest chain made of a request: records kept for other topics and dead
    /// letters first, then the source topic's (with the producer's claim and `meta`), so that
    /// a crash in between leaves no state stored without the records it goes with. Releases
    /// `turn` once everything is queued (and marks `held` queued), then waits until it is
    /// durable (and `held` kept once the source topic's append is).
    async fn append_output(
        &self,
        topic: &str,
        partition: Option<Arc<PartitionHandle>>,
        output: ChainOutput,
        (claim, meta): (Option<ProducerClaim>, Option<MetaUpdate>),
        (turn, held): (&mut Option<Turn>, &mut HeldChanges),
    ) -> Result<Appended, IngestError> {
        // Partitions first (a new topic is created on the way, which commits): records kept
        // for the source topic go where the producer asked; rerouted ones and dead letters go
        // to the partition of their first record's key in their topic.
        let mut others = Vec::new();
        let mut source = Vec::new();
        for (target, records) in output.by_topic() {
            if target == topic {
                source = records;
            } else if !records.is_empty() {
                let handle = self.partition_for_key(&target, records.first()).await?;
                others.push((handle, records));
            }
        }
        let source_handle = match partition {
            Some(p) => p,
            None => self.partition_for_key(topic, source.first()).await?,
        };
        let mut tickets = Vec::new();
        for (handle, records) in &others {
            tickets.push(self.log.submit_append(handle, records, None, None).await?);
        }
        // Nothing kept for the source topic: the producer's next request follows this one's
        // sequence, so the claim is recorded even with nothing to write, and the metadata is
        // written all the same. An empty append rather than a bare metadata write: if the
        // topic is deleted meanwhile, it is refused instead of leaving states behind.
        let wanted = !source.is_empty() || claim.is_some() || meta.is_some();
        let last = match wanted {
            true => Some(
                self.log
                    .submit_append(&source_handle, &source, claim, meta)
                    .await?,
            ),
            false => None,
        };
        held.mark_queued();
        drop(turn.take());
        let appended = match last {
            Some(ticket) => Some(ticket.durable().await?),
            None => None,
        };
        held.keep();
        for ticket in tickets {
            ticket.durable().await?;
        }
        // Everything dropped by the plugins (and nothing to write): ack with the partition's
        // current end, as Kafka does for an empty append.
        Ok(appended.unwrap_or_else(|| {
            let end = source_handle.high_watermark();
            Appended {
                base_offset: end,
                last_offset: end - 1,
                log_start: source_handle.log_start(),
            }
        }))
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
