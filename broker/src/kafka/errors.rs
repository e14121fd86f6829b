//! Log and ingest errors as Kafka error codes.
//!
//! The choice matters because clients decide from the code whether to retry:
//! - A full log ([`LogError::Full`]) becomes KAFKA_STORAGE_ERROR (56). librdkafka and the Java
//!   client treat it as retriable (the Java client's `KafkaStorageException` is an
//!   `InvalidMetadataException`: refresh metadata, back off, retry), which is what an edge
//!   broker wants: space comes back when retention runs or the replicator catches up, and
//!   meanwhile producers hold their records and slow down instead of dropping them.
//! - Internal failures of the store (LMDB, I/O, a stopped writer) use the same code: from the
//!   client's side they are a storage failure of this broker, and retrying is right.
//! - Unknown topics or partitions and invalid topic names get their own codes; a batch that
//!   fails validation is CORRUPT_MESSAGE (2).
//! - A failing ingest plugin chain is an UNKNOWN_SERVER_ERROR: not retriable, since the same
//!   records would fail the same way; the message says what happened.

use kafka_protocol::error::ResponseError;

use crate::ingest::IngestError;
use crate::log::LogError;

pub fn log_error(e: &LogError) -> ResponseError {
    match e {
        LogError::UnknownPartition { .. } | LogError::UnknownTopic(_) => {
            ResponseError::UnknownTopicOrPartition
        }
        LogError::InvalidTopic { .. } => ResponseError::InvalidTopicException,
        LogError::Batch(_) => ResponseError::CorruptMessage,
        LogError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        LogError::InvalidPartitions { .. } => ResponseError::InvalidPartitions,
        LogError::InvalidConfig(_) => ResponseError::InvalidConfig,
        LogError::TopicExists(_) => ResponseError::TopicAlreadyExists,
        LogError::Sequence { reason, .. } => super::produce::sequence_error(reason),
        LogError::Full
        | LogError::Lmdb(_)
        | LogError::Io { .. }
        | LogError::Stopped
        | LogError::Reply(_) => ResponseError::KafkaStorageError,
    }
}

pub fn ingest_error(e: &IngestError) -> ResponseError {
    match e {
        IngestError::Log(e) => log_error(e),
        IngestError::Batch(_) => ResponseError::CorruptMessage,
        IngestError::UnknownPartition { .. } => ResponseError::UnknownTopicOrPartition,
        IngestError::Plugin(_) => ResponseError::UnknownServerError,
    }
}

/// True for failures of the broker itself (worth a warning), as opposed to a client's mistake.
pub fn is_server_side(code: ResponseError) -> bool {
    matches!(
        code,
        ResponseError::KafkaStorageError | ResponseError::UnknownServerError
    )
}
