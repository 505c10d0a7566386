"""Table-driven fuzzing of the subscription API with malformed requests
against the real hookd-ingest: random bytes, truncated JSON, wrong types,
huge numbers, deep nesting, invalid UTF-8 and escapes, wrong content types,
oversized bodies, odd paths and queries, and raw socket garbage.

Every answer must be a 4xx JSON error (vCita routes: their documented
500 {"response":"Not ..."}), never an internal error or SQL text; nothing
may be created or changed; the process must stay up, keep serving, and exit
cleanly under ASan/UBSan (checked by the services fixture)."""

import json
import random
import re

from api_helpers import api  # noqa: F401
from api_helpers import KeepAlive, raw_http, seed_delivery

SEED = 20261123
LEAK = re.compile(r"select |insert |update |delete from|error:|syntax|sqlstate|libpq|pg_|relation |column |"
                  r"stack|segfault|assert", re.I)
NATIVE_OK = {400, 404, 405, 413, 415}


class Fuzzer:
    def __init__(self, env):
        self.env = env
        self.port = env.ingest.http_port
        self.conn = KeepAlive(self.port)
        self.count = 0
        self.token = None

    def check_alive(self):
        status, _, _ = self.conn.request("GET", "/healthz")
        assert status == 200 and self.env.ingest.alive()

    def send(self, method, path, body=None, ctype="application/json", headers=None, vcita=None):
        h = {"Authorization": "Bearer " + self.token}
        if ctype is not None:
            h["Content-Type"] = ctype
        h.update(headers or {})
        status, hdrs, raw = self.conn.request(method, path, body, h)
        self.count += 1
        case = (method, path[:80], (body or b"")[:120], ctype)
        assert hdrs.get("content-type", "").startswith("application/json"), (case, status, raw[:200])
        reply = json.loads(raw.decode("utf-8"))  # valid UTF-8 JSON even for invalid input
        if vcita and status == 500:
            assert reply["response"] == vcita and set(reply) == {"response", "error"}, (case, reply)
            msg = reply["error"]
        else:
            assert status in NATIVE_OK, (case, status, reply)
            assert reply["error"] != "internal", (case, reply)
            msg = reply["message"]
        assert not LEAK.search(msg), (case, msg)
        if self.count % 250 == 0:
            self.check_alive()
        return status, reply


def valid_bodies(url, hook_id, wid, did):
    """(method, path, valid JSON body, vcita response text or None) per body route."""
    return [
        ("POST", "/v1/subscriptions/standard/subscribe", {"event": "client/created", "target_url": url},
         "Not Subscribed"),
        ("POST", "/v1/subscriptions/standard/unsubscribe", {"event": "client/created", "target_url": url},
         "Not Unsubscribed"),
        ("POST", "/hooks", {"action": "event.created", "target_url": url}, None),
        ("PUT", f"/hooks/{hook_id}", {"action": "event.created", "target_url": url}, None),
        ("POST", "/v1/webhooks", {"event_types": ["client/created", "payment/*"], "target_url": url,
                                  "name": "n", "statuses": ["paid"], "payload_mode": "full",
                                  "body_format": "standard", "batch": True, "active": True,
                                  "description": "d", "metadata": {"k": [1, "v"]}}, None),
        ("PATCH", f"/v1/webhooks/{wid}", {"name": "n2", "event_types": ["client/*"], "batch": False,
                                         "metadata": {"a": {"b": None}}, "statuses": None}, None),
        ("POST", f"/v1/webhooks/{wid}/rotate-secret", {}, None),
        ("POST", f"/v1/deliveries/{did}/redeliver", {}, None),
        ("POST", "/v1/endpoints/release", {"url": url}, None),
    ]


# Values of the wrong JSON type for each kind of field.
WRONG = {
    "string": [1, -1, 1.5, 1e300, 123456789012345678901234567890, True, False, {}, [], ["x"], {"a": "b"}],
    "strings": ["x", 1, True, {}, [1], [True], [{}], [[]], [None], [""], [["x"]], ["x", 2]],
    "bool": ["true", "false", 1, 0, [], {}, "yes", None],
    "object": [1, "x", [], [1], True, "{}"],
}
FIELD_KINDS = {
    "event": "string", "target_url": "string", "action": "string", "name": "string", "description": "string",
    "payload_mode": "string", "body_format": "string", "url": "string", "event_types": "strings",
    "statuses": "strings", "batch": "bool", "active": "bool", "metadata": "object",
}


