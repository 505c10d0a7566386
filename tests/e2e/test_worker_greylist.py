"""hookd-worker grey-listing (SPEC §7) with compressed timing: after
HOOKD_GREYLIST_THRESHOLD consecutive failures nothing is sent until the
period ends, then exactly one probe (the oldest parked job); failed probes
double the period up to the cap; a successful probe releases the parked
jobs in their original order. The state lives in PostgreSQL and survives a
worker restart. A hanging endpoint does not hold up a healthy one."""

import datetime
import threading
import time

from harness import metric, wait_for
from worker_helpers import (body_ids, encode, endpoint_row, finished_states, insert_subscription,
                            make_job, produce_jobs, start_worker, wait_finished)

GREY = {
    "HOOKD_GREYLIST_THRESHOLD": 3,
    "HOOKD_GREYLIST_BASE_S": 1,
    "HOOKD_GREYLIST_MAX_S": 4,
    "HOOKD_RETRY_SCHEDULE": ",".join(["200ms"] * 10),
}


class EndpointWatcher:
    """Polls the endpoint row and records every grey-list period it sees:
    (level, period start = last_failure_at, end = greylisted_until)."""

    def __init__(self, db, endpoint_id):
        self.db, self.endpoint_id = db, endpoint_id
        self.periods = []
        self.stop_flag = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        import psycopg2
        conn = psycopg2.connect(self.db.url)
        conn.autocommit = True
        cur = conn.cursor()
        while not self.stop_flag:
            cur.execute("SELECT greylist_level, last_failure_at, greylisted_until FROM endpoints"
                        " WHERE id = %s", (self.endpoint_id,))
            level, start, until = cur.fetchone()
            if until is not None and (not self.periods or self.periods[-1][2] != until):
                self.periods.append((level, start, until))
            time.sleep(0.02)
        conn.close()

    def stop(self):
        self.stop_flag = True
        self.thread.join()


def ts(request):
    return datetime.datetime.fromtimestamp(request["time"], tz=datetime.timezone.utc)


def test_greylist_periods_probe_release_and_restart(db, kafka, services, receiver):
    db.migrate()
    sub = insert_subscription(db, receiver.url(), batch=False)
    ep = sub["endpoint_id"]
    receiver.status = 503
    watcher = EndpointWatcher(db, ep)
    worker = start_worker(services, **GREY)
    jobs = [make_job(sub, "evt_%d" % i) for i in range(5)]
    produce_jobs(kafka, jobs)

    # three failures grey-list it; the other two jobs are parked, not sent
    wait_for(lambda: endpoint_row(db, ep)["greylist_level"] >= 1, timeout=20,
             message="the endpoint to be grey-listed")
    wait_for(lambda: db.scalar("SELECT count(*) FROM parked_jobs") == 5, timeout=10,
             message="every job parked")
    assert [r["headers"]["webhook-id"] for r in receiver.snapshot()[:3]] == \
        [j["id"] for j in jobs[:3]]
    reasons = dict((r["job_id"].replace("-", ""), r["reason"]) for r in
                   db.query("SELECT job_id::text, reason FROM parked_jobs"))
    assert [reasons[j["id"]] for j in jobs] == ["retry"] * 3 + ["greylist"] * 2
    view = db.query("SELECT * FROM hookd_failing_endpoints")
    assert len(view) == 1 and view[0]["endpoint_id"] == ep and view[0]["parked_jobs"] == 5
    wait_for(lambda: metric(worker.metrics(), "hookd_greylisted_endpoints") == 1, timeout=10,
             message="the grey-listed gauge")
    wait_for(lambda: metric(worker.metrics(), "hookd_parked_jobs") == 5, timeout=10,
             message="the parked gauge")

    # the probe after period 1 fails: period 2 (2 s) ...
    wait_for(lambda: endpoint_row(db, ep)["greylist_level"] >= 2, timeout=20,
             message="a failed probe")
    # ... during which the worker is restarted; a job arriving meanwhile is parked
    assert worker.stop() == 0
    worker = start_worker(services, **GREY)
    late = make_job(sub, "evt_late")
    produce_jobs(kafka, [late])
    wait_for(lambda: db.scalar("SELECT count(*) FROM parked_jobs") == 6, timeout=20,
             message="the late job parked")
    # the new worker keeps probing and doubling: 4 s, then the cap (4 s)
    wait_for(lambda: endpoint_row(db, ep)["greylist_level"] >= 4, timeout=30,
             message="more failed probes")
    receiver.status = 204
    recovered_at = time.time()
    wait_finished(db, [j["id"] for j in jobs] + [late["id"]], "delivered", timeout=30)
    watcher.stop()

    row = endpoint_row(db, ep)
    assert row["greylisted_until"] is None and row["consecutive_failures"] == 0
    assert row["greylist_level"] == 0 and row["last_success_at"] is not None
    assert db.scalar("SELECT count(*) FROM parked_jobs") == 0
    assert db.query("SELECT * FROM hookd_failing_endpoints") == []

    # periods doubled up to the cap, each exactly as long as the rule says
    levels = [(p[0], (p[2] - p[1]).total_seconds()) for p in watcher.periods]
    assert levels[:4] == [(1, 1.0), (2, 2.0), (3, 4.0), (4, 4.0)], levels
    # nothing was sent inside a period: each request came before its start or after its end
    reqs = receiver.snapshot()
    for level, start, until in watcher.periods:
        inside = [r for r in reqs if start < ts(r) < until]
        assert inside == [], (level, start, until, [ts(r) for r in inside])
    # probes were the oldest parked job (the first one); after recovery it
    # went first alone, then the rest in their original order
    after = [r["headers"]["webhook-id"] for r in reqs if r["time"] >= recovered_at]
    assert after == [j["id"] for j in jobs] + [late["id"]]
    probes = [r["headers"]["webhook-id"] for r in reqs[3:] if r["time"] < recovered_at]
    assert probes and set(probes) == {jobs[0]["id"]}
    attempts = db.scalar("SELECT max(attempt) FROM deliveries WHERE job_id = %s", (jobs[0]["id"],))
    assert attempts == len(probes) + 2  # first try, the probes, the successful one


