"""Delivery log, redelivery and endpoints against the real hookd-ingest:
GET /v1/webhooks/:id/deliveries (newest first, cursor pages, filters),
POST /v1/deliveries/:id/redeliver (the parked_jobs 'retry' row contract
with the worker), GET /v1/endpoints (grey-list state, parked jobs) and the
owner-scoped POST /v1/endpoints/release."""

import datetime
import hashlib
import json

from api_helpers import api  # noqa: F401
from api_helpers import ApiEnv, seed_delivery

DELIVERY_FIELDS = ["id", "job_id", "job_ids", "webhook_id", "subscription_id", "endpoint_id", "event_id", "event_type",
                   "attempt", "outcome", "error_class", "status_code", "latency_ms", "batch_size",
                   "response_excerpt", "redeliverable", "created_at"]


def make_webhook(client, url, types=("client/created",)):
    status, w = client.post("/v1/webhooks", {"event_types": list(types), "target_url": url})
    assert status == 201, w
    return w


def test_deliveries_are_listed_newest_first_with_pages_and_filters(api, receiver):
    c = api.client("account:acct_1")
    w = make_webhook(c, receiver.url("/d"))
    other = make_webhook(c, receiver.url("/o"))
    ids = [seed_delivery(api.db, w["id"], outcome="failure" if i % 2 else "success", job=i % 2 == 1,
                         event_id=f"evt_{i}", attempt=i + 1, job_id="%032x" % (i + 1)) for i in range(5)]
    seed_delivery(api.db, other["id"], event_id="evt_other")

    status, page = c.get(f"/v1/webhooks/{w['id']}/deliveries?limit=2")
    assert status == 200 and page["has_more"] is True and page["next_cursor"] == ids[3]
    d = page["data"][0]
    assert list(d) == DELIVERY_FIELDS
    assert [x["id"] for x in page["data"]] == [ids[4], ids[3]]
    assert d["event_id"] == "evt_4" and d["outcome"] == "success" and d["redeliverable"] is False
    assert d["job_id"] == "%032x" % 5 and d["subscription_id"] == w["id"] and d["endpoint_id"] == w["endpoint_id"]
    assert d["job_ids"] == [d["job_id"]]
    assert d["attempt"] == 5 and d["latency_ms"] == 12 and d["batch_size"] == 1 and d["status_code"] == 500
    assert d["error_class"] is None and page["data"][1]["error_class"] == "http_5xx"
    assert page["data"][1]["redeliverable"] is True and page["data"][1]["response_excerpt"] == "oops"

    seen, cursor = [], None
    while True:
        status, page = c.get(f"/v1/webhooks/{w['id']}/deliveries?limit=2" + (f"&cursor={cursor}" if cursor else ""))
        assert status == 200
        seen += [x["id"] for x in page["data"]]
        if not page["has_more"]:
            assert page["next_cursor"] is None
            break
        cursor = page["next_cursor"]
    assert seen == ids[::-1]

    status, page = c.get(f"/v1/webhooks/{w['id']}/deliveries?outcome=failure")
    assert [x["id"] for x in page["data"]] == [ids[3], ids[1]]
    for query, field in (("outcome=boom", "outcome"), ("cursor=abc", "cursor"), ("limit=0", "limit")):
        status, err = c.get(f"/v1/webhooks/{w['id']}/deliveries?{query}")
        assert status == 400 and err["field"] == field
    assert c.get("/v1/webhooks/000000000000000000000000/deliveries")[0] == 404
    b = api.client("account:acct_2")
    status, err = b.get(f"/v1/webhooks/{w['id']}/deliveries")
    assert status == 404 and err["error"] == "not_found"


