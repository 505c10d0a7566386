"""Foundation: both services start against real PostgreSQL and Kafka, report
health, expose Prometheus metrics, stop cleanly, reject bad configuration,
migrate safely when many replicas start at once; deploy/local/up works."""

import json
import os
import re
import shutil
import signal
import subprocess
import threading

import psycopg2
import pytest
from api_helpers import ApiEnv

from harness import (BUILD_DIR, INGEST_BIN, SOURCE_DIR, WORKER_BIN, http_json, http_request,
                     free_port, parse_metrics, service_env, wait_for)


def run(binary, *args, env=None, timeout=30):
    return subprocess.run([str(binary), *args], env=service_env(env or {}), capture_output=True,
                          text=True, timeout=timeout)


def test_services_start_ready_and_stop(services):
    ingest = services("ingest")
    worker = services("worker")
    for svc in (ingest, worker):
        status, body = http_json("GET", svc.url("/healthz"))
        assert status == 200 and body["status"] == "ok"
        status, body = http_json("GET", svc.url("/readyz"))
        assert status == 200
        assert body["status"] == "ready"
        assert body["checks"]["postgres"] == "ok"
        assert body["checks"]["kafka"] == "ok"
    for svc in (ingest, worker):
        assert svc.stop(signal.SIGTERM) == 0, svc.logs()[-2000:]
        assert any(r.get("msg") == "stopped" for r in svc.log_records())


def test_probe_address_answers_while_the_api_waits(services, db):
    """HOOKD_PROBE_ADDR answers /healthz and /readyz on a thread of its own:
    while an API request waits for PostgreSQL (a table lock here) the
    service's own address cannot answer, the probe address does at once.
    It serves nothing else. The worker has one too."""
    pport = free_port()
    env = ApiEnv(services, db, HOOKD_PROBE_ADDR=f"127.0.0.1:{pport}")
    probe = f"http://127.0.0.1:{pport}"
    client = env.client("account:acct_probe")
    locker = psycopg2.connect(db.url)
    try:
        locker.cursor().execute("LOCK TABLE subscriptions IN ACCESS EXCLUSIVE MODE")
        created = {}
        t = threading.Thread(target=lambda: created.update(
            answer=client.post("/v1/webhooks", {"event_types": ["*"], "target_url": "http://127.0.0.1:9/x"})))
        t.start()
        wait_for(lambda: db.scalar("SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                                   "'hookd-ingest' AND wait_event_type = 'Lock'") == 1,
                 message="the API request to wait for the lock")
        assert http_json("GET", probe + "/healthz", timeout=2)[0] == 200
        status, body = http_json("GET", probe + "/readyz", timeout=2)
        assert status == 200 and body["checks"]["postgres"] == "ok", body
        with pytest.raises(OSError):  # the service's loop is inside the API request
            http_request("GET", env.ingest.url("/healthz"), timeout=0.5)
        assert t.is_alive()
    finally:
        locker.rollback()
        locker.close()
    t.join(timeout=10)
    assert created["answer"][0] == 201, created
    assert http_json("GET", env.ingest.url("/healthz"))[0] == 200
    assert http_request("GET", probe + "/metrics", timeout=2)[0] == 404
    assert http_request("POST", probe + "/v1/webhooks", body={}, timeout=2)[0] == 404

    wport = free_port()
    services("worker", HOOKD_PROBE_ADDR=f"[::1]:{wport}")
    status, body = http_json("GET", f"http://[::1]:{wport}/readyz", timeout=2)
    assert status == 200 and body["checks"]["store"] == "ok", body


def test_sigint_also_stops_cleanly(services):
    ingest = services("ingest")
    assert ingest.stop(signal.SIGINT) == 0


def test_metrics_are_valid_prometheus_text(services):
    ingest = services("ingest")
    worker = services("worker")
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian package prometheus) is installed by tests/run"
    for svc in (ingest, worker):
        status, headers, body = http_request("GET", svc.url("/metrics"))
        assert status == 200
        assert headers["content-type"].startswith("text/plain")
        text = body.decode()
        metrics = parse_metrics(text)
        assert metrics[("hookd_dependency_up", frozenset({("dependency", "postgres")}))] == 1
        assert metrics[("hookd_dependency_up", frozenset({("dependency", "kafka")}))] == 1
        check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr


def test_logs_are_json_lines_with_stable_keys(services):
    ingest = services("ingest")
    ingest.stop()
    records = ingest.log_records()
    assert records, ingest.logs()
    for r in records:
        assert {"ts", "level", "service", "msg"} <= set(r), r
        assert r["service"] == "hookd-ingest"
    assert any(r["msg"] == "listening" and "port" in r for r in records)


def test_database_password_never_logged(services, db):
    url = db.url.replace("postgres@", "postgres:Sup3rS3cretPw@")
    ingest = services("ingest", HOOKD_DATABASE_URL=url, HOOKD_LOG_LEVEL="debug")
    ingest.stop()
    logs = ingest.logs()
    assert "HOOKD_DATABASE_URL" in logs  # the debug config dump ran
    assert "Sup3rS3cretPw" not in logs


def test_bad_config_exits_2_with_one_line():
    cases = [
        (INGEST_BIN, {"HOOKD_BATCH_MAX": "lots"}, [], "HOOKD_BATCH_MAX=lots"),
        (WORKER_BIN, {"HOOKD_GREYLIST_BASE_S": "0"}, [], "HOOKD_GREYLIST_BASE_S=0"),
        (WORKER_BIN, {"HOOKD_DELIVERY_LOG": "some"}, [], "HOOKD_DELIVERY_LOG=some"),
        (INGEST_BIN, {"HOOKD_HTTP_ADDR": "nowhere"}, [], "HOOKD_HTTP_ADDR=nowhere"),
        (WORKER_BIN, {"HOOKD_PROBE_ADDR": "nowhere"}, [], "HOOKD_PROBE_ADDR=nowhere"),
        (INGEST_BIN, {}, ["--max-event-bytes=1"], "--max-event-bytes=1 (HOOKD_MAX_EVENT_BYTES)"),
        (INGEST_BIN, {}, ["--frobnicate"], "--frobnicate"),
        (WORKER_BIN, {"HOOKD_RETRY_SCHEDULE": "soon"}, [], "HOOKD_RETRY_SCHEDULE=soon"),
        (WORKER_BIN, {"HOOKD_KAFKA_NO_SUCH_PROPERTY": "1"}, [], "HOOKD_KAFKA_NO_SUCH_PROPERTY"),
        (INGEST_BIN, {"HOOKD_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "HOOKD_KAFKA_SASL_MECHANISMS": "NOPE"},
         [], "(HOOKD_KAFKA_SASL_MECHANISMS): Unsupported SASL mechanism"),
    ]
    for binary, env, args, needle in cases:
        out = run(binary, *args, env=env)
        assert out.returncode == 2, (env, args, out.stderr)
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1, out.stderr
        assert needle in lines[0], (needle, lines[0])
        assert lines[0].startswith(binary.name + ": ")


def test_help_and_version():
    for binary in (INGEST_BIN, WORKER_BIN):
        out = run(binary, "--help")
        assert out.returncode == 0
        assert "HOOKD_DATABASE_URL" in out.stdout and "HOOKD_KAFKA_BROKERS" in out.stdout
        out = run(binary, "--version")
        assert out.returncode == 0
        assert re.match(rf"{binary.name} \d+\.\d+\.\d+ \(librdkafka ", out.stdout)
    assert "HOOKD_BATCH_WINDOW_MS" in run(WORKER_BIN, "--help").stdout
    assert "HOOKD_INGEST_TOPICS" in run(INGEST_BIN, "--help").stdout
    assert "HOOKD_INGEST_TOPICS" not in run(WORKER_BIN, "--help").stdout


def test_readme_configuration_table_is_current():
    table = run(INGEST_BIN, "--config-markdown").stdout
    readme = (SOURCE_DIR / "README.md").read_text()
    begin = readme.index("<!-- config-table:begin")
    begin = readme.index("\n", begin) + 1
    end = readme.index("<!-- config-table:end")
    assert readme[begin:end] == table, "README configuration table is stale: paste `hookd-ingest --config-markdown`"


def test_concurrent_migrations_apply_once(db):
    env = service_env({"HOOKD_DATABASE_URL": db.url})
    procs = [subprocess.Popen([str(INGEST_BIN), "--migrate"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(6)]
    results = [p.communicate(timeout=60) + (p.returncode,) for p in procs]
    for out, err, rc in results:
        assert rc == 0, err
    applied = sum(err.count('"msg":"migration_applied"') for _, err, _ in results)
    versions = [r["version"] for r in db.query("SELECT version FROM schema_migrations ORDER BY version")]
    assert versions == sorted(set(versions)) and versions[0] == 1
    assert applied == len(versions)  # each migration applied by exactly one replica
    # running again applies nothing
    out = run(INGEST_BIN, "--migrate", env={"HOOKD_DATABASE_URL": db.url})
    assert out.returncode == 0 and "migration_applied" not in out.stderr


def test_create_token_cli_stores_only_the_hash(db):
    db.migrate()
    out = run(INGEST_BIN, "--create-token", "--scope", "account:acct_cli", "--name", "ci",
              env={"HOOKD_DATABASE_URL": db.url})
    assert out.returncode == 0, out.stderr
    token = out.stdout.strip()
    assert re.fullmatch(r"hkd_[0-9a-f]{48}", token)
    rows = db.query("SELECT token_hash, scope, name FROM api_tokens")
    assert len(rows) == 1
    assert rows[0]["scope"] == "account:acct_cli" and rows[0]["name"] == "ci"
    import hashlib
    assert rows[0]["token_hash"] == hashlib.sha256(token.encode()).hexdigest()
    assert token not in out.stderr
    bad = run(INGEST_BIN, "--create-token", "--scope", "team:1", env={"HOOKD_DATABASE_URL": db.url})
    assert bad.returncode == 2 and "--scope" in bad.stderr


def test_deploy_local_up(tmp_path):
    """deploy/local/up brings PostgreSQL, Kafka, ingest and worker up; /readyz
    says ready; Ctrl-C (SIGINT) stops everything and removes the temp data."""
    api_port, worker_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKD_")}
    env.update({"HOOKD_LOCAL_BUILD_DIR": str(BUILD_DIR), "HOOKD_LOCAL_SKIP_DEPS": "1",
                "HOOKD_HTTP_ADDR": f"127.0.0.1:{api_port}",
                "HOOKD_WORKER_HTTP_ADDR": f"127.0.0.1:{worker_port}"})
    env.update({k: v for k, v in service_env().items() if k.endswith("SAN_OPTIONS")})
    log = open(tmp_path / "up.log", "w")
    proc = subprocess.Popen([str(SOURCE_DIR / "deploy/local/up")], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def ready():
            assert proc.poll() is None, (tmp_path / "up.log").read_text()
            return "hookd is up" in (tmp_path / "up.log").read_text()
        wait_for(ready, timeout=90, message="deploy/local/up to print 'hookd is up'")
        status, body = http_json("GET", f"http://127.0.0.1:{api_port}/readyz")
        assert status == 200 and body["status"] == "ready"
        status, body = http_json("GET", f"http://127.0.0.1:{worker_port}/readyz")
        assert status == 200
        text = (tmp_path / "up.log").read_text()
        token = re.search(r"demo token (hkd_[0-9a-f]{48})", text).group(1)
        tmpdir = re.search(r"control socket (/tmp/hookd-local\.\w+)/kafka\.sock", text).group(1)
        assert os.path.isdir(tmpdir)
        assert "kcat -P -b" in text and token
    finally:
        os.killpg(proc.pid, signal.SIGINT) if proc.poll() is None else None
        proc.wait(timeout=60)
    text = (tmp_path / "up.log").read_text()
    assert "temporary data removed" in text
    assert not os.path.exists(tmpdir)
    wait_for(lambda: not _listening(api_port), timeout=10, message="ingest port to close")


def _listening(port):
    import socket
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_sigterm_while_waiting_for_postgres_exits_0(tmp_path):
    """A service that cannot reach PostgreSQL keeps retrying, and still stops
    promptly and cleanly on SIGTERM (Kubernetes rollouts during an outage)."""
    port = free_port()  # nothing listens there
    for binary in (INGEST_BIN, WORKER_BIN):
        env = service_env({"HOOKD_DATABASE_URL": f"postgresql://hookd@127.0.0.1:{port}/hookd",
                           "HOOKD_HTTP_ADDR": f"127.0.0.1:{free_port()}",
                           "HOOKD_WORKER_HTTP_ADDR": f"127.0.0.1:{free_port()}"})
        proc = subprocess.Popen([str(binary)], env=env, stderr=subprocess.PIPE, text=True)
        lines = []
        wait_for(lambda: lines.append(proc.stderr.readline()) or "pg_connect_failed" in lines[-1],
                 timeout=20, message=f"{binary.name} to report the unreachable database")
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
        rest = proc.stderr.read()
        assert proc.returncode == 0, "".join(lines) + rest
