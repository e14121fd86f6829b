//! Each API's behaviour over a real connection.

use super::*;

#[tokio::test]
async fn api_versions_lists_what_is_implemented() {
    let broker = broker().await;
    let mut client = Client::connect(broker.addr).await;
    for version in [0, 3] {
        let response = client.call(version, &ApiVersionsRequest::default()).await;
        assert_eq!(response.error_code, 0);
        let keys: Vec<i16> = response.api_keys.iter().map(|k| k.api_key).collect();
        assert_eq!(
            keys,
            vec![
                0, 1, 2, 3, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 23, 42, 19, 20, 21, 22, 32,
                33, 37, 44, 60, 36
            ]
        );
    }
}

#[tokio::test]
async fn api_versions_of_an_unknown_version_is_answered_in_v0() {
    let broker = broker().await;
    let mut client = Client::connect(broker.addr).await;
    // A v9 ApiVersions request, as a future client would send it (header v2).
    let mut payload = BytesMut::new();
    payload.put_i16(ApiKey::ApiVersions as i16);
    payload.put_i16(9);
    payload.put_i32(77);
    payload.put_i16(-1); // client id
    payload.put_u8(0); // header tags
    payload.put_u8(0); // body tags
    client.send_raw(&payload).await;
    let mut frame = client.read_frame().await.unwrap();
    assert_eq!(
        ResponseHeader::decode(&mut frame, 0)
            .unwrap()
            .correlation_id,
        77
    );
    let response = ApiVersionsResponse::decode(&mut frame, 0).unwrap();
    assert_eq!(response.error_code, 35);
    assert_eq!(response.api_keys.len(), 1);
    assert_eq!(response.api_keys[0].api_key, 18);
    // The connection stays usable: the client retries with a version both know.
    let response = client.call(3, &ApiVersionsRequest::default()).await;
    assert_eq!(response.error_code, 0);
}

#[tokio::test]
async fn metadata_describes_one_node_and_auto_creates_topics() {
    let broker = broker().await;
    let mut client = Client::connect(broker.addr).await;
    for version in [0, 1, 4, 9, 12] {
        let mut topic = MetadataRequestTopic::default();
        topic.name = Some(name("sensors"));
        let mut request = MetadataRequest::default();
        request.topics = Some(vec![topic]);
        let response: MetadataResponse = client.call(version, &request).await;
        assert_eq!(response.brokers.len(), 1, "v{version}");
        assert_eq!(*response.brokers[0].node_id, 0);
        assert_eq!(response.brokers[0].host.as_str(), "127.0.0.1");
        assert_eq!(response.brokers[0].port, i32::from(broker.addr.port()));
        let topic = &response.topics[0];
        assert_eq!(topic.error_code, 0, "v{version}");
        assert_eq!(topic.partitions.len(), 2);
        for p in &topic.partitions {
            assert_eq!(*p.leader_id, 0);
            assert_eq!(p.replica_nodes.len(), 1);
            assert_eq!(p.isr_nodes.len(), 1);
        }
        if version >= 1 {
            assert_eq!(*response.controller_id, 0);
        }
        if version >= 2 {
            assert_eq!(
                response.cluster_id.as_deref(),
                Some("headwater-single-node")
            );
        }
        if version >= 7 {
            assert_eq!(topic.partitions[0].leader_epoch, 0);
        }
    }
    assert!(broker.log.topic("sensors").is_some());
}

#[tokio::test]
async fn metadata_errors_and_all_topics() {
    let broker = broker().await;
    let mut client = Client::connect(broker.addr).await;
    let ask = |topic: &str, allow: bool| {
        let mut t = MetadataRequestTopic::default();
        t.name = Some(name(topic));
        let mut request = MetadataRequest::default();
        request.topics = Some(vec![t]);
        request.allow_auto_topic_creation = allow;
        request
    };
    let response = client.call(12, &ask("no/slashes", true)).await;
    assert_eq!(response.topics[0].error_code, 17);
    let response = client.call(12, &ask("absent", false)).await;
    assert_eq!(response.topics[0].error_code, 3);
    assert!(broker.log.topic("absent").is_none());

    broker
        .log
        .create_topic("a", 1, Default::default())
        .await
        .unwrap();
    broker
        .log
        .create_topic("b", 3, Default::default())
        .await
        .unwrap();
    let mut all = MetadataRequest::default();
    all.topics = None;
    let response = client.call(12, &all).await;
    let names: Vec<&str> = response
        .topics
        .iter()
        .map(|t| t.name.as_ref().unwrap().as_str())
        .collect();
    assert_eq!(names, vec!["a", "b"]);
    // v0 says "all topics" with an empty list.
    let mut empty = MetadataRequest::default();
    empty.topics = Some(vec![]);
    assert_eq!(client.call(0, &empty).await.topics.len(), 2);
    assert_eq!(client.call(1, &empty).await.topics.len(), 0);
}

