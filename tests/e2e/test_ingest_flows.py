"""Ingest pipeline, seed flows: events of each source platform (vCita,
VikAppointments, Vyte, Communico, CloudEvents) in Kafka become the right
delivery jobs for the subscriptions stored in PostgreSQL (SPEC §3, §4, §6)."""

import datetime
import json
import shutil
import subprocess
import time

import pytest

from harness import http_json, http_request, metric, wait_for
from ingest_helpers import (SharedIngest, add_subscription, dead_letters, event,
                            expected_job_id, jobs, jobs_for, now_ms, send, start_ingest,
                            wait_jobs, wait_processed, wait_subscriptions)


@pytest.fixture(scope="module")
def shared(pg_cluster, tmp_path_factory):
    s = SharedIngest(pg_cluster, tmp_path_factory.mktemp("ingest-flows"))
    yield s
    rc = s.close()
    assert rc == 0, s.ingest.logs()[-3000:]


def counter(svc, name, **labels):
    return metric(svc.metrics(), name, **labels)


def dead_letters_of(kafka, positions, topic="hookd.events"):
    """Dead letters whose hookd-source is one of 'positions'."""
    want = {f"{topic}/{p}/{o}".encode() for p, o in positions}
    return [d for d in dead_letters(kafka) if d["headers"].get("hookd-source") in want]


def parse_ms(ts):
    return int(datetime.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() * 1000)


def by_sub(job_list):
    return {j["subscription_id"]: j for j in job_list}


def test_vcita_client_created_payload_modes(shared):
    db, kafka, ingest = shared.db, shared.kafka, shared.ingest
    basic = add_subscription(db, "vc_1", ["client/created"], payload_mode="basic",
                             body_format="vcita", target_url="https://a.example.com/basic")
    full = add_subscription(db, "vc_1", ["client/create"], payload_mode="full",
                            body_format="vcita", target_url="https://a.example.com/full")
    ext = add_subscription(db, "vc_1", ["client.created"], payload_mode="extended",
                           body_format="vcita", target_url="https://a.example.com/ext")
    other = add_subscription(db, "vc_2", ["client/created"])
    shared.wait_subscriptions()
    matched = counter(ingest, "hookd_events_matched_total")

    data = {"id": "c_9", "first_name": "Ada", "email": "ada@example.com"}
    changes = {"email": "ada@example.com"}
    extended = {"id": "c_9", "first_name": "Ada", "business": {"id": "b_1"}}
    ev = event("client/created", "vc_1", data=data, changes=changes, extended=extended,
               occurred_at="2026-11-23T10:00:00Z")
    bare = event("client.create", "vc_1", data={"id": "c_10"})  # no changes/extended
    pos = send(kafka, [ev, bare])

    got = by_sub(wait_jobs(kafka, lambda j: j["event_id"] == ev["id"], 3))
    assert set(got) == {basic["id"], full["id"], ext["id"]}
    assert got[basic["id"]]["payload"] == changes
    assert got[full["id"]]["payload"] == data
    assert got[ext["id"]]["payload"] == extended
    for sub in (basic, full, ext):
        j = got[sub["id"]]
        assert j["v"] == 1
        assert j["id"] == expected_job_id(ev["id"], sub["id"])
        assert j["endpoint_id"] == sub["endpoint_id"] and j["_key"] == sub["endpoint_id"]
        assert j["type"] == "client/created"
        assert j["account"] == "vc_1"
        assert "directory" not in j
        assert parse_ms(j["occurred_at"]) == parse_ms("2026-11-23T10:00:00Z")
        assert abs(j["ingested_at_ms"] - now_ms()) < 120000

    # without changes/extended: basic and extended fall back to data
    got = by_sub(wait_jobs(kafka, lambda j: j["event_id"] == bare["id"], 3))
    assert {k: v["payload"] for k, v in got.items()} == {
        basic["id"]: {"id": "c_10"}, full["id"]: {"id": "c_10"}, ext["id"]: {"id": "c_10"}}
    assert all(j["type"] == "client/created" for j in got.values())
    wait_processed(kafka, pos)
    assert not [j for j in jobs(kafka) if j["subscription_id"] == other["id"]]
    assert counter(ingest, "hookd_events_matched_total") == matched + 2


