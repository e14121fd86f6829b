#!/usr/bin/env python3
"""kafka-python and confluent-kafka against a Headwater Kafka listener with TLS and SASL.

Usage: kafka_security.py BOOTSTRAP CA_FILE USER PASSWORD

For SCRAM-SHA-256 and PLAIN, with each library over TLS (SASL_SSL): produce three records and
read them back with the right password, and fail to reach the broker with a wrong one. Prints one
line per check and "ok" at the end; any failure raises.
"""

import sys
import time

START = time.time()


def say(line):
    print(f"[{time.time() - START:5.1f}s] {line}", flush=True)


import confluent_kafka
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

BOOTSTRAP, CA_FILE, USER, PASSWORD = sys.argv[1:5]
MECHANISMS = ["SCRAM-SHA-256", "PLAIN"]


def kafka_python_config(mechanism, password):
    return dict(
        bootstrap_servers=BOOTSTRAP,
        security_protocol="SASL_SSL",
        ssl_cafile=CA_FILE,
        sasl_mechanism=mechanism,
        sasl_plain_username=USER,
        sasl_plain_password=password,
    )


def confluent_config(mechanism, password):
    return {
        "bootstrap.servers": BOOTSTRAP,
        "security.protocol": "SASL_SSL",
        "ssl.ca.location": CA_FILE,
        "sasl.mechanism": mechanism,
        "sasl.username": USER,
        "sasl.password": password,
    }


def kafka_python_round_trip(mechanism):
    topic = "kp-" + mechanism.lower()
    producer = KafkaProducer(acks="all", **kafka_python_config(mechanism, PASSWORD))
    sent = [f"{mechanism}-{i}" for i in range(3)]
    for value in sent:
        producer.send(topic, key=b"k", value=value.encode()).get(timeout=30)
    producer.close()
    consumer = KafkaConsumer(
        consumer_timeout_ms=15000, **kafka_python_config(mechanism, PASSWORD)
    )
    partition = TopicPartition(topic, 0)
    consumer.assign([partition])
    consumer.seek_to_beginning(partition)
    got = []
    for message in consumer:
        got.append(message.value.decode())
        if len(got) == len(sent):
            break
    consumer.close()
    assert got == sent, f"kafka-python {mechanism}: read {got}, expected {sent}"
    say(f"kafka-python {mechanism} round trip")


def kafka_python_refused(mechanism):
    producer = None
    try:
        producer = KafkaProducer(
            max_block_ms=5000,
            bootstrap_timeout_ms=5000,
            **kafka_python_config(mechanism, PASSWORD + "-wrong"),
        )
        producer.send("kp-refused", value=b"x").get(timeout=10)
    except Exception as e:  # noqa: BLE001 - any failure to produce is the expected outcome
        say(f"kafka-python {mechanism} wrong password refused: {type(e).__name__}")
        return
    finally:
        if producer is not None:
            producer.close(timeout=0)
    raise AssertionError(f"kafka-python {mechanism}: a wrong password was accepted")


def confluent_round_trip(mechanism):
    topic = "ck-" + mechanism.lower()
    producer = confluent_kafka.Producer(
        {**confluent_config(mechanism, PASSWORD), "acks": "all"}
    )
    errors = []
    sent = [f"{mechanism}-{i}" for i in range(3)]
    for value in sent:
        producer.produce(
            topic, key=b"k", value=value.encode(), on_delivery=lambda e, m: e and errors.append(e)
        )
    assert producer.flush(30) == 0, "confluent-kafka: records left unsent"
    assert not errors, f"confluent-kafka {mechanism}: {errors}"
    consumer = confluent_kafka.Consumer(
        {
            **confluent_config(mechanism, PASSWORD),
            "group.id": "security-" + mechanism.lower(),
            "enable.auto.commit": False,
        }
    )
    consumer.assign([confluent_kafka.TopicPartition(topic, 0, confluent_kafka.OFFSET_BEGINNING)])
    got = []
    deadline = time.time() + 20
    while len(got) < len(sent) and time.time() < deadline:
        message = consumer.poll(0.5)
        if message is None:
            continue
        assert not message.error(), f"confluent-kafka {mechanism}: {message.error()}"
        got.append(message.value().decode())
    consumer.close()
    assert got == sent, f"confluent-kafka {mechanism}: read {got}, expected {sent}"
    say(f"confluent-kafka {mechanism} round trip")


def confluent_refused(mechanism):
    producer = confluent_kafka.Producer(
        {**confluent_config(mechanism, PASSWORD + "-wrong"), "message.timeout.ms": 5000}
    )
    try:
        producer.list_topics(timeout=5)
    except confluent_kafka.KafkaException as e:
        say(f"confluent-kafka {mechanism} wrong password refused: {e.args[0].name()}")
        return
    raise AssertionError(f"confluent-kafka {mechanism}: a wrong password was accepted")


for mechanism in MECHANISMS:
    kafka_python_round_trip(mechanism)
    kafka_python_refused(mechanism)
    confluent_round_trip(mechanism)
    confluent_refused(mechanism)
print("ok")
