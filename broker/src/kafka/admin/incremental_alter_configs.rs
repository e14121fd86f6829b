//! IncrementalAlterConfigs (key 44), v0 to v1: every version there is (librdkafka 2.12 and
//! kafka-python 2.x send both).
//!
//! SET and DELETE (back to the default) work on the settable topic configs; APPEND and
//! SUBTRACT, which Kafka allows on list configs, are refused: the only list config here,
//! `cleanup.policy`, has a single possible value. A resource's changes apply together or not at
//! all; `validate_only` checks them and changes nothing. Broker configs are read-only.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::incremental_alter_configs_request::AlterConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};

use super::super::bounds::{from, Schema, Ty};
use super::super::KafkaContext;
use super::alter_configs::{answer_resources, commit, current};
use super::{configs, Refusal};

/// IncrementalAlterConfigsRequest: resources [resource_type, resource_name, configs [name,
/// config_operation, value]], validate_only.
pub const SCHEMA: Schema = Schema {
    flexible_since: 1,
    fields: &[
        from(
            0,
            Ty::Structs(&[
                from(0, Ty::I8),
                from(0, Ty::Str),
                from(
                    0,
                    Ty::Structs(&[from(0, Ty::Str), from(0, Ty::I8), from(0, Ty::Str)]),
                ),
            ]),
        ),
        from(0, Ty::I8),
    ],
};

const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;

pub async fn handle(
    ctx: &KafkaContext,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut response = IncrementalAlterConfigsResponse::default();
    response.responses = answer_resources!(ctx, request, alter, AlterConfigsResourceResponse);
    response
}

async fn alter(
    ctx: &KafkaContext,
    resource: &AlterConfigsResource,
    validate_only: bool,
) -> Result<(), Refusal> {
    let name = resource.resource_name.as_str();
    let mut config = current(ctx, resource.resource_type, name)?;
    for change in &resource.configs {
        let key = change.name.as_str();
        let value = match change.config_operation {
            OP_SET => Some(change.value.as_deref().ok_or_else(|| {
                Refusal::new(
                    ResponseError::InvalidRequest,
                    format!("SET of {key} needs a value"),
                )
            })?),
            OP_DELETE => None,
            op => {
                return Err(Refusal::new(
                    ResponseError::InvalidConfig,
                    format!(
                        "operation {op} on {key} is not supported: only SET (0) and DELETE (1)"
                    ),
                ))
            }
        };
        configs::apply(&mut config, key, value)?;
    }
    commit(ctx, name, config, validate_only).await
}
