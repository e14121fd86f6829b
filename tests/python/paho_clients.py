"""paho-mqtt (Python, 2.x) against a running Headwater.

Usage: python3 paho_clients.py PHASE PORT
  live    QoS 0/1/2 (3.1.1 and 5.0), retained messages, wills, MQTT 5 properties,
          subscription identifiers, no-local and shared subscriptions, in one broker run
  queue   a persistent 3.1.1 session subscribes, goes away; QoS 1 messages are published
  resume  (after the broker restarted) the session comes back and gets them
Prints "ok" last; exits non-zero with a message on the first mismatch.
"""

import queue
import socket
import sys
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

PHASE = sys.argv[1]
PORT = int(sys.argv[2])
HOST = "127.0.0.1"
WAIT = 15


def fail(message):
    print(f"FAIL: {message}", file=sys.stderr)
    sys.exit(1)


class Peer:
    """A paho client whose messages, CONNACK and SUBACKs land in queues."""

    def __init__(self, client_id, protocol=mqtt.MQTTv311, clean=True, will=None):
        kwargs = {"client_id": client_id, "protocol": protocol}
        if protocol == mqtt.MQTTv311:
            kwargs["clean_session"] = clean
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, **kwargs)
        self.protocol = protocol
        self.clean = clean
        self.messages = queue.Queue()
        self.connacks = queue.Queue()
        self.subacks = queue.Queue()
        self.published = {}
        self.lock = threading.Lock()
        self.client.on_connect = lambda c, u, flags, rc, props: self.connacks.put((flags, rc))
        self.client.on_message = lambda c, u, msg: self.messages.put(msg)
        self.client.on_subscribe = lambda c, u, mid, codes, props: self.subacks.put(codes)
        if will:
            topic, payload, qos, retain = will
            self.client.will_set(topic, payload, qos=qos, retain=retain)

    def connect(self, properties=None):
        if self.protocol == mqtt.MQTTv5:
            self.client.connect(
                HOST, PORT, keepalive=30, clean_start=self.clean, properties=properties
            )
        else:
            self.client.connect(HOST, PORT, keepalive=30)
        self.client.loop_start()
        flags, rc = get(self.connacks, "CONNACK")
        if rc.is_failure:
            fail(f"{self.client._client_id!r} refused: {rc}")
        return flags

    def subscribe(self, topic, qos=0, **kwargs):
        self.client.subscribe(topic, qos, **kwargs)
        return get(self.subacks, f"SUBACK for {topic}")

    def publish(self, topic, payload, qos, retain=False, properties=None):
        info = self.client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        if qos > 0:
            info.wait_for_publish(WAIT)
            if not info.is_published():
                fail(f"no ack for {topic} qos {qos}")

    def expect(self, n, what):
        return [get(self.messages, f"{what} ({i + 1} of {n})") for i in range(n)]

    def quiet(self, seconds, what):
        try:
            msg = self.messages.get(timeout=seconds)
        except queue.Empty:
            return
        fail(f"{what}: unexpected message on {msg.topic}: {msg.payload!r}")

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()

    def drop(self):
        """Ends the connection without DISCONNECT, as a crashed device would."""
        self.client.loop_stop()
        self.client.socket().shutdown(socket.SHUT_RDWR)
        self.client.socket().close()


def get(q, what):
    try:
        return q.get(timeout=WAIT)
    except queue.Empty:
        fail(f"timed out waiting for {what}")


def qos_levels():
    sub = Peer("paho-sub")
    sub.connect()
    granted = sub.subscribe("paho/live/#", 2)
    if [c.value for c in granted] != [2]:
        fail(f"granted {granted}, wanted QoS 2")
    pub = Peer("paho-pub")
    pub.connect()
    sent = [(f"m{q}-{i}", q) for q in (0, 1, 2) for i in range(20)]
    for payload, q in sent:
        pub.publish(f"paho/live/q{q}", payload, q)
    got = sub.expect(len(sent), "a QoS 0/1/2 message")
    counts = {}
    for msg in got:
        counts[msg.payload.decode()] = counts.get(msg.payload.decode(), 0) + 1
        want = int(msg.topic[-1])
        if msg.qos != want:
            fail(f"{msg.topic} delivered at QoS {msg.qos}")
    missing = [p for p, _ in sent if p not in counts]
    twice = [p for p, q in sent if q == 2 and counts.get(p, 0) != 1]
    if missing or twice:
        fail(f"missing {missing[:5]}, QoS 2 not exactly once: {twice[:5]}")
    sub.quiet(0.3, "after all QoS 0/1/2 messages")
    sub.close()
    pub.close()
    print("paho 3.1.1: QoS 0/1/2 ok")


def retained():
    pub = Peer("paho-retainer")
    pub.connect()
    pub.publish("paho/ret/a", b"kept", 1, retain=True)
    late = Peer("paho-late")
    late.connect()
    late.subscribe("paho/ret/+", 1)
    (msg,) = late.expect(1, "the retained message")
    if (msg.payload, msg.retain) != (b"kept", True):
        fail(f"retained: got {msg.payload!r} retain={msg.retain}")
    # A live copy to an existing subscriber is not flagged retained (3.3.1.3).
    pub.publish("paho/ret/a", b"again", 1, retain=True)
    (msg,) = late.expect(1, "the live copy")
    if (msg.payload, msg.retain) != (b"again", False):
        fail(f"live copy: got {msg.payload!r} retain={msg.retain}")
    pub.publish("paho/ret/a", b"", 1, retain=True)
    late.expect(1, "the clearing message")
    later = Peer("paho-later")
    later.connect()
    later.subscribe("paho/ret/+", 1)
    later.quiet(0.5, "retained message cleared by an empty payload")
    for p in (pub, late, later):
        p.close()
    print("paho: retained messages ok")


