//! Fetch (key 1): stored batches straight from the log, with long polling.
//!
//! Versions 4–12. v4 is the first with v2 record batches (and the oldest `kafka-protocol`
//! decodes); v12 is the last that names topics (v13+ use topic ids, which the log does not have
//! yet). librdkafka 2.0.2 asks for up to v11, librdkafka 2.12 for up to v16 and falls back to 12
//! by itself when topics have no id.
//!
//! - **No re-encoding:** the log keeps Kafka v2 batches with their final base offsets, so a
//!   partition's records are its stored batches concatenated. A batch that starts before the
//!   fetch offset is sent whole, as Kafka does; clients skip the records they did not ask for.
//! - **Sizes:** a partition gets at most its `partition_max_bytes`, the response at most
//!   `max_bytes` (and never more than `kafka.max_frame_bytes`), except that the first batch of
//!   the first partition with data is always sent whole so a consumer can get past a batch
//!   bigger than its limits (KIP-74).
//! - **Only committed data:** the high watermark is read before the log, and only batches below
//!   it are sent, so `high_watermark` is never behind the data in the same answer (librdkafka
//!   in read-committed mode drops records at or past the last stable offset). With no
//!   transactions, the last stable offset is the high watermark.
//! - **Long poll:** when less than `min_bytes` is ready, the handler waits for the log's append
//!   events for the partitions it serves, up to `max_wait_ms` (capped at [`MAX_WAIT`]), then
//!   reads again. It subscribes before its first read, so an append between that read and the
//!   wait is not missed; a lagging subscription (`RecvError::Lagged`) just means "re-read".
//!   Shutdown cuts the wait short. Errors (unknown partition, offset out of range) are answered
//!   at once, as Kafka does.
//! - **Sessions (KIP-227):** never created. The answer's session id is 0, which tells clients
//!   to keep sending full fetches; a request naming a session gets FETCH_SESSION_ID_NOT_FOUND.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_request::FetchPartition;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::broadcast::Receiver;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::bounds::{between, from, Schema, Ty};
use super::errors;
use super::KafkaContext;
use crate::log::{AppendEvent, Log, TopicHandle};

/// Longest a fetch waits for data, whatever the client asks: bounds how long a connection
/// stays busy with one request (clients ask for 100 ms to a few seconds).
pub const MAX_WAIT: Duration = Duration::from_secs(30);

/// FetchRequest (flexible from v12).
pub const SCHEMA: Schema = Schema {
    flexible_since: 12,
    fields: &[
        between(0, 14, Ty::I32), // replica_id
        from(0, Ty::I32),        // max_wait_ms
        from(0, Ty::I32),        // min_bytes
        from(3, Ty::I32),        // max_bytes
        from(4, Ty::I8),         // isolation_level
        from(7, Ty::I32),        // session_id
        from(7, Ty::I32),        // session_epoch
        from(
            0,
            Ty::Structs(&[
                between(0, 12, Ty::Str), // topic
                from(13, Ty::Uuid),      // topic_id
                from(
                    0,
                    Ty::Structs(&[
                        from(0, Ty::I32),  // partition
                        from(9, Ty::I32),  // current_leader_epoch
                        from(0, Ty::I64),  // fetch_offset
                        from(12, Ty::I32), // last_fetched_epoch
                        from(5, Ty::I64),  // log_start_offset
                        from(0, Ty::I32),  // partition_max_bytes
                    ]),
                ),
            ]),
        ),
        from(
            7,
            Ty::Structs(&[
                between(7, 12, Ty::Str), // forgotten topic
                from(13, Ty::Uuid),      // topic_id
                from(7, Ty::Int32s),     // partitions
            ]),
        ),
        from(11, Ty::Str), // rack_id
    ],
};

pub async fn handle(
    ctx: &KafkaContext,
    request: FetchRequest,
    version: i16,
    shutdown: &CancellationToken,
) -> FetchResponse {
    if version >= 7 {
        if request.session_id != 0 {
            return session_error(ResponseError::FetchSessionIdNotFound);
        }
        if !matches!(request.session_epoch, -1 | 0) {
            return session_error(ResponseError::InvalidFetchSessionEpoch);
        }
    }
    let log = ctx.log();
    let mut events = log.subscribe();
    let wait = Duration::from_millis(u64::try_from(request.max_wait_ms).unwrap_or(0)).min(MAX_WAIT);
    let deadline = Instant::now() + wait;
    let min_bytes = usize::try_from(request.min_bytes).unwrap_or(0);
    let max_bytes = usize::try_from(request.max_bytes)
        .unwrap_or(0)
        .min(ctx.max_frame_bytes);
    loop {
        let (response, summary) = read_all(log, &request, max_bytes);
        let last_round = Instant::now() >= deadline || shutdown.is_cancelled();
        if last_round || summary.errors || summary.bytes >= min_bytes {
            return response;
        }
        wait_for_append(&mut events, &request, deadline, shutdown).await;
    }
}