def cases_type_confusion(routes):
    out = []
    for method, path, body, vcita in routes:
        for field in body:
            for value in WRONG[FIELD_KINDS[field]]:
                if field == "statuses" and value is None:
                    continue
                b = dict(body)
                b[field] = value
                out.append((method, path, json.dumps(b).encode(), "application/json", vcita))
        b = dict(body)
        b["unexpected_field"] = 1
        out.append((method, path, json.dumps(b).encode(), "application/json", vcita))
    return out


def cases_random_bytes(rng, routes, n):
    out = []
    for i in range(n):
        method, path, _, vcita = routes[i % len(routes)]
        size = rng.choice([1, 2, 3, 8, 64, 500, 4000])
        data = bytes([rng.randrange(33, 256)]) + bytes(rng.randrange(256) for _ in range(size - 1))
        out.append((method, path, data, "application/json", vcita))
    return out


def cases_truncated(rng, routes, per_route):
    out = []
    for method, path, body, vcita in routes:
        text = json.dumps(body).encode()
        cuts = sorted(rng.sample(range(1, len(text)), min(per_route, len(text) - 1)))
        out += [(method, path, text[:cut], "application/json", vcita) for cut in cuts]
    return out


def cases_encoding(routes):
    bad = [b'"\xff"', b'"\xc0\x80"', b'"\xed\xa0\x80"', b'"\xf8\x88\x80\x80\x80"', b'"\\x41"', b'"\\u12"',
           b'"\\uZZZZ"', b'"a\x01b"', b'"a\nb"', b"'single'", b"NaN", b"Infinity", b"-", b"01", b"1.", b".5",
           b"+1", b"0x10", b"tru", b"nul", b'"\\u0000"']
    out = []
    for method, path, body, vcita in routes:
        key = next(iter(body), "name")
        for value in bad:
            out.append((method, path, b'{"' + key.encode() + b'":' + value + b"}", "application/json", vcita))
    return out


def cases_huge_numbers(routes, url):
    # beyond what jsonb's numeric can hold (huge but representable numbers are valid metadata)
    overflow = [b"1e999999", b"-1e999999", b"1e-999999", b"1e131072", b"123456789012345678901234567890e123456789"]
    numbers = overflow + [b"1" * 5000, b"-" + b"9" * 400, b"0." + b"0" * 3000 + b"1"]
    out = []
    for n in overflow:
        body = b'{"event_types":["client/created"],"target_url":"' + url.encode() + b'","metadata":{"n":' + n + b"}}"
        out.append(("POST", "/v1/webhooks", body, "application/json", None))
        out.append(("PATCH", routes[5][1], b'{"metadata":{"a":[' + n + b"]}}", "application/json", None))
    for n in numbers:
        for method, path, _, vcita in routes:
            out.append((method, path, b'{"target_url":' + n + b"}", "application/json", vcita))
    return out


def cases_nesting(routes, url):
    out = []
    for depth in (65, 66, 100, 1000, 20000, 32000):
        deep = b"[" * depth + b"]" * depth
        deep_obj = b'{"a":' * depth + b"1" + b"}" * depth
        for method, path, _, vcita in routes:
            out.append((method, path, deep, "application/json", vcita))
            out.append((method, path, b'{"metadata":' + deep_obj + b"}", "application/json", vcita))
            out.append((method, path, b"[" * depth, "application/json", vcita))
        meta = b'{"event_types":["*"],"target_url":"' + url.encode() + b'","metadata":' + deep_obj + b"}"
        out.append(("POST", "/v1/webhooks", meta, "application/json", None))
    return out


