"""Helpers for the ingest pipeline tests (test_ingest_*.py): subscriptions by
plain SQL, events in the native and CloudEvents formats, reading the jobs and
dead-letter topics, and waiting until ingest has committed past given
offsets (which means every job of those events was acknowledged)."""

import hashlib
import json
import time
import uuid

from confluent_kafka import Consumer, TopicPartition

from harness import metric, wait_for
from hookd_kafka import FAST_CONSUMER_CONFIG, consume_all, produce, topic_metadata

GROUP = "hookd-ingest"
EVENTS = "hookd.events"
JOBS = "hookd.deliveries"
DLQ = "hookd.events.dlq"

# Quick against the embedded broker: short empty-fetch wait, small session
# timeout so a restarted (kill -9) ingest gets its partitions back in seconds.
INGEST_ENV = {
    "HOOKD_KAFKA_FETCH_WAIT_MAX_MS": "50",
    "HOOKD_KAFKA_SESSION_TIMEOUT_MS": "6000",
    "HOOKD_KAFKA_HEARTBEAT_INTERVAL_MS": "500",
    "HOOKD_KAFKA_RECONNECT_BACKOFF_MS": "50",
    "HOOKD_KAFKA_RECONNECT_BACKOFF_MAX_MS": "500",
    "HOOKD_KAFKA_TOPIC_METADATA_REFRESH_INTERVAL_MS": "1000",
    "HOOKD_COMMIT_INTERVAL_MS": "100",
}


def start_ingest(services, wait_ready=True, **overrides):
    env = dict(INGEST_ENV)
    env.update({k: str(v) for k, v in overrides.items()})
    return services("ingest", wait_ready=wait_ready, **env)


# ---------------------------------------------------------------- subscriptions

def ensure_schema(db):
    """Applies the migrations once per test database (ingest would at start)."""
    if not getattr(db, "_ingest_migrated", False):
        db.migrate()
        db._ingest_migrated = True


def add_subscription(db, owner_id, event_types, target_url="https://hooks.example.com/h",
                     owner_kind="account", statuses=None, payload_mode="full",
                     body_format="standard", active=True, sub_id=None):
    """INSERTs a subscription with plain SQL (as an admin would); returns the
    row as a dict (id, endpoint_id, event_types as normalised by the trigger)."""
    ensure_schema(db)
    rows = db.query(
        "INSERT INTO subscriptions (id, owner_kind, owner_id, event_types, target_url, statuses,"
        " payload_mode, body_format, active)"
        " VALUES (coalesce(%s, hookd_new_id()), %s, %s, %s, %s, %s, %s, %s, %s)"
        " RETURNING id, owner_kind, owner_id, event_types, endpoint_id, statuses, payload_mode",
        (sub_id, owner_kind, owner_id, list(event_types), target_url, statuses, payload_mode,
         body_format, active))
    return rows[0]


def wait_subscriptions(svc, n, timeout=10):
    """Waits until ingest's matcher holds n active subscriptions."""
    wait_for(lambda: metric(svc.metrics(), "hookd_matcher_subscriptions") == n, timeout=timeout,
             message=f"matcher to hold {n} subscriptions")


# ---------------------------------------------------------------- events

def new_event_id():
    return "evt_" + uuid.uuid4().hex


def event(type_, account, id_=None, directory=None, status=None, previous_status=None,
          data=None, changes=None, extended=None, user=None, occurred_at=None, **extra):
    """A native envelope as a dict."""
    ev = {"id": id_ or new_event_id(), "type": type_, "account": account,
          "data": data if data is not None else {"id": 1}}
    for k, v in (("directory", directory), ("status", status),
                 ("previous_status", previous_status), ("changes", changes),
                 ("extended", extended), ("user", user), ("occurred_at", occurred_at)):
        if v is not None:
            ev[k] = v
    ev.update(extra)
    return ev


def encode(ev):
    return json.dumps(ev, separators=(",", ":")).encode()


def send(kafka, events, topic=EVENTS, config=None):
    """Produces events (dicts are JSON-encoded and keyed by their account;
    bytes/tuples go as given, see hookd_kafka._as_message). Returns
    [(partition, offset)]."""
    msgs = []
    for ev in events:
        if isinstance(ev, dict):
            msgs.append((ev.get("account", "").encode(), encode(ev)))
        else:
            msgs.append(ev)
    return produce(kafka.bootstrap, topic, msgs, config=config)


def expected_job_id(event_id, sub_id):
    """SPEC §6: first 128 bits of SHA-256("<len(event_id)>:<event_id><sub_id>"), hex."""
    e = event_id.encode()
    return hashlib.sha256(str(len(e)).encode() + b":" + e + sub_id.encode()).hexdigest()[:32]


# ---------------------------------------------------------------- progress

def committed(bootstrap, topic, group=GROUP):
    """{partition: committed offset (-1001 when none)} of 'group' on 'topic'."""
    parts = sorted(topic_metadata(bootstrap, topic).partitions)
    conf = {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False}
    conf.update(FAST_CONSUMER_CONFIG)
    c = Consumer(conf)
    try:
        res = c.committed([TopicPartition(topic, p) for p in parts], timeout=10)
        return {tp.partition: tp.offset for tp in res}
    finally:
        c.close()


