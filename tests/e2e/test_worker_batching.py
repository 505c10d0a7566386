"""hookd-worker batching (SPEC §7): jobs of one subscription at one endpoint
within HOOKD_BATCH_WINDOW_MS share a request (up to HOOKD_BATCH_MAX),
batch=false sends one job per request, window 0 sends at once."""

import json

import pytest

from harness import metric, wait_for
from worker_helpers import (body_ids, insert_subscription, make_job, produce_jobs, request_id,
                            start_worker, verify, wait_finished)


def test_250_jobs_in_one_window_make_three_ordered_requests(db, kafka, services, receiver):
    db.migrate()
    sub = insert_subscription(db, receiver.url())
    worker = start_worker(services, HOOKD_BATCH_WINDOW_MS=4000, HOOKD_BATCH_MAX=100)
    jobs = [make_job(sub, "evt_%03d" % i) for i in range(250)]
    produce_jobs(kafka, jobs)

    reqs = receiver.wait_count(3, timeout=30)
    wait_finished(db, [j["id"] for j in jobs], "delivered")
    reqs = receiver.snapshot()
    assert [len(json.loads(r["body"])) for r in reqs] == [100, 100, 50]
    ids = [i for r in reqs for i in body_ids(r)]
    assert ids == ["evt_%03d" % i for i in range(250)]  # partition order, across requests
    job_of = {j["event_id"]: j["id"] for j in jobs}
    for r in reqs:
        assert verify(sub["secret"], r)
        # the webhook-id of a batch is derived from all its job ids, in order
        assert r["headers"]["webhook-id"] == request_id([job_of[e] for e in body_ids(r)])
    m = worker.metrics()
    assert metric(m, "hookd_batch_size_count") == 3
    assert metric(m, "hookd_deliveries_total", outcome="success") == 250
    # the delivery log has one row per request, naming its jobs in order; it
    # was written with them: created_at is their finished_at
    rows = db.query("SELECT replace(job_id::text, '-', '') AS job_id, webhook_id, batch_size,"
                    " outcome, attempt, event_id, (SELECT array_agg(replace(x::text, '-', ''))"
                    " FROM unnest(job_ids) x) AS job_ids,"
                    " (SELECT bool_and(f.finished_at = d.created_at) FROM finished_jobs f"
                    "  WHERE f.job_id = ANY(d.job_ids)) AS same_time"
                    " FROM deliveries d ORDER BY id")
    assert [(r["batch_size"], len(r["job_ids"])) for r in rows] == [(100, 100), (100, 100), (50, 50)]
    assert [i for r in rows for i in r["job_ids"]] == [j["id"] for j in jobs]
    assert all(r["outcome"] == "success" and r["attempt"] == 1 and r["same_time"] for r in rows)
    assert [r["webhook_id"] for r in rows] == [request_id(r["job_ids"]) for r in rows]
    assert [(r["job_id"], r["event_id"]) for r in rows] == \
        [(jobs[k]["id"], jobs[k]["event_id"]) for k in (0, 100, 200)]


def test_batch_false_sends_one_object_per_request(db, kafka, services, receiver):
    db.migrate()
    sub = insert_subscription(db, receiver.url(), batch=False)
    start_worker(services, HOOKD_BATCH_WINDOW_MS=2000)
    jobs = [make_job(sub, "evt_%03d" % i) for i in range(250)]
    produce_jobs(kafka, jobs)

    receiver.wait_count(250, timeout=60)
    wait_finished(db, [j["id"] for j in jobs], "delivered")
    reqs = receiver.snapshot()
    assert len(reqs) == 250
    bodies = [json.loads(r["body"]) for r in reqs]
    assert all(isinstance(b, dict) for b in bodies)
    # one request in flight per endpoint (HOOKD_ENDPOINT_CONCURRENCY=1): strict order
    assert [b["id"] for b in bodies] == ["evt_%03d" % i for i in range(250)]
    assert [r["headers"]["webhook-id"] for r in reqs] == [j["id"] for j in jobs]


def test_window_zero_sends_at_once(db, kafka, services, receiver):
    db.migrate()
    sub = insert_subscription(db, receiver.url())
    # a window that would outlast the test if it applied ...
    start_worker(services, HOOKD_BATCH_WINDOW_MS=0)
    job = make_job(sub, "evt_now")
    produce_jobs(kafka, [job])
    # ... so this arriving proves the job was not held for a window
    reqs = receiver.wait_count(1, timeout=15)
    assert json.loads(reqs[0]["body"])[0]["id"] == "evt_now"
    assert reqs[0]["headers"]["webhook-id"] == job["id"]


