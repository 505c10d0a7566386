"""hookd-worker crash safety (SPEC §6, §7): 10,000 jobs, the worker killed
with SIGKILL five times at random moments and restarted each time. Every
job reaches its receiver; a job is only ever sent again after a crash, with
the webhook-id it had before, and per crash no more jobs are sent again
than the in-flight limit (a request slot is only given back once the
outcome is durable in PostgreSQL)."""

import collections
import os
import random
import time

from harness import wait_for
from worker_helpers import finished_states, insert_subscription, make_job, produce_jobs, start_worker

JOBS = 10000
ENDPOINTS = 20
CRASHES = 5
MAX_INFLIGHT = 32


def wait_quiet(receiver, quiet_s=0.3, timeout=15):
    """Waits until the receiver has recorded no request for quiet_s."""
    last, changed = receiver.count(), time.monotonic()
    deadline = changed + timeout
    while time.monotonic() - changed < quiet_s:
        assert time.monotonic() < deadline, "the receiver never went quiet"
        time.sleep(0.02)
        n = receiver.count()
        if n != last:
            last, changed = n, time.monotonic()


def test_kill_9_five_times_loses_nothing(db, kafka, services, receiver):
    seed = int(os.environ.get("HOOKD_CRASH_SEED", time.time()))
    rnd = random.Random(seed)
    print("crash test seed", seed)
    db.migrate()
    subs = [insert_subscription(db, receiver.url("/hook/%d" % i), batch=False)
            for i in range(ENDPOINTS)]
    jobs = [make_job(subs[i % ENDPOINTS], "evt_%05d" % i) for i in range(JOBS)]
    produce_jobs(kafka, jobs)
    env = {"HOOKD_MAX_INFLIGHT": MAX_INFLIGHT, "HOOKD_ENDPOINT_CONCURRENCY": 2}

    runs = []  # (started_at, killed_at)
    for _ in range(CRASHES):
        start = time.time()
        worker = start_worker(services, **env)
        base = receiver.count()
        target = base + rnd.randint(300, 1500)
        wait_for(lambda: receiver.count() >= target, timeout=120, interval=0.01,
                 message="deliveries before the crash")
        time.sleep(rnd.random() * 0.2)
        worker.kill9()
        # requests the killed worker wrote may still wait in the receiver's
        # socket buffers: let it handle them, so each is stamped before the
        # next run starts and attributed to the run that sent it
        wait_quiet(receiver)
        runs.append((start, time.time()))
    start = time.time()
    worker = start_worker(services, **env)
    ids = {j["id"] for j in jobs}
    wait_for(lambda: ids <= {r["headers"]["webhook-id"] for r in receiver.snapshot()},
             timeout=300, interval=0.5, message="every job delivered")
    wait_for(lambda: sum(1 for s in finished_states(db).values() if s == "delivered") == JOBS,
             timeout=60, message="every job finished")
    assert worker.stop() == 0
    runs.append((start, time.time()))

    # which run sent each request (a new run starts seconds after a kill)
    reqs = receiver.snapshot()
    by_run = [[] for _ in runs]
    for r in reqs:
        k = max(i for i, (s, _) in enumerate(runs) if r["time"] >= s)
        by_run[k].append(r["headers"]["webhook-id"])
    assert sum(len(b) for b in by_run) == len(reqs)
    for k, sent in enumerate(by_run):
        # no job twice within one run: duplicates come from crashes only
        dup = [i for i, n in collections.Counter(sent).items() if n > 1]
        assert dup == [], "run %d sent %d jobs twice" % (k, len(dup))
        assert set(sent) <= ids
    resent_total = 0
    for k in range(CRASHES):
        before = set(by_run[k])
        later = set().union(*by_run[k + 1:])
        earlier = set().union(*by_run[:k]) if k else set()
        resent = (before & later) - earlier
        resent_total += len(resent)
        print("crash %d: run sent %d, %d sent again later" % (k, len(before), len(resent)))
        assert len(resent) <= MAX_INFLIGHT, (k, len(resent))
    assert len(reqs) - len(ids) <= CRASHES * MAX_INFLIGHT
    assert db.scalar("SELECT count(*) FROM parked_jobs") == 0
    print("requests %d for %d jobs (%d re-sent after crashes)" % (len(reqs), JOBS, resent_total))


def test_workers_joining_and_leaving_share_the_work(db, kafka, services, receiver):
    """Cooperative rebalances: a second worker joins mid-way (partitions
    move to it), then the first one stops (its partitions move too). What
    each had done stays done; the rest is delivered by the other."""
    db.migrate()
    subs = [insert_subscription(db, receiver.url("/r/%d" % i), batch=False) for i in range(16)]
    receiver.delay = 0.02
    jobs = [make_job(subs[i % 16], "evt_%05d" % i) for i in range(4000)]
    produce_jobs(kafka, jobs)
    env = {"HOOKD_MAX_INFLIGHT": MAX_INFLIGHT}
    a = start_worker(services, **env)
    wait_for(lambda: receiver.count() >= 500, timeout=60, message="first deliveries")
    b = start_worker(services, **env)
    wait_for(lambda: any(r.get("msg") == "partitions_assigned" for r in b.log_records()),
             timeout=60, message="the second worker to get partitions")
    wait_for(lambda: any(r.get("msg") in ("partitions_revoked", "partitions_lost")
                         for r in a.log_records()),
             timeout=60, message="the first worker to give some up")
    assert a.stop() == 0
    ids = {j["id"] for j in jobs}
    wait_for(lambda: sum(1 for s in finished_states(db).values() if s == "delivered") == len(ids),
             timeout=120, message="every job delivered")
    sent = [r["headers"]["webhook-id"] for r in receiver.snapshot()]
    assert set(sent) == ids
    # a partition changing hands may re-send what was in flight at that moment
    assert len(sent) - len(ids) <= 2 * MAX_INFLIGHT
    delivered_by_b = [r for r in b.log_records() if r.get("msg") == "partitions_assigned"]
    assert delivered_by_b
    assert b.stop() == 0
