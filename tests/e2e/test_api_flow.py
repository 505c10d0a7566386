"""The API end to end with the real pipeline: subscriptions made through the
native, vCita and Vyte APIs receive events through hookd-ingest and
hookd-worker in their body formats, signed with the secret the API
returned; a paused one receives nothing; a failed delivery shows up in the
delivery log and is delivered again by POST /v1/deliveries/:id/redeliver."""

import json

from api_helpers import ApiEnv
from harness import wait_for
from ingest_helpers import INGEST_ENV, event, send, wait_subscriptions
from worker_helpers import start_worker, verify, wait_finished


def by_path(receiver):
    out = {}
    for r in receiver.snapshot():
        out.setdefault(r["path"], []).append(r)
    return out


def test_api_subscriptions_deliver_and_failed_deliveries_redeliver(services, db, kafka, receiver):
    env = ApiEnv(services, db, **INGEST_ENV)
    start_worker(services, HOOKD_RETRY_SCHEDULE="200ms", HOOKD_GREYLIST_THRESHOLD=100)
    c = env.client("account:acct_1")

    status, w = c.post("/v1/webhooks", {"event_types": ["client/*"], "target_url": receiver.url("/native"),
                                        "batch": False})
    assert status == 201
    assert c.post("/v1/subscriptions/standard/subscribe",
                  {"event": "client/created", "target_url": receiver.url("/vcita")})[0] == 200
    status, hook = c.post("/hooks", {"action": "event.created", "target_url": receiver.url("/vyte")})
    assert status == 201
    status, paused = c.post("/v1/webhooks", {"event_types": ["client/created"], "target_url": receiver.url("/paused")})
    assert status == 201
    assert c.patch("/v1/webhooks/" + paused["id"], {"active": False})[0] == 200
    wait_subscriptions(env.ingest, 3)

    created = event("client/created", "acct_1", data={"id": 7, "name": "Ada"})
    booked = event("event/created", "acct_1", data={"_id": "e1", "title": "Call"}, user="u1")
    other = event("client/created", "acct_2")
    send(kafka, [created, booked, other])
    receiver.wait_count(3)
    wait_for(lambda: {"/native", "/vcita", "/vyte"} <= set(by_path(receiver)), timeout=20,
             message="a delivery on each path")
    got = by_path(receiver)
    (native,) = got["/native"]
    assert verify(w["secret"], native)
    body = json.loads(native["body"])
    assert body["type"] == "client/created" and body["id"] == created["id"] and body["data"] == created["data"]
    (vcita,) = got["/vcita"]
    vbody = json.loads(vcita["body"])
    assert vbody["event"] == "client/created" and vbody["data"] == created["data"]
    (vyte,) = got["/vyte"]
    items = json.loads(vyte["body"])
    assert isinstance(items, list) and items[0]["action"] == "event.created"
    assert items[0]["resource"] == booked["data"]
    assert "/paused" not in got

    # a failed delivery is logged with its job, and redelivered on request
    receiver.responder = lambda req: (500, b"down") if req["path"] == "/native" else None
    failing = event("client/deleted", "acct_1", data={"id": 7})
    send(kafka, [failing])

    def failed_row():
        status, page = c.get(f"/v1/webhooks/{w['id']}/deliveries?outcome=failed")
        assert status == 200
        return page["data"][0] if page["data"] else None

    row = wait_for(failed_row, timeout=30, message="the failed delivery in the log")
    assert row["event_id"] == failing["id"] and row["redeliverable"] is True and row["status_code"] == 500
    receiver.responder = None
    status, r = c.post(f"/v1/deliveries/{row['id']}/redeliver")
    assert status == 202 and r["status"] == "scheduled"

    def redelivered():
        return [q for q in receiver.snapshot() if q["headers"].get("webhook-id") == r["job_id"]]

    (again,) = wait_for(redelivered, timeout=30, message="the redelivery")
    assert verify(w["secret"], again)
    assert json.loads(again["body"])["id"] == failing["id"]
    wait_finished(db, [r["job_id"]], "delivered")
    status, err = c.post(f"/v1/deliveries/{row['id']}/redeliver")
    assert status == 409 and err["error"] == "already_redelivered"