def wills():
    watcher = Peer("paho-watcher")
    watcher.connect()
    watcher.subscribe("paho/will/#", 1)
    polite = Peer("paho-polite", will=("paho/will/polite", b"gone", 1, False))
    polite.connect()
    polite.close()
    watcher.quiet(0.5, "a will after a normal DISCONNECT")
    dev = Peer("paho-dev", will=("paho/will/dev", b"gone", 1, False))
    dev.connect()
    dev.drop()
    (msg,) = watcher.expect(1, "the will of a dropped connection")
    if (msg.topic, msg.payload) != ("paho/will/dev", b"gone"):
        fail(f"will: got {msg.topic} {msg.payload!r}")
    watcher.close()
    print("paho: wills ok")


def v5_properties():
    sub = Peer("paho-v5-sub", protocol=mqtt.MQTTv5)
    sub.connect()
    props = Properties(PacketTypes.SUBSCRIBE)
    props.SubscriptionIdentifier = 42
    options = mqtt.SubscribeOptions(qos=1, noLocal=True)
    sub.subscribe("paho/v5/#", options=options, properties=props)
    pub = Peer("paho-v5-pub", protocol=mqtt.MQTTv5)
    pub.connect()
    out = Properties(PacketTypes.PUBLISH)
    out.UserProperty = [("site", "north"), ("site", "south")]
    out.ContentType = "application/json"
    out.ResponseTopic = "paho/replies"
    out.CorrelationData = b"\x01\x02"
    out.MessageExpiryInterval = 3600
    pub.publish("paho/v5/temp", b'{"t": 21}', 1, properties=out)
    (msg,) = sub.expect(1, "the MQTT 5 message")
    p = msg.properties
    checks = {
        "user properties": (p.UserProperty, [("site", "north"), ("site", "south")]),
        "content type": (p.ContentType, "application/json"),
        "response topic": (p.ResponseTopic, "paho/replies"),
        "correlation data": (p.CorrelationData, b"\x01\x02"),
        "subscription id": (p.SubscriptionIdentifier, [42]),
    }
    for name, (got, want) in checks.items():
        if got != want:
            fail(f"MQTT 5 {name}: got {got!r}, wanted {want!r}")
    if not 3500 < p.MessageExpiryInterval <= 3600:
        fail(f"message expiry interval {p.MessageExpiryInterval}")
    # No-local: the subscriber's own publish does not come back to it.
    sub.publish("paho/v5/own", b"mine", 1)
    pub.publish("paho/v5/other", b"theirs", 1)
    (msg,) = sub.expect(1, "the other client's message")
    if msg.payload != b"theirs":
        fail(f"no-local: got {msg.payload!r} first")
    sub.quiet(0.3, "no-local")
    sub.close()
    pub.close()
    print("paho 5.0: properties, subscription identifiers, no-local ok")


def shared_subscriptions():
    members = [Peer(f"paho-worker-{i}", protocol=mqtt.MQTTv5) for i in range(2)]
    for m in members:
        m.connect()
        m.subscribe("$share/workers/paho/jobs/#", 1)
    pub = Peer("paho-jobs", protocol=mqtt.MQTTv5)
    pub.connect()
    jobs = [f"job-{i}" for i in range(40)]
    for job in jobs:
        pub.publish("paho/jobs/x", job, 1)
    got = []
    deadline = time.time() + WAIT
    while len(got) < len(jobs) and time.time() < deadline:
        for m in members:
            try:
                got.append(m.messages.get(timeout=0.05).payload.decode())
            except queue.Empty:
                pass
    if sorted(got) != sorted(jobs):
        fail(f"shared subscription: {len(got)} deliveries for {len(jobs)} jobs")
    for m in members:
        m.quiet(0.2, "a job delivered twice")
        m.close()
    pub.close()
    print("paho 5.0: shared subscription, each job once")


QUEUED = [f"queued-{i}" for i in range(10)]


def queue_phase():
    away = Peer("paho-persist", clean=False)
    away.connect()
    away.subscribe("paho/q/#", 1)
    away.close()
    pub = Peer("paho-q-pub")
    pub.connect()
    for payload in QUEUED:
        pub.publish("paho/q/x", payload, 1)
    pub.close()
    print("paho: queued for the persistent session")


def resume_phase():
    back = Peer("paho-persist", clean=False)
    flags = back.connect()
    if not flags.session_present:
        fail("session present not set after the restart")
    got = [m.payload.decode() for m in back.expect(len(QUEUED), "a queued message")]
    if got != QUEUED:
        fail(f"queued messages after restart: {got}")
    back.close()
    print("paho: persistent session resumed after a broker restart")


if PHASE == "live":
    qos_levels()
    retained()
    wills()
    v5_properties()
    shared_subscriptions()
elif PHASE == "queue":
    queue_phase()
elif PHASE == "resume":
    resume_phase()
else:
    fail(f"unknown phase {PHASE}")
print("ok")
