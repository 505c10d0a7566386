"""Chaos across the whole pipeline (issue #8, SPEC §6): events matched
against 1,000 subscriptions (1,000 endpoints spread over a few receivers)
flow through hookd-ingest and hookd-worker while ingest and worker are
killed with SIGKILL alternately, at random moments, and restarted at once.

Proves, for the whole run:
- nothing is lost: every (event, subscription) pair that matches reaches
  its receiver, and every job is 'delivered' in finished_jobs;
- the jobs topic holds exactly the expected job ids, each the
  deterministic id of its (event, subscription); the only repeats are
  identical copies that a killed ingest published again;
- receivers see an item twice only when a killed worker had its request in
  flight: the repeat comes from a later worker run (or is a logged retry),
  and there are at most HOOKD_MAX_INFLIGHT re-sent requests per worker
  kill; every request's webhook-id is derived from its items' job ids
  (the job id of a single item), and requests that share a webhook-id
  carry exactly the same items, so a receiver that drops repeated
  webhook-ids never drops an item it has not seen;
- a repeat carries a webhook-id that an earlier request holding that item
  carried (SPEC §6), with one exception the test counts and prints instead
  of failing on: an item of a batched subscription whose batch was in
  flight at a kill may come back in a batch composed differently (the
  restarted worker forms batches from what it reads then; it cannot know
  what was in flight), under that batch's own new webhook-id.
  Subscriptions without batching must keep their webhook-id;
- both services, restarted many times, still stop cleanly (exit 0, no
  sanitizer report).

Default size: 10,000 events, >= 20 kills. HOOKD_SOAK=1 (tests/run --soak):
100,000 events. HOOKD_CHAOS_SEED=<n> replays a seed's choices."""

import bisect
import collections
import json
import os
import random
import threading
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from chaos_helpers import (ReceiverLog, RecordingReceiver, assigned_since_start, chaos_event, chaos_plan,
                           insert_plan, matching_subscriptions)
from harness import metric, wait_for
from hookd_kafka import FAST_PRODUCER_CONFIG, consume_all, topic_metadata
from ingest_helpers import INGEST_ENV, expected_job_id, wait_caught_up, wait_subscriptions
from worker_helpers import FAST_WORKER, request_id

SOAK = os.environ.get("HOOKD_SOAK") == "1"
EVENTS = 100_000 if SOAK else 10_000
MIN_KILLS = 20
PRODUCE_S = 100 if SOAK else 80        # events arrive evenly over this time
ROUNDS = PRODUCE_S * 5                  # produce rounds (every 0.2 s)
CHAOS_UNTIL = 0.8                       # keep killing until this share is delivered
ACCOUNTS, DIRECTORIES = 400, 50         # 2 subscriptions per account, 4 per directory
RECEIVERS = 4
RECEIVER_DELAY_MS = 30                  # each response after 0..30 ms
PARTITIONS = 32                         # the mock keeps ~5 MiB per partition:
JOBS_PARTITIONS = 64 if SOAK else 32    # soak: ~200,000 jobs (with re-published ones) of ~440 bytes
EVENTS_TOPIC = "chaos.events"
JOBS_TOPIC = "chaos.jobs"
MAX_INFLIGHT = 256

KAFKA_FAST = {
    "HOOKD_KAFKA_SESSION_TIMEOUT_MS": 4000,
    "HOOKD_KAFKA_HEARTBEAT_INTERVAL_MS": 500,
}
INGEST = dict(INGEST_ENV, HOOKD_INGEST_TOPICS=EVENTS_TOPIC, HOOKD_JOBS_TOPIC=JOBS_TOPIC, **KAFKA_FAST)
WORKER = dict(FAST_WORKER, HOOKD_JOBS_TOPIC=JOBS_TOPIC, HOOKD_MAX_INFLIGHT=MAX_INFLIGHT,
              HOOKD_BATCH_WINDOW_MS=100, HOOKD_HTTP_TIMEOUT_MS=30000, HOOKD_CONNECT_TIMEOUT_MS=10000,
              HOOKD_RETRY_SCHEDULE="200ms,500ms,1s,2s,5s", HOOKD_GREYLIST_BASE_S=1,
              HOOKD_DELIVERY_LOG="failures", **KAFKA_FAST)