#[tokio::test]
async fn produce_then_fetch_returns_the_stored_batches() {
    let broker = broker().await;
    let mut client = Client::connect(broker.addr).await;
    let first = records(&["a", "b", "c"], 1_000);
    let response: ProduceResponse = client
        .call(9, &produce_request("t", 1, 1, first.clone()))
        .await;
    let p = &response.responses[0].partition_responses[0];
    assert_eq!((p.index, p.error_code, p.base_offset), (1, 0, 0));
    let response: ProduceResponse = client
        .call(3, &produce_request("t", 1, -1, records(&["d"], 2_000)))
        .await;
    assert_eq!(response.responses[0].partition_responses[0].base_offset, 3);

    for version in [4, 7, 11, 12] {
        let response: FetchResponse = client.call(version, &fetch_request("t", 1, 0, 0)).await;
        let p = &response.responses[0].partitions[0];
        assert_eq!(p.error_code, 0, "v{version}");
        assert_eq!(p.high_watermark, 4);
        assert_eq!(p.last_stable_offset, 4);
        if version >= 5 {
            assert_eq!(p.log_start_offset, 0);
        }
        let records = p.records.clone().unwrap();
        // The first batch comes back byte for byte, apart from the base offset the log set
        // (0 here, as the producer sent it).
        assert_eq!(&records[..first.len()], &first[..]);
        let got = values(&records);
        assert_eq!(
            got,
            vec![
                (0, "a".to_string()),
                (1, "b".to_string()),
                (2, "c".to_string()),
                (3, "d".to_string())
            ]
        );
        if version >= 7 {
            assert_eq!(response.session_id, 0);
        }
    }
    // From the middle of the first batch: the whole batch is sent, as Kafka does.
    let response: FetchResponse = client.call(11, &fetch_request("t", 1, 1, 0)).await;
    let records = response.responses[0].partitions[0].records.clone().unwrap();
    assert_eq!(values(&records).len(), 4);
}

#[tokio::test]
async fn fetch_honours_partition_and_response_limits_but_sends_one_batch() {
    let broker = broker().await;
    let mut client = Client::connect(broker.addr).await;
    for i in 0..3 {
        let value = format!("{i}").repeat(1000);
        client
            .call(9, &produce_request("big", 0, 1, records(&[&value], 0)))
            .await;
    }
    let mut request = fetch_request("big", 0, 0, 0);
    request.topics[0].partitions[0].partition_max_bytes = 10;
    let response: FetchResponse = client.call(11, &request).await;
    let records = response.responses[0].partitions[0].records.clone().unwrap();
    assert_eq!(
        values(&records).len(),
        1,
        "one batch despite a 10-byte limit"
    );

    let mut request = fetch_request("big", 0, 0, 0);
    request.max_bytes = 2500;
    let response: FetchResponse = client.call(11, &request).await;
    let records = response.responses[0].partitions[0].records.clone().unwrap();
    assert_eq!(
        values(&records).len(),
        2,
        "two ~1 KB batches fit 2500 bytes"
    );
}

#[tokio::test]
async fn fetch_errors_are_answered_at_once() {
    let broker = broker().await;
    let mut client = Client::connect(broker.addr).await;
    client
        .call(9, &produce_request("e", 0, 1, records(&["x"], 0)))
        .await;
    let started = Instant::now();
    let response: FetchResponse = client.call(11, &fetch_request("e", 0, 5, 5_000)).await;
    let p = &response.responses[0].partitions[0];
    assert_eq!(p.error_code, 1, "offset beyond the high watermark");
    assert_eq!(p.high_watermark, 1);
    let response: FetchResponse = client
        .call(11, &fetch_request("missing", 0, 0, 5_000))
        .await;
    assert_eq!(response.responses[0].partitions[0].error_code, 3);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "errors do not wait"
    );

    let mut sessioned = fetch_request("e", 0, 0, 0);
    sessioned.session_id = 42;
    sessioned.session_epoch = 3;
    let response: FetchResponse = client.call(11, &sessioned).await;
    assert_eq!(response.error_code, 70);
}