def test_hanging_endpoint_does_not_hold_up_a_healthy_one(db, kafka, services, receivers):
    db.migrate()
    healthy, dead = receivers(), receivers()
    dead.mode = "hang"
    good = insert_subscription(db, healthy.url(), batch=False)
    bad = insert_subscription(db, dead.url(), batch=False)
    worker = start_worker(services, HOOKD_HTTP_TIMEOUT_MS=30000)
    jobs = []
    for i in range(150):
        jobs.append(make_job(bad, "evt_b%d" % i))
        jobs.append(make_job(good, "evt_g%d" % i))
    produce_jobs(kafka, jobs)
    good_ids = [j["id"] for j in jobs if j["subscription_id"] == good["id"]]
    wait_finished(db, good_ids, "delivered", timeout=60)
    # all 150 healthy deliveries finished while the dead endpoint's first
    # request was still hanging: nothing of it waited behind the dead one
    assert dead.count() == 1
    states = finished_states(db)
    assert not any(j["id"] in states for j in jobs if j["subscription_id"] == bad["id"])
    assert [r["headers"]["webhook-id"] for r in healthy.snapshot()] == good_ids
    m = worker.metrics()
    assert metric(m, "hookd_requests_in_flight") == 1
    # the stalled endpoint keeps a few jobs in memory, the rest wait in PostgreSQL
    wait_for(lambda: db.scalar("SELECT count(*) FROM parked_jobs WHERE endpoint_id = %s",
                               (bad["endpoint_id"],)) >= 149 - 16, timeout=20,
             message="the dead endpoint's jobs parked")
    assert metric(worker.metrics(), "hookd_jobs_held") <= 17