@pytest.fixture
def recording_receivers(tmp_path):
    made = []

    def make(n):
        for i in range(n):
            made.append(RecordingReceiver(tmp_path / ("receiver-%d.log" % i), RECEIVER_DELAY_MS))
        return list(made)

    yield make
    for r in made:
        r.stop()


def progress(svc, name, **labels):
    """A counter of 'svc' (0 while it is not serving metrics yet)."""
    try:
        return metric(svc.metrics(), name, **labels)
    except (OSError, AssertionError):
        return 0


def watermarks(bootstrap, topic):
    """{partition: (low, high)}."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "hookd-e2e-wm"})
    try:
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                for p in topic_metadata(bootstrap, topic).partitions}
    finally:
        c.close()


class EventProducer(threading.Thread):
    """Produces EVENTS chaos events evenly over PRODUCE_S seconds while the
    services are being killed; 'expected' maps event id -> matching
    subscription ids."""

    def __init__(self, bootstrap, index, seed):
        super().__init__(daemon=True)
        self.bootstrap = bootstrap
        self.index = index
        self.rnd = random.Random(seed)
        self.expected = {}
        self.expected_count = 0  # deliveries expected so far
        self.produced = 0
        self.errors = []

    def run(self):
        try:
            conf = {"bootstrap.servers": self.bootstrap, "enable.idempotence": True, "linger.ms": 5,
                    "message.timeout.ms": 120000}
            conf.update(FAST_PRODUCER_CONFIG)
            producer = Producer(conf)

            def report(err, _msg):
                if err is not None:
                    self.errors.append(err)
                else:
                    self.produced += 1

            began = time.monotonic()
            chunk = EVENTS // ROUNDS
            for r, start in enumerate(range(0, EVENTS, chunk)):
                for n in range(start, min(EVENTS, start + chunk)):
                    ev = chaos_event(self.rnd, n, ACCOUNTS, DIRECTORIES)
                    self.expected[ev["id"]] = matching_subscriptions(self.index, ev)
                    self.expected_count += len(self.expected[ev["id"]])
                    value = json.dumps(ev, separators=(",", ":")).encode()
                    while True:
                        try:
                            producer.produce(EVENTS_TOPIC, value, key=ev["account"].encode(),
                                             on_delivery=report)
                            break
                        except BufferError:
                            producer.poll(0.05)
                assert producer.flush(120) == 0, "events not acknowledged"
                time.sleep(max(0.0, began + (r + 1) * PRODUCE_S / ROUNDS - time.monotonic()))
        except Exception as exc:  # reported by the test
            self.errors.append(exc)


def test_chaos_kill9_ingest_and_worker_alternately(db, kafka, services, recording_receivers):
    seed = int(os.environ.get("HOOKD_CHAOS_SEED", time.time()))
    rnd = random.Random(seed)
    began = time.monotonic()
    print("\nchaos: seed %d, %d events, soak=%s" % (seed, EVENTS, SOAK))
    kafka.create_topic(EVENTS_TOPIC, PARTITIONS)
    kafka.create_topic(JOBS_TOPIC, JOBS_PARTITIONS)
    db.migrate()

    receivers = recording_receivers(RECEIVERS)
    logs = [ReceiverLog(r.log_path, i) for i, r in enumerate(receivers)]
    plan = chaos_plan(ACCOUNTS, DIRECTORIES)
    subs = insert_plan(db, plan, lambda i: receivers[i % RECEIVERS].url("/s/%d" % i))
    assert len(subs) == 1000 and len({s["endpoint_id"] for s in subs}) == 1000
    sub_at = {(i % RECEIVERS, "/s/%d" % i): s["id"] for i, s in enumerate(subs)}
    index = collections.defaultdict(list)
    for s in subs:
        index[(s["owner_kind"], s["owner_id"])].append(s)

    ingest = services("ingest", **INGEST)
    wait_subscriptions(ingest, len(subs), timeout=30)
    worker = services("worker", **WORKER)
    producer = EventProducer(kafka.bootstrap, index, rnd.getrandbits(32))
    producer.start()

    delivered = set()  # (subscription id, event id)

    def read_receivers():
        for log in logs:
            for rec in log.poll():
                sub = sub_at.get((rec[1], rec[4]))
                delivered.update((sub, e) for e in rec[5])
        return len(delivered)

    # ---- chaos: kill -9 alternately, at random moments, restart at once
    kills = []                        # (time, "ingest" | "worker", how)
    worker_starts = [time.time()]     # start time of every worker run
    victims = [ingest, worker]
    n = 0
    while True:
        expected_so_far = producer.expected_count
        done_producing = not producer.is_alive()
        if (len(kills) >= MIN_KILLS and done_producing
                and read_receivers() >= CHAOS_UNTIL * expected_so_far):
            break
        assert not producer.errors, producer.errors
        svc = victims[n % 2]
        kind = "ingest" if svc is ingest else "worker"
        if rnd.random() < 0.3:
            how = "early"  # shortly after the previous kill: often still starting or joining
            time.sleep(rnd.uniform(0.1, 1.5))
        else:
            how = "busy"   # while it is working, a random moment after it was seen working
            counter = ("hookd_events_consumed_total" if kind == "ingest"
                       else "hookd_deliveries_total")
            deadline = time.monotonic() + 10
            last = progress(svc, counter)
            while time.monotonic() < deadline:
                time.sleep(0.1)
                now = progress(svc, counter)
                if now > last > 0:
                    break
                last = now
            time.sleep(rnd.uniform(0, 0.3))
        assert svc.alive(), "%s died by itself:\n%s" % (svc.name, svc.logs()[-4000:])
        svc.kill9()
        kills.append((time.time(), kind, how))
        if svc is worker:
            worker_starts.append(time.time())
        svc.restart(wait_ready=False)
        n += 1
    chaos_s = time.monotonic() - began
    producer.join(timeout=600)
    assert not producer.is_alive() and not producer.errors, producer.errors
    assert producer.produced == EVENTS

    # ---- drain: everything delivered and finished, ingest caught up
    expected = {(sid, eid) for eid, sids in producer.expected.items() for sid in sids}
    expected_ids = {expected_job_id(eid, sid) for sid, eid in expected}
    ingest.wait_ready(timeout=60)
    worker.wait_ready(timeout=60)
    wait_for(lambda: read_receivers() >= len(expected) and expected <= delivered,
             timeout=1800 if SOAK else 300, interval=0.5,
             message="every (event, subscription) at its receiver (%d expected)" % len(expected))
    wait_for(lambda: db.scalar("SELECT count(*) FROM finished_jobs WHERE state = 'delivered'")
             >= len(expected_ids), timeout=120, interval=0.5, message="every job finished")
    wait_caught_up(kafka, EVENTS_TOPIC, timeout=120)
    for svc in (worker, ingest):
        wait_for(lambda: assigned_since_start(svc), timeout=60,
                 message="%s to own partitions before the clean stop" % svc.name)
    assert worker.stop() == 0, worker.logs()[-4000:]
    assert ingest.stop() == 0, ingest.logs()[-4000:]
    for r in receivers:
        r.stop()
    read_receivers()

    # ---- the topics
    for topic in (EVENTS_TOPIC, JOBS_TOPIC):
        wm = watermarks(kafka.bootstrap, topic)
        assert all(lo == 0 for lo, _ in wm.values()), "the mock pruned %s: %r" % (topic, wm)
    assert sum(hi for _, hi in watermarks(kafka.bootstrap, EVENTS_TOPIC).values()) == EVENTS
    first_copy = {}
    republished = 0
    for _key, value, _h, _p, _o in consume_all(kafka.bootstrap, JOBS_TOPIC, timeout=300):
        job = json.loads(value)
        assert job["id"] == expected_job_id(job["event_id"], job["subscription_id"]), job
        job.pop("ingested_at_ms", None)
        if job["id"] in first_copy:
            republished += 1
            assert job == first_copy[job["id"]], "a re-published job differs from its first copy"
        else:
            first_copy[job["id"]] = job
    assert set(first_copy) == expected_ids, (
        "jobs topic: %d missing, %d unexpected" % (len(expected_ids - set(first_copy)),
                                                   len(set(first_copy) - expected_ids)))

    # ---- the worker's records
    states = collections.Counter(r["state"] for r in db.query(
        "SELECT state FROM finished_jobs"))
    assert states == {"delivered": len(expected_ids)}, states
    assert db.scalar("SELECT count(*) FROM parked_jobs") == 0
    retried = {r["id"] for r in db.query(  # jobs with an attempt that was not a success
        "SELECT DISTINCT replace(j::text, '-', '') AS id"
        " FROM deliveries, unnest(coalesce(job_ids, ARRAY[job_id])) AS j WHERE outcome <> 'success'")}

    # ---- the receivers
    errors = [e for log in logs for e in log.errors]
    assert not errors, errors[:5]
    records = sorted((rec for log in logs for rec in log.records), key=lambda rec: rec[0])

    def run_of(t):
        """The worker run that sent a request the kernel received at 't': a
        killed run's bytes all arrived before it died, so before the next
        run's start was taken."""
        return bisect.bisect_right(worker_starts, t) - 1

    batched = {s["id"]: p["batch"] for s, p in zip(subs, plan)}
    seen = {}             # item -> [(run, webhook-id)] of the requests that carried it
    dup = collections.Counter()  # items, requests, same (webhook-id), reformed (items / requests)
    dup_wids = set()
    items_of = {}         # webhook-id -> the items of the first request that carried it
    unexpected = []
    for t, recv, _conn, wid, path, eids in records:
        sub = sub_at.get((recv, path))
        assert sub is not None and eids, (path, eids)
        assert wid == request_id([expected_job_id(e, sub) for e in eids]), \
            "webhook-id is not derived from the request's job ids"
        assert items_of.setdefault(wid, eids) == eids, (
            "webhook-id %s carried %r, then %r" % (wid, items_of[wid], eids))
        run = run_of(t)
        repeat = reformed = False
        for eid in eids:
            item = (sub, eid)
            if item not in expected:
                unexpected.append(item)
                continue
            before = seen.setdefault(item, [])
            if before:
                repeat = True
                dup["items"] += 1
                job = expected_job_id(eid, sub)
                assert any(r < run for r, _ in before) or job in retried, (
                    "item %r sent twice by worker run %d without a crash or retry" % (item, run))
                if wid in {w for _, w in before}:
                    dup["same"] += 1
                else:
                    assert batched[sub], (
                        "item %r of an unbatched subscription sent again with webhook-id %s, "
                        "never seen with it before (%r)" % (item, wid, before))
                    dup["reformed"] += 1
                    reformed = True
            before.append((run, wid))
        if repeat:
            dup["requests"] += 1
            dup_wids.add(wid)
        if reformed:
            dup["reformed_requests"] += 1
    assert not unexpected, unexpected[:5]
    lost = expected - set(seen)
    assert not lost, "%d lost, e.g. %r" % (len(lost), sorted(lost)[:5])
    worker_kills = sum(1 for _, kind, _ in kills if kind == "worker")
    ingest_kills = len(kills) - worker_kills
    assert dup["requests"] <= worker_kills * MAX_INFLIGHT

    assert len(kills) >= MIN_KILLS and worker_kills >= MIN_KILLS // 2 and ingest_kills >= MIN_KILLS // 2
    assert ingest.starts == ingest_kills + 1 and worker.starts == worker_kills + 1
    print("chaos: %d events, %d subscriptions, %d expected deliveries, %d requests"
          % (EVENTS, len(subs), len(expected), len(records)))
    print("chaos: %d kills (%d ingest, %d worker; %d early, %d busy) in %.0f s of chaos"
          % (len(kills), ingest_kills, worker_kills, sum(1 for k in kills if k[2] == "early"),
             sum(1 for k in kills if k[2] == "busy"), chaos_s))
    print("chaos: lost 0; re-published jobs %d (of %d in the topic); jobs with a retried attempt %d"
          % (republished, len(expected_ids) + republished, len(retried)))
    print("chaos: duplicates at receivers: %d items in %d requests (%d distinct webhook-ids), "
          "all re-sent after a worker kill; %d items with a webhook-id seen before with them, "
          "%d items in %d re-formed batches under a new webhook-id; total %.0f s"
          % (dup["items"], dup["requests"], len(dup_wids), dup["same"], dup["reformed"],
             dup["reformed_requests"], time.monotonic() - began))
