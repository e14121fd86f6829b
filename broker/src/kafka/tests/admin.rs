//! The admin APIs over a real connection.

use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{
    alter_configs_request, AlterConfigsRequest, CreatePartitionsRequest, CreateTopicsRequest,
    DeleteRecordsRequest, DeleteTopicsRequest, DescribeClusterRequest, DescribeConfigsRequest,
    DescribeConfigsResponse, IncrementalAlterConfigsRequest,
};

use super::*;

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

fn creatable(
    topic: &str,
    partitions: i32,
    replication: i16,
    configs: &[(&str, &str)],
) -> CreatableTopic {
    let mut t = CreatableTopic::default();
    t.name = name(topic);
    t.num_partitions = partitions;
    t.replication_factor = replication;
    t.configs = configs
        .iter()
        .map(|(k, v)| {
            let mut c = CreatableTopicConfig::default();
            c.name = s(k);
            c.value = Some(s(v));
            c
        })
        .collect();
    t
}

fn create(topics: Vec<CreatableTopic>, validate_only: bool) -> CreateTopicsRequest {
    let mut r = CreateTopicsRequest::default();
    r.topics = topics;
    r.timeout_ms = 5000;
    r.validate_only = validate_only;
    r
}

fn describe(resource_type: i8, resource: &str, keys: Option<&[&str]>) -> DescribeConfigsRequest {
    let mut res = DescribeConfigsResource::default();
    res.resource_type = resource_type;
    res.resource_name = s(resource);
    res.configuration_keys = keys.map(|k| k.iter().map(|k| s(k)).collect());
    let mut r = DescribeConfigsRequest::default();
    r.resources = vec![res];
    r
}

fn config_value(response: &DescribeConfigsResponse, key: &str) -> (String, i8, bool) {
    let entry = response.results[0]
        .configs
        .iter()
        .find(|c| c.name.as_str() == key)
        .unwrap_or_else(|| panic!("{key} not described"));
    (
        entry.value.as_ref().unwrap().to_string(),
        entry.config_source,
        entry.read_only,
    )
}

fn alter(topic: &str, changes: &[(&str, i8, Option<&str>)]) -> IncrementalAlterConfigsRequest {
    let mut res = AlterConfigsResource::default();
    res.resource_type = 2;
    res.resource_name = s(topic);
    res.configs = changes
        .iter()
        .map(|(k, op, v)| {
            let mut c = AlterableConfig::default();
            c.name = s(k);
            c.config_operation = *op;
            c.value = v.map(s);
            c
        })
        .collect();
    let mut r = IncrementalAlterConfigsRequest::default();
    r.resources = vec![res];
    r
}