def test_directory_level_pivot_update(shared):
    db, kafka = shared.db, shared.kafka
    d = add_subscription(db, "dir_7", ["pivot/update"], owner_kind="directory",
                         body_format="vcita")
    a = add_subscription(db, "pv_1", ["pivot/*"])
    shared.wait_subscriptions()
    in_dir = event("pivot/update", "pv_1", directory="dir_7", data={"pivot": {"x": 1}})
    other_dir = event("pivot.update", "pv_5", directory="dir_8", data={"pivot": {"x": 2}})
    pos = send(kafka, [in_dir, other_dir])
    got = by_sub(wait_jobs(kafka, lambda j: j["event_id"] == in_dir["id"], 2))
    assert set(got) == {d["id"], a["id"]}
    assert got[d["id"]]["directory"] == "dir_7"
    assert got[d["id"]]["type"] == "pivot/update"  # the catalog name, not a past tense
    assert got[d["id"]]["payload"] == {"pivot": {"x": 1}}
    wait_processed(kafka, pos)
    assert jobs_for(kafka, other_dir["id"]) == []


def test_vikappointments_status_filter_and_save_both(shared):
    db, kafka, ingest = shared.db, shared.kafka, shared.ingest
    vik = add_subscription(db, "shop_1", ["appointment/*"], statuses=["confirmed", "paid"],
                           body_format="vik")
    both = add_subscription(db, "shop_1", ["coupon/created", "coupon/updated", "coupon/*"],
                            body_format="vik")
    shared.wait_subscriptions()
    unmatched = counter(ingest, "hookd_events_unmatched_total")
    evs = {s: event("appointment/status_changed", "shop_1", status=s, previous_status="pending",
                    data={"id": 42, "status": s})
           for s in ("confirmed", "paid", "pending", "cancelled")}
    created = event("appointment/created", "shop_1", data={"id": 43})  # no status at all
    coupon = event("coupon/updated", "shop_1", data={"id": 7})
    pos = send(kafka, list(evs.values()) + [created, coupon])
    wait_processed(kafka, pos)
    all_jobs = jobs(kafka)
    status_of = {j["event_id"]: j["status"] for j in all_jobs if j["subscription_id"] == vik["id"]}
    assert status_of == {evs["confirmed"]["id"]: "confirmed", evs["paid"]["id"]: "paid"}
    # one job per subscription even though three of its patterns match
    coupon_jobs = [j for j in all_jobs if j["event_id"] == coupon["id"]]
    assert [j["subscription_id"] for j in coupon_jobs] == [both["id"]]
    assert counter(ingest, "hookd_events_unmatched_total") == unmatched + 3


def test_vikappointments_multi_delete_and_custom_hook(shared):
    db, kafka = shared.db, shared.kafka
    sub = add_subscription(db, "shop_2", ["appointment/deleted", "custom/*"], body_format="vik")
    shared.wait_subscriptions()
    multi = event("appointment/delete", "shop_2", data={"id": [10, 11, 12]})
    hook = event("custom/vikappointments_add_item_cart", "shop_2",
                 data={"arg1": {"id_service": 3}, "arg2": [1, "two", None], "arg3": "x\u00e9"})
    send(kafka, [multi, hook])
    got = {j["event_id"]: j
           for j in wait_jobs(kafka, lambda j: j["event_id"] in (multi["id"], hook["id"]), 2)}
    assert got[multi["id"]]["type"] == "appointment/deleted"
    assert got[multi["id"]]["payload"] == {"id": [10, 11, 12]}
    assert got[hook["id"]]["type"] == "custom/vikappointments_add_item_cart"
    assert got[hook["id"]]["payload"] == hook["data"]
    assert all(j["subscription_id"] == sub["id"] for j in got.values())


def test_vyte_event_cancelled(shared):
    db, kafka = shared.db, shared.kafka
    sub = add_subscription(db, "org_1", ["event/cancelled"], body_format="vyte")
    shared.wait_subscriptions()
    ev = event("event.cancel", "org_1", user="user_5",
               data={"_id": "e1", "title": "Lunch", "status": "cancelled"})
    send(kafka, [ev])
    (job,) = wait_jobs(kafka, lambda j: j["event_id"] == ev["id"], 1)
    assert job["subscription_id"] == sub["id"]
    assert job["type"] == "event/cancelled"
    assert job["user"] == "user_5"
    assert job["payload"] == ev["data"]


