"""Native /v1/webhooks against the real hookd-ingest: create with every
field, defaults, list with cursor pagination and filters, get, PATCH
(pause/resume, clearing filters), delete, rotate-secret, the event type
catalog, and a table of validation errors naming their field."""

import datetime
import json

from api_helpers import api  # noqa: F401
from api_helpers import ISO_MS, OBJECT_ID, SECRET

FIELDS = ["id", "name", "event_types", "target_url", "endpoint_id", "statuses", "payload_mode",
          "body_format", "batch", "active", "deactivated_reason", "description", "metadata", "source",
          "owner", "version", "previous_secret_expires_at", "created_at", "updated_at"]


def parse_ts(s):
    return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)


def test_create_get_and_defaults(api, receiver):
    c = api.client("account:acct_1")
    url = receiver.url("/native")
    raw_body = ('{"event_types": ["client.update", "appointment/*", "eventAdded", "custom/vik_add_item_cart",'
                ' "payment/create"], "name": "CRM sync", "target_url": "%s", "statuses": ["confirmed", "paid"],'
                ' "payload_mode": "extended", "body_format": "vik", "batch": false, "description": "to the CRM",'
                ' "metadata": {"team": "crm", "n": 123456789012345678901234567890, "nested": {"x": [1, 2.5, null]}},'
                ' "active": true}') % url
    status, hdrs, raw = c.raw("POST", "/v1/webhooks", raw_body, {"Content-Type": "application/json"})
    assert status == 201, raw
    w = json.loads(raw)
    assert list(w) == FIELDS + ["secret"]
    assert hdrs["location"] == "/v1/webhooks/" + w["id"]
    assert OBJECT_ID.match(w["id"]) and SECRET.match(w["secret"])
    assert sorted(w["event_types"]) == sorted(["client/updated", "appointment/*", "event/created",
                                               "custom/vik_add_item_cart", "payment/created"])
    assert w["name"] == "CRM sync" and w["target_url"] == url and w["statuses"] == ["confirmed", "paid"]
    assert w["payload_mode"] == "extended" and w["body_format"] == "vik" and w["batch"] is False
    assert w["active"] is True and w["deactivated_reason"] is None and w["description"] == "to the CRM"
    assert w["metadata"] == {"team": "crm", "n": 123456789012345678901234567890, "nested": {"x": [1, 2.5, None]}}
    assert w["source"] == "native" and w["owner"] == "account:acct_1" and w["version"] == 0
    assert w["previous_secret_expires_at"] is None
    assert ISO_MS.match(w["created_at"]) and w["created_at"] == w["updated_at"]
    assert w["endpoint_id"].startswith("ep_") and len(w["endpoint_id"]) == 27
    row = api.subscription(w["id"])
    assert row["secret"] == w["secret"] and row["endpoint_id"] == w["endpoint_id"]

    status, got = c.get("/v1/webhooks/" + w["id"])
    assert status == 200 and list(got) == FIELDS
    assert got == {k: v for k, v in w.items() if k != "secret"}

    status, d = c.post("/v1/webhooks", {"event_types": ["*"], "target_url": url})
    assert status == 201
    assert d["name"] == "" and d["statuses"] is None and d["payload_mode"] == "full"
    assert d["body_format"] == "standard" and d["batch"] is True and d["active"] is True
    assert d["description"] == "" and d["metadata"] == {} and d["event_types"] == ["*"]
    # one endpoint per (owner, url)
    assert d["endpoint_id"] == w["endpoint_id"] and d["secret"] != w["secret"]

    status, paused = c.post("/v1/webhooks", {"event_types": ["client/*"], "target_url": url, "active": False})
    assert status == 201 and paused["active"] is False and paused["deactivated_reason"] == "paused"