#[tokio::test]
async fn create_topics_follows_kafkas_rules() {
    let broker = broker().await;
    let mut client = Client::connect(broker.addr).await;
    let request = create(
        vec![
            creatable(
                "made",
                3,
                1,
                &[("retention.ms", "60000"), ("cleanup.policy", "delete")],
            ),
            creatable("default-count", -1, -1, &[]),
            creatable("bad/name", 1, 1, &[]),
            creatable("replicated", 1, 3, &[]),
            creatable("no-partitions", 0, 1, &[]),
            creatable("compacted", 1, 1, &[("cleanup.policy", "compact")]),
            creatable("unknown-config", 1, 1, &[("no.such.thing", "1")]),
            creatable("twice", 1, 1, &[]),
            creatable("twice", 1, 1, &[]),
        ],
        false,
    );
    let response = client.call(5, &request).await;
    let codes: Vec<(&str, i16)> = response
        .topics
        .iter()
        .map(|t| (t.name.as_str(), t.error_code))
        .collect();
    assert_eq!(
        codes,
        vec![
            ("made", 0),
            ("default-count", 0),
            ("bad/name", 17),
            ("replicated", 38),
            ("no-partitions", 37),
            ("compacted", 40),
            ("unknown-config", 40),
            ("twice", 42),
            ("twice", 42),
        ]
    );
    assert!(response.topics[3].error_message.is_some());
    assert_eq!(response.topics[0].num_partitions, 3);
    assert_eq!(response.topics[0].replication_factor, 1);
    let configs = response.topics[0].configs.as_ref().unwrap();
    let retention = configs
        .iter()
        .find(|c| c.name.as_str() == "retention.ms")
        .unwrap();
    assert_eq!(retention.value.as_ref().unwrap().as_str(), "60000");
    let made = broker.log.topic("made").unwrap();
    assert_eq!(made.partitions.len(), 3);
    assert_eq!(made.config.retention_ms, Some(60000));
    assert_eq!(made.config.cleanup_policy.as_deref(), Some("delete"));
    assert_eq!(
        broker.log.topic("default-count").unwrap().partitions.len() as u32,
        broker.log.defaults().partitions
    );
    for absent in ["replicated", "compacted", "twice"] {
        assert!(broker.log.topic(absent).is_none(), "{absent}");
    }

    // Again: already exists. Validate-only: checked, not created. v2 (librdkafka's oldest).
    let again = client
        .call(2, &create(vec![creatable("made", 3, 1, &[])], false))
        .await;
    assert_eq!(again.topics[0].error_code, 36);
    let dry = client
        .call(4, &create(vec![creatable("dry", 2, 1, &[])], true))
        .await;
    assert_eq!(dry.topics[0].error_code, 0);
    assert!(broker.log.topic("dry").is_none());
}

#[tokio::test]
async fn describe_and_alter_topic_configs() {
    let broker = broker().await;
    let mut client = Client::connect(broker.addr).await;
    broker
        .log
        .create_topic("t", 1, Default::default())
        .await
        .unwrap();

    let mut everything = describe(2, "t", None);
    everything.include_documentation = true;
    let response = client.call(4, &everything).await;
    assert_eq!(response.results[0].error_code, 0);
    let (value, source, read_only) = config_value(&response, "retention.ms");
    assert_eq!(value, broker.log.defaults().retention_ms.to_string());
    assert_eq!((source, read_only), (5, false));
    assert_eq!(config_value(&response, "cleanup.policy").0, "delete");
    assert_eq!(
        config_value(&response, "segment.bytes"),
        ("1073741824".into(), 5, true)
    );
    assert!(config_value(&response, "max.message.bytes").2);
    assert!(response.results[0].configs[0].documentation.is_some());

    let changed = client
        .call(
            1,
            &alter(
                "t",
                &[
                    ("retention.ms", 0, Some("1000")),
                    ("retention.bytes", 0, Some("2048")),
                ],
            ),
        )
        .await;
    assert_eq!(changed.responses[0].error_code, 0);
    assert_eq!(
        broker.log.topic("t").unwrap().config.retention_ms,
        Some(1000)
    );
    // librdkafka's DescribeConfigs v1, asking for two keys.
    let response = client
        .call(
            1,
            &describe(2, "t", Some(&["retention.ms", "retention.bytes"])),
        )
        .await;
    assert_eq!(response.results[0].configs.len(), 2);
    assert_eq!(
        config_value(&response, "retention.ms"),
        ("1000".into(), 1, false)
    );

    // DELETE goes back to the default; a refused change leaves everything as it was.
    let deleted = client
        .call(0, &alter("t", &[("retention.ms", 1, None)]))
        .await;
    assert_eq!(deleted.responses[0].error_code, 0);
    let config = broker.log.topic("t").unwrap().config.clone();
    assert_eq!(
        (config.retention_ms, config.retention_bytes),
        (None, Some(2048))
    );
    for bad in [
        alter(
            "t",
            &[("retention.bytes", 0, Some("1")), ("no.such", 0, Some("1"))],
        ),
        alter("t", &[("cleanup.policy", 0, Some("compact"))]),
        alter("t", &[("cleanup.policy", 2, Some("delete"))]),
        alter("t", &[("segment.bytes", 0, Some("1"))]),
    ] {
        let refused = client.call(1, &bad).await;
        assert_eq!(refused.responses[0].error_code, 40);
        assert!(refused.responses[0].error_message.is_some());
    }
    assert_eq!(broker.log.topic("t").unwrap().config, config);
    let missing = client
        .call(1, &alter("nope", &[("retention.ms", 0, Some("1"))]))
        .await;
    assert_eq!(missing.responses[0].error_code, 3);
    let missing = client.call(1, &describe(2, "nope", None)).await;
    assert_eq!(missing.results[0].error_code, 3);

    // AlterConfigs replaces the whole set of overrides.
    let mut res = alter_configs_request::AlterConfigsResource::default();
    res.resource_type = 2;
    res.resource_name = s("t");
    let mut c = alter_configs_request::AlterableConfig::default();
    c.name = s("retention.ms");
    c.value = Some(s("5000"));
    res.configs = vec![c];
    let mut request = AlterConfigsRequest::default();
    request.resources = vec![res];
    assert_eq!(client.call(0, &request).await.responses[0].error_code, 0);
    let config = broker.log.topic("t").unwrap().config.clone();
    assert_eq!(
        (config.retention_ms, config.retention_bytes),
        (Some(5000), None)
    );

    // The broker resource: read-only entries.
    let response = client.call(1, &describe(4, "0", None)).await;
    assert_eq!(response.results[0].error_code, 0);
    assert_eq!(config_value(&response, "broker.id"), ("0".into(), 4, true));
}

