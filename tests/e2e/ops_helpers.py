"""Helpers for the operations tests (test_ops_*.py): the whole system —
hookd-ingest and hookd-worker against the session PostgreSQL, the embedded
Kafka and receivers on 127.0.0.1 — under load, signals and outages.

A Stack holds one subscription per account (batch off, so every request
carries exactly one job and its webhook-id is the job id), a Load thread
produces events while the test does something nasty, and delivery_report()
turns what the receivers recorded into exact sets: jobs delivered, jobs
delivered more than once, and which worker run sent each request.
"""

import collections
import json
import shutil
import signal
import subprocess
import threading
import time

from confluent_kafka import Producer

from harness import http_json, http_request, metric, parse_metrics, wait_for
from hookd_kafka import FAST_PRODUCER_CONFIG
from ingest_helpers import EVENTS as EVENTS_TOPIC
from ingest_helpers import INGEST_ENV, encode, ensure_schema, event, expected_job_id, wait_subscriptions
from worker_helpers import FAST_WORKER, finished_states, insert_subscription

SHUTDOWN_TIMEOUT_S = 15
MAX_INFLIGHT = 32

# Quick against the embedded broker, quick to notice outages and to come back.
OPS_INGEST = dict(INGEST_ENV, HOOKD_SHUTDOWN_TIMEOUT_S=SHUTDOWN_TIMEOUT_S)
OPS_WORKER = dict(FAST_WORKER, **{
    "HOOKD_SHUTDOWN_TIMEOUT_S": SHUTDOWN_TIMEOUT_S,
    "HOOKD_MAX_INFLIGHT": MAX_INFLIGHT,
    "HOOKD_KAFKA_RECONNECT_BACKOFF_MS": 50,
    "HOOKD_KAFKA_RECONNECT_BACKOFF_MAX_MS": 500,
    "HOOKD_KAFKA_TOPIC_METADATA_REFRESH_INTERVAL_MS": 1000,
})


# ---------------------------------------------------------------- the stack

class Stack:
    """Subscriptions (one per account, batch off, each at its own path of
    'receiver'), hookd-ingest and hookd-worker started through the
    services fixture."""

    def __init__(self, services, db, kafka, receiver, accounts=8, tag="ops"):
        self.services, self.db, self.kafka, self.receiver = services, db, kafka, receiver
        self.tag = tag
        self.accounts = ["acct_%s_%d" % (tag, i) for i in range(accounts)]
        ensure_schema(db)
        self.subs = {}  # account -> subscription row
        for i, acct in enumerate(self.accounts):
            self.subs[acct] = insert_subscription(db, receiver.url("/%s/%d" % (tag, i)),
                                                  owner_id=acct, event_types=("client/*",),
                                                  batch=False)
        self.path_sub = {"/%s/%d" % (tag, i): self.subs[a]["id"]
                         for i, a in enumerate(self.accounts)}
        self.ingest = self.worker = None

    def start_ingest(self, **env):
        settings = dict(OPS_INGEST)
        settings.update(env)
        self.ingest = self.services("ingest", **settings)
        wait_subscriptions(self.ingest, len(self.subs))
        return self.ingest

    def start_worker(self, **env):
        settings = dict(OPS_WORKER)
        settings.update(env)
        self.worker = self.services("worker", **settings)
        return self.worker

    def start(self, ingest_env=None, worker_env=None):
        self.start_ingest(**(ingest_env or {}))
        self.start_worker(**(worker_env or {}))
        return self

    def events(self, n, start=0, type_="client/created"):
        """n events spread over the accounts, with ids evt_<tag>_<k>."""
        return [event(type_, self.accounts[k % len(self.accounts)], id_="evt_%s_%05d" % (self.tag, k),
                      data={"n": k}) for k in range(start, start + n)]

    def job_ids(self, events):
        """The job ids (= webhook-ids) the events must be delivered with."""
        return {expected_job_id(e["id"], self.subs[e["account"]]["id"]) for e in events}

    def restart_and_deliver(self, expected, timeout=90):
        """Restarts ingest and worker, waits until every id in 'expected' is
        delivered and returns the delivery report, checked to hold exactly
        those ids (requests from the restarted run are attributed to it)."""
        restarted = time.time()
        self.ingest.restart()
        self.worker.restart()
        self.wait_delivered(expected, timeout=timeout)
        report = delivery_report(self, run_starts=[restarted])
        assert set(report.by_id) == expected
        return report

    def wait_delivered(self, ids, timeout=60):
        """Waits until every id in 'ids' reached the receiver and is finished
        (delivered) in PostgreSQL, so nothing more is on its way."""
        ids = set(ids)
        wait_for(lambda: ids <= {r["headers"].get("webhook-id") for r in self.receiver.snapshot()},
                 timeout=timeout, interval=0.2, message="%d jobs at the receiver" % len(ids))

        def finished():
            states = finished_states(self.db)
            return all(states.get(i) == "delivered" for i in ids)

        wait_for(finished, timeout=timeout, interval=0.2, message="%d jobs finished" % len(ids))


def stop_in_time(*svcs, sig=signal.SIGTERM, timeout=SHUTDOWN_TIMEOUT_S):
    """Sends 'sig' to every service at once and waits for them; returns
    [(exit status, time it exited)] in order. Fails when one takes longer
    than 'timeout' seconds after the signal."""
    for svc in svcs:
        if svc.alive():
            svc.proc.send_signal(sig)
    deadline = time.monotonic() + timeout
    out = []
    for svc in svcs:
        try:
            svc.proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise AssertionError("%s still running %ss after %s:\n%s"
                                 % (svc.name, timeout, sig, svc.logs()[-3000:]))
        out.append((svc.stop(), time.time()))  # (already exited: stop() only closes its log)
    return out


