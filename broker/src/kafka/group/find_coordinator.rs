//! FindCoordinator (key 10): which broker coordinates a group or a transactional id.
//!
//! Always this node (id 0), at the address Metadata advertises: a single node is every
//! coordinator. Versions 0–4: v1 adds the key type (0 group, 1 transaction; others are
//! INVALID_REQUEST), v4 batches keys (KIP-699); v5 and v6 belong to KIP-848/KIP-932 (new
//! consumer and share groups), which Headwater does not implement. Transactional ids get an answer too, so a
//! transactional client learns where to go and then hears from that API itself whether
//! transactions are supported.
//!
//! Advertising this API matters beyond groups: librdkafka only enables some features (LZ4
//! among them) once the broker lists FindCoordinator.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use crate::kafka::bounds::{between, from, Schema, Ty};

/// FindCoordinatorRequest (flexible from v3).
pub const SCHEMA: Schema = Schema {
    flexible_since: 3,
    fields: &[
        between(0, 3, Ty::Str), // key
        from(1, Ty::I8),        // key_type
        from(4, Ty::Strs),      // coordinator_keys
    ],
};

const GROUP: i8 = 0;
const TRANSACTION: i8 = 1;

pub fn handle(
    request: FindCoordinatorRequest,
    version: i16,
    (host, port): (String, u16),
) -> FindCoordinatorResponse {
    let error = match request.key_type {
        GROUP | TRANSACTION => None,
        _ => Some(ResponseError::InvalidRequest),
    };
    let mut response = FindCoordinatorResponse::default();
    if version >= 4 {
        response.coordinators = request
            .coordinator_keys
            .into_iter()
            .map(|key| {
                let mut c = Coordinator::default();
                c.key = key;
                match error {
                    Some(e) => {
                        c.error_code = e.code();
                        c.node_id = (-1).into();
                        c.port = -1;
                    }
                    None => {
                        c.node_id = 0.into();
                        c.host = StrBytes::from_string(host.clone());
                        c.port = i32::from(port);
                    }
                }
                c
            })
            .collect();
        return response;
    }
    match error {
        Some(e) => {
            response.error_code = e.code();
            response.node_id = (-1).into();
            response.port = -1;
        }
        None => {
            response.node_id = 0.into();
            response.host = StrBytes::from_string(host);
            response.port = i32::from(port);
        }
    }
    response
}