#[tokio::test]
async fn create_partitions_grows_only() {
    let broker = broker().await;
    let mut client = Client::connect(broker.addr).await;
    broker
        .log
        .create_topic("g", 3, Default::default())
        .await
        .unwrap();
    let grow = |count: i32, validate_only: bool| {
        let mut t = CreatePartitionsTopic::default();
        t.name = name("g");
        t.count = count;
        let mut r = CreatePartitionsRequest::default();
        r.topics = vec![t];
        r.timeout_ms = 5000;
        r.validate_only = validate_only;
        r
    };
    assert_eq!(
        client.call(0, &grow(4, true)).await.results[0].error_code,
        0
    );
    assert_eq!(broker.log.topic("g").unwrap().partitions.len(), 3);
    assert_eq!(
        client.call(0, &grow(5, false)).await.results[0].error_code,
        0
    );
    assert_eq!(broker.log.topic("g").unwrap().partitions.len(), 5);
    for shrink in [5, 2] {
        let response = client.call(2, &grow(shrink, false)).await;
        assert_eq!(response.results[0].error_code, 37);
        assert!(response.results[0].error_message.is_some());
    }
    // The new partitions are in Metadata and take writes.
    let mut all = MetadataRequest::default();
    all.topics = None;
    let metadata = client.call(12, &all).await;
    assert_eq!(metadata.topics[0].partitions.len(), 5);
    let produced = client
        .call(9, &produce_request("g", 4, 1, records(&["x"], 1)))
        .await;
    assert_eq!(produced.responses[0].partition_responses[0].error_code, 0);
}

