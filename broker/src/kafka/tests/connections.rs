//! Framing, ordering, limits and shutdown.

use super::*;

#[tokio::test]
async fn acks_zero_is_not_answered_and_later_requests_stay_in_order() {
    let broker = broker().await;
    let mut client = Client::connect(broker.addr).await;
    client
        .send(9, &produce_request("z", 0, 0, records(&["quiet"], 0)))
        .await;
    // Pipelined: three requests before reading anything.
    let a = client.send(3, &ApiVersionsRequest::default()).await;
    let b = client.send(11, &fetch_request("z", 0, 0, 0)).await;
    let c = client.send(6, &list_offsets_request("z", -1)).await;
    assert_eq!(client.recv::<ApiVersionsRequest>(3, a).await.error_code, 0);
    let fetched = client.recv::<FetchRequest>(11, b).await;
    let got = fetched.responses[0].partitions[0].records.clone().unwrap();
    assert_eq!(values(&got), vec![(0, "quiet".to_string())]);
    let listed = client.recv::<ListOffsetsRequest>(6, c).await;
    assert_eq!(listed.topics[0].partitions[0].offset, 1);

    // A failing acks=0 produce closes the connection, as Kafka does.
    client
        .send(9, &produce_request("z", 9, 0, records(&["lost"], 0)))
        .await;
    assert!(client.is_closed().await);
}

#[tokio::test]
async fn pipelined_produces_keep_request_order_and_later_requests_see_them() {
    let broker = broker().await;
    let mut client = Client::connect(broker.addr).await;
    // More produces than the pipeline holds, to two partitions, then a fetch, before reading.
    let mut sent = Vec::new();
    for i in 0..12 {
        let partition = i % 2;
        let value = format!("v{i}");
        let id = client
            .send(
                9,
                &produce_request("pipe", partition, -1, records(&[&value], 0)),
            )
            .await;
        sent.push((id, partition));
    }
    let fetch = client.send(11, &fetch_request("pipe", 1, 0, 0)).await;
    let mut next = [0i64; 2];
    for (id, partition) in sent {
        let answer = client.recv::<ProduceRequest>(9, id).await;
        let p = &answer.responses[0].partition_responses[0];
        assert_eq!(p.error_code, 0);
        assert_eq!(
            p.base_offset, next[partition as usize],
            "offsets follow request order"
        );
        next[partition as usize] += 1;
    }
    let fetched = client.recv::<FetchRequest>(11, fetch).await;
    let got = fetched.responses[0].partitions[0].records.clone().unwrap();
    let expected: Vec<(i64, String)> = (0..6).map(|i| (i, format!("v{}", 2 * i + 1))).collect();
    assert_eq!(
        values(&got),
        expected,
        "the fetch sees every produce sent before it"
    );
}

#[tokio::test]
async fn bad_frames_close_only_their_connection() {
    let broker = start(KafkaSection {
        max_frame_bytes: 64 * 1024,
        ..KafkaSection::default()
    })
    .await;
    let mut good = Client::connect(broker.addr).await;
    assert_eq!(
        good.call(3, &ApiVersionsRequest::default())
            .await
            .error_code,
        0
    );

    // Oversized: refused from the length prefix alone.
    let mut big = Client::connect(broker.addr).await;
    big.stream
        .write_all(&(1i32 << 20).to_be_bytes())
        .await
        .unwrap();
    assert!(big.is_closed().await);

    // Malformed: a Metadata request claiming two billion topics.
    let mut bomb = Client::connect(broker.addr).await;
    let mut payload = BytesMut::new();
    payload.put_i16(ApiKey::Metadata as i16);
    payload.put_i16(0);
    payload.put_i32(1);
    payload.put_i16(-1);
    payload.put_i32(i32::MAX);
    bomb.send_raw(&payload).await;
    assert!(bomb.is_closed().await);

    // An API Headwater does not implement.
    let mut other = Client::connect(broker.addr).await;
    let mut payload = BytesMut::new();
    payload.put_i16(ApiKey::AlterPartitionReassignments as i16);
    payload.put_i16(0);
    payload.put_i32(1);
    payload.put_i16(-1);
    payload.put_i16(0);
    other.send_raw(&payload).await;
    assert!(other.is_closed().await);

    // The first connection never noticed.
    assert_eq!(
        good.call(3, &ApiVersionsRequest::default())
            .await
            .error_code,
        0
    );
    let response = good
        .call(9, &produce_request("ok", 0, 1, records(&["fine"], 0)))
        .await;
    assert_eq!(response.responses[0].partition_responses[0].error_code, 0);
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_for_a_free_slot() {
    let broker = start(KafkaSection {
        max_connections: 1,
        ..KafkaSection::default()
    })
    .await;
    let mut first = Client::connect(broker.addr).await;
    assert_eq!(
        first
            .call(3, &ApiVersionsRequest::default())
            .await
            .error_code,
        0
    );
    let mut second = Client::connect(broker.addr).await;
    let id = second.send(3, &ApiVersionsRequest::default()).await;
    let mut byte = [0u8; 1];
    let early =
        tokio::time::timeout(Duration::from_millis(300), second.stream.peek(&mut byte)).await;
    assert!(
        early.is_err(),
        "the second connection was served while the first held the slot"
    );
    drop(first);
    assert_eq!(second.recv::<ApiVersionsRequest>(3, id).await.error_code, 0);
}

#[tokio::test]
async fn shutdown_ends_waiting_fetches_and_the_listener() {
    let broker = broker().await;
    broker
        .log
        .create_topic("s", 1, Default::default())
        .await
        .unwrap();
    let mut client = Client::connect(broker.addr).await;
    let id = client.send(11, &fetch_request("s", 0, 0, 25_000)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    broker.shutdown.cancel();
    let response = client.recv::<FetchRequest>(11, id).await;
    assert_eq!(response.responses[0].partitions[0].error_code, 0);
    tokio::time::timeout(PATIENCE, broker.task)
        .await
        .unwrap()
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(
        TcpStream::connect(broker.addr).await.is_err(),
        "listener closed"
    );
}
