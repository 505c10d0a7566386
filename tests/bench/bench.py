"""hookd benchmark: every row of the table measured in one run on this machine.

Starts its own PostgreSQL, hookd-kafka-embedded and C receivers
(tests/bench/receiver.c), drives the Release binaries, and prints one
Markdown table (and JSON with --json). Run through tests/bench/run.
"""

import argparse
import json
import os
import pathlib
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

BUILD = pathlib.Path(os.environ["HOOKD_BUILD_DIR"])
SOURCE = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(SOURCE / "tests/e2e"))
from harness import (Database, EmbeddedKafka, PostgresCluster, Service, free_port,  # noqa: E402
                     http_request, parse_metrics, service_env, wait_for)

BENCH = BUILD / "tests/bench"
INGEST = BUILD / "services/ingest/hookd-ingest"
WORKER = BUILD / "services/worker/hookd-worker"
KAFKA = BUILD / "services/kafka-embedded/hookd-kafka-embedded"
NODE_BASELINE = SOURCE / "tests/bench/node/deliver.js"

SIZES = {
    "full": dict(events=600_000, subs=100_000, accounts=10_000, unbatched=200_000, batched=500_000,
                 latency_s=10, isolation=200_000, raw_post=200_000, matcher_events=2_000_000, node=100_000,
                 reps=3),
    "quick": dict(events=150_000, subs=20_000, accounts=2_000, unbatched=50_000, batched=100_000,
                  latency_s=5, isolation=40_000, raw_post=50_000, matcher_events=500_000, node=20_000,
                  reps=1),
}
PARTITIONS = 64
BODY_BYTES = 200  # padding in each event's data; bodies on the wire are ~400 bytes


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run(cmd, **kw):
    out = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    if out.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed: {out.stderr[-2000:]}{out.stdout[-2000:]}")
    return out.stdout


def kv(line, key):
    return float(re.search(rf"\b{key}=([0-9.]+)", line).group(1))


def peak_rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Receiver:
    """tests/bench/receiver.c on 127.0.0.1:<port>, counting requests."""

    def __init__(self, workdir, name, hang_all=False, latency=False, threads=1):
        self.count_file = pathlib.Path(workdir) / f"{name}.count"
        self.latency_file = pathlib.Path(workdir) / f"{name}.lat" if latency else None
        cmd = [BENCH / "receiver", "--port", "0", "--count-file", self.count_file, "--threads", threads]
        if hang_all:
            cmd += ["--hang-prefix", "/"]
        if latency:
            cmd += ["--latency-file", self.latency_file]
        self.proc = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.PIPE, text=True)
        self.port = int(self.proc.stdout.readline().split("=")[1])

    def count(self):
        try:
            return int(self.count_file.read_text() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)

    def latencies_ms(self):
        return sorted(int(x) / 1000 for x in self.latency_file.read_text().split())


