"""The subscription API under load (issue #8): 200 clients, each a thread
with its own token (its own account) and one persistent HTTP/1.1
connection, run a subscribe / list / unsubscribe mix across the vCita,
Vyte and native APIs for 30 s, twice.

Proves:
- all 200 clients are connected and working at the same time (the
  server holds 200 established connections during the run, and every
  client's first request precedes every client's last one);
- no errors: every response has the expected status, and every list a
  client makes (native GET /v1/webhooks, Vyte GET /hooks) shows exactly
  what that client has created and not yet removed;
- the final database holds, per account, exactly what its client did
  (ids of native webhooks and Vyte hooks, (event, URL) of vCita
  subscriptions), and the matcher's live index agrees on the count;
- no leak: ingest's RSS (VmRSS) grows during the first run (one-time
  warm-up: buffers of 200 connections, PostgreSQL result buffers, allocator
  size classes, ASan's quarantine, here limited to 4 MiB so that it does
  not hide everything else: by default ASan keeps 256 MiB of freed memory)
  but the second, equal run may add at most a quarter of that or 4 MiB,
  whichever is more (warm-up that spills over, page-granular RSS,
  allocator caches and ASan's stack depot still move a little; seen:
  ~20 MiB, then ~1-2 MiB). Memory kept per request grows both runs alike:
  a few hundred bytes per request (~17,000 requests a run) already break
  the bound. Unreachable leaks are caught by LeakSanitizer when ingest
  exits (the services fixture requires exit 0).

HOOKD_LOAD_SECONDS overrides the 30 s per run."""

import http.client
import json
import os
import random
import threading
import time

from chaos_helpers import rss_kb
from harness import SANITIZER_ENV
from ingest_helpers import INGEST_ENV, wait_subscriptions

CLIENTS = 200
RUN_S = float(os.environ.get("HOOKD_LOAD_SECONDS", 30))
NATIVE_TYPES = [["client/created"], ["appointment/*"], ["client/updated", "payment/paid"], ["*"]]
VCITA_EVENTS = ["client/created", "client/updated", "appointment/created", "payment/paid"]
VYTE_ACTIONS = ["event.created", "event.confirmed", "event.updated", "event.cancelled", "user.joined"]
GROWTH_FLOOR_KB = 4 * 1024


def established(port):
    """Established TCP connections whose local port is 'port' (server side)."""
    n = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    cols = line.split()
                    if int(cols[1].rsplit(":", 1)[1], 16) == port and cols[3] == "01":
                        n += 1
        except FileNotFoundError:
            pass
    return n


