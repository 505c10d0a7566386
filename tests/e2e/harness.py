"""Helpers for hookd's end-to-end tests (fixtures are in conftest.py).

Everything here drives real components: a temporary PostgreSQL cluster, the
hookd-kafka-embedded broker (real Kafka protocol), the hookd-ingest and
hookd-worker binaries of this build, and HTTP receivers on 127.0.0.1.

Run with Debian's interpreter: /usr/bin/python3 -m pytest tests/e2e
"""

import http.server
import json
import os
import pathlib
import pwd
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid

import psycopg2
import psycopg2.extras

sys.path.insert(0, os.path.dirname(__file__))
from hookd_kafka import EmbeddedKafka, consume_all, produce  # noqa: E402

SOURCE_DIR = pathlib.Path(os.environ.get("HOOKD_SOURCE_DIR", pathlib.Path(__file__).resolve().parents[2]))
BUILD_DIR = pathlib.Path(os.environ.get("HOOKD_BUILD_DIR", SOURCE_DIR / "build-test"))
PG_BIN = pathlib.Path(os.environ.get("HOOKD_PG_BIN", "/usr/lib/postgresql/15/bin"))

INGEST_BIN = BUILD_DIR / "services/ingest/hookd-ingest"
WORKER_BIN = BUILD_DIR / "services/worker/hookd-worker"
KAFKA_BIN = BUILD_DIR / "services/kafka-embedded/hookd-kafka-embedded"

# Sanitizer builds: report leaks and UB as a non-zero exit status that the
# stop() assertions catch.
SANITIZER_ENV = {
    "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:exitcode=86:detect_stack_use_after_return=0",
    "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1:exitcode=87",
    "LSAN_OPTIONS": "suppressions=" + str(SOURCE_DIR / "tests/lsan.supp") + ":print_suppressions=0",
}


# ---------------------------------------------------------------- utilities

