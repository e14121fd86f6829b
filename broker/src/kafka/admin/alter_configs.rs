//! AlterConfigs (key 33), v0 to v2: every version there is (librdkafka 2.12 sends up to v2;
//! the rdkafka crate's `AdminClient::alter_configs` uses it).
//!
//! Unlike IncrementalAlterConfigs, the request gives a topic's complete set of overrides: what
//! it names is set, everything else goes back to the default, as in Kafka.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_configs_request::AlterConfigsResource;
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};

use super::super::bounds::{from, Schema, Ty};
use super::super::KafkaContext;
use super::{configs, Refusal, RESOURCE_BROKER, RESOURCE_TOPIC};
use crate::log::TopicConfig;

/// AlterConfigsRequest: resources [resource_type, resource_name, configs [name, value]],
/// validate_only.
pub const SCHEMA: Schema = Schema {
    flexible_since: 2,
    fields: &[
        from(
            0,
            Ty::Structs(&[
                from(0, Ty::I8),
                from(0, Ty::Str),
                from(0, Ty::Structs(&[from(0, Ty::Str), from(0, Ty::Str)])),
            ]),
        ),
        from(0, Ty::I8),
    ],
};

/// Alters each resource of a request with `$alter` and answers it: the refusal's code and
/// message, or the defaults when it went through, with the resource echoed. AlterConfigs and
/// IncrementalAlterConfigs answer alike, but with distinct generated types that share no trait,
/// so a macro writes this once for both.
macro_rules! answer_resources {
    ($ctx:expr, $request:expr, $alter:ident, $answer:ty) => {{
        let request = $request;
        let mut answers = Vec::with_capacity(request.resources.len());
        for resource in request.resources {
            let mut result = <$answer>::default();
            if let Err(refusal) = $alter($ctx, &resource, request.validate_only).await {
                result.error_code = refusal.code.code();
                result.error_message = refusal.text();
            }
            result.resource_type = resource.resource_type;
            result.resource_name = resource.resource_name;
            answers.push(result);
        }
        answers
    }};
}
pub(super) use answer_resources;

pub async fn handle(ctx: &KafkaContext, request: AlterConfigsRequest) -> AlterConfigsResponse {
    let mut response = AlterConfigsResponse::default();
    response.responses = answer_resources!(ctx, request, alter, AlterConfigsResourceResponse);
    response
}

async fn alter(
    ctx: &KafkaContext,
    resource: &AlterConfigsResource,
    validate_only: bool,
) -> Result<(), Refusal> {
    let name = resource.resource_name.as_str();
    current(ctx, resource.resource_type, name)?;
    let mut config = TopicConfig::default();
    for entry in &resource.configs {
        configs::apply(&mut config, entry.name.as_str(), entry.value.as_deref())?;
    }
    commit(ctx, name, config, validate_only).await
}

/// The config of the topic a resource names, or why it cannot be altered.
pub(super) fn current(
    ctx: &KafkaContext,
    resource_type: i8,
    name: &str,
) -> Result<TopicConfig, Refusal> {
    match resource_type {
        RESOURCE_TOPIC => ctx
            .log()
            .topic(name)
            .map(|t| t.config.clone())
            .ok_or_else(|| {
                Refusal::new(
                    ResponseError::UnknownTopicOrPartition,
                    format!("topic {name:?} does not exist"),
                )
            }),
        RESOURCE_BROKER => Err(Refusal::new(
            ResponseError::InvalidRequest,
            "broker configs are read-only in Headwater: set them in its config file",
        )),
        other => Err(Refusal::new(
            ResponseError::InvalidRequest,
            format!("resource type {other} has no configs in Headwater"),
        )),
    }
}

/// Stores `config` for topic `name` unless only validating.
pub(super) async fn commit(
    ctx: &KafkaContext,
    name: &str,
    config: TopicConfig,
    validate_only: bool,
) -> Result<(), Refusal> {
    if validate_only {
        return crate::log::validate_config(&config).map_err(|e| Refusal::from(&e));
    }
    ctx.log()
        .set_topic_config(name, config)
        .await
        .map(|_| tracing::info!(topic = name, "topic config changed"))
        .map_err(|e| Refusal::from(&e))
}