class LoadClient(threading.Thread):
    """One API client: a token of account 'acct', one keep-alive connection,
    a local model of what it has created. Any unexpected status or list
    content is recorded in 'errors' (the test fails on them)."""

    def __init__(self, n, port, token, seed):
        super().__init__(daemon=True)
        self.n = n
        self.port = port
        self.acct = "acct_load_%d" % n
        self.headers = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
        self.rnd = random.Random(seed)
        self.native = {}   # id -> (event_types, url)
        self.vyte = {}     # _id -> (action, url)
        self.vcita = set() # (event, url)
        self.urls = 0
        self.requests = 0
        self.errors = []
        self.first = self.last = None
        self.conn = None

    # -- plumbing
    def call(self, method, path, body=None, expect=200):
        data = json.dumps(body).encode() if body is not None else None
        t = time.monotonic()
        self.conn.request(method, path, body=data, headers=self.headers)
        resp = self.conn.getresponse()
        raw = resp.read()
        self.requests += 1
        self.first = self.first or t
        self.last = time.monotonic()
        if resp.status != expect:
            raise AssertionError("%s %s -> %d (expected %d): %r" % (method, path, resp.status, expect,
                                                                     raw[:300]))
        return json.loads(raw) if raw else None

    def url(self):
        self.urls += 1
        return "http://127.0.0.1:9/load/%d/%d" % (self.n, self.urls)

    def total(self):
        return len(self.native) + len(self.vyte) + len(self.vcita)

    # -- operations (each checks its answer)
    def create_native(self):
        types, url = self.rnd.choice(NATIVE_TYPES), self.url()
        w = self.call("POST", "/v1/webhooks", {"event_types": types, "target_url": url,
                                               "batch": self.rnd.random() < 0.5}, 201)
        assert w["event_types"] == types and w["target_url"] == url and w["source"] == "native", w
        self.native[w["id"]] = (types, url)

    def delete_native(self):
        wid = self.rnd.choice(sorted(self.native))
        self.call("DELETE", "/v1/webhooks/" + wid, expect=204)
        del self.native[wid]

    def subscribe_vcita(self):
        if self.vcita and self.rnd.random() < 0.2:
            event, url = self.rnd.choice(sorted(self.vcita))  # again: still one subscription
        else:
            event, url = self.rnd.choice(VCITA_EVENTS), self.url()
        r = self.call("POST", "/v1/subscriptions/standard/subscribe", {"event": event, "target_url": url})
        assert r == {"response": "Subscribed"}, r
        self.vcita.add((event, url))

    def unsubscribe_vcita(self):
        event, url = self.rnd.choice(sorted(self.vcita))
        r = self.call("POST", "/v1/subscriptions/standard/unsubscribe", {"event": event, "target_url": url})
        assert r == {"response": "Unsubscribed"}, r
        self.vcita.discard((event, url))

    def create_vyte(self):
        action, url = self.rnd.choice(VYTE_ACTIONS), self.url()
        h = self.call("POST", "/hooks", {"action": action, "target_url": url}, 201)
        assert h["action"] == action and h["target_url"] == url and h["organization"] == self.acct, h
        self.vyte[h["_id"]] = (action, url)

    def delete_vyte(self):
        hid = self.rnd.choice(sorted(self.vyte))
        self.call("DELETE", "/hooks/" + hid, expect=204)
        del self.vyte[hid]

    def list_native(self):
        page = self.call("GET", "/v1/webhooks?limit=250")
        assert page["has_more"] is False, page
        by_source = {"native": {}, "vyte": {}, "vcita": set()}
        for w in page["data"]:
            if w["source"] == "vcita":
                by_source["vcita"].add((w["event_types"][0], w["target_url"]))
            else:
                by_source[w["source"]][w["id"]] = w["target_url"]
        assert by_source["native"] == {k: v[1] for k, v in self.native.items()}, "native list differs"
        assert by_source["vyte"] == {k: v[1] for k, v in self.vyte.items()}, "vyte hooks differ"
        assert by_source["vcita"] == self.vcita, "vcita subscriptions differ"
        assert len(page["data"]) == self.total()

    def list_vyte(self):
        hooks = self.call("GET", "/hooks")["hooks"]
        assert {h["_id"]: (h["action"], h["target_url"]) for h in hooks} == self.vyte, "GET /hooks differs"

    def get_one(self):
        wid = self.rnd.choice(sorted(self.native))
        w = self.call("GET", "/v1/webhooks/" + wid)
        assert w["id"] == wid and w["target_url"] == self.native[wid][1], w

    def step(self):
        total = self.total()
        ops = [self.list_native, self.list_vyte]
        if total < 24:
            ops += [self.create_native, self.subscribe_vcita, self.create_vyte]
        if total > 4:
            ops += [m for m, have in ((self.delete_native, self.native),
                                      (self.unsubscribe_vcita, self.vcita),
                                      (self.delete_vyte, self.vyte)) if have]
        if self.native:
            ops.append(self.get_one)
        self.rnd.choice(ops)()

    def run_for(self, start_barrier):
        self.barrier = start_barrier
        self.start()

    def run(self):
        try:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            self.conn.connect()
            self.barrier.wait(timeout=60)
            stop_at = time.monotonic() + RUN_S
            while time.monotonic() < stop_at:
                self.step()
        except Exception as exc:  # reported by the test
            self.errors.append("client %d: %r" % (self.n, exc))
        finally:
            if self.conn is not None:
                self.conn.close()