#[tokio::test]
async fn fetch_long_poll_returns_when_data_arrives() {
    let broker = broker().await;
    let topic = broker
        .log
        .create_topic("lp", 1, Default::default())
        .await
        .unwrap();
    let mut client = Client::connect(broker.addr).await;

    // Nothing arrives: the answer comes after about max_wait_ms, empty.
    let started = Instant::now();
    let response: FetchResponse = client.call(11, &fetch_request("lp", 0, 0, 300)).await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250),
        "waited only {waited:?}"
    );
    assert!(response.responses[0].partitions[0]
        .records
        .as_ref()
        .unwrap()
        .is_empty());

    // Data arrives after 200 ms on another connection's behalf: the fetch returns early.
    let log = broker.log.clone();
    let partition = topic.partitions[0].clone();
    let writer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        // Another partition first: it must not wake this fetch up for nothing.
        let other = log
            .create_topic("other", 1, Default::default())
            .await
            .unwrap();
        log.append_records(&other.partitions[0], &[NewRecord::default()])
            .await
            .unwrap();
        log.append_records(
            &partition,
            &[NewRecord {
                value: Some(Bytes::from_static(b"late")),
                ..NewRecord::default()
            }],
        )
        .await
        .unwrap();
    });
    let started = Instant::now();
    let response: FetchResponse = client.call(12, &fetch_request("lp", 0, 0, 20_000)).await;
    let waited = started.elapsed();
    writer.await.unwrap();
    assert!(waited < Duration::from_secs(5), "long poll took {waited:?}");
    let records = response.responses[0].partitions[0].records.clone().unwrap();
    assert_eq!(values(&records), vec![(0, "late".to_string())]);
}

#[tokio::test]
async fn list_offsets_earliest_latest_and_by_time() {
    let broker = broker().await;
    let mut client = Client::connect(broker.addr).await;
    client
        .call(
            9,
            &produce_request("lo", 0, 1, records(&["a", "b", "c"], 1_000)),
        )
        .await;
    client
        .call(9, &produce_request("lo", 0, 1, records(&["d"], 5_000)))
        .await;
    for version in [1, 4, 6] {
        let ask = |ts| list_offsets_request("lo", ts);
        let offset = |r: ListOffsetsResponse| {
            let p = &r.topics[0].partitions[0];
            assert_eq!(p.error_code, 0);
            (p.offset, p.timestamp)
        };
        assert_eq!(offset(client.call(version, &ask(-2)).await).0, 0);
        assert_eq!(offset(client.call(version, &ask(-1)).await).0, 4);
        // Inside the first batch: the exact record, as Kafka's time index answers.
        assert_eq!(offset(client.call(version, &ask(1_001)).await), (1, 1_001));
        assert_eq!(offset(client.call(version, &ask(3_000)).await), (3, 5_000));
        assert_eq!(offset(client.call(version, &ask(9_000)).await), (-1, -1));
    }
    let response: ListOffsetsResponse = client.call(6, &list_offsets_request("nope", -1)).await;
    assert_eq!(response.topics[0].partitions[0].error_code, 3);
}

#[tokio::test]
async fn produce_errors_map_to_kafka_codes() {
    let broker = broker().await;
    let mut client = Client::connect(broker.addr).await;
    let mut corrupt = records(&["x"], 0).to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    let response: ProduceResponse = client
        .call(9, &produce_request("p", 0, 1, Bytes::from(corrupt)))
        .await;
    assert_eq!(response.responses[0].partition_responses[0].error_code, 2);
    let response: ProduceResponse = client
        .call(9, &produce_request("p", 7, 1, records(&["x"], 0)))
        .await;
    assert_eq!(response.responses[0].partition_responses[0].error_code, 3);
    let response: ProduceResponse = client
        .call(9, &produce_request("bad name", 0, 1, records(&["x"], 0)))
        .await;
    assert_eq!(response.responses[0].partition_responses[0].error_code, 17);
    let response: ProduceResponse = client
        .call(9, &produce_request("p", 0, 2, records(&["x"], 0)))
        .await;
    assert_eq!(response.responses[0].partition_responses[0].error_code, 21);
}