# ---------------------------------------------------------------- load

class Load(threading.Thread):
    """Produces 'events' (dicts, keyed by account) to the events topic from
    a thread, 'chunk' at a time with 'pause' seconds between chunks, with
    one idempotent producer that waits for every acknowledgement (also
    through broker outages). join_ok() re-raises what went wrong."""

    def __init__(self, kafka, events, chunk=100, pause=0.02, timeout=120):
        super().__init__(daemon=True)
        self.kafka, self.events, self.chunk, self.pause = kafka, list(events), chunk, pause
        self.timeout = timeout
        self.sent = 0  # acknowledged
        self.error = None
        self.start()

    def run(self):
        conf = {"bootstrap.servers": self.kafka.bootstrap, "enable.idempotence": True,
                "linger.ms": 5, "message.timeout.ms": int(self.timeout * 1000)}
        conf.update(FAST_PRODUCER_CONFIG)
        producer = Producer(conf)
        failed = []

        def on_delivery(err, msg):
            if err is not None:
                failed.append(err)

        try:
            for i in range(0, len(self.events), self.chunk):
                part = self.events[i:i + self.chunk]
                for ev in part:
                    producer.produce(EVENTS_TOPIC, key=ev["account"].encode(), value=encode(ev),
                                     on_delivery=on_delivery)
                if producer.flush(self.timeout) or failed:
                    raise RuntimeError("load: produce failed: %r" % (failed[:1] or "timeout"))
                self.sent = i + len(part)
                time.sleep(self.pause)
        except Exception as exc:  # reported by join_ok
            self.error = exc

    def join_ok(self, timeout=120):
        self.join(timeout)
        assert not self.is_alive(), "load producer still running after %ss" % timeout
        if self.error:
            raise self.error


# ---------------------------------------------------------------- what arrived

class Report:
    """What the receiver saw: 'by_id' webhook-id -> [requests], 'dups' the
    webhook-ids received more than once, 'runs' per worker run (see
    delivery_report) the webhook-ids it sent."""

    def __init__(self, by_id, dups, runs):
        self.by_id, self.dups, self.runs = by_id, dups, runs

    def resent_after(self, k):
        """Webhook-ids sent by run k that a later run sent again."""
        later = set().union(*self.runs[k + 1:]) if k + 1 < len(self.runs) else set()
        return set(self.runs[k]) & later


def delivery_report(stack, run_starts=(), strict=True):
    """Checks every request the receiver got and returns a Report.

    Each request must carry one job whose id (from the path's subscription
    and the body's event id) is its webhook-id: a job sent twice therefore
    always comes with the same webhook-id. 'run_starts' are the times worker
    runs began (after the first); a request belongs to the last run that had
    started when it arrived, and (if 'strict') no run may send a job twice."""
    by_id = collections.defaultdict(list)
    for r in stack.receiver.snapshot():
        body = json.loads(r["body"])
        assert isinstance(body, dict), body  # batch off: one job per request
        sub = stack.path_sub[r["path"]]
        wid = r["headers"]["webhook-id"]
        assert wid == expected_job_id(body["id"], sub), (r["path"], body["id"], wid)
        by_id[wid].append(r)
    dups = {i for i, rs in by_id.items() if len(rs) > 1}
    starts = sorted(run_starts)
    runs = [[] for _ in range(len(starts) + 1)]
    for wid, rs in by_id.items():
        for r in rs:
            runs[sum(1 for s in starts if r["time"] >= s)].append(wid)
    for k, sent in enumerate(runs if strict else ()):
        twice = [i for i, n in collections.Counter(sent).items() if n > 1]
        assert not twice, "worker run %d sent %d jobs twice: %s" % (k, len(twice), twice[:5])
    return Report(by_id, dups, runs)


def hold(seconds, check=None, interval=0.2):
    """Keeps an outage going for 'seconds', calling check() (which asserts)
    every 'interval' meanwhile; returns how many checks ran."""
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        if check:
            check()
        n += 1
        time.sleep(interval)
    return n


def log_value(svc, msg, key):
    """Integer field 'key' of the last log record 'msg' of 'svc' (None if absent)."""
    found = [r for r in svc.log_records() if r.get("msg") == msg and key in r]
    return int(found[-1][key]) if found else None


def log_msgs(svc):
    return [r.get("msg") for r in svc.log_records()]


# ---------------------------------------------------------------- health and metrics

def readyz(svc):
    """(status, checks dict) of /readyz; (None, {}) when it does not answer."""
    try:
        status, body = http_json("GET", svc.url("/readyz"), timeout=5)
    except OSError:
        return None, {}
    return status, (body or {}).get("checks", {})


def promtool_check(text):
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian package prometheus) is installed by tests/run"
    out = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr + "\n" + text[:2000]


def scrape(svc, check=True):
    """/metrics parsed (see harness.parse_metrics); the text passes
    `promtool check metrics` unless check=False."""
    status, _, body = http_request("GET", svc.url("/metrics"))
    assert status == 200
    text = body.decode()
    if check:
        promtool_check(text)
    return parse_metrics(text)


def series(metrics, name):
    """{labels frozenset: value} of one metric name."""
    return {lbl: v for (n, lbl), v in metrics.items() if n == name}


__all__ = ["Stack", "Load", "Report", "delivery_report", "hold", "log_value", "log_msgs", "readyz",
           "scrape", "series", "promtool_check", "stop_in_time", "metric", "OPS_INGEST",
           "OPS_WORKER", "SHUTDOWN_TIMEOUT_S", "MAX_INFLIGHT"]