def cases_content_types(routes):
    ctypes = ["text/plain", "text/html", "application/xml", "multipart/form-data; boundary=x",
              "application/x-www-form-urlencoded", "image/png", "application/jsonx", "application/json-patch",
              "", "application", "json", "*/*", "application/+json", "text/json"]
    out = []
    for method, path, body, vcita in routes:
        for ct in ctypes:
            out.append((method, path, json.dumps(body).encode(), ct, vcita))
    return out


def cases_oversized(routes):
    out = []
    for method, path, _, vcita in routes:
        out.append((method, path, b'{"name":"' + b"x" * 70000 + b'"}', "application/json", None))
        out.append((method, path, b" " * 65537, "application/json", None))
    return out


def cases_paths(rng):
    paths = []
    ids = ["%00", "..", "../../etc/passwd", "a" * 65, "a" * 5000, "%ff%fe", "%", "%zz", "x y", "%C3%A9",
           "' OR 1=1 --", "1;DROP TABLE subscriptions", "000000000000000000000000", "-1", "1e5", "0x1f"]
    for i in ids:
        for tmpl in ("/v1/webhooks/{}", "/hooks/{}", "/v1/webhooks/{}/deliveries", "/v1/deliveries/{}/redeliver",
                     "/v1/webhooks/{}/rotate-secret"):
            method = "POST" if tmpl.endswith(("redeliver", "secret")) else "GET"
            paths.append((method, tmpl.format(i.replace(" ", "%20").replace("'", "%27").replace(";", "%3B"))))
    paging = ["limit=0", "limit=-1", "limit=1e9", "limit=99999999999999999999", "limit=", "limit=abc",
              "limit=%00", "cursor=%ff", "cursor=../../x", "cursor=" + "a" * 70, "cursor=%27%20OR%201=1"]
    own = {"/v1/webhooks": ["active=maybe", "source=%00", "source=SQL", "active=1"],
           "/v1/endpoints": ["greylisted=2", "greylisted="],
           "/v1/webhooks/{wid}/deliveries": ["outcome=%27%20OR%201=1", "outcome=", "cursor=1e3", "cursor=-5"]}
    for base, extra in own.items():
        for q in paging + extra:
            paths.append(("GET", base + "?" + q))
    for _ in range(60):
        seg = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789-_.~%/") for _ in range(rng.randrange(1, 40)))
        paths.append((rng.choice(["GET", "POST", "DELETE", "PATCH", "PUT", "OPTIONS"]), "/" + seg))
    wrong_methods = [("DELETE", "/v1/webhooks"), ("PUT", "/v1/webhooks"), ("PATCH", "/hooks"), ("GET", "/v1/endpoints/release"),
                     ("DELETE", "/v1/event-types"), ("GET", "/v1/subscriptions/standard/subscribe"),
                     ("OPTIONS", "/v1/webhooks"), ("POST", "/v1/event-types")]
    return paths + wrong_methods


def raw_garbage(rng, token):
    """(bytes, accepted status codes) sent straight to the socket."""
    auth = b"Authorization: Bearer " + token.encode() + b"\r\n"
    fixed = [
        b"GET / HTTP/9.9\r\n\r\n", b"GET /\r\n\r\n", b"\x00\x01\x02garbage\r\n\r\n", b"\r\n\r\n",
        b"GET /v1/webhooks HTTP/1.1\r\nNoColonHeader\r\n\r\n",
        b"POST /v1/webhooks HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
        b"POST /v1/webhooks HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"POST /v1/webhooks HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nxx\r\n",
        b"POST /v1/webhooks HTTP/1.1\r\nHost: x\r\n" + auth + b"Transfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n0\r\n\r\n",
        b"GET /v1/webhooks HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40000 + b"\r\n\r\n",
        b"GET /v1/web%00hooks HTTP/1.1\r\nHost: x\r\n\r\n", b"GET v1/webhooks HTTP/1.1\r\n\r\n",
        b"POST /v1/webhooks HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n{}",
        b"POST /v1/webhooks HTTP/1.1\r\nHost: x\r\n" + auth + b"Content-Length: 5\r\n\r\n{\"a\"",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",
        b"GET /v1/webhooks HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer hkd_\x00\x01\r\n\r\n",
        b"GET /v1/webhooks HTTP/1.1\r\n" + b"H: v\r\n" * 3000 + b"\r\n",
        b"GET /" + b"a/" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    ]
    out = [(data, None) for data in fixed]
    for _ in range(40):
        out.append((bytes(rng.randrange(256) for _ in range(rng.randrange(1, 3000))), None))
    for _ in range(20):
        line = b"GET /v1/webhooks HTTP/1.1\r\n" + bytes(rng.randrange(1, 256) for _ in range(rng.randrange(1, 200)))
        out.append((line + b"\r\n\r\n", None))
    # unrecognised methods: libevent answers 501 Not Implemented, as RFC 9110 §9.1 says to
    for m in (b"FOO", b"TRACE", b"CONNECT", b"BREW", b"get"):
        out.append((m + b" /v1/webhooks HTTP/1.1\r\nHost: x\r\n\r\n", {400, 405, 501}))
    return out