def test_a_batched_success_is_one_row_naming_its_jobs(api, receiver):
    c = api.client("account:acct_1")
    w = make_webhook(c, receiver.url("/b"))
    ids = ["%032x" % (100 + i) for i in range(3)]
    did = api.db.scalar(
        "INSERT INTO deliveries (job_id, webhook_id, subscription_id, endpoint_id, event_id, event_type,"
        " attempt, outcome, status_code, latency_ms, batch_size, job_ids)"
        " VALUES (%s, %s, %s, %s, 'evt_b0', 'client/created', 1, 'success', 204, 7, 3, %s::uuid[])"
        " RETURNING id::text", (ids[0], ids[0], w["id"], w["endpoint_id"], ids))
    status, page = c.get(f"/v1/webhooks/{w['id']}/deliveries")
    assert status == 200 and [d["id"] for d in page["data"]] == [did]
    d = page["data"][0]
    assert d["job_id"] == ids[0] and d["job_ids"] == ids and d["batch_size"] == 3
    assert d["redeliverable"] is False
    status, err = c.post(f"/v1/deliveries/{did}/redeliver")
    assert status == 409 and err["error"] == "not_retained"


def test_redeliver_parks_a_retry_job_once(services, db, receiver):
    env = ApiEnv(services, db, HOOKD_PARK_RETENTION_H="5")
    c = env.client("account:acct_1")
    w = make_webhook(c, receiver.url("/r"))
    orig_job = "0123456789abcdef0123456789abcdef"
    did = seed_delivery(db, w["id"], job_id=orig_job)
    original_text = db.scalar("SELECT job FROM deliveries WHERE id = %s", (did,))
    new_id = hashlib.sha256(f"{orig_job}:redeliver:{did}".encode()).hexdigest()[:32]

    status, r = c.post(f"/v1/deliveries/{did}/redeliver")
    assert (status, r) == (202, {"status": "scheduled", "delivery_id": did, "job_id": new_id})
    rows = db.query("SELECT replace(job_id::text, '-', '') AS job_id, endpoint_id, subscription_id, reason,"
                    " attempt, not_before <= now() AS due, job,"
                    " expires_at - now() AS ttl FROM parked_jobs")
    assert len(rows) == 1
    p = rows[0]
    assert p["job_id"] == new_id and p["reason"] == "retry" and p["attempt"] == 0 and p["due"] is True
    assert p["endpoint_id"] == w["endpoint_id"] and p["subscription_id"] == w["id"]
    assert datetime.timedelta(hours=4, minutes=59) < p["ttl"] <= datetime.timedelta(hours=5)
    # the job as the worker wrote it, byte for byte, but for its new id
    assert p["job"] == original_text.replace(orig_job, new_id, 1)
    assert json.loads(p["job"])["payload"]["big"] == 123456789012345678901234567890

    status, r = c.post(f"/v1/deliveries/{did}/redeliver", {})
    assert (status, r) == (200, {"status": "already_scheduled", "delivery_id": did, "job_id": new_id})
    assert db.scalar("SELECT count(*) FROM parked_jobs") == 1

    # once the worker has finished that copy, asking again says so instead of silently doing nothing
    db.query("DELETE FROM parked_jobs")
    db.query("INSERT INTO finished_jobs (job_id, state, subscription_id) VALUES (%s, 'delivered', %s)",
             (new_id, w["id"]))
    status, err = c.post(f"/v1/deliveries/{did}/redeliver")
    assert status == 409 and err["error"] == "already_redelivered" and "delivered" in err["message"]
    assert db.scalar("SELECT count(*) FROM parked_jobs") == 0

    ok = seed_delivery(db, w["id"], outcome="success", job=False)
    status, err = c.post(f"/v1/deliveries/{ok}/redeliver")
    assert status == 409 and err["error"] == "not_retained"
    for bad in ("999999", "abc", "1.5", "-1", "9" * 30):
        status, err = c.post(f"/v1/deliveries/{bad}/redeliver")
        assert status == 404 and err["error"] == "not_found", bad
    status, err = c.post(f"/v1/deliveries/{did}/redeliver", {"force": True})
    assert status == 400 and err["error"] == "unknown_field"
    b = env.client("account:acct_2")
    assert b.post(f"/v1/deliveries/{did}/redeliver")[0] == 404
    assert db.scalar("SELECT count(*) FROM parked_jobs") == 0