def wait_processed(kafka, positions, topic=EVENTS, timeout=30, group=GROUP):
    """Waits until ingest has committed past every (partition, offset) in
    'positions': all jobs and dead letters of those messages are then
    acknowledged by the broker."""
    need = {}
    for p, o in positions:
        need[p] = max(need.get(p, -1), o + 1)

    def done():
        got = committed(kafka.bootstrap, topic, group)
        return all(got.get(p, -1) >= o for p, o in need.items())

    wait_for(done, timeout=timeout, interval=0.1,
             message=f"ingest to commit {topic} past {sorted(need.items())}")


def wait_caught_up(kafka, topic=EVENTS, timeout=60, group=GROUP):
    """Waits until ingest has committed up to the high watermark of every
    partition of 'topic'."""
    c = Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": "hookd-e2e-" + uuid.uuid4().hex})
    try:
        ends = {}
        for p in topic_metadata(kafka.bootstrap, topic).partitions:
            ends[p] = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
    finally:
        c.close()
    wait_processed(kafka, [(p, o - 1) for p, o in ends.items() if o > 0], topic, timeout, group)


# ---------------------------------------------------------------- reading output

def jobs(kafka, topic=JOBS):
    """Every job on the jobs topic: dicts with the decoded JSON plus _key and
    _partition."""
    out = []
    for key, value, _headers, partition, offset in consume_all(kafka.bootstrap, topic):
        job = json.loads(value)
        job["_key"] = key.decode() if key is not None else None
        job["_partition"] = partition
        job["_offset"] = offset
        out.append(job)
    return out


def jobs_for(kafka, event_id, topic=JOBS):
    return [j for j in jobs(kafka, topic) if j["event_id"] == event_id]


def wait_jobs(kafka, predicate, count, timeout=20, topic=JOBS):
    """Waits until at least 'count' jobs satisfy predicate(job); returns them."""
    found = []

    def check():
        found[:] = [j for j in jobs(kafka, topic) if predicate(j)]
        return len(found) >= count

    wait_for(check, timeout=timeout, interval=0.2, message=f"{count} matching jobs")
    return list(found)


def dead_letters(kafka, topic=DLQ):
    """Every dead letter: dicts with key, value, headers (dict of str -> bytes,
    last wins), partition, offset."""
    out = []
    for key, value, headers, partition, offset in consume_all(kafka.bootstrap, topic):
        hdrs = {}
        for name, val in headers or []:
            hdrs[name] = val
        out.append({"key": key, "value": value, "headers": hdrs, "header_list": headers or [],
                    "partition": partition, "offset": offset})
    return out


def rejected(svc, reason=None):
    if reason is None:
        return metric(svc.metrics(), "hookd_events_rejected_total")
    return metric(svc.metrics(), "hookd_events_rejected_total", reason=reason)


def now_ms():
    return int(time.time() * 1000)


# ---------------------------------------------------------------- one ingest per module

class SharedIngest:
    """A database, an embedded Kafka and a running hookd-ingest shared by the
    tests of one module (the mock broker's first group join alone takes 3 s).
    Tests use owner ids of their own so they do not see each other's jobs."""

    def __init__(self, pg_cluster, workdir, topics=None, **env):
        from harness import (INGEST_BIN, KAFKA_BIN, Database, EmbeddedKafka, Service, free_port,
                             service_env)
        self.pg_cluster = pg_cluster
        self.db = Database(pg_cluster)
        self.kafka = EmbeddedKafka(str(KAFKA_BIN), topics=topics or {EVENTS: 4, JOBS: 4, DLQ: 1},
                                   brokers=3, workdir=str(workdir))
        self.kafka.start()
        port = free_port()
        full = {"HOOKD_DATABASE_URL": self.db.url, "HOOKD_KAFKA_BROKERS": self.kafka.bootstrap,
                "HOOKD_REQUIRE_HTTPS": "false", "HOOKD_ALLOW_PRIVATE_TARGETS": "true",
                "HOOKD_SHUTDOWN_TIMEOUT_S": "10", "HOOKD_HTTP_ADDR": f"127.0.0.1:{port}"}
        full.update(INGEST_ENV)
        full.update({k: str(v) for k, v in env.items()})
        ensure_schema(self.db)
        self.ingest = Service("ingest-shared", INGEST_BIN, service_env(full), workdir, port)
        self.ingest.start()

    def wait_subscriptions(self, timeout=10):
        """Waits until the matcher holds every active subscription of the database."""
        n = self.db.scalar("SELECT count(*) FROM subscriptions WHERE active")
        wait_subscriptions(self.ingest, n, timeout)

    def close(self):
        """Stops everything; returns ingest's exit status (must be 0)."""
        rc = self.ingest.stop() if self.ingest.alive() else self.ingest.proc.returncode
        self.kafka.stop()
        self.db.close()
        self.pg_cluster.drop_database(self.db.name)
        return rc
