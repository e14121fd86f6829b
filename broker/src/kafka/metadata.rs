//! Metadata (key 3): the cluster as clients see it, one broker that leads everything.
//!
//! Versions 0–12. v13 only adds a top-level error code for re-bootstrapping (KIP-1102), which
//! a single node has no use for; librdkafka 2.12 asks for at most 13 and settles on 12. Topic
//! ids (v10+) are reported as the nil UUID, Kafka's "no id": the log has no topic ids yet, so
//! a request naming a topic only by id is answered UNKNOWN_TOPIC_ID and Fetch stays at v12
//! (v13+ fetches by topic id).
//!
//! A missing topic is created when the client allows it (`allow_auto_topic_creation`, always
//! on before v4) and the log's auto-creation is on ([`crate::log::Log::topic_for_write`]); it is
//! created before the answer, so unlike Kafka the first answer already has its partitions.
//! Authorized-operation fields stay at Kafka's "not provided" value: Headwater has no ACLs yet.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::bounds::{between, from, Schema, Ty};
use super::errors;
use super::KafkaContext;
use crate::log::{validate_topic_name, LogError, TopicHandle};

/// The one broker's node id.
pub const NODE_ID: i32 = 0;
/// Cluster id reported from v2 on. Kafka uses a random base64 UUID; clients treat it as an
/// opaque string, and a fixed one says plainly that this is not a Kafka cluster.
pub const CLUSTER_ID: &str = "headwater-single-node";
/// Every partition's leader epoch: leadership never moves on one node.
pub const LEADER_EPOCH: i32 = 0;

/// MetadataRequest (flexible from v9).
pub const SCHEMA: Schema = Schema {
    flexible_since: 9,
    fields: &[
        // topics: topic_id (v10+), name
        from(0, Ty::Structs(&[from(10, Ty::Uuid), from(0, Ty::Str)])),
        from(4, Ty::I8),        // allow_auto_topic_creation
        between(8, 10, Ty::I8), // include_cluster_authorized_operations
        from(8, Ty::I8),        // include_topic_authorized_operations
    ],
};

/// `(host, port)` is the address advertised for node 0.
pub async fn handle(
    ctx: &KafkaContext,
    request: MetadataRequest,
    version: i16,
    (host, port): (String, u16),
) -> MetadataResponse {
    let mut response = MetadataResponse::default();
    let mut broker = MetadataResponseBroker::default();
    broker.node_id = BrokerId(NODE_ID);
    broker.host = StrBytes::from_string(host);
    broker.port = i32::from(port);
    response.brokers = vec![broker];
    response.cluster_id = Some(StrBytes::from_static_str(CLUSTER_ID));
    response.controller_id = BrokerId(NODE_ID);

    // v0 has no way to say "all topics" but an empty list; from v1 that is null.
    let wanted = match request.topics {
        Some(topics) if version == 0 && topics.is_empty() => None,
        other => other,
    };
    response.topics = match wanted {
        None => ctx.log().topics().iter().map(|t| describe(t)).collect(),
        Some(topics) => {
            let mut out = Vec::with_capacity(topics.len());
            for topic in topics {
                out.push(lookup(ctx, topic, request.allow_auto_topic_creation).await);
            }
            out
        }
    };
    response
}

async fn lookup(
    ctx: &KafkaContext,
    topic: MetadataRequestTopic,
    allow_auto_create: bool,
) -> MetadataResponseTopic {
    let Some(name) = topic.name else {
        let mut out = MetadataResponseTopic::default();
        out.error_code = ResponseError::UnknownTopicId.code();
        out.topic_id = topic.topic_id;
        out.name = None;
        return out;
    };
    let failed = |code: ResponseError| {
        let mut out = MetadataResponseTopic::default();
        out.error_code = code.code();
        out.name = Some(name.clone());
        out
    };
    if validate_topic_name(&name).is_err() {
        return failed(ResponseError::InvalidTopicException);
    }
    if let Some(handle) = ctx.log().topic(&name) {
        return describe(&handle);
    }
    if !allow_auto_create {
        return failed(ResponseError::UnknownTopicOrPartition);
    }
    match ctx.log().topic_for_write(&name).await {
        Ok(handle) => describe(&handle),
        Err(e) => {
            let code = match &e {
                // A creation that failed for lack of space or a store problem: Kafka's answer
                // while a topic is still being created, which clients retry.
                LogError::Full | LogError::Lmdb(_) | LogError::Io { .. } | LogError::Stopped => {
                    tracing::warn!(topic = %name.as_str(), error = %e, "auto-creating a topic failed");
                    ResponseError::LeaderNotAvailable
                }
                other => errors::log_error(other),
            };
            failed(code)
        }
    }
}

fn describe(topic: &TopicHandle) -> MetadataResponseTopic {
    let mut out = MetadataResponseTopic::default();
    out.name = Some(TopicName(StrBytes::from_string(topic.name.to_string())));
    out.is_internal = false;
    out.partitions = topic
        .partitions
        .iter()
        .map(|p| {
            let mut partition = MetadataResponsePartition::default();
            partition.partition_index = p.index as i32;
            partition.leader_id = BrokerId(NODE_ID);
            partition.leader_epoch = LEADER_EPOCH;
            partition.replica_nodes = vec![BrokerId(NODE_ID)];
            partition.isr_nodes = vec![BrokerId(NODE_ID)];
            partition
        })
        .collect();
    out
}