def test_hanging_endpoints_cannot_take_every_request_slot(db, kafka, services, receivers):
    """More hanging endpoints than request slots: past the overdue age the
    oldest hanging requests are given up as timeouts (never more than half
    the slots stay with them), so the healthy endpoint is served long
    before the 60 s HTTP timeout would have freed a slot."""
    db.migrate()
    healthy, dead = receivers(), receivers()
    dead.mode = "hang"
    good = insert_subscription(db, healthy.url(), batch=False)
    bads = [insert_subscription(db, dead.url("/dead%d" % i), batch=False) for i in range(8)]
    worker = start_worker(services, HOOKD_HTTP_TIMEOUT_MS=60000, HOOKD_MAX_INFLIGHT=4)
    bad_jobs = [make_job(b, "evt_b%d" % i) for i, b in enumerate(bads)]
    produce_jobs(kafka, bad_jobs)
    wait_for(lambda: dead.count() >= 4, timeout=30, message="every slot taken by a hanging request")
    good_jobs = [make_job(good, "evt_g%d" % i) for i in range(20)]
    produce_jobs(kafka, good_jobs)
    wait_finished(db, [j["id"] for j in good_jobs], "delivered", timeout=45)
    assert [r["headers"]["webhook-id"] for r in healthy.snapshot()] == [j["id"] for j in good_jobs]
    given = [r for r in worker.log_records() if r.get("msg") == "requests_given_up"]
    assert given and metric(worker.metrics(), "hookd_requests_given_up_total") == \
        sum(int(r["count"]) for r in given)
    # what was given up is a failed attempt of its job, which waits for its
    # retry in PostgreSQL: nothing of the dead endpoints is lost
    bad_ids = [j["id"] for j in bad_jobs]
    wait_for(lambda: db.scalar("SELECT count(*) FROM parked_jobs WHERE job_id = ANY(%s::uuid[])",
                               (bad_ids,)) == len(bad_ids),
             timeout=30, message="the dead endpoints' jobs kept in parked_jobs")
    assert not any(i in finished_states(db) for i in bad_ids)
    given_up = db.query("SELECT last_error FROM parked_jobs WHERE reason = 'retry'")
    assert given_up and all(r["last_error"].startswith("no answer after") and
                            "HOOKD_MAX_INFLIGHT=4" in r["last_error"] for r in given_up)
    assert db.scalar("SELECT count(*) FROM deliveries WHERE error_class = 'timeout'"
                     " AND endpoint_id = ANY(%s)", ([b["endpoint_id"] for b in bads],)) >= 4
    assert metric(worker.metrics(), "hookd_requests_in_flight") <= 4


def test_stalled_endpoint_parks_its_queue_and_drains_it_in_order(db, kafka, services, receiver):
    db.migrate()
    sub = insert_subscription(db, receiver.url(), batch=False)
    first, gate = [], threading.Event()

    def slow_first(req):
        if not first:  # the first request hangs until the test has seen the stall
            first.append(req)
            gate.wait(30)
        return None

    receiver.responder = slow_first
    worker = start_worker(services)
    jobs = [make_job(sub, "evt_%03d" % i) for i in range(120)]
    produce_jobs(kafka, jobs)
    wait_for(lambda: db.scalar("SELECT count(*) FROM parked_jobs") >= 100, timeout=20,
             message="the stalled endpoint's queue parked")
    assert any(r.get("msg") == "endpoint_stalled" for r in worker.log_records())
    assert receiver.count() == 1
    gate.set()
    wait_finished(db, [j["id"] for j in jobs], "delivered", timeout=60)
    sent = [r["headers"]["webhook-id"] for r in receiver.snapshot()]
    assert sent == [j["id"] for j in jobs]  # each once, in order, through PostgreSQL and back
    assert db.scalar("SELECT count(*) FROM parked_jobs") == 0
    wait_for(lambda: any(r.get("msg") == "endpoint_drained" for r in worker.log_records()),
             timeout=20, message="the endpoint to be drained")
    parked = metric(worker.metrics(), "hookd_jobs_parked_total")
    assert parked >= 100
    # a stall is no grey-listing: no 'parked' log rows, no endpoint state
    assert db.scalar("SELECT count(*) FROM deliveries WHERE outcome = 'parked'") == 0
    assert endpoint_row(db, sub["endpoint_id"])["consecutive_failures"] == 0
    # afterwards new jobs go straight to the receiver again
    more = [make_job(sub, "evt_more_%d" % i) for i in range(5)]
    produce_jobs(kafka, more)
    wait_finished(db, [j["id"] for j in more], "delivered")
    assert metric(worker.metrics(), "hookd_jobs_parked_total") == parked