#[tokio::test]
async fn delete_records_moves_the_log_start() {
    let broker = broker().await;
    let mut client = Client::connect(broker.addr).await;
    broker
        .log
        .create_topic("r", 1, Default::default())
        .await
        .unwrap();
    for batch in [["a", "b", "c"], ["d", "e", "f"]] {
        client
            .call(9, &produce_request("r", 0, 1, records(&batch, 1)))
            .await;
    }
    let trim = |offsets: &[(i32, i64)]| {
        let mut t = DeleteRecordsTopic::default();
        t.name = name("r");
        t.partitions = offsets
            .iter()
            .map(|(p, o)| {
                let mut x = DeleteRecordsPartition::default();
                x.partition_index = *p;
                x.offset = *o;
                x
            })
            .collect();
        let mut r = DeleteRecordsRequest::default();
        r.topics = vec![t];
        r.timeout_ms = 5000;
        r
    };
    let response = client.call(1, &trim(&[(0, 4), (7, 1)])).await;
    let parts = &response.topics[0].partitions;
    assert_eq!((parts[0].error_code, parts[0].low_watermark), (0, 4));
    assert_eq!((parts[1].error_code, parts[1].low_watermark), (3, -1));
    // Below the log start is out of range; at it, the batch holding it comes back.
    let below = client.call(12, &fetch_request("r", 0, 2, 0)).await;
    let p = &below.responses[0].partitions[0];
    assert_eq!((p.error_code, p.log_start_offset), (1, 4));
    let at = client.call(12, &fetch_request("r", 0, 4, 0)).await;
    let p = &at.responses[0].partitions[0];
    assert_eq!(p.error_code, 0);
    let got: Vec<i64> = values(p.records.as_ref().unwrap())
        .iter()
        .map(|v| v.0)
        .collect();
    assert_eq!(
        got,
        vec![3, 4, 5],
        "whole batch; the client skips below its offset"
    );

    let beyond = client.call(2, &trim(&[(0, 7)])).await;
    assert_eq!(beyond.topics[0].partitions[0].error_code, 1);
    let all = client.call(0, &trim(&[(0, -1)])).await;
    assert_eq!(all.topics[0].partitions[0].low_watermark, 6);
    let earliest = client.call(6, &list_offsets_request("r", -2)).await;
    assert_eq!(earliest.topics[0].partitions[0].offset, 6);
}

#[tokio::test]
async fn delete_topics_then_metadata_and_recreate() {
    let broker = broker().await;
    let mut client = Client::connect(broker.addr).await;
    broker
        .log
        .create_topic("d", 2, Default::default())
        .await
        .unwrap();
    client
        .call(9, &produce_request("d", 0, 1, records(&["x"], 1)))
        .await;
    let mut request = DeleteTopicsRequest::default();
    request.topic_names = vec![name("d"), name("never")];
    request.timeout_ms = 5000;
    let response = client.call(5, &request).await;
    let codes: Vec<i16> = response.responses.iter().map(|r| r.error_code).collect();
    assert_eq!(codes, vec![0, 3]);
    assert!(response.responses[1].error_message.is_some());
    let mut all = MetadataRequest::default();
    all.topics = None;
    assert!(client.call(12, &all).await.topics.is_empty());
    // Fetching the deleted topic is an error, not a hang or a crash.
    let fetched = client.call(12, &fetch_request("d", 0, 0, 0)).await;
    assert_eq!(fetched.responses[0].partitions[0].error_code, 3);
    // Recreated under the same name, it starts empty at offset 0.
    let made = client
        .call(5, &create(vec![creatable("d", 1, 1, &[])], false))
        .await;
    assert_eq!(made.topics[0].error_code, 0);
    let produced = client
        .call(9, &produce_request("d", 0, 1, records(&["y"], 1)))
        .await;
    assert_eq!(produced.responses[0].partition_responses[0].base_offset, 0);
}

#[tokio::test]
async fn describe_cluster_names_the_single_node() {
    let broker = broker().await;
    let mut client = Client::connect(broker.addr).await;
    for version in 0..=2 {
        let mut request = DescribeClusterRequest::default();
        request.endpoint_type = 1;
        let response = client.call(version, &request).await;
        assert_eq!(response.error_code, 0);
        assert_eq!(
            response.cluster_id.as_str(),
            crate::kafka::metadata::CLUSTER_ID
        );
        assert_eq!(response.controller_id.0, 0);
        assert_eq!(response.brokers.len(), 1);
        assert_eq!(response.brokers[0].port, i32::from(broker.addr.port()));
    }
    let mut controllers = DescribeClusterRequest::default();
    controllers.endpoint_type = 2;
    assert_eq!(client.call(1, &controllers).await.error_code, 115);
}
