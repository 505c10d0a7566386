"""/metrics agrees with what the test sent (SPEC §8, issue 7): events
consumed, rejected by reason (malformed ones of every kind), matched and
unmatched, jobs published; deliveries by outcome and class against what the
receivers answered (one endpoint answers 500 for a while, one 410, one is
down and gets grey-listed) and against the delivery log; consumer lag back
to 0; the grey-listed endpoints and parked jobs gauges match the
hookd_failing_endpoints view. Every scrape passes `promtool check metrics`,
and the README's metrics reference lists exactly the metrics exposed."""

import collections
import json
import pathlib
import random
import re
import threading

from harness import SOURCE_DIR, http_request, wait_for
from ingest_helpers import (dead_letters, event, expected_job_id, jobs, send, wait_caught_up,
                            wait_subscriptions)
from ops_helpers import OPS_INGEST, OPS_WORKER, metric, scrape, series
from worker_helpers import finished_states, insert_subscription

COUNTS = {"ok": 40, "flaky": 20, "gone": 10, "down": 15}
UNMATCHED = 7
FLAKY_FAILURES = 2  # the flaky endpoint answers 500 to its first requests (fewer than the threshold)
WORKER = dict(OPS_WORKER, HOOKD_GREYLIST_THRESHOLD=3, HOOKD_GREYLIST_BASE_S=600,
              HOOKD_RETRY_SCHEDULE="200ms,200ms,200ms,200ms,200ms", HOOKD_DELIVERY_LOG="all")


def malformed():
    """[(value, reason)] of every rejection reason."""
    def obj(**changes):
        ev = {"id": "m", "type": "client/created", "account": "acct_ok", "data": {"a": 1}}
        for k, v in changes.items():
            if v is None:
                ev.pop(k)
            else:
                ev[k] = v
        return json.dumps(ev).encode()

    return ([(b"not json {", "invalid_json")] * 3 + [(b"[1, 2]", "not_object")] * 2 +
            [(obj(account=None), "missing_field")] * 4 + [(obj(type="bad type!"), "invalid_field")] * 2 +
            [(obj(type="widget/exploded"), "unknown_type")] * 3 +
            [(obj(data={"pad": "x" * 2000}), "too_large")])


class Answers:
    """Receiver behaviour per path; records the status of every answer."""

    def __init__(self):
        self.lock = threading.Lock()
        self.given = collections.defaultdict(list)  # path -> [status]

    def __call__(self, req):
        path = req["path"]
        with self.lock:
            n = len(self.given[path])
            status = {"/ok": 204, "/gone": 410, "/down": 503}.get(path)
            if path == "/flaky":
                status = 500 if n < FLAKY_FAILURES else 200
            self.given[path].append(status)
        return status, b""

    def statuses(self):
        with self.lock:
            return collections.Counter(s for v in self.given.values() for s in v)


