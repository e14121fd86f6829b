//! One connected replication session: upstream metadata, leader connections, and the loop that
//! moves each partition's pending records upstream.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{BrokerId, MetadataRequest, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::client::Connection;
use super::cursor::{load_cursor, load_states, store_cursor};
use super::transform::outgoing;
use super::{UpstreamContext, UpstreamError};
use crate::log::{batch, BatchError, PartitionHandle, StoredRecord};
use crate::plugin::PluginStates;

/// Where one upstream topic's partitions live.
struct UpstreamTopic {
    /// Leader node of each upstream partition, by partition index.
    leaders: Vec<BrokerId>,
}

pub struct Session {
    bootstrap: Connection,
    /// Broker addresses from metadata.
    brokers: HashMap<BrokerId, String>,
    /// Open connections to leaders, by node.
    leaders: HashMap<BrokerId, Connection>,
    topics: HashMap<String, UpstreamTopic>,
    /// Next offset to forward, per (topic, local partition), loaded from LMDB on first use.
    cursors: HashMap<(String, u32), i64>,
    /// Upstream topics that upstream plugins routed records to, besides the configured ones.
    routed: BTreeSet<String>,
    /// Upstream plugin states per (topic, local partition) as committed, loaded on first use.
    states: HashMap<(String, u32), PluginStates>,
    /// The log's id of each partition whose cursor and states are cached: a topic deleted and
    /// created again has new ids (and its stored cursor and states were deleted with it).
    partition_ids: HashMap<(String, u32), u32>,
    timeout: Duration,
}

/// What a partition has to forward from its cursor on.
enum Pending {
    Nothing,
    /// Decoded records and the offset of the last one.
    Records(Vec<StoredRecord>, i64),
    /// One stored batch too large to decode ([`batch::MAX_DECOMPRESSED_BYTES`]), forwarded as
    /// stored (without origin headers) rather than blocking the partition forever; and its last
    /// offset.
    Raw(Bytes, i64),
}