def test_list_paginates_with_a_cursor_and_filters(api, receiver):
    c = api.client("account:acct_1")
    ids = []
    for i in range(7):
        status, w = c.post("/v1/webhooks", {"event_types": ["client/created"], "target_url": receiver.url(f"/{i}"),
                                            "active": i % 2 == 0})
        assert status == 201
        ids.append(w["id"])
    status, hook = c.post("/hooks", {"action": "event.created", "target_url": receiver.url("/vyte")})
    assert status == 201
    other = api.client("account:acct_2")
    assert other.post("/v1/webhooks", {"event_types": ["*"], "target_url": receiver.url("/x")})[0] == 201

    seen, cursor, pages = [], None, 0
    while True:
        path = "/v1/webhooks?limit=3" + (f"&cursor={cursor}" if cursor else "")
        status, page = c.get(path)
        assert status == 200 and set(page) == {"data", "has_more", "next_cursor"}
        assert all("secret" not in w for w in page["data"])
        seen += [w["id"] for w in page["data"]]
        pages += 1
        if not page["has_more"]:
            assert page["next_cursor"] is None
            break
        assert page["next_cursor"] == page["data"][-1]["id"]
        cursor = page["next_cursor"]
    assert seen == sorted(ids + [hook["_id"]]) and pages == 3

    status, page = c.get("/v1/webhooks")
    assert status == 200 and len(page["data"]) == 8 and page["has_more"] is False
    # ids sort by creation second, then randomly: compare sorted
    assert [w["id"] for w in c.get("/v1/webhooks?active=false")[1]["data"]] == sorted(ids[1::2])
    assert [w["id"] for w in c.get("/v1/webhooks?source=vyte")[1]["data"]] == [hook["_id"]]
    assert [w["id"] for w in c.get("/v1/webhooks?source=native&active=true&limit=250")[1]["data"]] == \
        sorted(ids[0::2])

    for query, field in (("limit=0", "limit"), ("limit=251", "limit"), ("limit=abc", "limit"),
                         ("limit=-1", "limit"), ("cursor=../x", "cursor"), ("active=yes", "active"),
                         ("source=kafka", "source")):
        status, err = c.get("/v1/webhooks?" + query)
        assert status == 400 and err["error"] == "invalid_query" and err["field"] == field, query


def test_patch_pause_resume_and_partial_updates(api, receiver):
    c = api.client("account:acct_1")
    status, w = c.post("/v1/webhooks", {"event_types": ["client/created"], "target_url": receiver.url("/p"),
                                        "statuses": ["confirmed"], "metadata": {"a": 1}, "name": "n1"})
    assert status == 201
    path = "/v1/webhooks/" + w["id"]

    status, p = c.patch(path, {"active": False})
    assert status == 200 and p["active"] is False and p["deactivated_reason"] == "paused"
    assert p["version"] == 1 and p["name"] == "n1" and p["statuses"] == ["confirmed"]
    assert "secret" not in p
    status, p = c.patch(path, {"active": True})
    assert status == 200 and p["active"] is True and p["deactivated_reason"] is None and p["version"] == 2

    status, p = c.patch(path, {"name": "renamed", "event_types": ["payment/paid", "payment.update"],
                               "statuses": None, "metadata": {"b": [True], "s": "a \" b  c\\ ,: {"},
                               "payload_mode": "basic",
                               "body_format": "vcita", "batch": False, "description": "d",
                               "target_url": receiver.url("/moved")})
    assert status == 200, p
    assert p["name"] == "renamed" and sorted(p["event_types"]) == ["payment/paid", "payment/updated"]
    assert p["statuses"] is None and p["metadata"] == {"b": [True], "s": "a \" b  c\\ ,: {"}
    assert p["payload_mode"] == "basic"
    assert p["body_format"] == "vcita" and p["batch"] is False and p["description"] == "d"
    assert p["target_url"] == receiver.url("/moved") and p["endpoint_id"] != w["endpoint_id"]
    assert p["version"] == 3 and parse_ts(p["updated_at"]) >= parse_ts(p["created_at"])

    status, p2 = c.patch(path, {"statuses": ["a", "b"]})
    assert p2["statuses"] == ["a", "b"]
    status, p2 = c.patch(path, {"statuses": []})
    assert status == 200 and p2["statuses"] is None

    status, same = c.patch(path, {})
    assert status == 200 and same == p2  # nothing to change: no new version

    for body, code, field in (({"active": "no"}, "invalid_field", "active"),
                              ({"event_types": []}, "invalid_field", "event_types"),
                              ({"event_types": ["nope/nope"]}, "invalid_event_type", "event_types"),
                              ({"name": None}, "invalid_field", "name"),
                              ({"secret": "whsec_x"}, "unknown_field", "secret"),
                              ({"id": "other"}, "unknown_field", "id")):
        status, err = c.patch(path, body)
        assert (status, err["error"], err.get("field")) == (400, code, field), (body, err)
    assert c.get(path) == (200, p2)
    assert c.patch("/v1/webhooks/000000000000000000000000", {"name": "x"})[0] == 404


