"""hookd-worker over HTTPS (SPEC §7): receivers on 127.0.0.1 with a
certificate from a test CA. The worker verifies them against
HOOKD_CA_BUNDLE, speaks HTTP/2 when the receiver offers it (ALPN) and
HTTP/1.1 otherwise, reuses one TLS connection per receiver, and fails an
untrusted receiver with class 'tls' without sending it anything."""

import pytest

from harness import metric
from tls_receiver import TlsReceiver, make_certificates
from worker_helpers import (insert_subscription, job_id, make_job, produce_jobs, start_worker,
                            verify, wait_finished)


@pytest.fixture
def certs(tmp_path):
    return make_certificates(tmp_path)


@pytest.fixture
def tls_receivers():
    made = []

    def make(**kw):
        r = TlsReceiver(**kw)
        made.append(r)
        return r

    yield make
    for r in made:
        r.stop()


def test_https_uses_http2_when_offered_and_http1_otherwise(db, kafka, services, certs,
                                                           tls_receivers):
    db.migrate()
    h2 = tls_receivers(certs=certs, alpn=("h2", "http/1.1"))
    h1 = tls_receivers(certs=certs, alpn=("http/1.1",))
    sub_h2 = insert_subscription(db, h2.url("/h2"), owner_id="acct_h2", batch=False)
    sub_h1 = insert_subscription(db, h1.url("/h1"), owner_id="acct_h1", batch=False)
    start_worker(services, HOOKD_REQUIRE_HTTPS="true", HOOKD_CA_BUNDLE=certs["ca"])
    jobs = {sub["id"]: [make_job(sub, f"evt_{n}_{i}") for i in range(5)]
            for n, sub in (("h2", sub_h2), ("h1", sub_h1))}
    produce_jobs(kafka, jobs[sub_h2["id"]] + jobs[sub_h1["id"]])
    wait_finished(db, [j["id"] for js in jobs.values() for j in js], "delivered")

    for receiver, sub, name, proto in ((h2, sub_h2, "h2", "h2"), (h1, sub_h1, "h1", "http/1.1")):
        got = receiver.snapshot()
        assert [r["proto"] for r in got] == [proto] * 5
        assert {r["method"] for r in got} == {"POST"}
        assert {r["path"] for r in got} == {sub["target_url"][len(receiver.url("")):]}
        # one endpoint's order, each signed with its subscription's secret
        assert [r["headers"]["webhook-id"] for r in got] == [
            job_id(f"evt_{name}_{i}", sub["id"]) for i in range(5)]
        assert all(verify(sub["secret"], r) for r in got)
        # the connection (and its TLS session) carried every request
        assert receiver.handshakes == 1
        assert receiver.failed_handshakes == 0


def test_untrusted_receiver_fails_with_class_tls_until_its_ca_is_configured(
        db, kafka, services, certs, tls_receivers):
    db.migrate()
    receiver = tls_receivers(certs=certs)
    sub = insert_subscription(db, receiver.url(), batch=False)
    # the system store does not know the test CA
    worker = start_worker(services, HOOKD_REQUIRE_HTTPS="true", HOOKD_GREYLIST_THRESHOLD=100)
    job = make_job(sub, "evt_untrusted")
    produce_jobs(kafka, [job])
    wait_finished(db, [job["id"]], "failed")
    assert receiver.snapshot() == []  # nothing was sent: the handshake was refused
    assert receiver.failed_handshakes >= 4
    rows = db.query("SELECT outcome, error_class, status_code FROM deliveries WHERE job_id = %s"
                    " ORDER BY id", (job["id"],))
    assert [r["outcome"] for r in rows] == ["failure", "failure", "failure", "failed"]
    assert {(r["error_class"], r["status_code"]) for r in rows} == {("tls", None)}
    assert metric(worker.metrics(), "hookd_deliveries_total", outcome="failed",
                  **{"class": "tls"}) == 1
    worker.stop()

    # the same receiver once the worker trusts its CA
    start_worker(services, HOOKD_REQUIRE_HTTPS="true", HOOKD_CA_BUNDLE=certs["ca"])
    job2 = make_job(sub, "evt_trusted")
    produce_jobs(kafka, [job2])
    wait_finished(db, [job2["id"]], "delivered")
    (req,) = receiver.snapshot()
    assert req["headers"]["webhook-id"] == job2["id"]
    assert verify(sub["secret"], req)