def test_communico_aliases(shared):
    db, kafka = shared.db, shared.kafka
    by_name = add_subscription(db, "lib_1", ["event/created"], target_url="https://l.example.com/a")
    by_alias = add_subscription(db, "lib_1", ["eventAdded", "roomBookingCancelled"],
                                target_url="https://l.example.com/b")
    assert sorted(by_alias["event_types"]) == ["event/created", "roomBooking/cancelled"]
    shared.wait_subscriptions()
    added = event("eventAdded", "lib_1", data={"eventId": 1})
    room = event("roomBookingCancelled", "lib_1", data={"bookingId": 2})
    unknown = event("eventExploded", "lib_1")
    pos = send(kafka, [added, room, unknown])
    got = by_sub(wait_jobs(kafka, lambda j: j["event_id"] == added["id"], 2))
    assert set(got) == {by_name["id"], by_alias["id"]}
    assert all(j["type"] == "event/created" for j in got.values())
    (r,) = wait_jobs(kafka, lambda j: j["event_id"] == room["id"], 1)
    assert r["type"] == "roomBooking/cancelled" and r["subscription_id"] == by_alias["id"]
    wait_processed(kafka, pos)
    (dl,) = dead_letters_of(kafka, pos[2:])
    assert dl["headers"]["hookd-error"].startswith(b"unknown_type: ")
    assert b"eventExploded" in dl["headers"]["hookd-error"]


def test_cloudevents_structured_and_binary(shared):
    db, kafka = shared.db, shared.kafka
    acct = add_subscription(db, "ce_42", ["client/created", "appointment/*"])
    dire = add_subscription(db, "cedir_3", ["client/*"], owner_kind="directory")
    shared.wait_subscriptions()
    structured = {"specversion": "1.0", "id": "ce-1", "type": "com.vcita.client.created",
                  "source": "https://api.vcita.example/accounts/ce_42/directories/cedir_3",
                  "time": "2026-11-23T10:00:00Z", "datacontenttype": "application/json",
                  "data": {"id": "c_1"}}
    headers = [("ce_specversion", b"1.0"), ("ce_id", b"ce-2"),
               ("ce_type", b"com.vcita.appointment.created"), ("ce_source", b"/vcita/app"),
               ("ce_subject", b"ce_42"), ("ce_status", b"confirmed"),
               ("content-type", b"application/json")]
    binary = (b"ce_42", json.dumps({"id": "a_1", "when": "tomorrow"}).encode(), headers)
    bad_binary = (b"ce_42", b'{"id": 1}', [("ce_specversion", b"1.0"), ("ce_id", b"ce-3")])
    pos = send(kafka, [(b"ce_42", json.dumps(structured).encode()), binary, bad_binary])
    got = wait_jobs(kafka, lambda j: j["event_id"] == "ce-1", 2)
    assert {j["subscription_id"] for j in got} == {acct["id"], dire["id"]}
    for j in got:
        assert j["type"] == "client/created"
        assert j["account"] == "ce_42"
        assert j["directory"] == "cedir_3"
        assert j["payload"] == {"id": "c_1"}
        assert parse_ms(j["occurred_at"]) == parse_ms("2026-11-23T10:00:00Z")
        assert j["id"] == expected_job_id("ce-1", j["subscription_id"])
    (b,) = wait_jobs(kafka, lambda j: j["event_id"] == "ce-2", 1)
    assert b["subscription_id"] == acct["id"]
    assert b["type"] == "appointment/created" and b["status"] == "confirmed"
    assert b["payload"] == {"id": "a_1", "when": "tomorrow"}
    wait_processed(kafka, pos)
    (dl,) = dead_letters_of(kafka, pos[2:])
    assert dl["headers"]["hookd-error"].startswith(b"missing_field: ")
    assert dl["headers"]["ce_id"] == b"ce-3"  # original headers kept
    assert dl["key"] == b"ce_42" and dl["value"] == b'{"id": 1}'


def test_occurred_at_defaults_to_kafka_timestamp(shared):
    db, kafka = shared.db, shared.kafka
    add_subscription(db, "pay_1", ["payment/paid"])
    shared.wait_subscriptions()
    before = now_ms()
    ev = event("payment/paid", "pay_1", data={"amount": 10})
    send(kafka, [ev])
    after = now_ms()
    (job,) = wait_jobs(kafka, lambda j: j["event_id"] == ev["id"], 1)
    assert before - 5 <= parse_ms(job["occurred_at"]) <= after + 5