def test_delete_and_rotate_secret(api, receiver):
    c = api.client("account:acct_1")
    status, w = c.post("/v1/webhooks", {"event_types": ["client/created"], "target_url": receiver.url("/r")})
    assert status == 201
    path = "/v1/webhooks/" + w["id"]

    status, r = c.post(path + "/rotate-secret")
    assert status == 200 and SECRET.match(r["secret"]) and r["secret"] != w["secret"]
    expires = parse_ts(r["previous_secret_expires_at"])
    now = datetime.datetime.now(datetime.timezone.utc)
    assert datetime.timedelta(hours=23, minutes=55) < expires - now <= datetime.timedelta(hours=24, minutes=1)
    row = api.subscription(w["id"])
    assert row["secret"] == r["secret"] and row["previous_secret"] == w["secret"]
    status, got = c.get(path)
    assert "secret" not in got and got["previous_secret_expires_at"] == r["previous_secret_expires_at"]

    status, r2 = c.post(path + "/rotate-secret", {})
    assert status == 200 and r2["secret"] not in (w["secret"], r["secret"])
    assert api.subscription(w["id"])["previous_secret"] == r["secret"]
    status, err = c.post(path + "/rotate-secret", {"secret": "whsec_mine"})
    assert status == 400 and err["error"] == "unknown_field"
    assert c.post("/v1/webhooks/000000000000000000000000/rotate-secret")[0] == 404
    # an expired previous secret is not shown
    api.db.query("UPDATE subscriptions SET previous_secret_expires_at = now() - interval '1 second' WHERE id = %s",
                 (w["id"],))
    assert c.get(path)[1]["previous_secret_expires_at"] is None

    status, hdrs, raw = c.raw("DELETE", path)
    assert status == 204 and raw == b""
    assert api.subscription(w["id"]) is None
    for method in ("GET", "DELETE", "PATCH"):
        status, err = c.call(method, path, {} if method == "PATCH" else None)
        assert status == 404 and err == {"error": "not_found", "message": "no such webhook"}
    assert c.post(path + "/rotate-secret")[0] == 404


def test_validation_errors_name_the_field(api, receiver):
    c = api.client("account:acct_1")
    url = receiver.url()
    ok = {"event_types": ["client/created"], "target_url": url}

    def with_(**kw):
        body = dict(ok)
        body.update(kw)
        return body

    cases = [
        ({"target_url": url}, "missing_field", "event_types"),
        ({"event_types": ["client/created"]}, "missing_field", "target_url"),
        (with_(event_types=[]), "invalid_field", "event_types"),
        (with_(event_types="client/created"), "invalid_field", "event_types"),
        (with_(event_types=[1]), "invalid_field", "event_types"),
        (with_(event_types=[""]), "invalid_field", "event_types"),
        (with_(event_types=["client/created"] * 101), "invalid_field", "event_types"),
        (with_(event_types=["client/exploded"]), "invalid_event_type", "event_types"),
        (with_(event_types=["nosuchentity/*"]), "invalid_event_type", "event_types"),
        (with_(event_types=["client/created/x"]), "invalid_event_type", "event_types"),
        (with_(event_types=["client/cre ated"]), "invalid_event_type", "event_types"),
        (with_(event_types=["pivot/update"]), "invalid_event_type", "event_types"),
        (with_(event_types=["pivot/*"]), "invalid_event_type", "event_types"),
        (with_(event_types=["unknownAlias"]), "invalid_event_type", "event_types"),
        (with_(target_url=5), "invalid_field", "target_url"),
        (with_(target_url="not a url"), "invalid_target_url", "target_url"),
        (with_(target_url="https://a:b@example.com/"), "invalid_target_url", "target_url"),
        (with_(target_url="https://example.com:99999/"), "invalid_target_url", "target_url"),
        (with_(target_url="https://" + "a" * 2050 + ".com/"), "invalid_target_url", "target_url"),
        (with_(name=["x"]), "invalid_field", "name"),
        (with_(name="x" * 257), "invalid_field", "name"),
        (with_(name="a\u0000b"), "invalid_field", "name"),
        (with_(description=1), "invalid_field", "description"),
        (with_(statuses="confirmed"), "invalid_field", "statuses"),
        (with_(statuses=[""]), "invalid_field", "statuses"),
        (with_(statuses=[None]), "invalid_field", "statuses"),
        (with_(payload_mode="all"), "invalid_field", "payload_mode"),
        (with_(body_format="xml"), "invalid_field", "body_format"),
        (with_(batch="true"), "invalid_field", "batch"),
        (with_(batch=None), "invalid_field", "batch"),
        (with_(active=1), "invalid_field", "active"),
        (with_(metadata=[1]), "invalid_field", "metadata"),
        (with_(metadata="{}"), "invalid_field", "metadata"),
        (with_(metadata={"k": "x" * 17000}), "invalid_field", "metadata"),
        (with_(secret="whsec_abc"), "unknown_field", "secret"),
        (with_(owner="account:acct_2"), "unknown_field", "owner"),
    ]
    for body, code, field in cases:
        status, err = c.post("/v1/webhooks", body)
        assert (status, err["error"], err.get("field")) == (400, code, field), (body if len(str(body)) < 300 else field, err)
        assert err["message"] and len(err["message"]) < 600

    raw_cases = [
        (b"", "invalid_body"), (b"[]", "invalid_body"), (b"null", "invalid_body"), (b"{", "invalid_json"),
        (b'{"event_types":["client/created"],"target_url":"x",}', "invalid_json"),
        (b'{"name":"\xc3\x28"}', "invalid_json"),
        (b'{"metadata":{"n":1e999999}, "event_types":["*"], "target_url":"%s"}' % url.encode(), "invalid_request"),
        (b'{"metadata":{"k":"\\u0000"}, "event_types":["*"], "target_url":"%s"}' % url.encode(), "invalid_request"),
        (b'{"a":1,"a":2}', "invalid_body"), (b"{}" + b" " * 10 + b"x", "invalid_json"),
        (b'{"metadata":' + b"[" * 70 + b"]" * 70 + b"}", "invalid_json"),
    ]
    for raw, code in raw_cases:
        status, err = c.post("/v1/webhooks", raw, headers={"Content-Type": "application/json"})
        assert status == 400 and err["error"] == code, (raw[:80], err)
    # a lone surrogate escape decodes to U+FFFD (json-c), so stored text is always valid UTF-8
    status, w = c.post("/v1/webhooks", b'{"name":"\\ud800x","event_types":["*"],"target_url":"%s"}' % url.encode(),
                       headers={"Content-Type": "application/json"})
    assert status == 201 and w["name"] == "\ufffdx"
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "application/xml", "multipart/form-data"):
        status, err = c.post("/v1/webhooks", json.dumps(ok), headers={"Content-Type": ctype})
        assert status == 415 and err["error"] == "unsupported_media_type"
    for ctype in ("application/json; charset=utf-8", "Application/JSON", "application/vnd.api+json"):
        status, _ = c.post("/v1/webhooks", json.dumps(ok), headers={"Content-Type": ctype})
        assert status == 201, ctype
    status, err = c.post("/v1/webhooks", b" " * 70000, headers={"Content-Type": "application/json"})
    assert status == 413 and err["error"] == "payload_too_large"
    status, err = c.call("PUT", "/v1/webhooks", ok)
    assert status == 405 and err["error"] == "method_not_allowed"
    status, err = c.get("/v1/webhook")
    assert status == 404 and err["error"] == "not_found"
    assert len(api.subscriptions()) == 4  # the surrogate one and the three content-type variants


