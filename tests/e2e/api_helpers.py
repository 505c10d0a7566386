"""Helpers for the subscription API tests (test_api_*.py, test_admin_sql.py).

`api` fixture: a started hookd-ingest (real PostgreSQL, embedded Kafka) with
helpers to mint tokens and call the API. Import it into a test module with
`from api_helpers import api  # noqa: F401`.
"""

import http.client
import json
import pathlib
import re
import socket
import threading

import pytest

from harness import http_request

OBJECT_ID = re.compile(r"^[0-9a-f]{24}$")
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
SECRET = re.compile(r"^whsec_[A-Za-z0-9+/]{32}$")


class Client:
    """Calls the API of one ingest with one token. Methods return
    (status, decoded JSON or None)."""

    def __init__(self, base, token=None, header="bearer"):
        self.base = base
        self.token = token
        self.header = header

    def auth_headers(self):
        if self.token is None:
            return {}
        if self.header == "x-api-token":
            return {"X-Api-Token": self.token}
        return {"Authorization": f"Bearer {self.token}"}

    def raw(self, method, path, body=None, headers=None):
        """(status, headers, body bytes)."""
        h = self.auth_headers()
        h.update(headers or {})
        return http_request(method, self.base + path, body, h)

    def call(self, method, path, body=None, headers=None):
        status, hdrs, raw = self.raw(method, path, body, headers)
        if raw:
            assert hdrs.get("content-type", "").startswith("application/json"), (status, raw)
            return status, json.loads(raw)
        return status, None

    def get(self, path, **kw):
        return self.call("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.call("POST", path, body, **kw)

    def put(self, path, body=None, **kw):
        return self.call("PUT", path, body, **kw)

    def patch(self, path, body=None, **kw):
        return self.call("PATCH", path, body, **kw)

    def delete(self, path, **kw):
        return self.call("DELETE", path, **kw)


class NameServer:
    """A DNS server on 127.0.0.1:53 for a hookd process started with
    'wrapper': that process runs in a mount namespace of its own whose
    /etc/resolv.conf names this server (the rest of the machine keeps its
    own). It records the names asked and answers each query NXDOMAIN, or,
    with answer=False, never. Needs root (port 53, unshare)."""

    def __init__(self, workdir, answer=True):
        self.answer = answer
        self.names = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 53))
        resolv = pathlib.Path(workdir) / "resolv.conf"
        resolv.write_text("nameserver 127.0.0.1\noptions timeout:5 attempts:2\n")
        self.wrapper = ["unshare", "--mount", "sh", "-c",
                        'mount --bind "$0" /etc/resolv.conf && exec "$@"', str(resolv)]
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            try:
                query, peer = self.sock.recvfrom(512)
            except OSError:
                return
            if peer is None:  # shut down
                return
            labels, i = [], 12  # the question's name follows the 12-byte header
            while i < len(query) and query[i]:
                labels.append(query[i + 1:i + 1 + query[i]].decode(errors="replace"))
                i += 1 + query[i]
            self.names.append(".".join(labels))
            if self.answer:  # id, QR|RD|RA + NXDOMAIN, the question alone
                self.sock.sendto(query[:2] + b"\x81\x83" + query[4:6] + b"\0" * 6 + query[12:i + 5], peer)

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the reading thread
        except OSError:
            pass
        self.thread.join(timeout=5)
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class ApiEnv:
    """One hookd-ingest and its database."""

    def __init__(self, services, db, **env):
        self.services = services
        self.db = db
        self.ingest = services("ingest", **env)
        self.base = self.ingest.url("")

    def token(self, scope, name="test"):
        return self.db.scalar("SELECT hookd_create_token(%s, %s)", (scope, name))

    def client(self, scope, header="bearer"):
        return Client(self.base, self.token(scope), header)

    def anonymous(self):
        return Client(self.base, None)

    def subscription(self, sub_id):
        rows = self.db.query("SELECT * FROM subscriptions WHERE id = %s", (sub_id,))
        return rows[0] if rows else None

    def subscriptions(self, owner_id=None):
        if owner_id is None:
            return self.db.query("SELECT * FROM subscriptions ORDER BY id")
        return self.db.query("SELECT * FROM subscriptions WHERE owner_id = %s ORDER BY id", (owner_id,))

    def alive(self):
        status, _, _ = http_request("GET", self.ingest.url("/healthz"), timeout=5)
        return self.ingest.alive() and status == 200


@pytest.fixture
def api(services, db):
    """An ingest with default test settings (http and private targets allowed)."""
    return ApiEnv(services, db)


def seed_delivery(db, sub_id, outcome="failure", job=True, event_id="evt_1", attempt=1,
                  status_code=500, job_id="0123456789abcdef0123456789abcdef"):
    """Inserts a delivery log row (as the worker would) and returns its id.
    With job=True the job message is retained, like a failed attempt."""
    sub = db.query("SELECT endpoint_id, owner_id, event_types FROM subscriptions WHERE id = %s", (sub_id,))[0]
    job_text = None
    if job:
        job_text = json.dumps({"v": 1, "id": job_id, "event_id": event_id, "subscription_id": sub_id,
                               "endpoint_id": sub["endpoint_id"], "type": sub["event_types"][0],
                               "account": sub["owner_id"], "occurred_at": "2026-11-23T10:00:00Z",
                               "ingested_at_ms": 1795000000000,
                               "payload": {"id": 42, "big": 123456789012345678901234567890}},
                              separators=(",", ":"))
    return db.scalar(
        "INSERT INTO deliveries (job_id, webhook_id, subscription_id, endpoint_id, event_id, event_type,"
        " attempt, outcome, error_class, status_code, latency_ms, response_excerpt, job)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 12, 'oops', %s) RETURNING id::text",
        (job_id, job_id, sub_id, sub["endpoint_id"], event_id, sub["event_types"][0], attempt, outcome,
         None if outcome == "success" else "http_5xx", status_code, job_text))


def raw_http(port, data, timeout=5.0):
    """Sends raw bytes to 127.0.0.1:port and returns what comes back (b"" when
    the server just closes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        try:
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        chunks = []
        while True:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


class KeepAlive:
    """A keep-alive HTTP/1.1 connection for many requests in a row."""

    def __init__(self, port):
        self.port = port
        self.conn = None

    def request(self, method, path, body=None, headers=None):
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                resp = self.conn.getresponse()
                data = resp.read()
                if resp.getheader("Connection", "").lower() == "close":
                    self.close()
                return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
            except (http.client.HTTPException, ConnectionError, BrokenPipeError):
                self.close()
                if attempt == 1:
                    raise
        raise AssertionError("unreachable")

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None