def status_of(resp):
    m = re.match(rb"HTTP/1\.[01] (\d{3}) ", resp)
    return int(m.group(1)) if m else None


def test_thousands_of_malformed_requests_get_only_4xx_and_the_service_survives(api, receiver):
    rng = random.Random(SEED)
    url = receiver.url("/fuzz")
    c = api.client("account:acct_1")
    status, w = c.post("/v1/webhooks", {"event_types": ["client/created"], "target_url": url})
    assert status == 201
    status, hook = c.post("/hooks", {"action": "event.created", "target_url": url})
    assert status == 201
    did = seed_delivery(api.db, w["id"])
    snapshot = api.db.query("SELECT id, version, secret FROM subscriptions ORDER BY id")

    f = Fuzzer(api)
    f.token = c.token
    routes = valid_bodies(url, hook["_id"], w["id"], did)
    cases = (cases_type_confusion(routes) + cases_random_bytes(rng, routes, 720) + cases_truncated(rng, routes, 60)
             + cases_encoding(routes) + cases_huge_numbers(routes, url) + cases_nesting(routes, url)
             + cases_content_types(routes) + cases_oversized(routes))
    for method, path, body, ctype, vcita in cases:
        f.send(method, path, body, ctype, vcita=vcita)
    f.check_alive()
    for method, path in cases_paths(rng):
        f.send(method, path.replace("{wid}", w["id"]), b"{}" if method in ("POST", "PUT", "PATCH") else None)
    f.check_alive()
    # hostile headers on a valid path
    for value in ("Bearer " + "a" * 8000, "Bearer " + c.token + "x", "Bearer  ", "Token " + c.token,
                  "Bearer " + c.token[:-1]):
        status, _, raw = f.conn.request("GET", "/v1/webhooks", None, {"Authorization": value})
        f.count += 1
        assert status in (400, 401), (value[:40], status, raw[:200])

    raw_count = 0
    for data, accepted in raw_garbage(rng, c.token):
        resp = raw_http(api.ingest.http_port, data)
        raw_count += 1
        if resp:
            st = status_of(resp)
            allowed = accepted or {400, 404, 405, 408, 411, 413, 414, 415, 431}
            assert st in allowed or (st is not None and 400 <= st < 500), (data[:60], resp[:120])
        if raw_count % 20 == 0:
            f.check_alive()
    f.conn.close()

    total = f.count + raw_count
    print(f"fuzz: {f.count} HTTP requests, {raw_count} raw socket payloads")
    assert total >= 2000, total
    # nothing was created, changed or scheduled by any of it
    assert api.db.query("SELECT id, version, secret FROM subscriptions ORDER BY id") == snapshot
    assert api.db.scalar("SELECT count(*) FROM parked_jobs") == 0
    assert api.db.scalar("SELECT count(*) FROM api_tokens") == 1
    # and the service still does its job
    assert api.alive()
    status, w2 = c.post("/v1/webhooks", {"event_types": ["*"], "target_url": url})
    assert status == 201
    assert c.get("/v1/webhooks/" + w2["id"])[0] == 200
    assert not [r for r in api.ingest.log_records() if r.get("msg") == "api_db_error"]