def run_load(port, tokens, models, seed):
    """One run of CLIENTS concurrent clients for RUN_S seconds; each picks up
    the model its predecessor left ('models', updated in place). Returns
    (requests, seconds, most connections open at once)."""
    barrier = threading.Barrier(CLIENTS + 1)
    clients = []
    for n in range(CLIENTS):
        c = LoadClient(n, port, tokens[n], seed * 1000 + n)
        c.native, c.vyte, c.vcita, c.urls = models[n]
        clients.append(c)
    for c in clients:
        c.run_for(barrier)
    barrier.wait(timeout=60)  # every client has connected
    began = time.monotonic()
    peak = 0  # most connections the server held at once
    while any(c.is_alive() for c in clients) and time.monotonic() < began + RUN_S + 120:
        peak = max(peak, established(port))
        time.sleep(0.5)
    for c in clients:
        c.join(timeout=10)
    took = time.monotonic() - began
    errors = [e for c in clients for e in c.errors]
    assert not errors, "%d errors, e.g. %s" % (len(errors), errors[:5])
    assert all(not c.is_alive() for c in clients)
    assert peak >= CLIENTS, "at most %d connections open at once" % peak
    # all 200 worked at the same time: every first request before every last one
    assert max(c.first for c in clients) < min(c.last for c in clients)
    for n, c in enumerate(clients):
        models[n] = (c.native, c.vyte, c.vcita, c.urls)
    return sum(c.requests for c in clients), took, peak


def test_api_under_200_concurrent_clients_no_errors_no_leak(services, db):
    ingest = services("ingest", ASAN_OPTIONS=SANITIZER_ENV["ASAN_OPTIONS"] + ":quarantine_size_mb=4",
                      **INGEST_ENV)
    pid = ingest.proc.pid
    tokens = [db.scalar("SELECT hookd_create_token(%s, 'load')", ("account:acct_load_%d" % n,))
              for n in range(CLIENTS)]
    models = [({}, {}, set(), 0) for _ in range(CLIENTS)]

    rss0 = rss_kb(pid)
    req1, took1, peak1 = run_load(ingest.http_port, tokens, models, 1)
    rss1 = rss_kb(pid)
    req2, took2, peak2 = run_load(ingest.http_port, tokens, models, 2)
    rss2 = rss_kb(pid)

    # the database holds what the clients did, account by account
    rows = db.query("SELECT id, owner_kind, owner_id, source, event_types, target_url, active"
                    " FROM subscriptions")
    got = {}
    for r in rows:
        assert r["owner_kind"] == "account" and r["active"], r
        native, vyte, vcita = got.setdefault(r["owner_id"], ({}, {}, set()))
        if r["source"] == "native":
            native[r["id"]] = (list(r["event_types"]), r["target_url"])
        elif r["source"] == "vyte":
            vyte[r["id"]] = r["target_url"]
        else:
            assert r["source"] == "vcita", r
            vcita.add((r["event_types"][0], r["target_url"]))
    for n, (native, vyte, vcita, _) in enumerate(models):
        g = got.pop("acct_load_%d" % n, ({}, {}, set()))
        assert g[0] == native and g[1] == {k: v[1] for k, v in vyte.items()} and g[2] == vcita, n
    assert not got, "subscriptions of unknown owners: %r" % list(got)[:5]
    wait_subscriptions(ingest, len(rows), timeout=30)  # the live index caught every change

    growth1, growth2 = rss1 - rss0, rss2 - rss1
    print("\napi load: %d clients; run 1: %d requests in %.1f s (%.0f/s), %d connections at once; "
          "run 2: %d requests in %.1f s (%.0f/s), %d connections; 0 errors; %d subscriptions at the end"
          % (CLIENTS, req1, took1, req1 / took1, peak1, req2, took2, req2 / took2, peak2, len(rows)))
    print("api load: ingest RSS %d KiB -> %d KiB (run 1: %+d KiB) -> %d KiB (run 2: %+d KiB)"
          % (rss0, rss1, growth1, rss2, growth2))
    assert growth2 <= max(growth1 / 4, GROWTH_FLOOR_KB), (
        "ingest RSS keeps growing: run 1 %+d KiB, run 2 %+d KiB" % (growth1, growth2))
