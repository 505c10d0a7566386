"""vCita-compatible subscribe/unsubscribe against the real hookd-ingest:
exact bodies, idempotency, verb aliases, directory tokens, and the
500 {"response":"Not Subscribed","error":...} contract for every failure."""

from api_helpers import api  # noqa: F401
from api_helpers import ApiEnv, Client, NameServer

SUB = "/v1/subscriptions/standard/subscribe"
UNSUB = "/v1/subscriptions/standard/unsubscribe"


def vcita_rows(env, owner):
    return env.db.query("SELECT * FROM subscriptions WHERE owner_id = %s AND source = 'vcita' ORDER BY id",
                        (owner,))


def test_subscribe_is_idempotent_and_creates_a_vcita_subscription(api, receiver):
    c = api.client("account:acct_1")
    url = receiver.url("/vcita")
    status, body = c.post(SUB, {"event": "client/created", "target_url": url})
    assert (status, body) == (200, {"response": "Subscribed"})
    rows = vcita_rows(api, "acct_1")
    assert len(rows) == 1
    row = rows[0]
    assert row["owner_kind"] == "account" and row["event_types"] == ["client/created"]
    assert row["target_url"] == url and row["body_format"] == "vcita" and row["batch"] is False
    assert row["payload_mode"] == "full" and row["active"] is True and row["source"] == "vcita"
    assert row["secret"].startswith("whsec_")

    # same (event, url) again, and the verb form vCita also uses: still one subscription
    for event in ("client/created", "client/create", "client.created"):
        assert c.post(SUB, {"event": event, "target_url": url}) == (200, {"response": "Subscribed"})
    assert [r["id"] for r in vcita_rows(api, "acct_1")] == [row["id"]]

    # X-Api-Token works the same; another event on the same url is another subscription
    x = Client(api.base, c.token, "x-api-token")
    assert x.post(SUB, {"event": "client.update", "target_url": url}) == (200, {"response": "Subscribed"})
    rows = vcita_rows(api, "acct_1")
    assert sorted(r["event_types"][0] for r in rows) == ["client/created", "client/updated"]

    # a paused subscription is resumed by subscribing again
    api.db.query("UPDATE subscriptions SET active = false, deactivated_reason = 'gone' WHERE id = %s", (row["id"],))
    assert c.post(SUB, {"event": "client/created", "target_url": url}) == (200, {"response": "Subscribed"})
    again = api.subscription(row["id"])
    assert again["active"] is True and again["deactivated_reason"] is None
    assert len(vcita_rows(api, "acct_1")) == 2


def test_unsubscribe_by_event_and_by_url_is_idempotent(api, receiver):
    c = api.client("account:acct_1")
    url, other = receiver.url("/a"), receiver.url("/b")
    for event in ("client/created", "client/updated", "payment/paid"):
        assert c.post(SUB, {"event": event, "target_url": url})[0] == 200
    assert c.post(SUB, {"event": "client/created", "target_url": other})[0] == 200
    # a native subscription on the same url is not the vCita API's business
    status, native = c.post("/v1/webhooks", {"event_types": ["client/created"], "target_url": url})
    assert status == 201

    assert c.post(UNSUB, {"target_url": url, "event": "client/update"}) == (200, {"response": "Unsubscribed"})
    assert sorted(r["event_types"][0] for r in vcita_rows(api, "acct_1") if r["target_url"] == url) == \
        ["client/created", "payment/paid"]

    assert c.post(UNSUB, {"target_url": url}) == (200, {"response": "Unsubscribed"})
    assert [r["target_url"] for r in vcita_rows(api, "acct_1")] == [other]
    assert api.subscription(native["id"]) is not None

    # nothing left to remove: still Unsubscribed (vCita clients retry unsubscribes)
    assert c.post(UNSUB, {"target_url": url}) == (200, {"response": "Unsubscribed"})
    assert c.post(UNSUB, {"target_url": "https://never.example/x", "event": "client/created"}) == \
        (200, {"response": "Unsubscribed"})

    # another account's unsubscribe does not touch acct_1's subscription
    b = api.client("account:acct_2")
    assert b.post(UNSUB, {"target_url": other}) == (200, {"response": "Unsubscribed"})
    assert [r["target_url"] for r in vcita_rows(api, "acct_1")] == [other]


def test_directory_tokens_subscribe_to_directory_level_events(api, receiver):
    d = api.client("directory:dir_7")
    a = api.client("account:acct_1")
    url = receiver.url("/dir")
    for event in ("pivot/update", "pivot.event", "client/created"):
        assert d.post(SUB, {"event": event, "target_url": url}) == (200, {"response": "Subscribed"}), event
    rows = vcita_rows(api, "dir_7")
    # stored normalised; the catalog's own pivot/update keeps its name
    assert sorted(r["event_types"][0] for r in rows) == ["client/created", "pivot/event", "pivot/update"]
    assert {r["owner_kind"] for r in rows} == {"directory"}

    status, body = a.post(SUB, {"event": "pivot/update", "target_url": url})
    assert status == 500 and body["response"] == "Not Subscribed"
    assert "directory-level" in body["error"]
    assert vcita_rows(api, "acct_1") == []


