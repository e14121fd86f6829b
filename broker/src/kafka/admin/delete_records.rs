//! DeleteRecords (key 21), v0 to v2: every version there is (librdkafka 2.12 sends up to v1,
//! kafka-python 2.x and the Java client up to v2).
//!
//! Moves each partition's log start forward to the requested offset (-1: the high watermark)
//! and answers with the new log start (Kafka's low watermark). Whole batches below it are
//! deleted; the batch holding the new start stays, but nothing below it is served any more
//! (a fetch there is OFFSET_OUT_OF_RANGE, as after retention). An offset past the high
//! watermark is OFFSET_OUT_OF_RANGE. The partitions of one request are sent to the log writer
//! together, so they share a commit.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use super::super::bounds::{from, Schema, Ty};
use super::super::{errors, KafkaContext};

/// DeleteRecordsRequest: topics [name, partitions [partition_index, offset]], timeout_ms.
pub const SCHEMA: Schema = Schema {
    flexible_since: 2,
    fields: &[
        from(
            0,
            Ty::Structs(&[
                from(0, Ty::Str),
                from(0, Ty::Structs(&[from(0, Ty::I32), from(0, Ty::I64)])),
            ]),
        ),
        from(0, Ty::I32),
    ],
};

pub async fn handle(ctx: &KafkaContext, request: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let log = ctx.log();
    let mut response = DeleteRecordsResponse::default();
    let mut waiting = tokio::task::JoinSet::new();
    for (t, topic) in request.topics.iter().enumerate() {
        let mut result = DeleteRecordsTopicResult::default();
        result.name = topic.name.clone();
        let handle = log.topic(topic.name.as_str());
        for (p, partition) in topic.partitions.iter().enumerate() {
            let mut answer = DeleteRecordsPartitionResult::default();
            answer.partition_index = partition.partition_index;
            answer.low_watermark = -1;
            match handle
                .as_ref()
                .and_then(|h| h.partition(partition.partition_index))
            {
                None => answer.error_code = ResponseError::UnknownTopicOrPartition.code(),
                Some(handle) => {
                    // Overwritten by the outcome; stays if the task is lost.
                    answer.error_code = ResponseError::UnknownServerError.code();
                    let (log, handle, offset) = (log.clone(), handle.clone(), partition.offset);
                    waiting.spawn(async move { (t, p, log.delete_records(&handle, offset).await) });
                }
            }
            result.partitions.push(answer);
        }
        response.topics.push(result);
    }
    while let Some(done) = waiting.join_next().await {
        let Ok((t, p, outcome)) = done else {
            tracing::warn!("a DeleteRecords task ended without an answer");
            continue;
        };
        // `t` and `p` index what was pushed above.
        if let Some(answer) = response
            .topics
            .get_mut(t)
            .and_then(|r| r.partitions.get_mut(p))
        {
            match outcome {
                Ok(start) => {
                    answer.error_code = 0;
                    answer.low_watermark = start;
                }
                Err(e) => answer.error_code = errors::log_error(&e).code(),
            }
        }
    }
    response
}