/// Reads what `partition` has from `cursor` on, one read of about `max_batch_bytes`.
fn read_pending(
    ctx: &UpstreamContext,
    partition: &PartitionHandle,
    cursor: i64,
) -> Result<Pending, UpstreamError> {
    let mut records = Vec::new();
    for stored in ctx
        .log
        .read(partition, cursor, ctx.config.max_batch_bytes)?
    {
        match batch::decode(&stored.bytes) {
            Ok(decoded) => records.extend(decoded.into_iter().filter(|r| r.offset >= cursor)),
            Err(BatchError::TooLarge { limit }) if records.is_empty() => {
                tracing::warn!(
                    topic = %partition.topic, partition = partition.index,
                    offset = stored.base_offset, limit,
                    "batch decompresses past the limit: forwarded upstream as stored, without origin headers"
                );
                let mut raw = stored.bytes.to_vec();
                batch::clear_producer(&mut raw);
                return Ok(Pending::Raw(Bytes::from(raw), stored.last_offset));
            }
            // Forwarded alone by the next call.
            Err(BatchError::TooLarge { .. }) => break,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(match records.last().map(|r| r.offset) {
        Some(last) => Pending::Records(records, last),
        None => Pending::Nothing,
    })
}

impl Session {
    pub async fn open(ctx: &UpstreamContext) -> Result<Session, UpstreamError> {
        let timeout = Duration::from_millis(ctx.config.request_timeout_ms.max(1));
        let bootstrap = Connection::connect(&ctx.config.bootstrap, timeout).await?;
        let mut session = Session {
            bootstrap,
            brokers: HashMap::new(),
            leaders: HashMap::new(),
            topics: HashMap::new(),
            cursors: HashMap::new(),
            routed: BTreeSet::new(),
            states: HashMap::new(),
            partition_ids: HashMap::new(),
            timeout,
        };
        session.refresh_metadata(ctx).await?;
        Ok(session)
    }

    /// Asks the upstream where the configured topics' partitions live (creating the topics when
    /// the upstream allows auto-creation).
    async fn refresh_metadata(&mut self, ctx: &UpstreamContext) -> Result<(), UpstreamError> {
        let request = MetadataRequest::default()
            .with_topics(Some(
                ctx.config
                    .topics
                    .iter()
                    .chain(&self.routed)
                    .map(|t| {
                        MetadataRequestTopic::default()
                            .with_name(Some(TopicName(StrBytes::from_string(t.clone()))))
                    })
                    .collect(),
            ))
            .with_allow_auto_topic_creation(true);
        let response = self.bootstrap.request(&request).await?;
        self.brokers = response
            .brokers
            .iter()
            .map(|b| (b.node_id, format!("{}:{}", b.host, b.port)))
            .collect();
        self.topics.clear();
        for topic in response.topics {
            let Some(name) = topic.name else { continue };
            let name = name.0.to_string();
            if topic.error_code != 0 || topic.partitions.is_empty() {
                // Auto-creation can answer LEADER_NOT_AVAILABLE once; the next refresh succeeds.
                tracing::warn!(topic = %name, code = topic.error_code, "upstream topic not ready");
                continue;
            }
            let mut partitions = topic.partitions;
            partitions.sort_by_key(|p| p.partition_index);
            self.topics.insert(
                name,
                UpstreamTopic {
                    leaders: partitions.iter().map(|p| p.leader_id).collect(),
                },
            );
        }
        Ok(())
    }

    /// Forwards one chunk of every partition that has pending records; true if anything moved.
    pub async fn forward_pending(&mut self, ctx: &UpstreamContext) -> Result<bool, UpstreamError> {
        let mut progressed = false;
        for name in &ctx.config.topics {
            let Some(topic) = ctx.log.topic(name) else {
                continue;
            };
            if !self.topics.contains_key(name) {
                self.refresh_metadata(ctx).await?;
                if !self.topics.contains_key(name) {
                    continue;
                }
            }
            for partition in &topic.partitions {
                progressed |= self.forward_partition(ctx, partition).await?;
            }
        }
        Ok(progressed)
    }

    async fn forward_partition(
        &mut self,
        ctx: &UpstreamContext,
        partition: &Arc<PartitionHandle>,
    ) -> Result<bool, UpstreamError> {
        let key = (partition.topic.to_string(), partition.index);
        if self.partition_ids.insert(key.clone(), partition.id) != Some(partition.id) {
            self.cursors.remove(&key);
            self.states.remove(&key);
        }
        let mut cursor = match self.cursors.get(&key) {
            Some(c) => *c,
            None => load_cursor(&ctx.log, &partition.topic, partition.index)?,
        };
        if cursor < partition.log_start() {
            tracing::warn!(
                topic = %partition.topic, partition = partition.index,
                lost = partition.log_start() - cursor,
                "records expired by retention before they were forwarded upstream"
            );
            cursor = partition.log_start();
        }
        let high_watermark = partition.high_watermark();
        record_lag(ctx, &key, high_watermark - cursor);
        if cursor >= high_watermark {
            self.cursors.insert(key, cursor);
            return Ok(false);
        }
        if !self.states.contains_key(&key) {
            let loaded = load_states(&ctx.log, &partition.topic, partition.index)?;
            self.states.insert(key.clone(), loaded);
        }
        let committed = self.states.get(&key).cloned().unwrap_or_default();
        let mut states = committed.clone();
        let last = match read_pending(ctx, partition, cursor)? {
            Pending::Nothing => {
                self.cursors.insert(key, cursor);
                return Ok(false);
            }
            Pending::Records(records, last) => {
                // Each topic's produce is acked before the next; the cursor moves after all.
                for (topic, records) in outgoing(ctx, partition, records, &mut states).await? {
                    self.ensure_topic(ctx, &topic).await?;
                    self.produce(&topic, partition.index, batch::encode(&records)?)
                        .await?;
                }
                last
            }
            Pending::Raw(_, last) if ctx.plugins.has_plugins(&partition.topic) => {
                // Its records cannot be decoded for the plugins, and forwarding them unfiltered
                // could leak what a plugin exists to remove: it stays in the local log only.
                tracing::error!(
                    topic = %partition.topic, partition = partition.index, cursor, last,
                    "batch too large to decode for the upstream plugins: not forwarded (kept locally)"
                );
                last
            }
            Pending::Raw(bytes, last) => {
                self.produce(&partition.topic, partition.index, bytes)
                    .await?;
                last
            }
        };
        let moved = (&committed, &states);
        store_cursor(&ctx.log, partition, last + 1, moved).await?;
        self.states.insert(key.clone(), states);
        self.cursors.insert(key.clone(), last + 1);
        record_lag(ctx, &key, high_watermark - (last + 1));
        Ok(true)
    }

    /// Makes sure the upstream metadata knows `topic` (one a plugin routed records to, seen for
    /// the first time).
    async fn ensure_topic(
        &mut self,
        ctx: &UpstreamContext,
        topic: &str,
    ) -> Result<(), UpstreamError> {
        if self.topics.contains_key(topic) {
            return Ok(());
        }
        self.routed.insert(topic.to_string());
        self.refresh_metadata(ctx).await?;
        if self.topics.contains_key(topic) {
            Ok(())
        } else {
            Err(UpstreamError::NoLeader {
                topic: topic.to_string(),
                partition: 0,
            })
        }
    }

    /// Produces one batch with acks=all to the leader of the mapped upstream partition.
    async fn produce(
        &mut self,
        topic: &str,
        local: u32,
        records: Bytes,
    ) -> Result<(), UpstreamError> {
        let no_leader = || UpstreamError::NoLeader {
            topic: topic.to_string(),
            partition: local as i32,
        };
        let upstream = self.topics.get(topic).ok_or_else(no_leader)?;
        // Metadata with no partitions is never stored (see `refresh_metadata`); checked anyway so
        // a surprising upstream answer is an error, not a division by zero.
        let index = local as usize % upstream.leaders.len().max(1);
        let leader = *upstream.leaders.get(index).ok_or_else(no_leader)?;
        let index = index as i32;
        let request = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(self.timeout.as_millis().min(i32::MAX as u128) as i32)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(index)
                    .with_records(Some(records))])]);
        let conn = self.leader(leader, topic, index).await?;
        let response = conn.request(&request).await?;
        let code = response
            .responses
            .iter()
            .flat_map(|t| t.partition_responses.iter())
            .find(|p| p.index == index)
            .map(|p| p.error_code)
            .ok_or_else(|| UpstreamError::Produce {
                topic: topic.to_string(),
                partition: index,
                code: -1,
            })?;
        if code != 0 {
            // Leadership moved or the partition is unavailable: drop the session so the next one
            // starts from fresh metadata. The cursor did not move, so nothing is skipped.
            return Err(UpstreamError::Produce {
                topic: topic.to_string(),
                partition: index,
                code,
            });
        }
        Ok(())
    }

    /// The connection to a leader, opened on first use. The bootstrap connection serves when the
    /// leader is the bootstrap broker itself.
    async fn leader(
        &mut self,
        node: BrokerId,
        topic: &str,
        partition: i32,
    ) -> Result<&mut Connection, UpstreamError> {
        let addr = self
            .brokers
            .get(&node)
            .cloned()
            .ok_or_else(|| UpstreamError::NoLeader {
                topic: topic.to_string(),
                partition,
            })?;
        if addr == self.bootstrap.addr() || self.brokers.len() == 1 {
            return Ok(&mut self.bootstrap);
        }
        if !self.leaders.contains_key(&node) {
            let conn = Connection::connect(&addr, self.timeout).await?;
            self.leaders.insert(node, conn);
        }
        self.leaders
            .get_mut(&node)
            .ok_or_else(|| UpstreamError::NoLeader {
                topic: topic.to_string(),
                partition,
            })
    }
}

fn record_lag(ctx: &UpstreamContext, key: &(String, u32), lag: i64) {
    if let Ok(mut map) = ctx.lag.lock() {
        map.insert(key.clone(), lag.max(0));
    }
}
