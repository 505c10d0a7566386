"""Helpers for the reliability suite (test_chaos.py, test_api_load.py).

- RecordingReceiver: an HTTP/1.1 receiver in a process of its own (one
  selector loop, keep-alive: 1,000 endpoints' connections need no thread
  each, and the test's GIL stays free) that answers 204 to every POST
  (after a random delay up to delay_max_ms, like a receiver doing some
  work) and writes one line per request to a log file: the kernel's
  receive time (SO_TIMESTAMPNS, not shifted by a busy receiver),
  connection number, webhook-id, path and the event ids of the body's
  items. ReceiverLog reads those lines incrementally.
- The chaos test's subscription plan (account- and directory-scoped, every
  body format and payload mode, status filters) and an independent matcher
  that says which (event, subscription) pairs must be delivered.
- rss_kb(): VmRSS of a process.

Run as a script, this file is the receiver:
    python3 chaos_helpers.py receiver LOG_PATH DELAY_MAX_MS
(prints "port=<n>"; SIGTERM stops it)
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

# ---------------------------------------------------------------- receiver (child process)

RESPONSE_204 = b"HTTP/1.1 204 No Content\r\n\r\n"
CONTINUE_100 = b"HTTP/1.1 100 Continue\r\n\r\n"
MAX_HEAD = 64 * 1024


def item_event_ids(body):
    """The event ids of a delivered body (an item or an array of items).
    Every chaos event carries its id as "eid" in data, changes and
    extended, so whichever part the payload mode picks: standard and vcita
    items hold it in "data", vyte items in "resource", vik bodies are the
    bare payload."""
    doc = json.loads(body)
    items = doc if isinstance(doc, list) else [doc]
    out = []
    for item in items:
        if "resource" in item:
            payload = item["resource"]
        elif "data" in item and isinstance(item["data"], dict):
            payload = item["data"]
        else:
            payload = item
        out.append(payload["eid"])
    return out


SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; cmsg type SCM_TIMESTAMPNS


class _Conn:
    """One keep-alive connection: parses requests (Content-Length bodies),
    records each with the kernel's receive time of its last bytes, answers
    204 (after the random delay)."""
    seq = 0

    def __init__(self, sock, out):
        self.sock = sock
        self.out = out
        self.buf = bytearray()
        self.pending = b""  # response bytes the socket did not take yet
        self.continued = False
        _Conn.seq += 1
        self.conn_id = _Conn.seq

    def feed(self, data, stamp):
        """Consumes received bytes; returns the number of complete requests."""
        self.buf += data
        done = 0
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > MAX_HEAD:
                    raise ValueError("request head too large")
                return done
            head = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
            headers = {}
            for line in head[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            if "chunked" in headers.get("transfer-encoding", "").lower():
                raise ValueError("chunked request body")
            length = int(headers.get("content-length") or 0)
            if len(self.buf) < end + 4 + length:
                if headers.get("expect", "").lower() == "100-continue" and not self.continued:
                    self.continued = True
                    self.write(CONTINUE_100)
                return done
            body = bytes(self.buf[end + 4:end + 4 + length])
            del self.buf[:end + 4 + length]
            self.continued = False
            self.record(stamp, head[0], headers, body)
            done += 1

    def record(self, stamp, request_line, headers, body):
        parts = request_line.split(" ")
        path = parts[1] if len(parts) == 3 else "?"
        try:
            ids = ",".join(item_event_ids(body)) if parts[0] == "POST" else "-"
        except Exception as exc:  # recorded; the test fails on it
            ids = "!" + repr(exc).replace(" ", "_").replace("\n", "_")[:200]
        self.out.append("%.6f %d %s %s %s\n" % (stamp, self.conn_id,
                                                headers.get("webhook-id", "-") or "-", path, ids))

    def write(self, data):
        data = self.pending + data
        try:
            n = self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            n = 0
        self.pending = data[n:]


def _receiver_main(log_path, delay_max_ms):
    """The receiver loop: a selector over the listener and the connections,
    a heap of delayed responses. Receive times come from the kernel
    (SO_TIMESTAMPNS), so a busy receiver does not shift them: a request
    of a killed sender is always stamped before its death."""
    import heapq
    import random
    import selectors
    import struct
    rnd = random.Random()
    out = []
    log = open(log_path, "a", buffering=1 << 20)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(4096)
    lsock.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(lsock, selectors.EVENT_READ, None)
    print("port=%d" % lsock.getsockname()[1], flush=True)
    due = []  # (time, seq, conn) of delayed responses
    seq = 0
    last_flush = time.monotonic()
    cmsg_space = socket.CMSG_SPACE(16)

    def close(conn):
        sel.unregister(conn.sock)
        conn.sock.close()

    while not stop:
        timeout = 0.1
        if due:
            timeout = max(0.0, min(timeout, due[0][0] - time.monotonic()))
        for key, events in sel.select(timeout):
            conn = key.data
            if conn is None:  # the listener
                while True:
                    try:
                        sock, _ = lsock.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    sock.setblocking(False)
                    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                    sel.register(sock, selectors.EVENT_READ, _Conn(sock, out))
                continue
            if events & selectors.EVENT_WRITE and conn.pending:
                conn.write(b"")
                if not conn.pending:
                    sel.modify(conn.sock, selectors.EVENT_READ, conn)
            if not events & selectors.EVENT_READ:
                continue
            try:
                data, anc, _flags, _addr = conn.sock.recvmsg(65536, cmsg_space)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                close(conn)
                continue
            if not data:
                close(conn)
                continue
            stamp = time.time()
            for level, kind, value in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, nsec = struct.unpack("qq", value[:16])
                    stamp = sec + nsec / 1e9
            try:
                n = conn.feed(data, stamp)
            except ValueError as exc:
                out.append("%.6f %d - ? !%s\n" % (stamp, conn.conn_id, str(exc).replace(" ", "_")))
                close(conn)
                continue
            for _ in range(n):  # like a receiver doing some work (no pipelining: one at a time)
                seq += 1
                heapq.heappush(due, (time.monotonic() + rnd.uniform(0, delay_max_ms / 1000.0), seq, conn))
        now = time.monotonic()
        while due and due[0][0] <= now:
            _, _, conn = heapq.heappop(due)
            if conn.sock.fileno() < 0:
                continue  # closed meanwhile
            conn.write(RESPONSE_204)
            if conn.pending:
                sel.modify(conn.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, conn)
        if out and (now - last_flush >= 0.1):
            log.write("".join(out))
            out.clear()
            log.flush()
            last_flush = now
    log.write("".join(out))
    log.close()


# ---------------------------------------------------------------- receiver (test side)

class RecordingReceiver:
    """A receiver process; url(path) for subscriptions, stop() flushes its log."""

    def __init__(self, log_path, delay_max_ms=0):
        self.log_path = str(log_path)
        open(self.log_path, "w").close()
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "receiver", self.log_path,
                                      str(delay_max_ms)],
                                     stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        line = self.proc.stdout.readline().decode()
        assert line.startswith("port="), "receiver did not start: %r" % line
        self.port = int(line.strip().split("=", 1)[1])

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)
        self.proc.stdout.close()
        return self.proc.returncode


class ReceiverLog:
    """Reads a RecordingReceiver's log from where it left off. Records are
    (time, receiver number, connection, webhook-id, path, [event ids]);
    unparsable bodies land in 'errors'."""

    def __init__(self, path, number):
        self.path = path
        self.number = number
        self.offset = 0
        self.partial = b""
        self.records = []
        self.errors = []

    def poll(self):
        """Reads new complete lines; returns the new records."""
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        self.offset += len(data)
        data = self.partial + data
        lines = data.split(b"\n")
        self.partial = lines.pop()
        new = []
        for raw in lines:
            t, conn, wid, path, ids = raw.decode().split(" ")
            if ids.startswith("!"):
                self.errors.append(raw.decode())
                continue
            new.append((float(t), self.number, int(conn), wid, path,
                        [] if ids == "-" else ids.split(",")))
        self.records.extend(new)
        return new


# ---------------------------------------------------------------- the chaos subscription plan

# Event types of the chaos events, with the statuses they may carry.
CHAOS_TYPES = ["client/created", "client/updated", "appointment/created", "appointment/updated",
               "event/created", "event/cancelled", "service/created", "payment/paid"]
CHAOS_STATUSES = [None, "confirmed", "pending", "paid"]

# (scope, event types, statuses, payload mode, body format, batch) by slot;
# accounts get one "client/*" subscription and one of ACCOUNT_SECOND, each
# directory all of DIRECTORY_SUBS.
ACCOUNT_FIRST = ("account", ["client/*"], None, "full", "standard", True)
ACCOUNT_SECOND = [
    ("account", ["appointment/created", "appointment/updated"], None, "basic", "vcita", False),
    ("account", ["*"], ["confirmed"], "extended", "standard", True),
    ("account", ["event/*"], None, "full", "vyte", True),
    ("account", ["service/created", "client/updated"], None, "full", "vik", True),
]
DIRECTORY_SUBS = [
    ("directory", ["payment/*"], None, "full", "standard", True),
    ("directory", ["client/created"], None, "basic", "vcita", True),
    ("directory", ["*"], ["paid", "pending"], "full", "standard", False),
    ("directory", ["appointment/*", "event/cancelled"], None, "extended", "vyte", True),
]


def chaos_plan(accounts, directories):
    """The subscriptions: a list of dicts (owner_kind, owner_id,
    event_types, statuses, payload_mode, body_format, batch); account i
    belongs to directory i % directories."""
    plan = []
    for a in range(accounts):
        for spec in (ACCOUNT_FIRST, ACCOUNT_SECOND[a % len(ACCOUNT_SECOND)]):
            plan.append(_sub(spec, "acct_c%d" % a))
    for d in range(directories):
        for spec in DIRECTORY_SUBS:
            plan.append(_sub(spec, "dir_c%d" % d))
    return plan


def _sub(spec, owner):
    kind, types, statuses, mode, fmt, batch = spec
    return {"owner_kind": kind, "owner_id": owner, "event_types": list(types), "statuses": statuses,
            "payload_mode": mode, "body_format": fmt, "batch": batch}


def insert_plan(db, plan, url_of):
    """INSERTs the plan in one transaction; url_of(index) gives each target
    URL. Returns the rows (with id, endpoint_id) in plan order."""
    import psycopg2
    import psycopg2.extras
    conn = psycopg2.connect(db.url)
    try:
        rows = []
        with conn, conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
            for i, s in enumerate(plan):
                cur.execute(
                    "INSERT INTO subscriptions (owner_kind, owner_id, event_types, target_url, statuses,"
                    " payload_mode, body_format, batch) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
                    " RETURNING id, endpoint_id, owner_kind, owner_id, event_types, statuses",
                    (s["owner_kind"], s["owner_id"], s["event_types"], url_of(i), s["statuses"],
                     s["payload_mode"], s["body_format"], s["batch"]))
                rows.append(dict(cur.fetchone()))
        return rows
    finally:
        conn.close()


def pattern_matches(pattern, type_):
    if pattern == "*":
        return True
    if pattern.endswith("/*"):
        return type_.split("/", 1)[0] == pattern[:-2]
    return pattern == type_


def matching_subscriptions(index, ev):
    """Subscription ids matching event dict 'ev' (SPEC §4), from 'index'
    = {("account"|"directory", owner id): [subscription rows]}."""
    out = []
    owners = [("account", ev["account"])]
    if ev.get("directory"):
        owners.append(("directory", ev["directory"]))
    for owner in owners:
        for s in index.get(owner, ()):
            if not any(pattern_matches(p, ev["type"]) for p in s["event_types"]):
                continue
            if s["statuses"] and ev.get("status") not in s["statuses"]:
                continue
            out.append(s["id"])
    return out


def chaos_event(rnd, n, accounts, directories):
    """Event number n: a random account and type; 'eid' in every payload part."""
    a = rnd.randrange(accounts)
    eid = "evt_c%07d_%04x" % (n, rnd.getrandbits(16))
    ev = {"id": eid, "type": rnd.choice(CHAOS_TYPES), "account": "acct_c%d" % a,
          "directory": "dir_c%d" % (a % directories),
          "data": {"eid": eid, "n": n, "name": "x" * rnd.randint(0, 60)},
          "changes": {"eid": eid, "n": n}, "extended": {"eid": eid, "n": n, "related": {"k": a}}}
    status = rnd.choice(CHAOS_STATUSES)
    if status:
        ev["status"] = status
    return ev


# ---------------------------------------------------------------- processes

def assigned_since_start(svc):
    """True once the current run of 'svc' (a harness.Service) has logged
    partitions_assigned. librdkafka 2.0.2 aborts (rdkafka_sticky_assignor.c
    assert 'assignor_state', librdkafka issue #4312, fixed in 2.3.0) when a
    cooperative-sticky consumer is destroyed between its first JoinGroup and
    SyncGroup responses, so a clean-stop check must not SIGTERM a service in
    that window."""
    records = svc.log_records()
    starts = [i for i, r in enumerate(records) if r.get("msg") == "starting"]
    after = records[starts[-1]:] if starts else records
    return any(r.get("msg") == "partitions_assigned" for r in after)


def rss_kb(pid):
    """VmRSS of process 'pid' in KiB."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for pid %d" % pid)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "receiver":
        _receiver_main(sys.argv[2], float(sys.argv[3]))
    else:
        sys.exit("usage: chaos_helpers.py receiver LOG_PATH DELAY_MAX_MS")