def wait_for(condition, timeout=10.0, interval=0.05, message="condition"):
    """Polls condition() until it returns a truthy value; returns that value.
    Fails the test with 'message' after 'timeout' seconds."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            value = condition()
            if value:
                return value
        except Exception as exc:  # the condition may race with start-up
            last_exc = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_exc!r})" if last_exc else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {message}{detail}")
        time.sleep(interval)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_request(method, url, body=None, headers=None, timeout=10.0):
    """Returns (status, headers dict (lower-case keys), body bytes); never raises on 4xx/5xx."""
    data = body
    if isinstance(body, (dict, list)):
        data = json.dumps(body).encode()
    elif isinstance(body, str):
        data = body.encode()
    req = urllib.request.Request(url, data=data, method=method)
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    if isinstance(body, (dict, list)) and not any(k.lower() == "content-type" for k in (headers or {})):
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def http_json(method, url, body=None, headers=None, timeout=10.0):
    """Like http_request, decoding a JSON body (None when empty)."""
    status, hdrs, raw = http_request(method, url, body, headers, timeout)
    return status, (json.loads(raw) if raw else None)


# ---------------------------------------------------------------- PostgreSQL

class PostgresCluster:
    """A throw-away PostgreSQL cluster (initdb in a temp dir, trust auth on
    127.0.0.1). As root, the server runs as the 'postgres' user."""

    def __init__(self, workdir):
        self.dir = pathlib.Path(workdir) / "pg"
        self.data = self.dir / "data"
        self.port = free_port()
        self.proc = None
        self.as_user = None
        if os.geteuid() == 0:
            self.as_user = "postgres"

    def _popen(self, argv, **kw):
        """Runs argv as the cluster owner (setuid in the child, so the pid is
        the server's own and signals reach it directly)."""
        if self.as_user:
            pw = pwd.getpwnam(self.as_user)
            kw.update(user=pw.pw_uid, group=pw.pw_gid, extra_groups=[])
        return subprocess.Popen(argv, **kw)

    def start(self):
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.as_user:
            pw = pwd.getpwnam(self.as_user)
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        initdb = self._popen([str(PG_BIN / "initdb"), "-D", str(self.data), "--auth=trust",
                              "-U", "postgres", "-E", "UTF8", "--locale=C.UTF-8", "-N"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=self.dir)
        _, err = initdb.communicate(timeout=120)
        assert initdb.returncode == 0, err.decode()
        self.log = open(self.dir / "postgres.log", "ab")
        self.argv = [str(PG_BIN / "postgres"), "-D", str(self.data), "-p", str(self.port),
                     "-k", str(self.dir), "-c", "listen_addresses=127.0.0.1",
                     "-c", "fsync=off", "-c", "synchronous_commit=off",
                     "-c", "full_page_writes=off", "-c", "max_connections=300",
                     "-c", "shared_buffers=128MB"]
        self.proc = self._popen(self.argv, stdout=self.log, stderr=self.log, cwd=self.dir)
        wait_for(self._ready, timeout=30, message="PostgreSQL to accept connections")
        return self

    def _ready(self):
        try:
            psycopg2.connect(self.url("postgres")).close()
            return True
        except psycopg2.OperationalError:
            if self.proc.poll() is not None:
                raise RuntimeError("postgres exited; see " + str(self.dir / "postgres.log"))
            return False

    def url(self, dbname):
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def create_database(self):
        name = "hookd_" + uuid.uuid4().hex[:12]
        conn = psycopg2.connect(self.url("postgres"))
        conn.autocommit = True
        conn.cursor().execute(f'CREATE DATABASE "{name}"')
        conn.close()
        return name

    def drop_database(self, name):
        conn = psycopg2.connect(self.url("postgres"))
        conn.autocommit = True
        cur = conn.cursor()
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.close()

    def stop(self, mode="fast"):
        """Stops the server (SIGINT = fast shutdown)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT if mode == "fast" else signal.SIGKILL)
            self.proc.wait(timeout=30)

    def restart(self):
        self.stop()
        self.proc = self._popen(self.argv, stdout=self.log, stderr=self.log, cwd=self.dir)
        wait_for(self._ready, timeout=30, message="PostgreSQL to come back")


class Database:
    """One fresh database in the session cluster."""

    def __init__(self, cluster):
        self.cluster = cluster
        self.name = cluster.create_database()
        self.url = cluster.url(self.name)
        self._conn = None

    @property
    def conn(self):
        if self._conn is None or self._conn.closed:
            self._conn = psycopg2.connect(self.url)
            self._conn.autocommit = True
        return self._conn

    def query(self, sql, params=None):
        """Runs sql and returns all rows as dicts (empty list for commands)."""
        with self.conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def scalar(self, sql, params=None):
        with self.conn.cursor() as cur:
            cur.execute(sql, params)
            row = cur.fetchone()
            return row[0] if row else None

    def execute_script(self, sql):
        with self.conn.cursor() as cur:
            cur.execute(sql)

    def migrate(self):
        out = subprocess.run([str(INGEST_BIN), "--migrate"], env=service_env({"HOOKD_DATABASE_URL": self.url}),
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return out

    def close(self):
        if self._conn is not None:
            self._conn.close()


# ---------------------------------------------------------------- services

def service_env(overrides=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKD_")}
    env.update(SANITIZER_ENV)
    env.update({"HOOKD_LOG_FORMAT": "json", "HOOKD_LOG_LEVEL": "info"})
    env.update(overrides or {})
    return env


class Service:
    """A hookd binary started with environment overrides; logs go to a file."""

    def __init__(self, name, binary, env, workdir, http_port, args=(), wrapper=()):
        self.name = name
        self.binary = binary
        self.env = env
        self.args = list(args)
        self.wrapper = list(wrapper)  # argv that execs the binary (same process), e.g. unshare
        self.http_port = http_port
        self.log_path = pathlib.Path(workdir) / f"{name}.log"
        self.proc = None
        self.starts = 0

    def start(self, wait_ready=True, timeout=30):
        self.log_file = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.wrapper + [str(self.binary)] + self.args, env=self.env,
                                     stdout=self.log_file, stderr=subprocess.STDOUT)
        self.starts += 1
        if wait_ready:
            self.wait_ready(timeout)
        return self

    def url(self, path=""):
        return f"http://127.0.0.1:{self.http_port}{path}"

    def ready(self):
        try:
            status, _, _ = http_request("GET", self.url("/readyz"), timeout=2)
            return status == 200
        except OSError:
            return False

    def wait_ready(self, timeout=30):
        def check():
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n{self.logs()[-4000:]}")
            return self.ready()
        wait_for(check, timeout=timeout, interval=0.1, message=f"{self.name} /readyz")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=60):
        """Sends 'sig' and returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"{self.name} did not exit within {timeout}s of {sig}")
        self.log_file.close()
        return self.proc.returncode

    def kill9(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log_file.close()

    def restart(self, wait_ready=True):
        return self.start(wait_ready=wait_ready)

    def logs(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_records(self):
        """JSON log lines as dicts (non-JSON lines, e.g. sanitizer reports, skipped)."""
        out = []
        for line in self.logs().splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    def metrics(self):
        """Parses /metrics into {(name, frozenset(labels.items())): value}."""
        status, _, body = http_request("GET", self.url("/metrics"))
        assert status == 200
        return parse_metrics(body.decode())


def parse_metrics(text):
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        series, value = line.rsplit(" ", 1)
        labels = {}
        if "{" in series:
            name, rest = series.split("{", 1)
            rest = rest.rstrip("}")
            for part in _split_labels(rest):
                k, v = part.split("=", 1)
                labels[k] = json.loads(v)
        else:
            name = series
        out[(name, frozenset(labels.items()))] = float(value)
    return out


def _split_labels(s):
    parts, cur, quoted, esc = [], "", False, False
    for ch in s:
        if esc:
            cur += ch
            esc = False
        elif ch == "\\":
            cur += ch
            esc = True
        elif ch == '"':
            cur += ch
            quoted = not quoted
        elif ch == "," and not quoted:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur:
        parts.append(cur)
    return parts


def metric(metrics, name, **labels):
    """Sum of the series of 'name' whose labels include 'labels'."""
    total = 0.0
    for (n, lbl), v in metrics.items():
        if n == name and all((k, str(val)) in lbl for k, val in labels.items()):
            total += v
    return total


# ---------------------------------------------------------------- receivers

class RequestLog:
    """The requests a test receiver got, in arrival order (dicts with method,
    path, lower-case headers, body), and waiting for them."""

    def init_log(self):
        self.requests = []
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)

    def record(self, req):
        with self.cond:
            self.requests.append(req)
            self.cond.notify_all()

    def count(self):
        with self.lock:
            return len(self.requests)

    def snapshot(self):
        with self.lock:
            return list(self.requests)

    def json_bodies(self):
        return [json.loads(r["body"]) for r in self.snapshot()]

    def wait_count(self, n, timeout=20.0):
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.requests) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"receiver got {len(self.requests)} requests, expected {n}")
                self.cond.wait(left)
            return list(self.requests)