def test_a_new_worker_drains_many_endpoints_within_its_memory_bound(db, kafka, services, receiver):
    """A worker that starts with 12,000 parked jobs of 200 stalled endpoints
    (as another worker left them; one job per request, so draining them
    takes a while) drains them all, each once and in order per
    endpoint, holding no more than half its 8,000-job bound (the other half
    stays for new jobs from Kafka): the drains it asks for in one tick
    count against the bound before their jobs arrive (it used to ask every
    endpoint for a full chunk at once)."""
    db.migrate()
    subs = [insert_subscription(db, receiver.url("/d/%d" % i), owner_id="acct_%d" % i, batch=False)
            for i in range(200)]
    jobs = [make_job(subs[i % 200], "evt_%05d" % i) for i in range(12000)]
    db.query("INSERT INTO parked_jobs (job_id, endpoint_id, subscription_id, reason, job, expires_at)"
             " SELECT j, e, s, 'greylist', t, now() + interval '1 hour'"
             " FROM unnest(%s::uuid[], %s::text[], %s::text[], %s::text[]) WITH ORDINALITY"
             "  AS x(j, e, s, t, ord) ORDER BY ord RETURNING 1",
             ([j["id"] for j in jobs], [j["endpoint_id"] for j in jobs],
              [j["subscription_id"] for j in jobs], [encode(j).decode() for j in jobs]))
    worker = start_worker(services)
    peak, done = [0], threading.Event()

    def watch():
        while not done.is_set():
            try:
                peak[0] = max(peak[0], metric(worker.metrics(), "hookd_jobs_held"))
            except Exception:  # noqa: BLE001 - not up yet
                pass
            time.sleep(0.01)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        wait_finished(db, [j["id"] for j in jobs], "delivered", timeout=120)
    finally:
        done.set()
        watcher.join()
    assert 0 < peak[0] <= 4000
    per_endpoint = {}
    for r in receiver.snapshot():
        per_endpoint.setdefault(r["path"], []).extend(body_ids(r))
    for i in range(200):
        assert per_endpoint["/d/%d" % i] == ["evt_%05d" % n for n in range(i, 12000, 200)]
    assert db.scalar("SELECT count(*) FROM parked_jobs") == 0


def test_a_job_parked_meanwhile_elsewhere_is_not_an_error(db, kafka, services, receiver):
    """Newly parked jobs go in with COPY, which has no ON CONFLICT: when
    another replica parked the same job between this worker's lookup and
    its write (a partition moved), the round runs again upserting, and
    nothing fails. The job stays parked once and is delivered once."""
    import psycopg2
    db.migrate()
    sub = insert_subscription(db, receiver.url(), batch=False)
    ep = sub["endpoint_id"]
    receiver.status = 503
    worker = start_worker(services, **dict(GREY, HOOKD_GREYLIST_BASE_S=3600, HOOKD_GREYLIST_MAX_S=3600,
                                           HOOKD_RETRY_SCHEDULE="1h"))
    failing = [make_job(sub, "evt_fail_%d" % i) for i in range(3)]
    produce_jobs(kafka, failing)
    wait_for(lambda: endpoint_row(db, ep)["greylisted_until"] is not None, timeout=20,
             message="the endpoint to be grey-listed")
    wait_for(lambda: db.scalar("SELECT count(*) FROM parked_jobs") == 3, timeout=10,
             message="the failed jobs parked for a retry")

    # the worker's park of the next job waits behind this lock; its dedup
    # lookup (a read) does not
    other = psycopg2.connect(db.url)
    cur = other.cursor()
    cur.execute("LOCK TABLE parked_jobs IN SHARE ROW EXCLUSIVE MODE")
    job = make_job(sub, "evt_twice")
    produce_jobs(kafka, [job])
    wait_for(lambda: db.scalar("SELECT count(*) FROM pg_locks WHERE NOT granted"
                               " AND relation = 'parked_jobs'::regclass") >= 1, timeout=20,
             message="the worker's park to wait for the lock")
    # "another replica" parks the same job first
    cur.execute("INSERT INTO parked_jobs (job_id, endpoint_id, subscription_id, reason, job, expires_at,"
                " last_error) VALUES (%s, %s, %s, 'greylist', %s, now() + interval '1 hour', 'elsewhere')",
                (job["id"], ep, sub["id"], encode(job).decode()))
    other.commit()
    other.close()
    wait_for(lambda: db.scalar("SELECT count(*) FROM parked_jobs WHERE job_id = %s"
                               " AND last_error IS NULL", (job["id"],)) == 1, timeout=20,
             message="the worker's upsert of the job")
    assert metric(worker.metrics(), "hookd_store_errors_total") == 0
    assert db.scalar("SELECT count(*) FROM parked_jobs") == 4

    receiver.status = 204
    assert db.scalar("SELECT hookd_release_endpoint(%s)", (receiver.url(),)) == 1
    wait_finished(db, [job["id"]] + [j["id"] for j in failing], "delivered", timeout=30)
    ids = [r["headers"]["webhook-id"] for r in receiver.snapshot()]
    assert ids.count(job["id"]) == 1
    assert [ids.count(j["id"]) for j in failing] == [2, 2, 2]  # failed, then after the release
    assert metric(worker.metrics(), "hookd_store_errors_total") == 0
