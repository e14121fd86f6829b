//! CreateTopics (key 19), v2 to v5.
//!
//! librdkafka 2.12 sends up to v4, kafka-python 2.x up to v3 and the Java client v5 and up;
//! `kafka-protocol` starts at v2. v6 only changes quota errors, v7 adds topic ids, which
//! Headwater does not have, so the range stops at v5 (the first flexible version, which also
//! returns the created topic's partitions, replication factor and configs).
//!
//! Kafka's rules, on one node: `num_partitions` -1 means the broker default; a replication
//! factor other than 1 or -1 is INVALID_REPLICATION_FACTOR; explicit replica assignments must
//! put each partition on this node alone; a name used twice in one request is INVALID_REQUEST
//! for each use; `validate_only` checks everything and creates nothing.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::protocol::StrBytes;

use super::super::bounds::{from, Schema, Ty};
use super::super::KafkaContext;
use super::{check_replicas, configs, duplicates, Refusal};
use crate::log::{validate_topic_name, TopicConfig};

/// CreateTopicsRequest: topics [name, num_partitions, replication_factor, assignments
/// [partition_index, broker_ids], configs [name, value]], timeout_ms, validate_only.
pub const SCHEMA: Schema = Schema {
    flexible_since: 5,
    fields: &[
        from(
            0,
            Ty::Structs(&[
                from(0, Ty::Str),
                from(0, Ty::I32),
                from(0, Ty::I16),
                from(0, Ty::Structs(&[from(0, Ty::I32), from(0, Ty::Int32s)])),
                from(0, Ty::Structs(&[from(0, Ty::Str), from(0, Ty::Str)])),
            ]),
        ),
        from(0, Ty::I32),
        from(1, Ty::I8),
    ],
};

/// What a valid request asks for one topic.
struct Plan {
    partitions: u32,
    config: TopicConfig,
}

pub async fn handle(ctx: &KafkaContext, request: CreateTopicsRequest) -> CreateTopicsResponse {
    let twice = duplicates(request.topics.iter().map(|t| t.name.as_str()));
    let mut response = CreateTopicsResponse::default();
    for topic in request.topics {
        let name = topic.name.to_string();
        let mut result = CreatableTopicResult::default();
        result.name = topic.name.clone();
        let outcome = if twice.contains(&name) {
            Err(Refusal::new(
                ResponseError::InvalidRequest,
                format!("topic {name:?} appears more than once in the request"),
            ))
        } else {
            match plan(ctx, &topic) {
                Ok(plan) if request.validate_only => Ok(plan),
                Ok(plan) => create(ctx, &name, plan).await,
                Err(refusal) => Err(refusal),
            }
        };
        match outcome {
            Ok(plan) => {
                result.num_partitions = plan.partitions as i32;
                result.replication_factor = 1;
                result.configs = Some(
                    configs::topic_entries(&plan.config, ctx.log().defaults())
                        .into_iter()
                        .map(|e| {
                            let mut c = CreatableTopicConfigs::default();
                            c.name = StrBytes::from_static_str(e.name);
                            c.value = Some(StrBytes::from_string(e.value));
                            c.read_only = e.read_only;
                            c.config_source = e.source;
                            c
                        })
                        .collect(),
                );
            }
            Err(refusal) => {
                result.error_code = refusal.code.code();
                result.error_message = refusal.text();
                result.num_partitions = -1;
                result.replication_factor = -1;
            }
        }
        response.topics.push(result);
    }
    response
}

fn plan(ctx: &KafkaContext, topic: &CreatableTopic) -> Result<Plan, Refusal> {
    let name = topic.name.as_str();
    validate_topic_name(name)
        .map_err(|e| Refusal::new(ResponseError::InvalidTopicException, e.to_string()))?;
    if ctx.log().topic(name).is_some() {
        return Err(already_exists(name));
    }
    if topic.replication_factor != 1 && topic.replication_factor != -1 {
        return Err(Refusal::new(
            ResponseError::InvalidReplicationFactor,
            format!(
                "replication factor {} is impossible: Headwater is a single node, use 1 (or -1 for the default)",
                topic.replication_factor
            ),
        ));
    }
    let partitions = if !topic.assignments.is_empty() {
        if topic.num_partitions != -1 || topic.replication_factor != -1 {
            return Err(Refusal::new(
                ResponseError::InvalidRequest,
                "with replica assignments, num_partitions and replication_factor must be -1",
            ));
        }
        check_replicas(topic.assignments.iter().map(|a| &a.broker_ids[..]))?;
        let mut indexes: Vec<i32> = topic
            .assignments
            .iter()
            .map(|a| a.partition_index)
            .collect();
        indexes.sort_unstable();
        if indexes.iter().enumerate().any(|(i, p)| *p != i as i32) {
            return Err(Refusal::new(
                ResponseError::InvalidReplicaAssignment,
                "replica assignments must cover partitions 0 to n-1, each once",
            ));
        }
        indexes.len() as u32
    } else {
        match topic.num_partitions {
            -1 => ctx.log().defaults().partitions,
            n if n >= 1 => n as u32,
            n => {
                return Err(Refusal::new(
                    ResponseError::InvalidPartitions,
                    format!("a topic needs at least 1 partition, not {n}"),
                ))
            }
        }
    };
    let mut config = TopicConfig::default();
    for entry in &topic.configs {
        configs::apply(&mut config, entry.name.as_str(), entry.value.as_deref())?;
    }
    Ok(Plan { partitions, config })
}

async fn create(ctx: &KafkaContext, name: &str, plan: Plan) -> Result<Plan, Refusal> {
    // The check in `plan` answers the common case early; this one is authoritative: a producer
    // may auto-create the topic between the two.
    match ctx
        .log()
        .create_topic_exclusive(name, plan.partitions, plan.config.clone())
        .await
    {
        Ok(_) => Ok(plan),
        Err(crate::log::LogError::TopicExists(_)) => Err(already_exists(name)),
        Err(e) => Err(Refusal::from(&e)),
    }
}

fn already_exists(name: &str) -> Refusal {
    Refusal::new(
        ResponseError::TopicAlreadyExists,
        format!("Topic '{name}' already exists."),
    )
}

#[cfg(test)]
#[path = "create_topics_tests.rs"]
mod tests;