class Receiver(RequestLog):
    """An HTTP server on 127.0.0.1 (or 'host', e.g. ::1) that records every request and answers
    according to its mode: status N, delay, hang (never answer), close
    (drop the connection). Thread-per-connection, keep-alive."""

    def __init__(self, host="127.0.0.1"):
        self.init_log()
        self.host = host
        self.status = 204
        self.delay = 0.0
        self.mode = "normal"  # normal | hang | close
        self.response_body = b""
        self.responder = None  # optional fn(request dict) -> (status, body) or None
        self.released = threading.Event()  # ends hanging requests (set by stop)
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                req = {"method": self.command, "path": self.path,
                       "headers": {k.lower(): v for k, v in self.headers.items()},
                       "body": body, "time": time.time()}
                with receiver.cond:
                    receiver.requests.append(req)
                    receiver.cond.notify_all()
                    mode, status, delay, rbody = receiver.mode, receiver.status, receiver.delay, receiver.response_body
                    responder = receiver.responder
                if responder is not None:
                    answer = responder(req)
                    if answer is not None:
                        status, rbody = answer
                if mode == "hang":  # until the receiver stops
                    receiver.released.wait()
                    return
                if mode == "close":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if delay:
                    time.sleep(delay)
                self.send_response(status)
                self.send_header("Content-Length", str(len(rbody)))
                self.end_headers()
                if rbody:
                    self.wfile.write(rbody)

            do_POST = _handle
            do_GET = _handle
            do_PUT = _handle

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True
            request_queue_size = 256
            address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

        self.server = Server((host, 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path="/hook"):
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{path}"

    def close(self):
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


