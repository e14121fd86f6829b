//! DescribeCluster (key 60), v0 to v2: every version `kafka-protocol` knows (the Java admin
//! client's `describeCluster` and kafka-python 2.x use it; librdkafka 2.12's
//! `rd_kafka_DescribeCluster` sends v0).
//!
//! One broker, node 0, which is also the controller, at the address Metadata advertises, with
//! the same cluster id. Asking for the controllers' endpoints (KIP-919, endpoint type 2) is
//! UNSUPPORTED_ENDPOINT_TYPE, as from a Kafka broker that is not a controller.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::protocol::StrBytes;

use super::super::bounds::{from, Schema, Ty};
use super::super::metadata::{CLUSTER_ID, NODE_ID};

/// DescribeClusterRequest: include_cluster_authorized_operations, endpoint_type (v1+),
/// include_fenced_brokers (v2+).
pub const SCHEMA: Schema = Schema {
    flexible_since: 0,
    fields: &[from(0, Ty::I8), from(1, Ty::I8), from(2, Ty::I8)],
};

/// Kafka's "authorized operations not requested" marker.
const OPERATIONS_NOT_REQUESTED: i32 = i32::MIN;
const ENDPOINT_BROKERS: i8 = 1;

pub fn handle(
    request: DescribeClusterRequest,
    version: i16,
    advertised: (String, u16),
) -> DescribeClusterResponse {
    let mut response = DescribeClusterResponse::default();
    response.cluster_authorized_operations = OPERATIONS_NOT_REQUESTED;
    if version >= 1 && request.endpoint_type != ENDPOINT_BROKERS {
        response.error_code = ResponseError::UnsupportedEndpointType.code();
        response.error_message = Some(StrBytes::from_static_str(
            "Headwater only describes its broker endpoint",
        ));
        response.endpoint_type = request.endpoint_type;
        return response;
    }
    response.endpoint_type = ENDPOINT_BROKERS;
    response.cluster_id = StrBytes::from_static_str(CLUSTER_ID);
    response.controller_id = BrokerId(NODE_ID);
    let mut broker = DescribeClusterBroker::default();
    broker.broker_id = BrokerId(NODE_ID);
    broker.host = StrBytes::from_string(advertised.0);
    broker.port = i32::from(advertised.1);
    response.brokers = vec![broker];
    response
}
