//! InitProducerId (key 22): producer ids and epochs for idempotent producers.
//!
//! Versions 0–5; librdkafka 2.12 asks for up to v4, the Java client for v5 (v5 only tells the
//! broker the client understands TRANSACTION_ABORTABLE, which Headwater never sends). v2 is the
//! first flexible version; v3 adds the producer's current id and epoch (KIP-360).
//!
//! An id comes from the log's durable counter (`Log::init_producer_id`), so ids are never
//! reused, even across restarts. A producer that presents the id and epoch it holds (v3+, after
//! an unrecoverable sequence error) gets a fresh id too, as Apache Kafka answers idempotent
//! (non-transactional) producers; it restarts its sequences at 0 under the new id.
//!
//! Transactions are not implemented. A request with a transactional id is answered with
//! TRANSACTIONAL_ID_AUTHORIZATION_FAILED: it is the error Kafka gives a client that may not use
//! transactions, and both librdkafka and the Java client treat it as fatal for the transactional
//! producer and say "Transactional Id authorization failed", so the application learns at
//! `init_transactions()` that it cannot use them here. The retriable answers
//! (COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR) would have clients retry until their timeout
//! with no hint of why.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::bounds::{from, Schema, Ty};
use super::errors;
use crate::log::Log;

/// InitProducerIdRequest (flexible from v2).
pub const SCHEMA: Schema = Schema {
    flexible_since: 2,
    fields: &[
        from(0, Ty::Str), // transactional_id
        from(0, Ty::I32), // transaction_timeout_ms
        from(3, Ty::I64), // producer_id
        from(3, Ty::I16), // producer_epoch
    ],
};

pub async fn handle(log: &Log, request: InitProducerIdRequest) -> InitProducerIdResponse {
    let mut response = InitProducerIdResponse::default();
    response.producer_id = ProducerId(-1);
    response.producer_epoch = -1;
    if let Some(id) = &request.transactional_id {
        tracing::debug!(transactional_id = %id.as_str(), "refusing a transactional producer: transactions are not supported");
        response.error_code = ResponseError::TransactionalIdAuthorizationFailed.code();
        return response;
    }
    match log.init_producer_id().await {
        Ok((id, epoch)) => {
            response.producer_id = ProducerId(id);
            response.producer_epoch = epoch;
        }
        Err(e) => {
            tracing::warn!(error = %e, "InitProducerId failed");
            response.error_code = errors::log_error(&e).code();
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::LogOptions;
    use kafka_protocol::messages::TransactionalId;
    use kafka_protocol::protocol::StrBytes;

    #[tokio::test]
    async fn ids_are_fresh_and_transactions_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(&LogOptions::for_tests(dir.path(), 16 << 20)).unwrap();
        // The codec's default request carries an empty transactional id, not none.
        let idempotent = || InitProducerIdRequest::default().with_transactional_id(None);
        let first = handle(&log, idempotent()).await;
        let second = handle(&log, idempotent()).await;
        assert_eq!((first.error_code, second.error_code), (0, 0));
        assert_ne!(first.producer_id, second.producer_id);
        assert_eq!(first.producer_epoch, 0);

        // KIP-360: presenting the id it holds gets a producer a fresh one, as in Kafka.
        let mut again = idempotent();
        again.producer_id = second.producer_id;
        again.producer_epoch = 0;
        let renewed = handle(&log, again).await;
        assert!(renewed.producer_id.0 > second.producer_id.0);
        assert_eq!(renewed.producer_epoch, 0);

        let mut txn = idempotent();
        txn.transactional_id = Some(TransactionalId(StrBytes::from_static_str("tx-1")));
        let refused = handle(&log, txn).await;
        assert_eq!(
            refused.error_code,
            ResponseError::TransactionalIdAuthorizationFailed.code()
        );
        assert_eq!(refused.producer_id, ProducerId(-1));
        log.close().await;
    }
}