def tree_cpu_s(pid):
    """CPU seconds (user + system) of process 'pid' and its children, live
    or ended (for PostgreSQL: the postmaster and every backend, also those
    of connections closed meanwhile, which the postmaster has reaped)."""
    ticks = 0
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(p) == pid:  # its own and its reaped children's
            ticks += sum(int(x) for x in fields[11:15])
        elif int(fields[1]) == pid:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def percentile(sorted_values, p):
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, int(round(p / 100 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


class Bench:
    def __init__(self, size, workdir):
        self.s = SIZES[size]
        self.size = size
        self.work = pathlib.Path(workdir)
        self.rows = []
        self.services = []

    # ------------------------------------------------------------ setup
    def start(self):
        log("starting PostgreSQL and hookd-kafka-embedded")
        self.pg = PostgresCluster(self.work).start()
        self.db = Database(self.pg)
        self.db.migrate()
        topics = {"bench.events": PARTITIONS, "bench.jobs": PARTITIONS, "bench.events.dlq": 1,
                  "bench.pipe": PARTITIONS, "bench.lat.events": 16, "bench.lat.jobs": 16}
        for i in range(self.s["reps"]):  # a topic per repetition of the delivery rows
            for row in ("unbatched", "batched", "isolation", "node"):
                topics[f"bench.{row}.{i}"] = PARTITIONS
        self.kafka = EmbeddedKafka(str(KAFKA), topics=topics, brokers=3, workdir=str(self.work))
        self.kafka.start()

    def stop(self):
        for svc in self.services:
            if svc.alive():
                svc.stop()
        self.kafka.stop()
        self.pg.stop()

    def service(self, kind, **env):
        port = free_port()
        base = {"HOOKD_DATABASE_URL": self.db.url, "HOOKD_KAFKA_BROKERS": self.kafka.bootstrap,
                "HOOKD_REQUIRE_HTTPS": "false", "HOOKD_ALLOW_PRIVATE_TARGETS": "true",
                "HOOKD_LOG_LEVEL": "warn"}
        if kind == "ingest":
            base["HOOKD_HTTP_ADDR"] = f"127.0.0.1:{port}"
            binary = INGEST
        else:
            base["HOOKD_WORKER_HTTP_ADDR"] = f"127.0.0.1:{port}"
            binary = WORKER
        base.update({k: str(v) for k, v in env.items()})
        svc = Service(f"{kind}-{len(self.services)}", binary, service_env(base), self.work, port)
        self.services.append(svc)
        return svc.start(wait_ready=True, timeout=120)

    def metric(self, svc, name, **labels):
        status, _, body = http_request("GET", svc.url("/metrics"), timeout=10)
        total = 0.0
        for (n, lbl), v in parse_metrics(body.decode()).items():
            if n == name and all((k, str(x)) in lbl for k, x in labels.items()):
                total += v
        return total

    def produce(self, topic, count, mode="events", accounts=None, targets=None, rate=0, stamp=False,
                prefix=None, id_base=0):
        cmd = [BENCH / "bench_produce", "--brokers", self.kafka.bootstrap, "--topic", topic,
               "--count", count, "--mode", mode, "--body-bytes", BODY_BYTES]
        if accounts:
            cmd += ["--accounts", accounts]
        if targets:
            cmd += ["--targets", targets]
        if rate:
            cmd += ["--rate", rate]
        if stamp:
            cmd.append("--stamp")
        if prefix:
            cmd += ["--account-prefix", prefix]
        if id_base:
            cmd += ["--id-base", id_base]
        return run(cmd, timeout=900)

    def add_row(self, row, value, unit, note=""):
        self.rows.append({"row": row, "value": value, "unit": unit, "note": note})
        log(f"{row}: {value} {unit} {note}")

    def repeated(self, measure):
        """measure(i) for each repetition i, each from empty finished_jobs,
        deliveries and parked_jobs tables; returns (median, values). The
        delivery rows move by ±15 % between runs on a shared 2-core machine,
        so the full run reports the median of three."""
        values = []
        for i in range(self.s["reps"]):
            # every run starts from the same (empty) worker tables
            self.db.execute_script("TRUNCATE finished_jobs, deliveries, parked_jobs")
            values.append(measure(i))
            log(f"  run {i + 1}: {values[-1]:,.0f}")
        return statistics.median(values), values

    def spread(self, values):
        if len(values) == 1:
            return ""
        return f"; median of {len(values)} runs ({min(values):,.0f}–{max(values):,.0f})"

    @staticmethod
    def pg_note(values):
        """The PostgreSQL CPU per job of a delivery row (median of its runs):
        dedup lookups and the worker's writes, on the same 2 cores."""
        return f"PostgreSQL {statistics.median(values):.1f} µs CPU per job"

    def subscriptions(self, owner_prefix, n, url_for, batch, body_format="standard"):
        """n subscriptions for accounts <prefix>0..n-1, one each; returns targets file."""
        rows = self.db.query(
            "INSERT INTO subscriptions (owner_kind, owner_id, event_types, target_url, batch, body_format)"
            " SELECT 'account', %s || g, ARRAY['client/created'], %s || g, %s, %s"
            " FROM generate_series(0, %s - 1) g RETURNING id, endpoint_id, owner_id",
            (owner_prefix, url_for, batch, body_format, n))
        rows.sort(key=lambda r: int(r["owner_id"][len(owner_prefix):]))
        path = self.work / f"targets-{owner_prefix}.txt"
        path.write_text("".join(f"{r['id']} {r['endpoint_id']}\n" for r in rows))
        return path, rows

    # ------------------------------------------------------------ rows
    def bench_matcher(self):
        out = run(["taskset", "-c", "0", BENCH / "bench_matcher", self.s["matcher_events"], 100_000, 10_000],
                  timeout=600)
        line = out.strip().splitlines()[-1]
        self.matcher_line = line
        value = kv(line, "matches_per_s")
        self.add_row("matcher", round(value), "events matched/s",
                     f"100k subscriptions, 10k accounts, 1 core; {kv(line, 'hits_per_s'):,.0f} subscription hits/s")

    def bench_ingest(self):
        s = self.s
        log(f"inserting {s['subs']} subscriptions over {s['accounts']} accounts")
        # one client/created subscription per account (1 job per event), the
        # rest on other types so the index holds the full population
        self.db.execute_script(f"""
            INSERT INTO subscriptions (owner_kind, owner_id, event_types, target_url, batch)
            SELECT 'account', 'acct_' || (g % {s['accounts']}),
                   CASE WHEN g < {s['accounts']} THEN ARRAY['client/created']
                        ELSE ARRAY[(ARRAY['appointment/*','payment/paid','invoice/issued',
                                          'client/updated','meeting/created'])[1 + g % 5]] END,
                   'http://127.0.0.1:9/acct/' || g, false
            FROM generate_series(0, {s['subs']} - 1) g;""")
        log(f"producing {s['events']} events")
        self.produce("bench.events", s["events"], accounts=s["accounts"])
        raw = run([BENCH / "raw_consume", "--brokers", self.kafka.bootstrap, "--topic", "bench.events",
                   "--count", s["events"]], timeout=600)
        raw_rate = kv(raw, "rate")
        consumed = int(kv(raw, "messages"))  # the mock may have pruned a few old ones
        self.add_row("raw consume", round(raw_rate), "events/s", "plain librdkafka consumer, same topic")
        pipe = run([BENCH / "raw_pipe", "--brokers", self.kafka.bootstrap, "--topic", "bench.events",
                    "--out", "bench.pipe", "--count", consumed], timeout=600)
        pipe_rate = kv(pipe, "rate")
        self.add_row("raw consume→produce", round(pipe_rate), "events/s",
                     "plain librdkafka consume + idempotent produce of each message, acks awaited (reference)")
        ingest = self.service("ingest", HOOKD_INGEST_TOPICS="bench.events", HOOKD_JOBS_TOPIC="bench.jobs",
                              HOOKD_DLQ_TOPIC="bench.events.dlq", HOOKD_INGEST_GROUP="bench-ingest")
        t0 = None
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            c = self.metric(ingest, "hookd_events_consumed_total")
            if c > 0 and t0 is None:
                t0 = time.monotonic()
            done = self.metric(ingest, "hookd_jobs_published_total")
            if done >= consumed and self.metric(ingest, "hookd_jobs_pending") == 0:
                break
            time.sleep(0.02)
        secs = time.monotonic() - t0
        rate = consumed / secs
        self.ingest_rss = peak_rss_mib(ingest.proc.pid)
        subs = self.metric(ingest, "hookd_matcher_subscriptions")
        ingest.stop()
        self.add_row("ingest", round(rate), "events/s",
                     f"consume→match→publish→ack, 1 job/event; {rate / raw_rate:.2f}× raw consume, "
                     f"{rate / pipe_rate:.2f}× raw consume→produce")
        self.add_row("memory ingest", round(self.ingest_rss, 1), "MiB peak RSS",
                     f"{int(subs)} subscriptions indexed, during the ingest row")

    def raw_post(self, receiver, endpoints, concurrency):
        out = run([BENCH / "raw_post", "--url-template", f"http://127.0.0.1:{receiver.port}/ep/%d",
                   "--endpoints", endpoints, "--requests", self.s["raw_post"], "--body-bytes", 400,
                   "--concurrency", concurrency], timeout=600)
        return kv(out, "rps")

    def deliver(self, topic, targets, jobs, receiver, expect_requests=None, expect_jobs=None, **env):
        """Produces 'jobs' jobs, starts a worker and measures until done.
        Returns (seconds, worker peak RSS in MiB, PostgreSQL CPU µs per job)."""
        self.produce(topic, jobs, mode="jobs", targets=targets)
        worker = self.service("worker", HOOKD_JOBS_TOPIC=topic, HOOKD_WORKER_GROUP=f"bench-{topic}", **env)
        t0 = None
        deadline = time.monotonic() + 900
        done = False
        while time.monotonic() < deadline:
            n = receiver.count()
            if n > 0 and t0 is None:
                t0 = time.monotonic()
                pg0 = tree_cpu_s(self.pg.proc.pid)
            if expect_requests is not None and n >= expect_requests:
                done = True
            if expect_jobs is not None and self.metric(worker, "hookd_deliveries_total", outcome="success") >= expect_jobs:
                done = True
            if done:
                break
            time.sleep(0.02 if expect_requests else 0.05)
        assert done, f"delivery on {topic} did not finish"
        secs = time.monotonic() - t0
        pg_us = (tree_cpu_s(self.pg.proc.pid) - pg0) / jobs * 1e6
        rss = peak_rss_mib(worker.proc.pid)
        self.worker_cached = self.metric(worker, "hookd_worker_subscriptions")
        worker.stop()
        return secs, rss, pg_us

    def bench_delivery(self):
        s = self.s
        recv = Receiver(self.work, "raw", threads=1)
        raw64, v64 = self.repeated(lambda i: self.raw_post(recv, 1000, 64))
        raw1k, v1k = self.repeated(lambda i: self.raw_post(recv, 1000, 1000))
        raw = max(raw64, raw1k)
        recv.stop()
        self.add_row("raw POST", round(raw), "req/s",
                     f"plain libcurl multi, 1,000 URLs, 400-byte bodies (C=64: {raw64:.0f}, C=1000: {raw1k:.0f})"
                     f"{self.spread(v64 if raw64 >= raw1k else v1k)}")

        rss, cached, pg = [], [], []

        def unbatched(i):
            recv = Receiver(self.work, f"unbatched{i}")
            targets, _ = self.subscriptions(f"u{i}_", 1000, f"http://127.0.0.1:{recv.port}/ep/", False)
            secs, peak, pg_us = self.deliver(f"bench.unbatched.{i}", targets, s["unbatched"], recv,
                                             expect_requests=s["unbatched"], HOOKD_BATCH_WINDOW_MS=0)
            recv.stop()
            rss.append(peak)
            cached.append(self.worker_cached)
            pg.append(pg_us)
            return s["unbatched"] / secs

        self.unbatched_rate, values = self.repeated(unbatched)
        self.add_row("delivery unbatched", round(self.unbatched_rate), "deliveries/s",
                     f"1,000 endpoints, {self.unbatched_rate / raw:.2f}× raw POST; {self.pg_note(pg)}"
                     f"{self.spread(values)}")
        stored = self.db.scalar("SELECT count(*) FROM subscriptions")
        self.add_row("memory worker", round(max(rss), 1), "MiB peak RSS",
                     f"{s['unbatched']:,} jobs backlog, {int(max(cached)):,} of {stored:,} subscriptions "
                     f"cached (those with jobs), highest of the unbatched runs")

        self.node_baseline()

        per_request, pg = [], []

        def batched(i):
            recv = Receiver(self.work, f"batched{i}")
            targets, _ = self.subscriptions(f"b{i}_", 100, f"http://127.0.0.1:{recv.port}/ep/", True)
            secs, _, pg_us = self.deliver(f"bench.batched.{i}", targets, s["batched"], recv,
                                          expect_jobs=s["batched"], HOOKD_BATCH_WINDOW_MS=200, HOOKD_BATCH_MAX=100)
            per_request.append(s["batched"] / max(recv.count(), 1))
            pg.append(pg_us)
            recv.stop()
            return s["batched"] / secs

        rate, values = self.repeated(batched)
        self.add_row("delivery batched", round(rate), "events/s",
                     f"100 endpoints, up to 100 per POST ({statistics.median(per_request):.0f} per request on "
                     f"average); {self.pg_note(pg)}{self.spread(values)}")

    def node_baseline(self):
        """The same kind of jobs, delivered by a Node consumer (kafkajs,
        undici, node-postgres; tests/bench/node) to 1,000 endpoints of a
        receiver of its own, with a dedup lookup per batch and, per batch in
        one statement, the finished_jobs and delivery log rows hookd-worker
        writes per job."""
        s = self.s
        pg = []

        def node(i):
            recv = Receiver(self.work, f"node{i}")
            targets, _ = self.subscriptions(f"n{i}_", 1000, f"http://127.0.0.1:{recv.port}/ep/", False)
            subs = self.db.query("SELECT id::text, target_url, secret FROM subscriptions"
                                 " WHERE starts_with(owner_id, %s)", (f"n{i}_",))
            subs_path = self.work / f"node-subs-{i}.json"
            subs_path.write_text(json.dumps({r["id"]: {"url": r["target_url"], "secret": r["secret"]}
                                             for r in subs}))
            self.produce(f"bench.node.{i}", s["node"], mode="jobs", targets=targets)
            pg0 = tree_cpu_s(self.pg.proc.pid)
            out = run(["node", NODE_BASELINE, "--brokers", self.kafka.bootstrap, "--topic", f"bench.node.{i}",
                       "--group", f"bench-node-{i}", "--count", s["node"], "--subs", subs_path,
                       "--concurrency", 64, "--database", self.db.url],
                      timeout=900)
            pg.append((tree_cpu_s(self.pg.proc.pid) - pg0) / s["node"] * 1e6)
            recv.stop()
            return kv(out, "rps")

        rate, values = self.repeated(node)
        self.add_row("node baseline", round(rate), "deliveries/s",
                     f"kafkajs + undici + node-postgres, same jobs, 1,000 endpoints: dedup lookup, signed POST, "
                     f"finished_jobs + delivery log insert, commit per batch; hookd unbatched = "
                     f"{self.unbatched_rate / rate:.1f}×; {self.pg_note(pg)}{self.spread(values)}")

    def bench_isolation(self):
        s = self.s
        pg = []

        def isolation(i):
            ok = Receiver(self.work, f"iso-ok{i}")
            dead = Receiver(self.work, f"iso-dead{i}", hang_all=True)
            rows = self.db.query(
                "INSERT INTO subscriptions (owner_kind, owner_id, event_types, target_url, batch)"
                " SELECT 'account', %s || g, ARRAY['client/created'],"
                "  CASE WHEN g %% 2 = 0 THEN %s ELSE %s END || g, false"
                " FROM generate_series(0, 999) g RETURNING id, endpoint_id, owner_id",
                (f"iso{i}_", f"http://127.0.0.1:{ok.port}/ep/", f"http://127.0.0.1:{dead.port}/ep/"))
            prefix = len(f"iso{i}_")
            rows.sort(key=lambda r: int(r["owner_id"][prefix:]))
            path = self.work / f"targets-iso{i}.txt"
            path.write_text("".join(f"{r['id']} {r['endpoint_id']}\n" for r in rows))
            healthy_jobs = s["isolation"] // 2
            secs, _, pg_us = self.deliver(f"bench.isolation.{i}", path, s["isolation"], ok,
                                          expect_requests=healthy_jobs, HOOKD_BATCH_WINDOW_MS=0)
            pg.append(pg_us)
            ok.stop()
            dead.stop()
            return healthy_jobs / secs

        rate, values = self.repeated(isolation)
        self.add_row("isolation", round(rate), "healthy deliveries/s",
                     f"500 of 1,000 endpoints hang; {rate / self.unbatched_rate:.2f}× all-healthy; "
                     f"{self.pg_note(pg)}{self.spread(values)}")

    def bench_latency(self):
        s = self.s
        recv = Receiver(self.work, "latency", latency=True)
        self.subscriptions("lat_", 1000, f"http://127.0.0.1:{recv.port}/ep/", False)
        # 10 s of load: the mock finds a fetch offset by walking a partition's
        # record batches from the start (no index), so with many small
        # batches each fetch gets slower as the run goes on (20 s gave a p50
        # of ~500 ms from the broker alone; real Kafka has an offset index).
        # librdkafka's mock holds an empty fetch for the whole fetch.wait.max.ms
        # even when data arrives meanwhile (real Kafka answers at once), so the
        # latency row lowers it; the other settings are the defaults.
        lat_env = {"HOOKD_KAFKA_FETCH_WAIT_MAX_MS": 5}
        ingest = self.service("ingest", HOOKD_INGEST_TOPICS="bench.lat.events", HOOKD_JOBS_TOPIC="bench.lat.jobs",
                              HOOKD_DLQ_TOPIC="bench.events.dlq", HOOKD_INGEST_GROUP="bench-lat", **lat_env)
        worker = self.service("worker", HOOKD_JOBS_TOPIC="bench.lat.jobs", HOOKD_WORKER_GROUP="bench-lat",
                              HOOKD_BATCH_WINDOW_MS=0, **lat_env)
        n = 5000 * s["latency_s"]
        # warm-up (unstamped, so not measured): both consumer groups joined
        # and every subscription loaded before the clock starts
        self.produce("bench.lat.events", 2000, accounts=1000, prefix="lat_")
        wait_for(lambda: recv.count() >= 2000, timeout=120, interval=0.1, message="warm-up deliveries")
        self.produce("bench.lat.events", n, accounts=1000, rate=5000, stamp=True, prefix="lat_",
                     id_base=10_000_000)
        measured = n
        n += 2000
        wait_for(lambda: recv.count() >= n, timeout=120, interval=0.1, message="latency deliveries")
        worker.stop()
        ingest.stop()
        recv.stop()
        lat = recv.latencies_ms()
        self.add_row("latency", f"p50 {percentile(lat, 50):.1f} / p99 {percentile(lat, 99):.1f} / "
                     f"p999 {percentile(lat, 99.9):.1f}", "ms",
                     f"event produced → receiver, {measured:,} events at 5,000/s after a warm-up, batch window 0, "
                     f"{len(lat):,} samples; fetch.wait.max.ms 5 (mock broker)")

    def table(self):
        lines = ["| row | result | unit | notes |", "|---|---|---|---|"]
        for r in sorted(self.rows, key=lambda r: r["row"] == "latency"):  # latency last, as before
            v = f"{r['value']:,}" if isinstance(r["value"], (int, float)) else r["value"]
            lines.append(f"| {r['row']} | {v} | {r['unit']} | {r['note']} |")
        return "\n".join(lines)


def machine():
    cpu = "?"
    try:
        cpu = re.search(r"model name\s*:\s*(.*)", open("/proc/cpuinfo").read()).group(1)
    except (OSError, AttributeError):
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB, {platform.system()} {platform.release()}"


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="smaller sizes (about a minute or two)")
    ap.add_argument("--json", help="also write the table as JSON to this file")
    ap.add_argument("--only", help="comma list of: matcher,ingest,delivery,isolation,latency")
    args = ap.parse_args()
    size = "quick" if args.quick else "full"
    work = tempfile.mkdtemp(prefix="hookd-bench-")
    os.chmod(work, 0o755)
    b = Bench(size, work)
    started = time.time()
    only = set(args.only.split(",")) if args.only else None
    try:
        b.start()
        # latency first: after the ingest row has pushed ~2 million messages
        # through the mock broker, the same row's tail grows tenfold (p99
        # 500-700 ms, p50 unchanged). That row leaves no worker state in
        # PostgreSQL and its 100,000 subscriptions alone change nothing, so
        # it is the broker's state.
        for name in ("latency", "matcher", "ingest", "delivery", "isolation"):
            if only and name not in only:
                continue
            if name == "isolation" and not hasattr(b, "unbatched_rate"):
                b.unbatched_rate = float("nan")
            getattr(b, f"bench_{name}")()
    finally:
        b.stop()
        shutil.rmtree(work, ignore_errors=True)
    header = (f"hookd benchmark ({size}), {time.strftime('%Y-%m-%d')}, {machine()}, "
              f"{time.time() - started:.0f} s")
    print(header)
    print()
    print(b.table())
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"size": size, "machine": machine(), "date": time.strftime("%Y-%m-%d"),
                       "rows": b.rows}, f, indent=2)


if __name__ == "__main__":
    main()
