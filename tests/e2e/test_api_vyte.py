"""Vyte-compatible /hooks against the real hookd-ingest: the 201 body with
Vyte's field names and types, list/get/put/delete, 404/400 JSON errors,
and that hooks are per organization."""

import json

from api_helpers import api  # noqa: F401
from api_helpers import ISO_MS, OBJECT_ID

ACTIONS = {"event.created": "event/created", "event.confirmed": "event/confirmed",
           "event.updated": "event/updated", "event.cancelled": "event/cancelled",
           "user.joined": "user/joined"}


def test_create_list_get_update_delete(api, receiver):
    c = api.client("account:org_1")
    url = receiver.url("/vyte")
    status, hdrs, raw = c.raw("POST", "/hooks", {"action": "event.cancelled", "target_url": url})
    assert status == 201 and hdrs["content-type"] == "application/json"
    hook = json.loads(raw)
    # Vyte's documented response: these keys, in this order, with these types
    assert list(hook) == ["__v", "createdAt", "updatedAt", "organization", "scope", "action",
                          "target_url", "_id"]
    assert hook["__v"] == 0 and hook["organization"] == "org_1" and hook["scope"] == "organization"
    assert hook["action"] == "event.cancelled" and hook["target_url"] == url
    assert OBJECT_ID.match(hook["_id"]) and ISO_MS.match(hook["createdAt"])
    assert hook["createdAt"] == hook["updatedAt"]

    row = api.subscription(hook["_id"])
    assert row["event_types"] == ["event/cancelled"] and row["body_format"] == "vyte"
    assert row["batch"] is True and row["source"] == "vyte" and row["owner_kind"] == "account"
    assert row["payload_mode"] == "full" and row["active"] is True

    assert c.get("/hooks") == (200, {"hooks": [hook]})
    assert c.get("/hooks/" + hook["_id"]) == (200, hook)

    status, updated = c.put("/hooks/" + hook["_id"], {"action": "event.confirmed"})
    assert status == 200
    assert updated["action"] == "event.confirmed" and updated["__v"] == 1
    assert updated["_id"] == hook["_id"] and updated["createdAt"] == hook["createdAt"]
    assert updated["updatedAt"] >= hook["updatedAt"]
    assert api.subscription(hook["_id"])["event_types"] == ["event/confirmed"]
    other = receiver.url("/vyte2")
    status, updated = c.put("/hooks/" + hook["_id"], {"target_url": other})
    assert status == 200 and updated["target_url"] == other and updated["__v"] == 2
    assert updated["action"] == "event.confirmed"
    status, same = c.put("/hooks/" + hook["_id"], {})
    assert (status, same) == (200, updated)

    status, hdrs, raw = c.raw("DELETE", "/hooks/" + hook["_id"])
    assert status == 204 and raw == b""
    assert api.subscription(hook["_id"]) is None
    status, body = c.get("/hooks/" + hook["_id"])
    assert status == 404 and body == {"error": "not_found", "message": "no such hook"}
    assert c.delete("/hooks/" + hook["_id"])[0] == 404
    assert c.put("/hooks/" + hook["_id"], {"action": "user.joined"})[0] == 404
    assert c.get("/hooks") == (200, {"hooks": []})


def test_every_action_maps_to_its_event_type(api, receiver):
    c = api.client("account:org_1")
    ids = {}
    for action, etype in ACTIONS.items():
        status, hook = c.post("/hooks", {"action": action, "target_url": receiver.url("/" + action)})
        assert status == 201 and hook["action"] == action
        assert api.subscription(hook["_id"])["event_types"] == [etype]
        ids[hook["_id"]] = action
    status, body = c.get("/hooks")
    assert status == 200
    assert [h["_id"] for h in body["hooks"]] == sorted(ids)  # listed in id order
    assert {h["_id"]: h["action"] for h in body["hooks"]} == ids


def test_errors_are_json(api, receiver):
    c = api.client("account:org_1")
    url = receiver.url()
    cases = [
        ({"action": "event.exploded", "target_url": url}, 400, "invalid_action", "action"),
        ({"action": "event/created", "target_url": url}, 400, "invalid_action", "action"),
        ({"action": "", "target_url": url}, 400, "invalid_action", "action"),
        ({"action": 5, "target_url": url}, 400, "invalid_field", "action"),
        ({"target_url": url}, 400, "missing_field", "action"),
        ({"action": "event.created"}, 400, "missing_field", "target_url"),
        ({"action": "event.created", "target_url": "ftp://x.example/"}, 400, "invalid_target_url",
         "target_url"),
        ({"action": "event.created", "target_url": url, "scope": "user"}, 400, "unknown_field", "scope"),
    ]
    for body, status, code, field in cases:
        got_status, got = c.post("/hooks", body)
        assert (got_status, got["error"], got.get("field")) == (status, code, field), (body, got)
        assert got["message"]
    status, got = c.post("/hooks", b"[1,2", headers={"Content-Type": "application/json"})
    assert status == 400 and got["error"] == "invalid_json"

    status, hook = c.post("/hooks", {"action": "event.created", "target_url": url})
    assert status == 201
    for body, code in (({"action": "nope"}, "invalid_action"), ({"target_url": "mailto:x"}, "invalid_target_url"),
                       ({"__v": 3}, "unknown_field")):
        status, got = c.put("/hooks/" + hook["_id"], body)
        assert status == 400 and got["error"] == code, got
    assert c.get("/hooks/" + hook["_id"]) == (200, hook)  # unchanged

    for bad in ("000000000000000000000000", "nope", "a" * 65, "x%20y"):
        for method in ("GET", "PUT", "DELETE"):
            status, got = c.call(method, "/hooks/" + bad, {"action": "event.created"} if method == "PUT" else None)
            assert status == 404 and got["error"] == "not_found", (method, bad, got)

    status, got = c.call("PATCH", "/hooks/" + hook["_id"], {})
    assert status == 405 and got["error"] == "method_not_allowed"
    anon = api.anonymous()
    assert anon.get("/hooks")[0] == 401
    assert anon.post("/hooks", {"action": "event.created", "target_url": url})[0] == 401
    assert anon.delete("/hooks/" + hook["_id"])[0] == 401
    assert api.subscription(hook["_id"]) is not None


def test_hooks_are_per_organization_and_only_vyte_ones(api, receiver):
    a = api.client("account:org_a")
    b = api.client("account:org_b")
    status, hook = a.post("/hooks", {"action": "event.created", "target_url": receiver.url("/a")})
    assert status == 201
    # a native subscription of org_a is not a Vyte hook
    status, native = a.post("/v1/webhooks", {"event_types": ["event/created"], "target_url": receiver.url("/n")})
    assert status == 201
    assert [h["_id"] for h in a.get("/hooks")[1]["hooks"]] == [hook["_id"]]
    assert a.get("/hooks/" + native["id"])[0] == 404

    assert b.get("/hooks") == (200, {"hooks": []})
    assert b.get("/hooks/" + hook["_id"])[0] == 404
    assert b.put("/hooks/" + hook["_id"], {"target_url": receiver.url("/stolen")})[0] == 404
    assert b.delete("/hooks/" + hook["_id"])[0] == 404
    # same id under a directory scope with the same id string is another owner too
    d = api.client("directory:org_a")
    assert d.get("/hooks") == (200, {"hooks": []})
    assert d.get("/hooks/" + hook["_id"])[0] == 404
    assert a.get("/hooks/" + hook["_id"]) == (200, hook)
