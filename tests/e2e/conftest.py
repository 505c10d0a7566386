"""Shared fixtures for hookd's end-to-end tests; helpers live in harness.py.

Run with Debian's interpreter: /usr/bin/python3 -m pytest tests/e2e
"""

import os
import pathlib
import shutil
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from harness import (KAFKA_BIN, INGEST_BIN, WORKER_BIN, Database, EmbeddedKafka,  # noqa: E402,F401
                     PostgresCluster, Receiver, Service, free_port, service_env)


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="session")
def workdir():
    d = tempfile.mkdtemp(prefix="hookd-e2e-")
    if os.geteuid() == 0:
        os.chmod(d, 0o755)
    yield pathlib.Path(d)
    if os.environ.get("HOOKD_KEEP_WORKDIR") != "1":
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_cluster(workdir):
    cluster = PostgresCluster(workdir).start()
    yield cluster
    cluster.stop()


@pytest.fixture
def db(pg_cluster):
    database = Database(pg_cluster)
    yield database
    database.close()
    pg_cluster.drop_database(database.name)


DEFAULT_TOPICS = {"hookd.events": 4, "hookd.deliveries": 4, "hookd.events.dlq": 1}


@pytest.fixture
def kafka(tmp_path):
    k = EmbeddedKafka(str(KAFKA_BIN), topics=dict(DEFAULT_TOPICS), brokers=3, workdir=str(tmp_path))
    k.start()
    yield k
    k.stop()


@pytest.fixture
def services(tmp_path, db, kafka):
    """Factory: services("ingest"|"worker", **env) -> started Service.
    Every service started through it is stopped at the end of the test, and
    must exit 0 (no sanitizer report) unless the test killed it."""
    started = []

    def start(kind, wait_ready=True, args=(), wrapper=(), **overrides):
        port = free_port()
        env = {"HOOKD_DATABASE_URL": db.url, "HOOKD_KAFKA_BROKERS": kafka.bootstrap,
               "HOOKD_REQUIRE_HTTPS": "false", "HOOKD_ALLOW_PRIVATE_TARGETS": "true",
               "HOOKD_SHUTDOWN_TIMEOUT_S": "10"}
        if kind == "ingest":
            env["HOOKD_HTTP_ADDR"] = f"127.0.0.1:{port}"
            binary = INGEST_BIN
        elif kind == "worker":
            env["HOOKD_WORKER_HTTP_ADDR"] = f"127.0.0.1:{port}"
            binary = WORKER_BIN
        else:
            raise ValueError(kind)
        env.update({k: str(v) for k, v in overrides.items()})
        svc = Service(f"{kind}-{len(started)}", binary, service_env(env), tmp_path, port, args, wrapper)
        started.append(svc)
        svc.start(wait_ready=wait_ready)
        return svc

    yield start
    failures = []
    for svc in started:
        if svc.alive():
            rc = svc.stop()
            if rc != 0:
                failures.append(f"{svc.name} exited {rc}:\n{svc.logs()[-3000:]}")
    assert not failures, "\n".join(failures)


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def receivers():
    """Factory for several receivers."""
    made = []

    def make():
        r = Receiver()
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()
