//! DescribeConfigs (key 32), v1 to v4.
//!
//! librdkafka 2.12 sends v1 (`kafka-protocol` starts there), kafka-python 2.x v1 to v2, the
//! Java client v4. Topic resources list the whole catalogue in [`super::configs`]: the three
//! settable configs with their value and source (DYNAMIC_TOPIC_CONFIG when the topic overrides
//! it, DEFAULT_CONFIG otherwise) and the fixed ones read-only. The broker resource (named by
//! its id, "0", or "" for the cluster default) lists a few read-only broker configs. Synonyms
//! (v1+) are the entry itself; documentation and types are filled from v3 on, when asked.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;

use super::super::bounds::{from, Schema, Ty};
use super::super::metadata::NODE_ID;
use super::super::KafkaContext;
use super::configs::{self, Entry};
use super::{Refusal, RESOURCE_BROKER, RESOURCE_TOPIC};

/// DescribeConfigsRequest: resources [resource_type, resource_name, configuration_keys],
/// include_synonyms, include_documentation (v3+).
pub const SCHEMA: Schema = Schema {
    flexible_since: 4,
    fields: &[
        from(
            0,
            Ty::Structs(&[from(0, Ty::I8), from(0, Ty::Str), from(0, Ty::Strs)]),
        ),
        from(1, Ty::I8),
        from(3, Ty::I8),
    ],
};

pub fn handle(
    ctx: &KafkaContext,
    request: DescribeConfigsRequest,
    version: i16,
) -> DescribeConfigsResponse {
    let mut response = DescribeConfigsResponse::default();
    for resource in request.resources {
        let mut result = DescribeConfigsResult::default();
        match entries(ctx, &resource) {
            Ok(entries) => {
                let wanted = |e: &Entry| {
                    resource
                        .configuration_keys
                        .as_ref()
                        .is_none_or(|keys| keys.iter().any(|k| k.as_str() == e.name))
                };
                result.configs = entries
                    .into_iter()
                    .filter(wanted)
                    .map(|e| {
                        describe(
                            e,
                            request.include_synonyms,
                            version >= 3 && request.include_documentation,
                        )
                    })
                    .collect();
            }
            Err(refusal) => {
                result.error_code = refusal.code.code();
                result.error_message = refusal.text();
            }
        }
        result.resource_type = resource.resource_type;
        result.resource_name = resource.resource_name;
        response.results.push(result);
    }
    response
}

fn entries(ctx: &KafkaContext, resource: &DescribeConfigsResource) -> Result<Vec<Entry>, Refusal> {
    let name = resource.resource_name.as_str();
    match resource.resource_type {
        RESOURCE_TOPIC => match ctx.log().topic(name) {
            Some(topic) => Ok(configs::topic_entries(&topic.config, ctx.log().defaults())),
            None => Err(Refusal::new(
                ResponseError::UnknownTopicOrPartition,
                format!("topic {name:?} does not exist"),
            )),
        },
        RESOURCE_BROKER if name.is_empty() || name == NODE_ID.to_string() => Ok(
            configs::broker_entries(ctx.log().defaults(), ctx.max_frame_bytes),
        ),
        RESOURCE_BROKER => Err(Refusal::new(
            ResponseError::InvalidRequest,
            format!("there is no broker {name:?}: Headwater is the single node {NODE_ID}"),
        )),
        other => Err(Refusal::new(
            ResponseError::InvalidRequest,
            format!("resource type {other} has no configs in Headwater (topics and the broker do)"),
        )),
    }
}

fn describe(entry: Entry, synonyms: bool, documentation: bool) -> DescribeConfigsResourceResult {
    let mut out = DescribeConfigsResourceResult::default();
    out.name = StrBytes::from_static_str(entry.name);
    out.value = Some(StrBytes::from_string(entry.value.clone()));
    out.read_only = entry.read_only;
    out.config_source = entry.source;
    out.is_sensitive = false;
    out.config_type = entry.config_type;
    if synonyms {
        let mut synonym = DescribeConfigsSynonym::default();
        synonym.name = StrBytes::from_static_str(entry.name);
        synonym.value = Some(StrBytes::from_string(entry.value));
        synonym.source = entry.source;
        out.synonyms = vec![synonym];
    }
    if documentation {
        out.documentation = Some(StrBytes::from_static_str(entry.doc));
    }
    out
}