def test_event_types_catalog_and_directory_tokens(api, receiver):
    a = api.client("account:acct_1")
    d = api.client("directory:dir_7")
    status, cat = a.get("/v1/event-types")
    assert status == 200 and set(cat) == {"data"}
    by_name = {t["name"]: t for t in cat["data"]}
    assert [t["name"] for t in cat["data"]] == sorted(by_name)
    assert by_name["client/created"] == {"name": "client/created", "entity": "client",
                                         "description": "A client was created", "source": "vcita",
                                         "directory_level": False, "subscribable": True, "aliases": []}
    assert by_name["event/created"]["aliases"] == ["eventAdded"]
    assert by_name["pivot/update"]["directory_level"] is True and by_name["pivot/update"]["subscribable"] is False
    assert {t["name"]: t["subscribable"] for t in d.get("/v1/event-types")[1]["data"]}["pivot/update"] is True

    # a type added by an admin is usable at once
    api.db.query("INSERT INTO event_types (name, source) VALUES ('invoice/voided', 'custom')")
    status, w = a.post("/v1/webhooks", {"event_types": ["invoice/voided"], "target_url": receiver.url()})
    assert status == 201

    status, w = d.post("/v1/webhooks", {"event_types": ["pivot/update", "pivot/*", "client/created"],
                                        "target_url": receiver.url("/dir")})
    assert status == 201 and w["owner"] == "directory:dir_7"
    assert sorted(w["event_types"]) == ["client/created", "pivot/*", "pivot/update"]
    assert [x["id"] for x in d.get("/v1/webhooks")[1]["data"]] == [w["id"]]
    assert w["id"] not in [x["id"] for x in a.get("/v1/webhooks")[1]["data"]]


def test_accept_unknown_types_allows_subscribing_to_them(services, db, receiver):
    from api_helpers import ApiEnv
    env = ApiEnv(services, db, HOOKD_ACCEPT_UNKNOWN_TYPES="true")
    c = env.client("account:acct_1")
    status, w = c.post("/v1/webhooks", {"event_types": ["widget/spun", "gadget/*"], "target_url": receiver.url()})
    assert status == 201 and sorted(w["event_types"]) == ["gadget/*", "widget/spun"]
    # still: malformed patterns and directory-level types for account tokens are refused
    assert c.post("/v1/webhooks", {"event_types": ["widget//x"], "target_url": receiver.url()})[0] == 400
    assert c.post("/v1/webhooks", {"event_types": ["pivot/event"], "target_url": receiver.url()})[0] == 400