def test_metrics_agree_with_what_was_sent(services, db, kafka, receiver):
    db.migrate()
    answers = Answers()
    receiver.responder = answers
    subs = {name: insert_subscription(db, receiver.url("/" + name), owner_id="acct_" + name,
                                      event_types=("client/*",), batch=False)
            for name in COUNTS}
    ingest = services("ingest", HOOKD_MAX_EVENT_BYTES=1024, **OPS_INGEST)
    wait_subscriptions(ingest, len(subs))

    # every kind of input, shuffled: valid events of each account, events of
    # an account without subscriptions, malformed messages
    rnd = random.Random(7)
    valid = [event(rnd.choice(["client/created", "client/updated"]), "acct_" + name)
             for name, n in COUNTS.items() for _ in range(n)]
    unmatched = [event("client/created", "acct_nobody") for _ in range(UNMATCHED)]
    bad = malformed()
    msgs = [(e["account"].encode(), json.dumps(e).encode()) for e in valid + unmatched]
    msgs += [(b"bad", value) for value, _ in bad]
    rnd.shuffle(msgs)
    send(kafka, msgs)
    wait_caught_up(kafka)

    # ingest: consumed, rejected by reason, matched, published
    job_ids = {name: {expected_job_id(e["id"], subs[name]["id"]) for e in valid
                      if e["account"] == "acct_" + name} for name in COUNTS}
    total_jobs = sum(COUNTS.values())
    wait_for(lambda: metric(scrape(ingest), "hookd_jobs_published_total") == total_jobs, timeout=10,
             message="published jobs counted")
    m = scrape(ingest)
    assert series(m, "hookd_events_consumed_total") == {
        frozenset({("topic", "hookd.events")}): len(msgs)}
    want = collections.Counter(reason for _, reason in bad)
    rejected = {dict(lbl)["reason"]: v for lbl, v in series(m, "hookd_events_rejected_total").items()}
    assert rejected == {r: want.get(r, 0) for r in ("too_large", "invalid_json", "not_object",
                                                     "missing_field", "invalid_field", "unknown_type")}
    assert metric(m, "hookd_dead_letters_published_total") == len(bad)
    dlq = collections.Counter(d["headers"]["hookd-error"].split(b":")[0].decode()
                              for d in dead_letters(kafka))
    assert dlq == want
    assert metric(m, "hookd_events_matched_total") == len(valid)
    assert metric(m, "hookd_events_unmatched_total") == UNMATCHED
    published = [j["id"] for j in jobs(kafka)]
    assert sorted(published) == sorted(set().union(*job_ids.values()))
    assert metric(m, "hookd_jobs_pending") == 0
    assert metric(m, "hookd_offset_commits_total", result="error") == 0
    assert metric(m, "hookd_matcher_subscriptions") == len(subs)
    wait_for(lambda: sum(series(scrape(ingest), "hookd_consumer_lag_messages").values()) == 0,
             timeout=10, message="ingest lag 0")

    # worker: the jobs are all published before it starts, so every count is exact
    worker = services("worker", **WORKER)

    def settled():
        states = finished_states(db)
        done = all(states.get(i) == "delivered" for i in job_ids["ok"] | job_ids["flaky"])
        gone = sorted(states.get(i) for i in job_ids["gone"]) == ["cancelled"] * (COUNTS["gone"] - 1) + ["gone"]
        parked = db.scalar("SELECT count(*) FROM parked_jobs") == COUNTS["down"]
        return done and gone and parked

    wait_for(settled, timeout=60, message="deliveries settled")
    given = answers.statuses()
    assert given == {204: COUNTS["ok"], 200: COUNTS["flaky"], 500: FLAKY_FAILURES, 410: 1,
                     503: WORKER["HOOKD_GREYLIST_THRESHOLD"]}

    view = db.query("SELECT * FROM hookd_failing_endpoints")
    assert [(v["endpoint_id"], v["greylisted"], v["parked_jobs"]) for v in view] == \
        [(subs["down"]["endpoint_id"], True, COUNTS["down"])]

    def gauges():
        m = scrape(worker)
        return (metric(m, "hookd_greylisted_endpoints") == sum(1 for v in view if v["greylisted"])
                and metric(m, "hookd_parked_jobs") == sum(v["parked_jobs"] for v in view)
                and sum(series(m, "hookd_consumer_lag").values()) == 0
                and metric(m, "hookd_requests_in_flight") == 0)

    wait_for(gauges, timeout=15, message="worker gauges to match the view, lag 0")
    m = scrape(worker)
    ok = COUNTS["ok"] + COUNTS["flaky"]
    failures = FLAKY_FAILURES + WORKER["HOOKD_GREYLIST_THRESHOLD"]
    assert metric(m, "hookd_jobs_consumed_total") == total_jobs
    outcomes = {tuple(sorted(dict(lbl).items())): v
                for lbl, v in series(m, "hookd_deliveries_total").items() if v}
    assert outcomes == {(("class", "success"), ("outcome", "success")): ok,
                        (("class", "http_5xx"), ("outcome", "failure")): failures,
                        (("class", "gone"), ("outcome", "gone")): 1}
    requests = {dict(lbl)["class"]: v for lbl, v in series(m, "hookd_delivery_requests_total").items() if v}
    assert requests == {"success": ok, "http_5xx": failures, "gone": 1}
    assert receiver.count() == ok + failures + 1
    durations = {dict(lbl)["outcome"]: v for lbl, v in
                 series(m, "hookd_delivery_duration_seconds_count").items() if v}
    assert durations == {"success": ok, "failure": failures, "gone": 1}
    assert metric(m, "hookd_batch_size_count") == metric(m, "hookd_batch_size_sum") == receiver.count()
    assert metric(m, "hookd_jobs_cancelled_total") == COUNTS["gone"] - 1
    assert metric(m, "hookd_retries_scheduled_total") == failures
    assert metric(m, "hookd_duplicates_skipped_total") == 0
    assert metric(m, "hookd_event_delivery_seconds_count") == ok
    # the delivery log says the same
    logged = {r["outcome"]: r["n"] for r in
              db.query("SELECT outcome, count(*) AS n FROM deliveries GROUP BY outcome")}
    parked = COUNTS["down"] - WORKER["HOOKD_GREYLIST_THRESHOLD"]  # the rest wait for retries
    assert metric(m, "hookd_jobs_parked_total", reason="greylist") == parked
    # parking is not an attempt: it writes no log row (the jobs are in parked_jobs)
    assert {k: logged.get(k, 0) for k in ("success", "failure", "failed", "gone", "cancelled", "parked")} == \
        {"success": ok, "failure": failures, "failed": 0, "gone": 1, "cancelled": COUNTS["gone"] - 1,
         "parked": 0}
    assert db.scalar("SELECT count(*) FROM parked_jobs WHERE reason = 'greylist'") == parked
    print("\nworker metrics: %s; delivery log: %s" % (outcomes, logged))
    check_readme_reference(ingest, worker)


def exposed_names(svc):
    """Metric names of a service's /metrics (from its # TYPE lines)."""
    status, _, body = http_request("GET", svc.url("/metrics"))
    assert status == 200
    return set(re.findall(r"^# TYPE (\S+) ", body.decode(), re.M))


def check_readme_reference(ingest, worker):
    """The README's metrics reference (Operations) lists exactly the metric
    names each service exposes (call once every labelled series exists)."""
    exposed = {"ingest": exposed_names(ingest), "worker": exposed_names(worker)}
    text = (pathlib.Path(SOURCE_DIR) / "README.md").read_text()
    start = text.index("\n### Metrics reference\n", text.index("\n## Operations\n"))
    table = text[start:text.index("\n### ", start + 1)]
    documented = {"ingest": set(), "worker": set()}
    for row in re.findall(r"^\| (`hookd_.*?) \|.*\| (ingest|worker|both) \|", table, re.M):
        names = set(re.findall(r"`(hookd_[a-z_]+)`", row[0]))
        for svc in (("ingest", "worker") if row[1] == "both" else (row[1],)):
            documented[svc] |= names
    for svc in ("ingest", "worker"):
        assert exposed[svc] - documented[svc] == set(), \
            f"{svc} exposes metrics the README's metrics reference does not list"
        assert documented[svc] - exposed[svc] == set(), \
            f"the README's metrics reference lists {svc} metrics it does not expose"