def test_same_event_twice_gives_identical_job_ids(shared):
    db, kafka = shared.db, shared.kafka
    s1 = add_subscription(db, "twice_1", ["client/updated"], target_url="https://x.example.com/1")
    s2 = add_subscription(db, "twice_1", ["client/*"], target_url="https://x.example.com/2")
    shared.wait_subscriptions()
    ev = event("client/updated", "twice_1", data={"id": 5}, changes={"name": "B"})
    pos = send(kafka, [ev])
    pos += send(kafka, [ev])  # a producer retry
    wait_processed(kafka, pos)
    got = jobs_for(kafka, ev["id"])
    assert len(got) == 4
    ids = sorted(j["id"] for j in got)
    expect = sorted([expected_job_id(ev["id"], s1["id"]), expected_job_id(ev["id"], s2["id"])] * 2)
    assert ids == expect


def test_unknown_types_and_catalog_changes(shared):
    db, kafka, ingest = shared.db, shared.kafka, shared.ingest
    add_subscription(db, "wid_1", ["widget/*"])
    shared.wait_subscriptions()
    unknown = counter(ingest, "hookd_events_rejected_total", reason="unknown_type")
    first = event("widget/created", "wid_1")
    pos = send(kafka, [first])
    wait_processed(kafka, pos)
    assert jobs_for(kafka, first["id"]) == []
    (dl,) = dead_letters_of(kafka, pos)
    assert dl["headers"]["hookd-error"].startswith(b"unknown_type: ")
    assert dl["value"] == json.dumps(first, separators=(",", ":")).encode()
    assert dl["key"] == b"wid_1"
    assert counter(ingest, "hookd_events_rejected_total", reason="unknown_type") == unknown + 1

    # an admin adds the type to the catalog: accepted from now on (LISTEN hookd_catalog)
    db.query("INSERT INTO event_types (name, description) VALUES ('widget/created', 'test')")
    time.sleep(1.0)
    second = event("widget/created", "wid_1")
    send(kafka, [second])
    wait_jobs(kafka, lambda j: j["event_id"] == second["id"], 1)


def test_admin_sql_changes_take_effect_within_a_second(shared):
    db, kafka = shared.db, shared.kafka
    keep = add_subscription(db, "adm_1", ["client/deleted"], target_url="https://k.example.com/")
    shared.wait_subscriptions()

    sub = add_subscription(db, "adm_9", ["appointment/created"])
    time.sleep(1.0)
    ev1 = event("appointment/created", "adm_9")
    send(kafka, [ev1])
    (j1,) = wait_jobs(kafka, lambda j: j["event_id"] == ev1["id"], 1)
    assert j1["subscription_id"] == sub["id"]

    # UPDATE: a status filter; the unlisted status no longer matches
    db.query("UPDATE subscriptions SET statuses = ARRAY['confirmed'] WHERE id = %s", (sub["id"],))
    time.sleep(1.0)
    ev2 = event("appointment/created", "adm_9", status="pending")
    ev3 = event("appointment/created", "adm_9", status="confirmed")
    pos = send(kafka, [ev2, ev3])
    wait_processed(kafka, pos)
    assert jobs_for(kafka, ev2["id"]) == []
    assert len(jobs_for(kafka, ev3["id"])) == 1

    # deactivated: no match; DELETE: no match
    db.query("UPDATE subscriptions SET active = false WHERE id = %s", (sub["id"],))
    time.sleep(1.0)
    ev4 = event("appointment/created", "adm_9", status="confirmed")
    pos = send(kafka, [ev4])
    wait_processed(kafka, pos)
    assert jobs_for(kafka, ev4["id"]) == []

    db.query("UPDATE subscriptions SET active = true WHERE id = %s", (sub["id"],))
    db.query("DELETE FROM subscriptions WHERE id = %s", (sub["id"],))
    time.sleep(1.0)
    ev5 = event("appointment/created", "adm_9", status="confirmed")
    marker = event("client/deleted", "adm_1")
    pos = send(kafka, [ev5, marker])
    wait_processed(kafka, pos)
    assert jobs_for(kafka, ev5["id"]) == []
    assert [j["subscription_id"] for j in jobs_for(kafka, marker["id"])] == [keep["id"]]


