"""End-to-end tests of hookd-kafka-embedded: the real binary, real Kafka
clients (confluent_kafka), the control socket and stdin, and the CLI."""

import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hookd_kafka import (  # noqa: E402
    FAST_CONSUMER_CONFIG,
    FAST_PRODUCER_CONFIG,
    ControlError,
    EmbeddedKafka,
    consume_all,
    control_socket_request,
    partition_leader,
    produce,
    topic_metadata,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOPIC = "hookd.events"


def wait_for(predicate, timeout, what, interval=0.05):
    """Polls 'predicate' until it is truthy; fails the test at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


@pytest.fixture(scope="session")
def binary():
    build = os.environ.get("HOOKD_BUILD_DIR", os.path.join(REPO, "build-test"))
    path = os.path.join(build, "services", "kafka-embedded", "hookd-kafka-embedded")
    if not os.access(path, os.X_OK):
        pytest.fail("hookd-kafka-embedded not built at %s (set HOOKD_BUILD_DIR)" % path)
    return path


@pytest.fixture
def kafka(binary, tmp_path):
    """A 3-broker cluster with an 8-partition topic. Teardown checks that
    SIGTERM gives a clean exit (with ASan, a leak would make it non-zero)."""
    k = EmbeddedKafka(binary, {TOPIC: 8}, brokers=3, workdir=tmp_path)
    k.start()
    yield k
    rc = k.stop()
    log = k.log_text()
    assert rc == 0, "exit code %s; log:\n%s" % (rc, k.log_tail())
    assert "Sanitizer" not in log and "runtime error" not in log, log


def test_bootstrap_printed_and_file_written(kafka, tmp_path):
    assert re.fullmatch(r"127\.0\.0\.1:\d+(,127\.0\.0\.1:\d+){2}", kafka.bootstrap)
    with open(kafka.bootstrap_file) as f:
        assert f.read() == kafka.bootstrap + "\n"
    assert not [n for n in os.listdir(tmp_path) if ".tmp." in n]
    assert kafka.info() == {"bootstrap": kafka.bootstrap, "brokers": "3"}
    assert kafka.control("ping") == "ok"


def test_topic_with_8_partitions_in_metadata(kafka):
    md = topic_metadata(kafka.bootstrap, TOPIC)
    assert sorted(md.partitions) == list(range(8))
    for pm in md.partitions.values():
        assert pm.error is None
        assert pm.leader in (1, 2, 3)
        assert sorted(pm.replicas) == [1, 2, 3]
    kafka.create_topic("later", 3)
    assert len(topic_metadata(kafka.bootstrap, "later").partitions) == 3


def test_produce_10000_idempotent_and_consume_in_partition_order(kafka):
    n, keys = 10000, 64
    messages = [(b"key-%d" % (i % keys), json.dumps({"seq": i}).encode(),
                 [("hookd-seq", str(i).encode())]) for i in range(n)]
    started = time.monotonic()
    delivered = produce(kafka.bootstrap, TOPIC, messages,
                        config={"enable.idempotence": True, "acks": "all"})
    produced_s = time.monotonic() - started
    assert len(set(delivered)) == n

    started = time.monotonic()
    got = consume_all(kafka.bootstrap, TOPIC, timeout=60)
    consumed_s = time.monotonic() - started
    print("produce %d: %.2fs, consume: %.2fs" % (n, produced_s, consumed_s))

    assert len(got) == n
    seqs = [json.loads(value)["seq"] for _, value, _, _, _ in got]
    assert sorted(seqs) == list(range(n)), "lost or duplicated messages"
    last_offset, last_seq_by_key, partition_of_key = {}, {}, {}
    for key, value, headers, partition, offset in got:
        seq = json.loads(value)["seq"]
        assert headers == [("hookd-seq", str(seq).encode())]
        assert offset > last_offset.get(partition, -1), "offsets out of order"
        last_offset[partition] = offset
        assert seq > last_seq_by_key.get(key, -1), "per-key order broken"
        last_seq_by_key[key] = seq
        assert partition_of_key.setdefault(key, partition) == partition
    assert len({p for _, _, _, p, _ in got}) > 1, "keys should spread over partitions"


def group_consumer(bootstrap, group):
    conf = {"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
            "enable.auto.commit": False, "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 500}
    conf.update(FAST_CONSUMER_CONFIG)
    # librdkafka 2.0.2: a group leader waiting for metadata to compute the
    # assignment rejoins instead when any other metadata answer comes first.
    # The mock answers a rejoin after session.timeout.ms - 1 s, a multiple of
    # the 1 s periodic refresh, so that refresh kept landing in the window
    # and rejoin followed rejoin (5 s each, sometimes past the deadline).
    # The default refresh interval (5 min) never does.
    conf["topic.metadata.refresh.interval.ms"] = 300000
    return Consumer(conf)


def test_consumer_group_commit_then_second_consumer_resumes(kafka):
    n, first_batch = 200, 80
    produce(kafka.bootstrap, TOPIC, [(b"k%d" % i, b"%d" % i) for i in range(n)])
    group = "g-" + uuid.uuid4().hex

    c1 = group_consumer(kafka.bootstrap, group)
    c1.subscribe([TOPIC])
    seen1, next_offset = [], {}
    deadline = time.monotonic() + 30  # the mock holds a new group for 3 s
    while len(seen1) < first_batch:
        assert time.monotonic() < deadline, "first consumer got %d" % len(seen1)
        msg = c1.poll(0.2)
        if msg is None or msg.error():
            continue
        seen1.append(int(msg.value()))
        next_offset[msg.partition()] = msg.offset() + 1
    commit = [TopicPartition(TOPIC, p, o) for p, o in sorted(next_offset.items())]
    c1.commit(offsets=commit, asynchronous=False)
    committed = c1.committed([TopicPartition(TOPIC, p) for p in next_offset], timeout=10)
    assert {tp.partition: tp.offset for tp in committed} == next_offset
    c1.close()

    c2 = group_consumer(kafka.bootstrap, group)
    c2.subscribe([TOPIC])
    seen2, first_offset = [], {}
    deadline = time.monotonic() + 30
    while len(seen1) + len(seen2) < n:
        assert time.monotonic() < deadline, "second consumer got %d" % len(seen2)
        msg = c2.poll(0.2)
        if msg is None or msg.error():
            continue
        seen2.append(int(msg.value()))
        first_offset.setdefault(msg.partition(), msg.offset())
    c2.close()

    assert not set(seen1) & set(seen2), "second consumer re-read committed messages"
    assert sorted(seen1 + seen2) == list(range(n))
    for p, o in next_offset.items():
        if p in first_offset:
            assert first_offset[p] == o, "partition %d resumed at %d, committed %d" % (
                p, first_offset[p], o)


def test_broker_down_stalls_produce_and_broker_up_completes_without_loss(kafka):
    leader = partition_leader(kafka.bootstrap, TOPIC, 0)
    conf = {"bootstrap.servers": kafka.bootstrap, "enable.idempotence": True, "acks": "all",
            "linger.ms": 5, "message.timeout.ms": 60000}
    conf.update(FAST_PRODUCER_CONFIG)
    producer = Producer(conf)
    producer.produce(TOPIC, b"warm-up", partition=0)  # connections and metadata ready
    assert producer.flush(15) == 0

    kafka.broker_down(leader)
    n = 300
    delivered, failed = [], []

    def on_delivery(err, msg):
        (failed if err else delivered).append(err or msg.value())

    for i in range(n):
        producer.produce(TOPIC, b"m%d" % i, partition=0, on_delivery=on_delivery)
    # The leader is down and the mock never moves leadership: nothing may
    # complete. Watch for a short window (the stall cannot be awaited).
    window_end = time.monotonic() + 1.5
    while time.monotonic() < window_end:
        producer.poll(0.1)
    assert delivered == [] and failed == [], "produce did not stall"
    assert len(producer) == n

    kafka.broker_up(leader)
    assert producer.flush(30) == 0, "messages still queued after broker up"
    assert failed == []
    assert delivered == [b"m%d" % i for i in range(n)]

    values = [v for _, v, _, p, _ in consume_all(kafka.bootstrap, TOPIC) if p == 0]
    assert values == [b"warm-up"] + [b"m%d" % i for i in range(n)], "loss or duplicates"


def test_request_errors_not_leader_survived_by_producer(kafka):
    stats = []
    conf = {"bootstrap.servers": kafka.bootstrap, "enable.idempotence": True, "acks": "all",
            "statistics.interval.ms": 100, "stats_cb": stats.append}
    conf.update(FAST_PRODUCER_CONFIG)
    producer = Producer(conf)
    producer.list_topics(TOPIC, timeout=10)

    kafka.control("request-errors Produce NOT_LEADER_FOR_PARTITION NOT_LEADER_FOR_PARTITION "
                  "RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION")
    failed = []
    n = 100
    for i in range(n):
        producer.produce(TOPIC, b"r%d" % i, partition=i % 8,
                         on_delivery=lambda err, msg: err and failed.append(err))
    assert producer.flush(30) == 0
    assert failed == []

    def retransmitted():
        # txmsgs counts every transmission: > n means the errors were hit
        # and the rejected batches sent again.
        producer.poll(0.1)
        return stats and json.loads(stats[-1])["txmsgs"] > n

    wait_for(retransmitted, 10, "the producer to resend after the injected errors")
    got = sorted(v for _, v, _, _, _ in consume_all(kafka.bootstrap, TOPIC))
    assert got == sorted(b"r%d" % i for i in range(n))


def test_bad_control_commands_get_error_replies_and_process_stays_up(kafka):
    bad = [
        "",
        "bogus",
        "broker",
        "broker down",
        "broker down 0",
        "broker down 4",
        "broker sideways 1",
        "broker rtt 1 -5",
        "request-errors Bogus NOT_LEADER_FOR_PARTITION",
        "request-errors Produce NO_SUCH_ERROR",
        "request-errors Produce",
        "broker-request-errors 1 Produce NOT_LEADER_FOR_PARTITION:x",
        "clear-errors",
        "topic create bad/name 3",
        "topic create x 0",
        "topic create x 99999",
        "topic create %s 8" % TOPIC,
        "topic error x NOPE",
        "partition leader %s 99 1" % TOPIC,
        "partition leader %s 0 42" % TOPIC,
        "coordinator blah key 1",
        "ping extra",
        "x" * 5000,
    ]
    replies = control_socket_request(kafka.control_path, bad + ["ping"])
    for cmd, reply in zip(bad, replies):
        assert reply.startswith("error "), "%r -> %r" % (cmd[:40], reply)
    assert replies[-1] == "ok"
    for cmd in bad[1:5]:
        with pytest.raises(ControlError):
            kafka.control(cmd)

    # Good commands of every kind are accepted.
    for cmd in ["help", "broker rtt all 0", "request-errors 0 6", "clear-errors Produce",
                "broker-request-errors 2 fetch REQUEST_TIMED_OUT:10 _TRANSPORT",
                "topic error %s NO_ERROR" % TOPIC, "coordinator group g1 2",
                "coordinator txn t1 3", "partition leader %s 0 1" % TOPIC]:
        assert kafka.control(cmd).startswith("ok")

    # Many concurrent clients, each gets its own answers.
    socks = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(20)]
    try:
        for s in socks:
            s.settimeout(10)
            s.connect(kafka.control_path)
        for s in socks:
            s.sendall(b"ping\ninfo\n")
        for s in socks:
            buf = b""
            while buf.count(b"\n") < 2:
                chunk = s.recv(4096)
                assert chunk, "control connection closed early"
                buf += chunk
            assert buf.split(b"\n")[0] == b"ok"
            assert buf.split(b"\n")[1].startswith(b"ok bootstrap=")
    finally:
        for s in socks:
            s.close()
    assert kafka.running()
    assert kafka.control("ping") == "ok"


def read_line(stream, timeout):
    """Reads one line from a pipe with a deadline (b"" at EOF)."""
    buf = b""
    deadline = time.monotonic() + timeout
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([stream], [], [], left)[0]:
            pytest.fail("no line within %.1fs (got %r)" % (timeout, buf))
        chunk = os.read(stream.fileno(), 1)
        if not chunk:
            break
        buf += chunk
    return buf.decode()


def test_stdin_control_and_eof_keeps_running(binary, tmp_path):
    sock = str(tmp_path / "c.sock")
    with open(tmp_path / "kafka-embedded.log", "wb") as log:
        proc = subprocess.Popen([binary, "--brokers", "1", "--control", sock],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log)
    try:
        bootstrap = read_line(proc.stdout, 15).strip()
        assert re.fullmatch(r"127\.0\.0\.1:\d+", bootstrap)
        proc.stdin.write(b"info\nbroker down 2\n")
        proc.stdin.flush()
        assert read_line(proc.stdout, 10) == "ok bootstrap=%s brokers=1\n" % bootstrap
        assert read_line(proc.stdout, 10).startswith("error ")
        proc.stdin.close()  # EOF on stdin: stop reading it, keep serving
        assert control_socket_request(sock, ["ping"]) == ["ok"]
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=20)
        proc.stdout.close()
    assert rc == 0


@pytest.mark.parametrize("args, names", [
    (["--brokers", "0"], "--brokers"),
    (["--brokers", "17"], "--brokers"),
    (["--brokers", "three"], "--brokers"),
    (["--brokers"], "--brokers"),
    (["--topic", "nopartitions"], "--topic"),
    (["--topic", "t:0"], "--topic"),
    (["--topic", "t:1025"], "--topic"),
    (["--topic", "bad/name:3"], "--topic"),
    (["--topic", "t:1", "--topic", "t:2"], "t:2"),
    (["--control", "/tmp/" + "x" * 200], "--control"),
    (["--bogus"], "--bogus"),
    (["stray"], "stray"),
])
def test_bad_cli_args_exit_2_with_one_line(binary, args, names):
    res = subprocess.run([binary] + args, stdin=subprocess.DEVNULL, capture_output=True,
                         timeout=20)
    assert res.returncode == 2
    assert res.stdout == b""
    lines = res.stderr.decode().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("hookd-kafka-embedded: ") and names in lines[0], lines[0]


def test_help_and_version(binary):
    res = subprocess.run([binary, "--help"], capture_output=True, timeout=20)
    assert res.returncode == 0 and b"--topic" in res.stdout
    res = subprocess.run([binary, "--version"], capture_output=True, timeout=20)
    assert res.returncode == 0 and res.stdout.startswith(b"hookd-kafka-embedded ")


def test_sigterm_exits_0_and_cleans_up(binary, tmp_path):
    k = EmbeddedKafka(binary, {"a": 1, "b": 2}, brokers=2, workdir=tmp_path).start()
    assert os.path.exists(k.control_path) and os.path.exists(k.bootstrap_file)
    produce(k.bootstrap, "a", [b"x"])
    assert k.stop() == 0, k.log_tail()
    assert not os.path.exists(k.control_path)
    assert not os.path.exists(k.bootstrap_file)
    assert "signal SIGTERM received" in k.log_text()
