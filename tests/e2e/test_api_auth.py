"""Tokens, tenant isolation and database outages, against the real
hookd-ingest: --create-token and hookd_create_token, both header styles,
401 on every route, revocation, one owner never seeing another's
subscriptions through any API, and 503 + reconnection when PostgreSQL
goes away."""

import hashlib
import re
import subprocess

import psycopg2

from api_helpers import api  # noqa: F401
from api_helpers import Client, raw_http, seed_delivery
from harness import INGEST_BIN, service_env, wait_for

ROUTES = [
    ("POST", "/v1/subscriptions/standard/subscribe"), ("POST", "/v1/subscriptions/standard/unsubscribe"),
    ("POST", "/hooks"), ("GET", "/hooks"), ("GET", "/hooks/{id}"), ("PUT", "/hooks/{id}"),
    ("DELETE", "/hooks/{id}"), ("POST", "/v1/webhooks"), ("GET", "/v1/webhooks"), ("GET", "/v1/webhooks/{id}"),
    ("PATCH", "/v1/webhooks/{id}"), ("DELETE", "/v1/webhooks/{id}"), ("POST", "/v1/webhooks/{id}/rotate-secret"),
    ("GET", "/v1/webhooks/{id}/deliveries"), ("POST", "/v1/deliveries/1/redeliver"), ("GET", "/v1/endpoints"),
    ("POST", "/v1/endpoints/release"), ("GET", "/v1/event-types"),
]


