"""The whole system through dependency outages (SPEC §8, issue 7), under
load: PostgreSQL restarted, PostgreSQL unreachable for a while, one Kafka
broker down for a few seconds, and every broker down. Both services keep
running (no restart), /readyz names the dependency that is down, they
resume by themselves, every event is delivered, and nothing arrives twice
beyond requests in flight.

The PostgreSQL cluster is shared by the test session: every test that stops
it starts it again in `finally`."""

from harness import wait_for
from hookd_kafka import partition_leader
from ingest_helpers import EVENTS, JOBS
from ops_helpers import (MAX_INFLIGHT, Load, Stack, delivery_report, hold, log_msgs, metric,
                         readyz, scrape, series)


def ready_again(*svcs, timeout=30):
    for svc in svcs:
        wait_for(lambda: readyz(svc)[0] == 200, timeout=timeout, message=f"{svc.name} /readyz 200")


def settled(stack, expected):
    """Waits for every delivery, then checks what the receiver got: each job
    once (a duplicate only for a request in flight, same webhook-id), both
    services never restarted, consumer lag back to 0."""
    stack.wait_delivered(expected, timeout=90)
    report = delivery_report(stack, strict=False)
    assert set(report.by_id) == expected
    assert len(report.dups) <= MAX_INFLIGHT
    for svc in (stack.ingest, stack.worker):
        assert svc.alive() and svc.starts == 1, svc.logs()[-3000:]
    wait_for(lambda: sum(series(scrape(stack.ingest, check=False),
                                "hookd_consumer_lag_messages").values()) == 0,
             timeout=20, message="ingest consumer lag 0")
    wait_for(lambda: sum(series(scrape(stack.worker, check=False), "hookd_consumer_lag").values()) == 0,
             timeout=20, message="worker consumer lag 0")
    return report


def test_postgres_restarted_mid_load(services, db, kafka, receiver, pg_cluster):
    stack = Stack(services, db, kafka, receiver, tag="pgr").start()
    evs = stack.events(4000)
    expected = stack.job_ids(evs)
    receiver.delay = 0.005
    load = Load(kafka, evs, chunk=50, pause=0.05)
    wait_for(lambda: receiver.count() >= 800, timeout=60, message="deliveries under way")
    before = receiver.count()
    try:
        pg_cluster.restart()
    finally:
        if pg_cluster.proc.poll() is not None:
            pg_cluster.restart()
        db.close()  # its connection died with the server
    load.join_ok()
    ready_again(stack.ingest, stack.worker)
    report = settled(stack, expected)
    # the worker's PostgreSQL writer noticed and reconnected by itself
    assert log_msgs(stack.worker).count("store_connected") >= 2
    print("\nPostgreSQL restart: %d delivered before, %d jobs sent twice" % (before, len(report.dups)))


def test_postgres_unreachable_for_a_while(services, db, kafka, receiver, pg_cluster):
    stack = Stack(services, db, kafka, receiver, tag="pgd").start()
    evs = stack.events(4000)
    expected = stack.job_ids(evs)
    load = Load(kafka, evs[:1000])
    wait_for(lambda: receiver.count() >= 500, timeout=60, message="deliveries under way")
    pg_cluster.stop()
    try:
        def down(svc):
            status, checks = readyz(svc)
            return status == 503 and checks.get("postgres") == "down"

        wait_for(lambda: down(stack.ingest) and down(stack.worker), timeout=15,
                 message="/readyz of both to report PostgreSQL down")
        _, checks = readyz(stack.ingest)
        assert checks["subscriptions"].startswith("stale"), checks
        assert checks["kafka"] == "ok"
        _, checks = readyz(stack.worker)
        assert checks["store"] != "ok" and checks["kafka"] == "ok", checks
        for svc in (stack.ingest, stack.worker):
            m = scrape(svc)  # still valid Prometheus text
            assert metric(m, "hookd_dependency_up", dependency="postgres") == 0
            assert metric(m, "hookd_dependency_up", dependency="kafka") == 1

        # ingest goes on matching from its cached index: the whole load is
        # published while the database is away; the worker holds its jobs
        load.join_ok()
        load = Load(kafka, evs[1000:], chunk=200)
        load.join_ok()
        wait_for(lambda: metric(scrape(stack.ingest, check=False), "hookd_jobs_published_total")
                 >= len(expected), timeout=60, message="every job published during the outage")
        during = receiver.count()
        assert during < len(expected)

        def still_down_and_running():
            assert stack.ingest.alive() and stack.worker.alive()
            assert down(stack.ingest) and down(stack.worker)

        hold(3.0, still_down_and_running)  # a few seconds more of outage
    finally:
        pg_cluster.restart()
        db.close()
    ready_again(stack.ingest, stack.worker)
    report = settled(stack, expected)
    print("\nPostgreSQL down: %d delivered when it came back, %d jobs sent twice"
          % (during, len(report.dups)))


def test_kafka_broker_down_then_all_brokers_down(services, db, kafka, receiver):
    stack = Stack(services, db, kafka, receiver, tag="kb").start()
    evs = stack.events(4000)
    expected = stack.job_ids(evs)
    receiver.delay = 0.005
    # the broker leading most partitions of both topics
    leaders = {(t, p): partition_leader(kafka.bootstrap, t, p) for t in (EVENTS, JOBS) for p in range(4)}
    broker = max(sorted(set(leaders.values())),
                 key=lambda b: (min(sum(1 for (t, _), l in leaders.items() if l == b and t == topic)
                                    for topic in (EVENTS, JOBS)),
                                sum(1 for l in leaders.values() if l == b)))
    stalled = {t: [p for p in range(4) if leaders[(t, p)] == broker] for t in (EVENTS, JOBS)}
    load = Load(kafka, evs[:3000], chunk=25, pause=0.05)  # ~6 s of events
    wait_for(lambda: receiver.count() >= 500, timeout=60, message="deliveries under way")

    # one broker down for a few seconds: its partitions stall (the embedded
    # broker never moves leaders), the others go on
    seen = []

    def alive_and_answering():
        assert stack.ingest.alive() and stack.worker.alive()
        ri, rw = readyz(stack.ingest), readyz(stack.worker)
        seen.append((ri[0], rw[0], receiver.count()))
        if ri[0] != 200 or rw[0] != 200:
            print("  ", ri, rw)

    kafka.broker_down(broker)
    try:
        hold(3.0, alive_and_answering)
    finally:
        kafka.broker_up(broker)
    load.join_ok()
    ready_again(stack.ingest, stack.worker)

    # every broker down: /readyz says Kafka is down, then both come back
    kafka.broker_down("all")
    try:
        def kafka_down(svc):
            status, checks = readyz(svc)
            return status == 503 and checks.get("kafka") == "down" and checks.get("postgres") == "ok"

        wait_for(lambda: kafka_down(stack.ingest) and kafka_down(stack.worker), timeout=20,
                 message="/readyz of both to report Kafka down")
        for svc in (stack.ingest, stack.worker):
            assert metric(scrape(svc), "hookd_dependency_up", dependency="kafka") == 0
    finally:
        kafka.broker_up("all")
    ready_again(stack.ingest, stack.worker)
    Load(kafka, evs[3000:]).join_ok()
    report = settled(stack, expected)
    print("\nbroker %s down (leads %s): deliveries %d -> %d during it, /readyz %s; then all down;"
          " %d jobs sent twice" % (broker, stalled, seen[0][2], seen[-1][2],
                                   sorted({s[:2] for s in seen}), len(report.dups)))
