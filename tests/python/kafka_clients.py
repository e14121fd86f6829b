"""kafka-python and confluent-kafka against a running Headwater.

Usage: python3 kafka_clients.py BOOTSTRAP
Produces with each client (acks=all), consumes with each client as a consumer-group member,
commits, and checks what came back. Exits non-zero with a message on the first mismatch.
Both producers are idempotent: kafka-python 3.x by default, confluent-kafka with
enable.idempotence=true (InitProducerId, then sequence-checked batches).
"""

import sys
import time

from confluent_kafka import Consumer, Producer
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

BOOTSTRAP = sys.argv[1]
N = 50


def fail(message):
    print(f"FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def kafka_python_round_trip():
    admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP, client_id="hw-test-admin")
    admin.create_topics([NewTopic("py-kp", num_partitions=2, replication_factor=1)])
    if "py-kp" not in admin.list_topics():
        fail("kafka-python admin: created topic not listed")
    admin.close()

    producer = KafkaProducer(
        bootstrap_servers=BOOTSTRAP, acks="all", linger_ms=5
    )
    for i in range(N):
        producer.send("py-kp", key=f"k{i % 5}".encode(), value=f"kp-{i}".encode()).get(timeout=15)
    producer.close()

    consumer = KafkaConsumer(
        "py-kp",
        bootstrap_servers=BOOTSTRAP,
        group_id="py-kp-group",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=20000,
    )
    seen = set()
    for message in consumer:
        seen.add(message.value.decode())
        if len(seen) == N:
            break
    consumer.commit()
    consumer.close()
    expected = {f"kp-{i}" for i in range(N)}
    if seen != expected:
        fail(f"kafka-python consumed {len(seen)} of {N}: missing {sorted(expected - seen)[:5]}")
    print("kafka-python: admin, produce, group consume, commit ok")


def confluent_round_trip():
    errors = []
    producer = Producer(
        {
            "bootstrap.servers": BOOTSTRAP,
            "acks": "all",
            "compression.type": "lz4",
            "enable.idempotence": True,
        }
    )
    for i in range(N):
        producer.produce(
            "py-ck",
            key=f"k{i % 5}",
            value=f"ck-{i}",
            on_delivery=lambda err, _msg: err and errors.append(err),
        )
    if producer.flush(15) != 0 or errors:
        fail(f"confluent-kafka produce: {errors[:3]}")

    consumer = Consumer(
        {
            "bootstrap.servers": BOOTSTRAP,
            "group.id": "py-ck-group",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe(["py-ck"])
    seen = []
    deadline = time.time() + 30
    while len(seen) < N and time.time() < deadline:
        message = consumer.poll(0.5)
        if message is None:
            continue
        if message.error():
            fail(f"confluent-kafka consumer: {message.error()}")
        seen.append(message.value().decode())
    consumer.commit(asynchronous=False)
    consumer.close()
    if seen != [f"ck-{i}" for i in range(N)]:
        fail(f"confluent-kafka consumed {len(seen)} of {N} (or out of order)")

    # A new member of the same group resumes after the committed offsets: nothing left to read.
    again = Consumer(
        {"bootstrap.servers": BOOTSTRAP, "group.id": "py-ck-group", "auto.offset.reset": "earliest"}
    )
    again.subscribe(["py-ck"])
    deadline = time.time() + 5
    while time.time() < deadline:
        message = again.poll(0.5)
        if message is not None and not message.error():
            fail(f"confluent-kafka: committed offsets ignored, re-read {message.value()!r}")
    again.close()
    print("confluent-kafka: lz4 produce, group consume, commit, resume ok")


kafka_python_round_trip()
confluent_round_trip()
print("ok")