def test_create_token_cli_and_sql_function(api):
    env = service_env({"HOOKD_DATABASE_URL": api.db.url})
    out = subprocess.run([str(INGEST_BIN), "--create-token", "--scope", "account:acct_cli", "--name", "ci bot"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    token = out.stdout.strip()
    assert re.fullmatch(r"hkd_[0-9a-f]{48}", token) and out.stdout == token + "\n"
    row = api.db.query("SELECT * FROM api_tokens WHERE token_hash = %s",
                       (hashlib.sha256(token.encode()).hexdigest(),))[0]
    assert row["scope"] == "account:acct_cli" and row["name"] == "ci bot" and row["last_used_at"] is None
    assert token not in api.ingest.logs()

    cli = Client(api.base, token)
    status, w = cli.post("/v1/webhooks", {"event_types": ["*"], "target_url": "http://127.0.0.1:9/x"})
    assert status == 201 and w["owner"] == "account:acct_cli"
    assert api.db.scalar("SELECT last_used_at IS NOT NULL FROM api_tokens WHERE id = %s", (row["id"],))

    for scope in ("acct_1", "account:", "team:1", ""):
        bad = subprocess.run([str(INGEST_BIN), "--create-token", "--scope", scope], env=env,
                             capture_output=True, text=True, timeout=60)
        assert bad.returncode == 2 and "scope" in bad.stderr and bad.stdout == "", scope

    sql_token = api.db.scalar("SELECT hookd_create_token('directory:dir_1', 'from sql')")
    assert re.fullmatch(r"hkd_[0-9a-f]{48}", sql_token)
    d = Client(api.base, sql_token, "x-api-token")
    status, w = d.post("/v1/webhooks", {"event_types": ["pivot/event"], "target_url": "http://127.0.0.1:9/x"})
    assert status == 201 and w["owner"] == "directory:dir_1"
    assert sql_token not in api.ingest.logs()


def test_missing_bad_and_revoked_tokens_get_401_on_every_route(api):
    good = api.client("account:acct_1")
    for method, path in ROUTES:
        path = path.format(id="000000000000000000000000")
        body = {} if method in ("POST", "PUT", "PATCH") else None
        for client in (api.anonymous(), Client(api.base, "hkd_" + "f" * 48), Client(api.base, "x" * 300)):
            status, hdrs, raw = client.raw(method, path, body)
            assert status == 401, (method, path, status, raw)
            assert hdrs["www-authenticate"] == "Bearer"
            assert b"unauthorized" in raw or b"Not Subscribed" in raw or b"Not Unsubscribed" in raw
    status, body = api.anonymous().get("/v1/webhooks")
    assert body == {"error": "unauthorized",
                    "message": "missing API token: send Authorization: Bearer <token> or X-Api-Token: <token>"}

    variants = [{"Authorization": f"bearer {good.token}"}, {"Authorization": f"Bearer    {good.token}  "},
                {"X-Api-Token": good.token}, {"Authorization": "Basic abc", "X-Api-Token": good.token}]
    for headers in variants:
        assert api.anonymous().get("/v1/webhooks", headers=headers)[0] == 200, headers
    for headers in ({"Authorization": "Basic " + good.token}, {"Authorization": good.token},
                    {"Authorization": "Bearer"}, {"X-Api-Token": ""}):
        assert api.anonymous().get("/v1/webhooks", headers=headers)[0] == 401, headers
    # control characters in the token (sent raw: client libraries refuse them)
    resp = raw_http(api.ingest.http_port, b"GET /v1/webhooks HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                                          b"Authorization: Bearer hkd_\x01\x7f\r\n\r\n")
    assert resp.startswith(b"HTTP/1.1 401") or resp.startswith(b"HTTP/1.1 400"), resp[:100]

    assert api.db.scalar("SELECT hookd_revoke_token(%s)", (good.token,)) is True
    status, body = good.get("/v1/webhooks")  # no cache: revocation is immediate
    assert status == 401 and body["message"] == "invalid or revoked API token"
    assert good.token not in api.ingest.logs()


def test_an_owner_never_sees_or_changes_another_owners_subscriptions(api, receiver):
    a = api.client("account:acct_a")
    url = receiver.url("/a")
    status, w = a.post("/v1/webhooks", {"event_types": ["client/created"], "target_url": url})
    assert status == 201
    status, hook = a.post("/hooks", {"action": "event.created", "target_url": url})
    assert status == 201
    assert a.post("/v1/subscriptions/standard/subscribe", {"event": "client/updated", "target_url": url})[0] == 200
    did = seed_delivery(api.db, w["id"])
    before = api.db.query("SELECT * FROM subscriptions ORDER BY id")
    assert len(before) == 3

    for b in (api.client("account:acct_b"), api.client("directory:acct_a")):
        wid, hid = w["id"], hook["_id"]
        not_found = [
            ("GET", f"/v1/webhooks/{wid}", None), ("PATCH", f"/v1/webhooks/{wid}", {"active": False}),
            ("DELETE", f"/v1/webhooks/{wid}", None), ("POST", f"/v1/webhooks/{wid}/rotate-secret", None),
            ("GET", f"/v1/webhooks/{wid}/deliveries", None), ("POST", f"/v1/deliveries/{did}/redeliver", None),
            ("GET", f"/hooks/{hid}", None), ("PUT", f"/hooks/{hid}", {"action": "user.joined"}),
            ("DELETE", f"/hooks/{hid}", None), ("POST", "/v1/endpoints/release", {"url": url}),
            ("POST", "/v1/endpoints/release", {"endpoint_id": w["endpoint_id"]}),
        ]
        for method, path, body in not_found:
            status, err = b.call(method, path, body)
            assert status == 404 and err["error"] == "not_found", (method, path, err)
            assert "acct_a" not in err["message"]
        assert b.get("/v1/webhooks")[1]["data"] == []
        assert b.get("/hooks")[1] == {"hooks": []}
        assert b.get("/v1/endpoints")[1]["data"] == []
        assert b.post("/v1/subscriptions/standard/unsubscribe", {"target_url": url})[0] == 200
    assert api.db.query("SELECT * FROM subscriptions ORDER BY id") == before
    assert api.db.scalar("SELECT count(*) FROM parked_jobs") == 0
    assert a.get(f"/v1/webhooks/{w['id']}")[0] == 200


def test_database_outage_answers_503_then_recovers(api, receiver):
    c = api.client("account:acct_1")
    assert c.get("/v1/webhooks")[0] == 200
    db = api.db
    admin = psycopg2.connect(db.cluster.url("postgres"))
    admin.autocommit = True

    def allow(flag):
        admin.cursor().execute(f'ALTER DATABASE "{db.name}" WITH ALLOW_CONNECTIONS {flag}')

    allow("false")  # the server stays up, but nobody gets back in
    try:
        killed = db.scalar("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                           " WHERE application_name = 'hookd-ingest' AND datname = current_database()")
        assert killed == 1
        for _ in range(3):
            status, hdrs, raw = c.raw("GET", "/v1/webhooks")
            assert status == 503 and hdrs["retry-after"] == "1", raw
            assert b'"error":"database_unavailable"' in raw
        status, body = c.post("/v1/webhooks", {"event_types": ["*"], "target_url": receiver.url()})
        assert status == 503 and body["error"] == "database_unavailable"
        status, body = c.post("/v1/subscriptions/standard/subscribe",
                              {"event": "client/created", "target_url": receiver.url()})
        assert status == 500 and body["response"] == "Not Subscribed" and "database" in body["error"]
        assert api.alive()
    finally:
        allow("true")
        admin.close()
    wait_for(lambda: c.get("/v1/webhooks")[0] == 200, timeout=15, message="API to reconnect")
    status, w = c.post("/v1/webhooks", {"event_types": ["*"], "target_url": receiver.url()})
    assert status == 201
    assert any(r.get("msg") == "api_pg_reconnected" for r in api.ingest.log_records())
