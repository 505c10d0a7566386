"""Helpers for the hookd-worker end-to-end tests: subscriptions inserted with
plain SQL, job messages built per schemas/job.schema.json and produced to
the jobs topic, an independent Standard Webhooks verifier, and small
queries over the worker's tables.

The worker is driven directly (no hookd-ingest): db.migrate() applies the
schema, the tests insert subscriptions and produce jobs themselves.
"""

import base64
import datetime
import hashlib
import hmac
import json
import time

from harness import wait_for
from hookd_kafka import produce

JOBS_TOPIC = "hookd.deliveries"

# Worker settings that keep the tests quick: no batch window unless a test
# sets one, frequent commits and scheduler polls, short fetch waits and a
# short session timeout against the embedded broker (a restarted worker
# rejoins the group sooner), short HTTP timeouts.
FAST_WORKER = {
    "HOOKD_KAFKA_SESSION_TIMEOUT_MS": 6000,
    "HOOKD_KAFKA_HEARTBEAT_INTERVAL_MS": 1000,
    "HOOKD_BATCH_WINDOW_MS": 0,
    "HOOKD_COMMIT_INTERVAL_MS": 50,
    "HOOKD_SCHEDULER_POLL_MS": 100,
    "HOOKD_KAFKA_FETCH_WAIT_MAX_MS": 50,
    "HOOKD_HTTP_TIMEOUT_MS": 3000,
    "HOOKD_CONNECT_TIMEOUT_MS": 1000,
    "HOOKD_RETRY_SCHEDULE": "200ms,200ms,200ms",
    "HOOKD_RETRY_JITTER_PCT": 0,
}


def start_worker(services, **env):
    """Starts hookd-worker with FAST_WORKER settings overridden by 'env'."""
    settings = dict(FAST_WORKER)
    settings.update(env)
    return services("worker", **settings)


def job_id(event_id, subscription_id):
    """The deterministic job id (SPEC §6): first 128 bits of
    SHA-256("<len(event_id)>:<event_id><subscription_id>"), hex."""
    text = "%d:%s%s" % (len(event_id), event_id, subscription_id)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def insert_subscription(db, url, owner_id="acct_1", owner_kind="account", event_types=("*",),
                        body_format="standard", batch=True, payload_mode="full", active=True,
                        secret=None):
    """Inserts a subscription with SQL; returns its row as a dict (id,
    endpoint_id, secret, ...)."""
    cols = {"owner_kind": owner_kind, "owner_id": owner_id, "event_types": list(event_types),
            "target_url": url, "body_format": body_format, "batch": batch,
            "payload_mode": payload_mode, "active": active}
    if secret is not None:
        cols["secret"] = secret
    names = ", ".join(cols)
    marks = ", ".join(["%s"] * len(cols))
    rows = db.query("INSERT INTO subscriptions (%s) VALUES (%s) RETURNING *" % (names, marks),
                    list(cols.values()))
    return rows[0]


def request_id(job_ids):
    """The webhook-id of a request carrying 'job_ids' (in body order): the
    job id for one job, else the first 128 bits of SHA-256 of the ids
    joined by commas, hex (docs/formats.md)."""
    if len(job_ids) == 1:
        return job_ids[0]
    return hashlib.sha256(",".join(job_ids).encode()).hexdigest()[:32]


def rfc3339(ms):
    dt = datetime.datetime.fromtimestamp(ms / 1000.0, tz=datetime.timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (ms % 1000)


def make_job(sub, event_id, type="client/created", payload=None, account=None, directory=None,
             status=None, user=None, occurred_at_ms=None, jid=None):
    """A job message (dict) for subscription row 'sub', as hookd-ingest
    would publish it."""
    occurred = occurred_at_ms if occurred_at_ms is not None else int(time.time() * 1000)
    job = {"v": 1, "id": jid or job_id(event_id, sub["id"]), "event_id": event_id,
           "subscription_id": sub["id"], "endpoint_id": sub["endpoint_id"], "type": type,
           "account": account or sub["owner_id"]}
    if directory:
        job["directory"] = directory
    if status:
        job["status"] = status
    if user:
        job["user"] = user
    job["occurred_at"] = rfc3339(occurred)
    job["ingested_at_ms"] = int(time.time() * 1000)
    job["payload"] = payload if payload is not None else {"id": event_id}
    return job


def encode(job):
    return json.dumps(job, separators=(",", ":")).encode()


def produce_jobs(kafka, jobs, partition=None):
    """Produces job dicts to the jobs topic keyed by endpoint id (in order)."""
    msgs = []
    for j in jobs:
        item = (j["endpoint_id"].encode(), encode(j))
        if partition is not None:
            item = item + (None, partition)
        msgs.append(item)
    return produce(kafka.bootstrap, JOBS_TOPIC, msgs)


# ---------------------------------------------------------------- signatures

def sign(secret, msg_id, timestamp, body):
    """Standard Webhooks v1 signature, written independently of hookd."""
    key = secret[len("whsec_"):] if secret.startswith("whsec_") else secret
    raw = base64.b64decode(key)
    signed = b"%s.%s.%s" % (msg_id.encode(), str(timestamp).encode(), body)
    return "v1," + base64.b64encode(hmac.new(raw, signed, hashlib.sha256).digest()).decode()


def signatures(request):
    """The v1 signatures of a recorded request's webhook-signature header."""
    return request["headers"].get("webhook-signature", "").split()


def verify(secret, request):
    """True when one of the request's signatures is valid for 'secret'."""
    h = request["headers"]
    expected = sign(secret, h["webhook-id"], h["webhook-timestamp"], request["body"])
    return any(hmac.compare_digest(expected, s) for s in signatures(request))


# ---------------------------------------------------------------- queries

def finished_states(db):
    """{job_id hex: state} of finished_jobs."""
    rows = db.query("SELECT replace(job_id::text, '-', '') AS id, state FROM finished_jobs")
    return {r["id"]: r["state"] for r in rows}


def wait_finished(db, ids, state=None, timeout=30):
    """Waits until every id in 'ids' is in finished_jobs (with 'state')."""
    ids = set(ids)

    def done():
        states = finished_states(db)
        return all(i in states and (state is None or states[i] == state) for i in ids)

    wait_for(done, timeout=timeout, interval=0.1, message="%d jobs finished (%s)" % (len(ids), state))
    return finished_states(db)


def endpoint_row(db, endpoint_id):
    rows = db.query("SELECT * FROM endpoints WHERE id = %s", (endpoint_id,))
    return rows[0] if rows else None


def body_ids(request, key="id"):
    """The event ids in a recorded request body (object or array of items)."""
    body = json.loads(request["body"])
    items = body if isinstance(body, list) else [body]
    return [item[key] for item in items]