def test_every_failure_is_500_not_subscribed_with_a_reason(services, db, receiver, tmp_path):
    with NameServer(tmp_path) as ns:  # answers NXDOMAIN: no lookup leaves the machine
        api = ApiEnv(services, db, wrapper=ns.wrapper)
        c = api.client("account:acct_1")
        url = receiver.url("/x")
        cases = [
            ({"event": "client/exploded", "target_url": url}, "unknown event type 'client/exploded'"),
            ({"event": "client//created", "target_url": url}, "invalid event type"),
            ({"event": "", "target_url": url}, "invalid event type"),
            ({"event": "noSuchAlias", "target_url": url}, "unknown event type 'noSuchAlias'"),
            ({"event": 123, "target_url": url}, "field 'event' must be a string"),
            ({"target_url": url}, "field 'event' is required"),
            ({"event": "client/created"}, "field 'target_url' is required"),
            ({"event": "client/created", "target_url": url, "secret": "x"}, "unknown field 'secret'"),
            ({"event": "client/created", "target_url": "ftp://example.com/x"}, "http or https"),
            ({"event": "client/created", "target_url": "https://user:pw@example.com/x"}, "credentials"),
            ({"event": "client/created", "target_url": "https://"}, "no host"),
            ({"event": "client/created", "target_url": "https://x.invalid/" + "a" * 2100}, "longer than 2048"),
            ({"event": "client/created", "target_url": "https://no-such-host.invalid/x"}, "cannot resolve"),
            ({"event": None, "target_url": url}, "must not be null"),
            ([], "must be a JSON object"),
        ]
        for body, why in cases:
            status, got = c.post(SUB, body)
            assert status == 500, (body, status, got)
            assert got["response"] == "Not Subscribed" and why in got["error"], (body, got)
            assert set(got) == {"response", "error"}

        raw_cases = [
            (b'{"event": "client/created", "target_url": ', "invalid JSON at byte"),
            (b"", "must be a JSON object"),
            (b'"client/created"', "must be a JSON object"),
            (b'{"event":"client/created","event":"client/updated","target_url":"x"}', "more than once"),
            (b'{"event":"client\xff/created","target_url":"x"}', "invalid UTF-8"),
        ]
        for raw, why in raw_cases:
            status, got = c.post(SUB, raw, headers={"Content-Type": "application/json"})
            assert status == 500 and got["response"] == "Not Subscribed" and why in got["error"], (raw, got)
        status, got = c.post(SUB, '{"event":"client/created","target_url":"%s"}' % url,
                             headers={"Content-Type": "text/plain"})
        assert status == 500 and "Content-Type must be application/json" in got["error"]

        status, got = c.post(UNSUB, {"event": "client/created"})
        assert status == 500 and got == {"response": "Not Unsubscribed", "error": "field 'target_url' is required"}
        status, got = c.post(UNSUB, b"{nope", headers={"Content-Type": "application/json"})
        assert status == 500 and got["response"] == "Not Unsubscribed"

        # nothing was created by any of these
        assert api.subscriptions() == []
        # and the service still answers
        assert c.post(SUB, {"event": "client/created", "target_url": url}) == (200, {"response": "Subscribed"})
    assert set(ns.names) == {"no-such-host.invalid"}


def test_missing_or_bad_tokens_get_401(api, receiver):
    body = {"event": "client/created", "target_url": receiver.url()}
    anon = api.anonymous()
    for path in (SUB, UNSUB):
        status, got = anon.post(path, body)
        assert status == 401 and "missing API token" in got["error"]
    bad = api.client("account:acct_1")
    bad.token = "hkd_" + "0" * 48
    status, got = bad.post(SUB, body)
    assert status == 401 and got == {"response": "Not Subscribed", "error": "invalid or revoked API token"}
    revoked = api.client("account:acct_1")
    assert api.db.scalar("SELECT hookd_revoke_token(%s)", (revoked.token,)) is True
    status, got = revoked.post(SUB, body)
    assert status == 401
    assert api.subscriptions() == []


def test_https_and_private_targets_are_refused_by_default(services, db):
    env = ApiEnv(services, db, HOOKD_REQUIRE_HTTPS="true", HOOKD_ALLOW_PRIVATE_TARGETS="false")
    c = env.client("account:acct_1")
    for url, why in (("http://example.com/hook", "must use https"),
                     ("https://127.0.0.1/hook", "127.0.0.1"),
                     ("https://localhost:8443/hook", "private, loopback"),
                     ("https://10.0.0.1/hook", "10.0.0.1"),
                     ("https://169.254.169.254/latest/meta-data", "169.254.169.254"),
                     ("https://[::1]/hook", "::1")):
        status, got = c.post(SUB, {"event": "client/created", "target_url": url})
        assert status == 500 and got["response"] == "Not Subscribed" and why in got["error"], (url, got)
    assert env.subscriptions() == []
