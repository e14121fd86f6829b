//! DeleteTopics (key 20), v1 to v5.
//!
//! librdkafka 2.12 sends v1 (`kafka-protocol` starts there), kafka-python 2.x up to v3, the Java
//! client v5 and up; v6 names topics by id, which Headwater does not have. A deleted topic's
//! data is gone once the answer arrives; a producer or consumer still using it gets
//! UNKNOWN_TOPIC_OR_PARTITION, and a topic created again under the same name starts empty at
//! offset 0. As in Kafka, every group's committed offsets for the topic are deleted with it, so
//! consumers of a recreated topic do not resume from positions in data that no longer exists.

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse};

use super::super::bounds::{between, from, Schema, Ty};
use super::super::KafkaContext;
use super::Refusal;

/// DeleteTopicsRequest up to v5: topic_names, timeout_ms.
pub const SCHEMA: Schema = Schema {
    flexible_since: 4,
    fields: &[between(0, 5, Ty::Strs), from(0, Ty::I32)],
};

pub async fn handle(ctx: &KafkaContext, request: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let mut response = DeleteTopicsResponse::default();
    for name in request.topic_names {
        let mut result = DeletableTopicResult::default();
        if let Err(e) = ctx.ingest.delete_topic(name.as_str()).await {
            let refusal = Refusal::from(&e);
            result.error_code = refusal.code.code();
            result.error_message = refusal.text();
        } else {
            tracing::info!(topic = %name.as_str(), "topic deleted");
            // The topic is gone either way; offsets left behind expire with their group.
            if let Err(e) = ctx.groups.forget_topic(name.as_str()).await {
                tracing::warn!(topic = %name.as_str(), error = %e, "could not delete committed offsets of a deleted topic");
            }
        }
        result.name = Some(name);
        response.responses.push(result);
    }
    response
}
