//! CreatePartitions (key 37), v0 to v3.
//!
//! librdkafka 2.12 sends only v0, kafka-python 2.x v0 to v1, the Java client up to v3 (v2 is
//! the flexible one, v3 the same message). `count` is the new total; a topic can only grow, as
//! in Kafka, so an equal or smaller count is INVALID_PARTITIONS. Existing partitions keep their
//! data and offsets; the new ones start empty. Clients see them on their next Metadata.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use super::super::bounds::{from, Schema, Ty};
use super::super::KafkaContext;
use super::{check_replicas, duplicates, Refusal};

/// CreatePartitionsRequest: topics (name, count, assignments (broker_ids)), timeout_ms,
/// validate_only.
pub const SCHEMA: Schema = Schema {
    flexible_since: 2,
    fields: &[
        from(
            0,
            Ty::Structs(&[
                from(0, Ty::Str),
                from(0, Ty::I32),
                from(0, Ty::Structs(&[from(0, Ty::Int32s)])),
            ]),
        ),
        from(0, Ty::I32),
        from(0, Ty::I8),
    ],
};

pub async fn handle(
    ctx: &KafkaContext,
    request: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let twice = duplicates(request.topics.iter().map(|t| t.name.as_str()));
    let mut response = CreatePartitionsResponse::default();
    for topic in request.topics {
        let mut result = CreatePartitionsTopicResult::default();
        let outcome = if twice.contains(topic.name.as_str()) {
            Err(Refusal::new(
                ResponseError::InvalidRequest,
                format!(
                    "topic {:?} appears more than once in the request",
                    topic.name.as_str()
                ),
            ))
        } else {
            grow(ctx, &topic, request.validate_only).await
        };
        if let Err(refusal) = outcome {
            result.error_code = refusal.code.code();
            result.error_message = refusal.text();
        }
        result.name = topic.name;
        response.results.push(result);
    }
    response
}

async fn grow(
    ctx: &KafkaContext,
    topic: &CreatePartitionsTopic,
    validate_only: bool,
) -> Result<(), Refusal> {
    let name = topic.name.as_str();
    let Some(current) = ctx.log().topic(name) else {
        return Err(Refusal::new(
            ResponseError::UnknownTopicOrPartition,
            format!("topic {name:?} does not exist"),
        ));
    };
    let have = current.partitions.len() as i32;
    if topic.count <= have {
        let message = if topic.count == have {
            format!("Topic already has {have} partitions.")
        } else {
            format!(
                "Topic currently has {have} partitions, which is higher than the requested {}.",
                topic.count
            )
        };
        return Err(Refusal::new(ResponseError::InvalidPartitions, message));
    }
    // An empty list is what some clients send for "no assignments", like null.
    if let Some(assignments) = topic.assignments.as_ref().filter(|a| !a.is_empty()) {
        if assignments.len() as i32 != topic.count - have {
            return Err(Refusal::new(
                ResponseError::InvalidReplicaAssignment,
                "one replica assignment is needed per new partition",
            ));
        }
        check_replicas(assignments.iter().map(|a| &a.broker_ids[..]))?;
    }
    if validate_only {
        return Ok(());
    }
    ctx.log()
        .create_partitions(name, topic.count as u32)
        .await
        .map(|_| ())
        .map_err(|e| Refusal::from(&e))
}