def test_health_and_metrics(shared):
    db, kafka, ingest = shared.db, shared.kafka, shared.ingest
    add_subscription(db, "met_1", ["client/created"])
    shared.wait_subscriptions()
    status, body = http_json("GET", ingest.url("/readyz"))
    assert status == 200
    assert body["checks"]["subscriptions"] == "ok"
    assert body["checks"]["catalog"] == "ok"
    before = ingest.metrics()
    pos = send(kafka, [event("client/created", "met_1") for _ in range(20)])
    wait_processed(kafka, pos)

    def delta(m, name, **labels):
        return metric(m, name, **labels) - metric(before, name, **labels)

    def settled():
        m = ingest.metrics()
        return (delta(m, "hookd_jobs_published_total") == 20 and
                metric(m, "hookd_jobs_pending") == 0 and
                delta(m, "hookd_offset_commits_total", result="ok") >= 1 and m)

    m = wait_for(settled, timeout=10, message="metrics to settle")
    assert delta(m, "hookd_events_consumed_total", topic="hookd.events") == 20
    assert delta(m, "hookd_events_matched_total") == 20
    assert metric(m, "hookd_consumer_paused") == 0
    for reason in ("too_large", "invalid_json", "not_object", "missing_field", "invalid_field",
                   "unknown_type"):
        assert ("hookd_events_rejected_total", frozenset({("reason", reason)})) in m
    wait_for(lambda: metric(ingest.metrics(), "hookd_consumer_lag_messages") == 0, timeout=10,
             message="consumer lag gauges at 0")
    lags = [k for k in ingest.metrics() if k[0] == "hookd_consumer_lag_messages"]
    assert len(lags) == 4  # one per partition of hookd.events
    # the whole exposition, with the per-partition and per-reason series, is valid
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian package prometheus) is installed by tests/run"
    _, _, text = http_request("GET", ingest.url("/metrics"))
    check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_accept_unknown_types_when_configured(services, db, kafka):
    add_subscription(db, "acct_1", ["*"])
    ingest = start_ingest(services, HOOKD_ACCEPT_UNKNOWN_TYPES="true")
    wait_subscriptions(ingest, 1)
    ev = event("gizmo/exploded", "acct_1")
    send(kafka, [ev])
    (job,) = wait_jobs(kafka, lambda j: j["event_id"] == ev["id"], 1)
    assert job["type"] == "gizmo/exploded"


def test_topic_regex_and_own_topics_skipped(services, db, kafka):
    """HOOKD_INGEST_TOPICS as a ^regex: every matching topic is consumed, but
    never ingest's own jobs and dead-letter topics (that would loop)."""
    kafka.create_topic("hookd.events.eu", 2)
    sub = add_subscription(db, "rx_1", ["client/created"])
    ingest = start_ingest(services, HOOKD_INGEST_TOPICS=r"^hookd\..*")
    wait_subscriptions(ingest, 1)
    good = event("client/created", "rx_1")
    pos_eu = send(kafka, [good], topic="hookd.events.eu")
    pos_bad = send(kafka, [(b"k", b"not json")])
    wait_processed(kafka, pos_eu, topic="hookd.events.eu")
    wait_processed(kafka, pos_bad)
    (job,) = wait_jobs(kafka, lambda j: j["event_id"] == good["id"], 1)
    assert job["subscription_id"] == sub["id"]
    # the job and the dead letter were consumed back (own topics) but not ingested
    wait_for(lambda: metric(ingest.metrics(), "hookd_events_consumed_total",
                            topic="hookd.events.dlq") == 1, timeout=15,
             message="the dead-letter topic to be read (and skipped)")
    wait_for(lambda: metric(ingest.metrics(), "hookd_events_consumed_total",
                            topic="hookd.deliveries") == 1, timeout=15,
             message="the jobs topic to be read (and skipped)")
    assert len(dead_letters(kafka)) == 1
    assert len(jobs(kafka)) == 1
    assert metric(ingest.metrics(), "hookd_events_rejected_total") == 1
    assert any(r.get("msg") == "own_topic_skipped" for r in ingest.log_records())