fn session_error(code: ResponseError) -> FetchResponse {
    let mut response = FetchResponse::default();
    response.error_code = code.code();
    response
}

/// What one pass over the requested partitions found.
#[derive(Debug, Default)]
struct Summary {
    /// Record bytes in the answer.
    bytes: usize,
    /// Some partition has an error (answered at once, without waiting).
    errors: bool,
}

fn read_all(log: &Log, request: &FetchRequest, max_bytes: usize) -> (FetchResponse, Summary) {
    let mut summary = Summary::default();
    let mut budget = max_bytes;
    let mut response = FetchResponse::default();
    response.responses = request
        .topics
        .iter()
        .map(|topic| {
            let handle = log.topic(&topic.topic);
            let mut out = FetchableTopicResponse::default();
            out.topic = topic.topic.clone();
            out.partitions = topic
                .partitions
                .iter()
                .map(|p| read_partition(log, handle.as_deref(), p, &mut budget, &mut summary))
                .collect();
            out
        })
        .collect();
    (response, summary)
}

fn read_partition(
    log: &Log,
    topic: Option<&TopicHandle>,
    request: &FetchPartition,
    budget: &mut usize,
    summary: &mut Summary,
) -> PartitionData {
    let mut out = PartitionData::default();
    out.partition_index = request.partition;
    out.aborted_transactions = Some(Vec::new());
    out.records = Some(Bytes::new());
    let Some(partition) = topic.and_then(|t| t.partition(request.partition)) else {
        out.error_code = ResponseError::UnknownTopicOrPartition.code();
        out.high_watermark = -1;
        out.last_stable_offset = -1;
        out.log_start_offset = -1;
        summary.errors = true;
        return out;
    };
    let high_watermark = partition.high_watermark();
    let log_start = partition.log_start();
    out.high_watermark = high_watermark;
    out.last_stable_offset = high_watermark;
    out.log_start_offset = log_start;
    let offset = request.fetch_offset;
    if offset < log_start || offset > high_watermark {
        out.error_code = ResponseError::OffsetOutOfRange.code();
        summary.errors = true;
        return out;
    }
    if offset == high_watermark {
        return out;
    }
    let first_data = summary.bytes == 0;
    let limit = usize::try_from(request.partition_max_bytes)
        .unwrap_or(0)
        .min(*budget);
    if limit == 0 && !first_data {
        return out;
    }
    let batches = match log.read(partition, offset, limit.max(1)) {
        Ok(batches) => batches,
        Err(e) => {
            tracing::warn!(topic = %partition.topic, partition = partition.index, offset, error = %e, "fetch read failed");
            out.error_code = errors::log_error(&e).code();
            summary.errors = true;
            return out;
        }
    };
    let mut taken = Vec::new();
    let mut size = 0usize;
    for batch in batches {
        if batch.base_offset >= high_watermark {
            break;
        }
        let fits = size + batch.bytes.len() <= limit;
        // KIP-74: the first batch of the first partition with data goes out whatever its size.
        let must_send = taken.is_empty() && first_data;
        if !(fits || must_send) {
            break;
        }
        size += batch.bytes.len();
        taken.push(batch.bytes);
    }
    *budget = budget.saturating_sub(size);
    summary.bytes += size;
    out.records = Some(concat(taken, size));
    out
}

fn concat(mut parts: Vec<Bytes>, size: usize) -> Bytes {
    if parts.len() == 1 {
        return parts.pop().unwrap_or_default();
    }
    let mut out = BytesMut::with_capacity(size);
    for part in parts {
        out.extend_from_slice(&part);
    }
    out.freeze()
}

/// Returns when one of the request's partitions may have new data, at the deadline, or at
/// shutdown, whichever comes first.
async fn wait_for_append(
    events: &mut Receiver<AppendEvent>,
    request: &FetchRequest,
    deadline: Instant,
    shutdown: &CancellationToken,
) {
    let wanted = |event: &AppendEvent| {
        request.topics.iter().any(|t| {
            t.topic.as_str() == &*event.topic
                && t.partitions
                    .iter()
                    .any(|p| i64::from(p.partition) == i64::from(event.partition))
        })
    };
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return,
            _ = shutdown.cancelled() => return,
            event = events.recv() => match event {
                Ok(event) if wanted(&event) => return,
                Ok(_) => continue,
                // Missed some events: one of them may have been ours.
                Err(RecvError::Lagged(_)) => return,
                // The log is gone; nothing new will come before the deadline.
                Err(RecvError::Closed) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(deadline) => {}
                        _ = shutdown.cancelled() => {}
                    }
                    return;
                }
            },
        }
    }
}
