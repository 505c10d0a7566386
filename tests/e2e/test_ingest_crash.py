"""Ingest pipeline, crash safety (SPEC §6): 20,000 events arrive while ingest
is killed with SIGKILL at random moments and restarted; in the end the jobs
topic holds exactly the expected set of job ids (nothing lost), each the
deterministic id of (event, subscription); re-published copies are counted."""

import json
import random
import threading
import time

from harness import metric, wait_for
from hookd_kafka import produce
from ingest_helpers import (add_subscription, committed, event, expected_job_id, jobs, start_ingest,
                            wait_caught_up, wait_subscriptions)

TOPIC = "crash.events"
JOBS_TOPIC = "crash.jobs"
PARTITIONS = 16
EVENTS = 20_000
ACCOUNTS = 40
KILLS = 6


def consumed(svc):
    try:
        return metric(svc.metrics(), "hookd_events_consumed_total")
    except OSError:
        return 0


def test_kill9_at_random_moments_loses_nothing(services, db, kafka, record_property):
    kafka.create_topic(TOPIC, PARTITIONS)
    kafka.create_topic(JOBS_TOPIC, PARTITIONS)
    subs = {}
    for a in range(ACCOUNTS):
        acct = f"crash_{a}"
        subs[acct] = add_subscription(db, acct, ["client/created", "client/updated"],
                                      payload_mode=("basic", "full", "extended")[a % 3],
                                      target_url=f"https://r{a % 7}.example.com/hook")["id"]
    rnd = random.Random(20_000)
    evs = [event(rnd.choice(["client/created", "client/updated"]), f"crash_{i % ACCOUNTS}",
                 data={"n": i, "pad": "p" * rnd.randint(0, 200)}, changes={"n": i})
           for i in range(EVENTS)]
    expected = {expected_job_id(e["id"], subs[e["account"]]) for e in evs}

    # events keep arriving (~40 s) while ingest is killed and restarted
    produced = []
    errors = []

    def producer():
        try:
            chunk = 250
            for i in range(0, EVENTS, chunk):
                part = evs[i:i + chunk]
                produced.extend(produce(kafka.bootstrap, TOPIC,
                                        [(e["account"].encode(), json.dumps(e).encode())
                                         for e in part]))
                time.sleep(0.5)
        except Exception as exc:  # reported by the main thread
            errors.append(exc)

    ingest = start_ingest(services, HOOKD_INGEST_TOPICS=TOPIC, HOOKD_JOBS_TOPIC=JOBS_TOPIC)
    wait_subscriptions(ingest, ACCOUNTS)
    t = threading.Thread(target=producer, daemon=True)
    t.start()

    kills = 0
    for k in range(KILLS):
        if k % 2 == 0:
            # after a random amount of progress (this run's consumption)
            target = rnd.randint(100, 2500)
            deadline = time.monotonic() + 20
            while consumed(ingest) < target and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(rnd.uniform(0, 0.3))
        else:
            # at a random moment soon after start (possibly before it owns partitions)
            time.sleep(rnd.uniform(0.2, 1.0))
        assert ingest.alive(), ingest.logs()[-3000:]
        ingest.kill9()
        kills += 1
        ingest.restart(wait_ready=False)

    t.join(timeout=180)
    assert not t.is_alive() and not errors, errors
    assert len(produced) == EVENTS
    ingest.wait_ready(timeout=60)
    wait_caught_up(kafka, TOPIC, timeout=180)

    got = jobs(kafka, JOBS_TOPIC)
    ids = [j["id"] for j in got]
    for j in got:
        assert j["id"] == expected_job_id(j["event_id"], j["subscription_id"])
        acct = j["account"]
        assert subs[acct] == j["subscription_id"]
    assert set(ids) == expected  # nothing lost, nothing unexpected
    duplicates = len(ids) - len(set(ids))
    in_topic = sum(committed(kafka.bootstrap, TOPIC).values())  # == high watermarks now
    assert in_topic == EVENTS  # the producer wrote each event once: duplicates are replays
    record_property("kills", kills)
    record_property("duplicates", duplicates)
    print(f"\ncrash test: {EVENTS} events, {kills} kill -9, {len(ids)} jobs, "
          f"{duplicates} re-published duplicates")
    assert kills >= 5
    assert ingest.starts == kills + 1
    wait_for(lambda: metric(ingest.metrics(), "hookd_jobs_pending") == 0, timeout=10,
             message="no pending jobs")
