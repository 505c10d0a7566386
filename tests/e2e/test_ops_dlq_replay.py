"""DLQ replay runbook (issue 7): events of a type the catalog does not know
land in the dead-letter topic; an admin adds the type with SQL; `hookd-ingest
--replay-dlq --reason unknown_type` republishes them to their source topic
(original key, value and headers, hookd-* headers replaced by
hookd-replayed) and they are delivered. Replaying again re-sends, and the
worker delivers each job once all the same. --from-offset and --to-topic
pick a range and another destination; bad options exit 2."""

import json
import subprocess

from harness import INGEST_BIN, service_env, wait_for
from hookd_kafka import consume_all
from ingest_helpers import (DLQ, EVENTS, dead_letters, event, expected_job_id, send,
                            wait_caught_up)
from ops_helpers import OPS_INGEST, OPS_WORKER, metric, scrape
from worker_helpers import insert_subscription


def replay_dlq(kafka, *args, **env):
    full = {"HOOKD_KAFKA_BROKERS": kafka.bootstrap}
    full.update({k: str(v) for k, v in env.items()})
    return subprocess.run([str(INGEST_BIN), "--replay-dlq", *args], env=service_env(full),
                          capture_output=True, text=True, timeout=90)


def test_unknown_types_replayed_after_the_catalog_learns_them(services, db, kafka, receiver):
    db.migrate()
    sub = insert_subscription(db, receiver.url("/w"), owner_id="acct_w", event_types=("*",),
                              batch=False)
    ingest = services("ingest", **OPS_INGEST)
    worker = services("worker", **OPS_WORKER)

    out = replay_dlq(kafka)  # nothing to replay yet
    assert (out.returncode, out.stdout) == (0, "replayed=0 skipped=0\n"), out.stderr

    widgets = [event("widget/created", "acct_w", data={"n": i}) for i in range(5)]
    clients = [event("client/created", "acct_w") for _ in range(3)]
    msgs = []
    for i, e in enumerate(widgets + clients):
        msgs.append((b"key-%d" % i, json.dumps(e).encode(), [("x-trace", b"t-%d" % i)]))
    msgs.insert(2, (b"bad-1", b"not json {"))
    msgs.insert(5, (b"bad-2", b"not json either"))
    send(kafka, msgs)
    wait_caught_up(kafka)
    letters = dead_letters(kafka)
    reasons = [d["headers"]["hookd-error"].split(b":")[0] for d in letters]
    assert sorted(reasons) == [b"invalid_json"] * 2 + [b"unknown_type"] * 5
    client_ids = {expected_job_id(e["id"], sub["id"]) for e in clients}
    widget_ids = {expected_job_id(e["id"], sub["id"]) for e in widgets}
    wait_for(lambda: {r["headers"]["webhook-id"] for r in receiver.snapshot()} == client_ids,
             timeout=30, message="the valid events delivered")

    # the admin teaches the catalog the new type; ingest reloads it at once
    types = metric(scrape(ingest), "hookd_catalog_event_types")
    db.query("INSERT INTO event_types (name, source, description)"
             " VALUES ('widget/created', 'custom', 'A widget was created')")
    wait_for(lambda: metric(scrape(ingest), "hookd_catalog_event_types") == types + 1, timeout=10,
             message="ingest to load the new event type")

    out = replay_dlq(kafka, "--reason", "unknown_type")
    assert (out.returncode, out.stdout) == (0, "replayed=5 skipped=2\n"), out.stderr
    wait_for(lambda: {r["headers"]["webhook-id"] for r in receiver.snapshot()} == client_ids | widget_ids,
             timeout=30, message="the replayed events delivered")

    # what went back to the events topic: the original message, marked
    sources = {d["value"]: d["headers"]["hookd-source"] for d in letters}
    originals = {m[1]: m for m in msgs}
    replayed = [m for m in consume_all(kafka.bootstrap, EVENTS)
                if any(h == "hookd-replayed" for h, _ in m[2] or [])]
    assert len(replayed) == 5
    for key, value, headers, partition, _ in replayed:
        orig_key, orig_value, orig_headers = originals[value]
        assert key == orig_key
        assert [h for h in headers if h[0] != "hookd-replayed"] == orig_headers
        assert dict(headers)["hookd-replayed"] == sources[value]
        topic, src_partition, _ = sources[value].decode().rsplit("/", 2)
        assert (topic, partition) == (EVENTS, int(src_partition))  # back where it was

    # replaying again re-sends; the worker delivers each job once all the same
    out = replay_dlq(kafka, "--reason", "unknown_type")
    assert (out.returncode, out.stdout) == (0, "replayed=5 skipped=2\n"), out.stderr
    wait_for(lambda: metric(scrape(worker), "hookd_duplicates_skipped_total") == 5, timeout=30,
             message="the second replay's jobs skipped as duplicates")
    ids = [r["headers"]["webhook-id"] for r in receiver.snapshot()]
    assert sorted(ids) == sorted(client_ids | widget_ids)


def test_replay_range_to_another_topic_and_bad_options(services, db, kafka):
    db.migrate()
    ingest = services("ingest", **OPS_INGEST)
    bad = [(b"k%d" % i, b"broken %d" % i, [("x-n", b"%d" % i)]) for i in range(6)]
    send(kafka, bad)
    wait_caught_up(kafka)
    letters = dead_letters(kafka)
    assert len(letters) == 6 and metric(scrape(ingest), "hookd_dead_letters_published_total") == 6

    out = replay_dlq(kafka, "--from-offset", "4", "--to-topic", "ops.side")
    assert (out.returncode, out.stdout) == (0, "replayed=2 skipped=0\n"), out.stderr
    done = [json.loads(line) for line in out.stderr.splitlines() if '"dlq_replay_done"' in line]
    assert done and done[0]["ends"] == "0:6"  # where the next replay of newer ones starts
    side = consume_all(kafka.bootstrap, "ops.side")
    want = [d for d in letters if d["offset"] >= 4]
    assert sorted((m[0], m[1]) for m in side) == sorted((d["key"], d["value"]) for d in want)
    for key, value, headers, _, _ in side:
        d = next(d for d in want if d["value"] == value)
        assert [h for h in headers if not h[0].startswith("hookd-")] == \
            [h for h in d["header_list"] if not h[0].startswith("hookd-")]
        assert [h[0] for h in headers if h[0].startswith("hookd-")] == ["hookd-replayed"]
        assert dict(headers)["hookd-replayed"] == d["headers"]["hookd-source"]
    # nothing was committed or consumed away: the dead letters are all still there
    assert len(dead_letters(kafka)) == 6

    # invalid_json only, past the end: nothing
    out = replay_dlq(kafka, "--reason", "invalid_json", "--from-offset", "100")
    assert (out.returncode, out.stdout) == (0, "replayed=0 skipped=0\n"), out.stderr

    for args, needle in ((["--reason", "typo"], "--reason=typo"),
                         (["--from-offset", "-1"], "--from-offset=-1"),
                         (["--to-topic", DLQ], "--to-topic=" + DLQ)):
        out = replay_dlq(kafka, *args)
        assert out.returncode == 2 and needle in out.stderr, (args, out.stderr)
    out = subprocess.run([str(INGEST_BIN), "--reason", "unknown_type"], env=service_env({}),
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "need --replay-dlq" in out.stderr
    out = replay_dlq(kafka, HOOKD_DLQ_TOPIC="no.such.topic")
    assert out.returncode == 1 and "no.such.topic" in out.stderr, out.stderr