def grey_list(db, endpoint_id, parked=2):
    db.query("UPDATE endpoints SET consecutive_failures = 4, greylist_level = 2,"
             " greylisted_until = now() + interval '1 hour', last_failure_at = now(),"
             " last_failure_class = 'http_5xx', last_status_code = 503, last_error = 'HTTP 503'"
             " WHERE id = %s", (endpoint_id,))
    sub = db.scalar("SELECT id FROM subscriptions WHERE endpoint_id = %s LIMIT 1", (endpoint_id,))
    for i in range(parked):
        db.query("INSERT INTO parked_jobs (job_id, endpoint_id, subscription_id, reason, not_before, job, expires_at)"
                 " VALUES (md5(random()::text)::uuid, %s, %s, 'greylist', now() + interval '1 hour', '{}',"
                 " now() + interval '72 hours')", (endpoint_id, sub))


def test_endpoints_show_grey_list_state_and_release_is_owner_scoped(api, receiver):
    a = api.client("account:acct_1")
    b = api.client("account:acct_2")
    url, url2 = receiver.url("/flaky"), receiver.url("/fine")
    w1 = make_webhook(a, url)
    make_webhook(a, url, types=("payment/paid",))
    w2 = make_webhook(a, url2)
    wb = make_webhook(b, url)  # same URL, another owner: another endpoint
    assert wb["endpoint_id"] != w1["endpoint_id"]
    grey_list(api.db, w1["endpoint_id"])
    grey_list(api.db, wb["endpoint_id"], parked=1)

    status, page = a.get("/v1/endpoints")
    assert status == 200 and page["has_more"] is False
    eps = {e["id"]: e for e in page["data"]}
    assert set(eps) == {w1["endpoint_id"], w2["endpoint_id"]}
    e = eps[w1["endpoint_id"]]
    assert e["url"] == url and e["subscriptions"] == 2 and e["greylisted"] is True and e["parked_jobs"] == 2
    assert e["consecutive_failures"] == 4 and e["greylist_level"] == 2 and e["last_status_code"] == 503
    assert e["last_failure_class"] == "http_5xx" and e["greylisted_until"].endswith("Z")
    f = eps[w2["endpoint_id"]]
    assert f["greylisted"] is False and f["parked_jobs"] == 0 and f["greylisted_until"] is None
    assert [x["id"] for x in a.get("/v1/endpoints?greylisted=true")[1]["data"]] == [w1["endpoint_id"]]
    status, page = a.get("/v1/endpoints?limit=1")
    assert len(page["data"]) == 1 and page["has_more"] is True
    assert a.get("/v1/endpoints?greylisted=maybe")[0] == 400

    status, r = a.post("/v1/endpoints/release", {"url": url})
    assert (status, r) == (200, {"id": w1["endpoint_id"], "url": url, "released": True, "parked_jobs_due": 2})
    row = api.db.query("SELECT * FROM endpoints WHERE id = %s", (w1["endpoint_id"],))[0]
    assert row["greylisted_until"] is None and row["consecutive_failures"] == 0 and row["greylist_level"] == 0
    assert api.db.scalar("SELECT bool_and(not_before <= now()) FROM parked_jobs WHERE endpoint_id = %s",
                         (w1["endpoint_id"],)) is True
    # acct_2's endpoint with the same URL is still grey-listed
    assert api.db.scalar("SELECT greylisted_until > now() FROM endpoints WHERE id = %s", (wb["endpoint_id"],))
    assert api.db.scalar("SELECT bool_and(not_before > now()) FROM parked_jobs WHERE endpoint_id = %s",
                         (wb["endpoint_id"],)) is True

    status, r = b.post("/v1/endpoints/release", {"endpoint_id": wb["endpoint_id"]})
    assert status == 200 and r["parked_jobs_due"] == 1
    assert a.post("/v1/endpoints/release", {"endpoint_id": wb["endpoint_id"]})[0] == 404
    assert a.post("/v1/endpoints/release", {"url": "https://unknown.example/"})[0] == 404
    for body in ({}, {"url": url, "endpoint_id": w1["endpoint_id"]}):
        status, err = a.post("/v1/endpoints/release", body)
        assert status == 400 and err["error"] == "missing_field"
    status, err = a.post("/v1/endpoints/release", {"url": 7})
    assert status == 400 and err["field"] == "url"
    assert [x["id"] for x in b.get("/v1/endpoints")[1]["data"]] == [wb["endpoint_id"]]
