"""Ingest pipeline, bad input (SPEC §3): malformed messages interleaved with
valid events all end up on the dead-letter topic with their original key,
value and headers plus hookd-error and hookd-source; the valid ones all
produce jobs; nothing stalls and the process never restarts."""

import hashlib
import json
import random

from harness import metric
from ingest_helpers import (DLQ, EVENTS, add_subscription, dead_letters, event, jobs, send,
                            start_ingest, wait_processed, wait_subscriptions)

BIG = 2 * 1024 * 1024


def valid_base(account):
    return {"id": "x", "type": "client/created", "account": account, "data": {"a": 1}}


def bad_messages(account, n):
    """n malformed messages as (key, value, headers, expected reason)."""
    def obj(**changes):
        ev = valid_base(account)
        for k, v in changes.items():
            if v is None:
                ev.pop(k, None)
            else:
                ev[k] = v
        return json.dumps(ev).encode()

    kinds = [
        (b"not json {", "invalid_json"),
        (b'{"id": "x", "type": "client/created"', "invalid_json"),  # truncated
        (b"", "invalid_json"),
        (b'{"id": "e\xff", "type": "client/created", "account": "a", "data": {}}', "invalid_json"),
        (b'{"id": "e", "type": "client/created", "account": "\xc3\x28", "data": {}}',
         "invalid_json"),
        (b"[1, 2, 3]", "not_object"),
        (b'[{"id": "e", "type": "client/created", "account": "a", "data": {}}]', "not_object"),
        (b"42", "not_object"),
        (b'"a string"', "not_object"),
        (obj(id=None), "missing_field"),
        (obj(type=None), "missing_field"),
        (obj(account=None), "missing_field"),
        (obj(data=None), "missing_field"),
        (obj(data="not an object"), "invalid_field"),
        (obj(type="bad type!"), "invalid_field"),
        (obj(type=17), "invalid_field"),
        (obj(id=""), "invalid_field"),
        (obj(occurred_at="yesterday"), "invalid_field"),
        (obj(type="widget/created"), "unknown_type"),
        (obj(type="noSuchAlias"), "unknown_type"),
    ]
    out = []
    for i in range(n):
        value, reason = kinds[i % len(kinds)]
        headers = [("x-trace", b"t-%d" % i)] if i % 3 == 0 else None
        out.append((b"bad-%d" % i, value, headers, reason))
    return out


def test_malformed_messages_go_to_the_dlq_and_never_stall(services, db, kafka):
    sub = add_subscription(db, "acct_ok", ["client/created"])
    ingest = start_ingest(services)
    wait_subscriptions(ingest, 1)

    rnd = random.Random(5)
    bad = bad_messages("acct_ok", 999)
    good = [event("client/created", "acct_ok", data={"n": i}) for i in range(600)]
    items = [("bad", b) for b in bad] + [("good", g) for g in good]
    rnd.shuffle(items)
    msgs = []
    for kind, x in items:
        if kind == "bad":
            key, value, headers, _ = x
            msgs.append((key, value, headers))
        else:
            msgs.append((b"acct_ok", json.dumps(x).encode()))
    pos = send(kafka, msgs)
    # the 1,000th bad message: 2 MiB of valid JSON, larger than HOOKD_MAX_EVENT_BYTES
    huge = valid_base("acct_ok")
    huge["data"] = {"blob": "x" * BIG}
    huge_value = json.dumps(huge).encode()
    huge_pos = send(kafka, [(b"huge", huge_value, [("x-trace", b"huge")])],
                    config={"message.max.bytes": 8 * 1024 * 1024})
    # and more valid events after it: the partition goes on
    tail = [event("client/created", "acct_ok", data={"tail": i}) for i in range(50)]
    tail_pos = send(kafka, tail)
    wait_processed(kafka, pos + huge_pos + tail_pos, timeout=60)

    # every bad message is on the DLQ, with its reason, origin, key, value and headers
    source_of = {}
    for (kind, x), (p, o) in zip(items, pos):
        if kind == "bad":
            source_of[f"{EVENTS}/{p}/{o}".encode()] = x
    dls = dead_letters(kafka, DLQ)
    assert len(dls) == len(bad) + 1
    by_source = {d["headers"][b"hookd-source".decode()]: d for d in dls}
    assert len(by_source) == len(dls)
    reasons = {}
    for src, (key, value, headers, reason) in source_of.items():
        d = by_source[src]
        assert d["key"] == key
        assert (d["value"] or b"") == value
        err = d["headers"]["hookd-error"]
        assert err.startswith(reason.encode() + b": "), (value[:80], err)
        assert len(err) > len(reason) + 2
        if headers:
            assert ("x-trace", headers[0][1]) in d["header_list"]
        reasons[reason] = reasons.get(reason, 0) + 1
    hp, ho = huge_pos[0]
    d = by_source[f"{EVENTS}/{hp}/{ho}".encode()]
    assert d["headers"]["hookd-error"].startswith(b"too_large: ")
    assert hashlib.sha256(d["value"]).digest() == hashlib.sha256(huge_value).digest()
    assert d["headers"]["x-trace"] == b"huge"
    assert d["key"] == b"huge"
    reasons["too_large"] = 1

    # every valid one produced its job, once
    got = [j["event_id"] for j in jobs(kafka) if j["subscription_id"] == sub["id"]]
    assert sorted(got) == sorted(e["id"] for e in good + tail)

    m = ingest.metrics()
    for reason, n in reasons.items():
        assert metric(m, "hookd_events_rejected_total", reason=reason) == n, reason
    assert metric(m, "hookd_events_consumed_total") == len(items) + 1 + len(tail)
    assert ingest.alive() and ingest.starts == 1
    assert not [r for r in ingest.log_records() if r.get("level") == "error"]


def test_dead_letter_too_large_for_the_producer_is_truncated(services, db, kafka):
    """A rejected message larger than the producer's message.max.bytes still
    reaches the DLQ: cut to 64 KiB, with hookd-truncated giving the size."""
    add_subscription(db, "acct_t", ["client/created"])
    ingest = start_ingest(services, HOOKD_MAX_EVENT_BYTES=1024,
                          HOOKD_KAFKA_MESSAGE_MAX_BYTES=1000000)
    wait_subscriptions(ingest, 1)
    big = valid_base("acct_t")
    big["data"] = {"blob": "y" * 1_500_000}
    value = json.dumps(big).encode()
    ok = event("client/created", "acct_t")
    pos = send(kafka, [(b"k", value), (b"acct_t", json.dumps(ok).encode())],
               config={"message.max.bytes": 4 * 1024 * 1024})
    wait_processed(kafka, pos, timeout=30)
    (d,) = dead_letters(kafka, DLQ)
    assert d["headers"]["hookd-error"].startswith(b"too_large: ")
    assert d["headers"]["hookd-truncated"] == str(len(value)).encode()
    assert d["value"] == value[:65536]
    assert [j["event_id"] for j in jobs(kafka)] == [ok["id"]]