def test_long_window_holds_jobs_until_it_ends(db, kafka, services, receiver):
    db.migrate()
    sub = insert_subscription(db, receiver.url())
    start_worker(services, HOOKD_BATCH_WINDOW_MS=3000)
    produce_jobs(kafka, [make_job(sub, "evt_a")])
    # the job is consumed and waits in its window ...
    wait_for(lambda: db.scalar("SELECT count(*) FROM finished_jobs") == 0 and receiver.count() == 0,
             timeout=5, message="nothing sent yet")
    produce_jobs(kafka, [make_job(sub, "evt_b")])
    # ... and the second one joins it in the same request
    reqs = receiver.wait_count(1, timeout=20)
    wait_for(lambda: db.scalar("SELECT count(*) FROM finished_jobs") == 2, timeout=20,
             message="both jobs finished")
    assert receiver.count() == 1
    assert body_ids(reqs[0]) == ["evt_a", "evt_b"]


def test_jobs_of_two_subscriptions_at_one_endpoint_are_batched_per_subscription(
        db, kafka, services, receiver):
    db.migrate()
    a = insert_subscription(db, receiver.url(), event_types=["client/*"])
    b = insert_subscription(db, receiver.url(), event_types=["payment/*"])
    assert a["endpoint_id"] == b["endpoint_id"]
    start_worker(services, HOOKD_BATCH_WINDOW_MS=2000)
    jobs = []
    for i in range(6):
        jobs.append(make_job(a if i % 2 == 0 else b, "evt_%d" % i))
    produce_jobs(kafka, jobs)
    wait_finished(db, [j["id"] for j in jobs], "delivered")
    reqs = receiver.snapshot()
    assert len(reqs) == 2
    by_sig = {}
    for r in reqs:
        owner = a if verify(a["secret"], r) else b
        assert verify(owner["secret"], r)
        by_sig[owner["id"]] = body_ids(r)
    assert by_sig[a["id"]] == ["evt_0", "evt_2", "evt_4"]
    assert by_sig[b["id"]] == ["evt_1", "evt_3", "evt_5"]


def test_a_backlog_beyond_the_memory_bound_is_delivered_once_in_order(db, kafka, services, receiver):
    """12,000 jobs of ~900 bytes (more than the worker holds: 8,000 jobs /
    6 MiB, and more than its 4 MiB prefetch): consumption is held back, the
    prefetch fills, and librdkafka 2.0 would stop fetching for up to a second
    each time; the worker wakes the fetch as it takes messages again
    (hookd_worker_fetch_pokes_total) and restarts it when the queue ran dry
    (hookd_worker_fetch_wakes_total), without losing, repeating or
    reordering a job."""
    db.migrate()
    subs = [insert_subscription(db, receiver.url("/ep/%d" % i)) for i in range(20)]
    pad = "x" * 700
    jobs = [make_job(subs[i % 20], "evt_%05d" % i, payload={"n": i, "pad": pad}) for i in range(12000)]
    # endpoint i on partition i % 4, so no partition holds more than ~2.7 MB
    # (the embedded broker drops the oldest data beyond 5 MiB per partition)
    for part in range(4):
        produce_jobs(kafka, [j for n, j in enumerate(jobs) if n % 20 % 4 == part], partition=part)
    worker = start_worker(services, HOOKD_BATCH_WINDOW_MS=200, HOOKD_BATCH_MAX=100)
    wait_finished(db, [j["id"] for j in jobs], "delivered", timeout=120)
    per_endpoint = {}
    for r in receiver.snapshot():
        per_endpoint.setdefault(r["path"], []).extend(body_ids(r))
    for i in range(20):
        got = per_endpoint.get("/ep/%d" % i, [])
        assert got == ["evt_%05d" % n for n in range(i, 12000, 20)]  # each once, in order
    m = worker.metrics()
    assert metric(m, "hookd_jobs_held") == 0
    assert metric(m, "hookd_worker_fetch_pokes_total") >= 1
    assert metric(m, "hookd_deliveries_total", outcome="success") == 12000


@pytest.mark.parametrize("env", [{}, {"HOOKD_KAFKA_MESSAGE_MAX_BYTES": 2000000}],
                         ids=["default", "operator_message_max_bytes"])
def test_jobs_bigger_than_a_fetch_are_delivered_whole_and_in_order(db, kafka, services, receiver, env):
    """The worker fetches 256 KiB per broker response (to bound memory);
    a job of ~700 KB still comes through whole, between small ones, in
    order. With an operator's larger message.max.bytes the fetch limit
    follows it (librdkafka refuses fetch.max.bytes below it)."""
    db.migrate()
    sub = insert_subscription(db, receiver.url("/big"), batch=False)
    big = "y" * 700_000
    jobs = [make_job(sub, "evt_%d" % i, payload={"n": i, "pad": big if i % 2 else ""})
            for i in range(6)]
    produce_jobs(kafka, jobs)
    start_worker(services, HOOKD_BATCH_MAX_BYTES=1048576, **env)
    reqs = receiver.wait_count(6, timeout=60)
    bodies = [json.loads(r["body"]) for r in reqs]
    assert [b["id"] for b in bodies] == ["evt_%d" % i for i in range(6)]
    assert [len(b["data"]["pad"]) for b in bodies] == [0, 700_000] * 3
    assert all(verify(sub["secret"], r) for r in reqs)
