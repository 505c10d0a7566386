"""Embedded Kafka for end-to-end tests: runs hookd-kafka-embedded, injects
faults through its control socket, and produces/consumes with confluent_kafka.

No pytest in here, so scripts (bench, deploy helpers) can use it too:

    with EmbeddedKafka(binary, {"hookd.events": 8}, workdir="/tmp/k") as kafka:
        produce(kafka.bootstrap, "hookd.events", [b"a", b"b"])
        kafka.broker_down(1)
        ...
        print(consume_all(kafka.bootstrap, "hookd.events"))
"""

import os
import selectors
import signal
import socket
import subprocess
import tempfile
import time
import uuid

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

# Settings that make librdkafka clients quick against the mock: it delays an
# empty fetch by the whole fetch.wait.max.ms even when data arrives meanwhile,
# and the default reconnect backoff (up to 10 s) slows fault tests.
FAST_CLIENT_CONFIG = {
    "reconnect.backoff.ms": 50,
    "reconnect.backoff.max.ms": 500,
    "topic.metadata.refresh.interval.ms": 1000,
}
FAST_PRODUCER_CONFIG = dict(FAST_CLIENT_CONFIG, **{"retry.backoff.ms": 50})
FAST_CONSUMER_CONFIG = dict(FAST_CLIENT_CONFIG, **{"fetch.wait.max.ms": 50})


class ControlError(RuntimeError):
    """The broker answered a control command with 'error ...'."""


class EmbeddedKafka:
    """One hookd-kafka-embedded process.

    topics: {name: partitions} created at start. workdir holds the control
    socket, the bootstrap file and kafka-embedded.log (the broker's stderr);
    a temporary directory is made if it is None.
    """

    def __init__(self, binary, topics=None, brokers=3, workdir=None, start_timeout=15.0):
        self.binary = str(binary)
        self.topics = dict(topics or {})
        self.brokers = brokers
        self.workdir = str(workdir) if workdir else tempfile.mkdtemp(prefix="hookd-kafka-")
        self.start_timeout = start_timeout
        self.bootstrap = None
        self.proc = None
        self.returncode = None
        self.log_path = os.path.join(self.workdir, "kafka-embedded.log")
        self.bootstrap_file = os.path.join(self.workdir, "kafka.bootstrap")
        self.control_path = os.path.join(self.workdir, "kafka.sock")
        if len(os.fsencode(self.control_path)) > 100:  # sun_path is 108 bytes
            self.control_path = os.path.join(tempfile.mkdtemp(prefix="hk-"), "kafka.sock")

    # -- lifecycle -------------------------------------------------------

    def command_line(self):
        argv = [self.binary, "--brokers", str(self.brokers),
                "--control", self.control_path, "--bootstrap-file", self.bootstrap_file]
        for name, partitions in self.topics.items():
            argv += ["--topic", "%s:%d" % (name, partitions)]
        return argv

    def start(self):
        """Spawns the broker and waits (up to start_timeout) for the
        bootstrap list on its stdout. Returns self."""
        if self.proc is not None:
            raise RuntimeError("already started")
        os.makedirs(self.workdir, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.command_line(), stdin=subprocess.DEVNULL,
                                         stdout=subprocess.PIPE, stderr=log)
        try:
            self.bootstrap = self._read_first_line(self.start_timeout)
        except Exception:
            self._kill()
            raise
        finally:
            self.proc.stdout.close()  # nothing else is written there
        return self

    def _read_first_line(self, timeout):
        deadline = time.monotonic() + timeout
        buf = b""
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            while b"\n" not in buf:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("no bootstrap line from %s within %.1fs; log:\n%s"
                                       % (self.binary, timeout, self.log_tail()))
                if sel.select(left):
                    chunk = os.read(self.proc.stdout.fileno(), 4096)
                    if not chunk:
                        self.proc.wait(timeout=5)
                        raise RuntimeError("%s exited with %s before printing the bootstrap; "
                                           "log:\n%s" % (self.binary, self.proc.returncode,
                                                         self.log_tail()))
                    buf += chunk
        return buf.split(b"\n", 1)[0].decode()

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=20.0):
        """SIGTERM, wait up to 'timeout', and return the exit code (SIGKILL
        and TimeoutError if it does not exit in time)."""
        if self.proc is None:
            return self.returncode
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._kill()
                raise TimeoutError("%s did not exit within %.1fs after SIGTERM"
                                   % (self.binary, timeout))
        self.returncode = self.proc.returncode
        return self.returncode

    def _kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.returncode = self.proc.returncode

    def log_text(self):
        try:
            with open(self.log_path, "r", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def log_tail(self, lines=40):
        return "\n".join(self.log_text().splitlines()[-lines:])

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- control ---------------------------------------------------------

    def control(self, cmd, timeout=10.0):
        """Sends one command line, returns the reply line ('ok ...').
        Raises ControlError on an 'error ...' reply."""
        reply = control_socket_request(self.control_path, [cmd], timeout)[0]
        if not reply.startswith("ok"):
            raise ControlError("%r -> %s" % (cmd, reply))
        return reply

    def info(self):
        """Returns the 'info' reply as a dict (bootstrap, brokers)."""
        fields = self.control("info").split()[1:]
        return dict(f.split("=", 1) for f in fields)

    def broker_down(self, broker_id):
        return self.control("broker down %s" % broker_id)

    def broker_up(self, broker_id):
        return self.control("broker up %s" % broker_id)

    def broker_rtt(self, broker_id, rtt_ms):
        return self.control("broker rtt %s %d" % (broker_id, rtt_ms))

    def request_errors(self, api, *errors):
        return self.control("request-errors %s %s" % (api, " ".join(errors)))

    def clear_errors(self, api):
        return self.control("clear-errors %s" % api)

    def create_topic(self, name, partitions, replication=None):
        cmd = "topic create %s %d" % (name, partitions)
        if replication is not None:
            cmd += " %d" % replication
        return self.control(cmd)

    def partition_leader(self, topic, partition, broker_id):
        return self.control("partition leader %s %d %s" % (topic, partition, broker_id))


def control_socket_request(path, lines, timeout=10.0):
    """Sends 'lines' over one connection to the control socket at 'path' and
    returns one reply per line (without newlines)."""
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(b"".join(line.encode() + b"\n" for line in lines))
        buf = b""
        while buf.count(b"\n") < len(lines):
            s.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    replies = buf.decode(errors="replace").split("\n")[:-1]
    if len(replies) != len(lines):
        raise ControlError("expected %d replies, got %r" % (len(lines), replies))
    return replies


# -- clients ---------------------------------------------------------------

def topic_metadata(bootstrap, topic, timeout=10.0):
    """Returns confluent_kafka TopicMetadata for 'topic' (KeyError if absent)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    md = admin.list_topics(topic=topic, timeout=timeout)
    tmd = md.topics[topic]
    if tmd.error is not None:
        raise KafkaException(tmd.error)
    return tmd


def partition_leader(bootstrap, topic, partition, timeout=10.0):
    """Returns the broker id leading topic/partition according to metadata."""
    return topic_metadata(bootstrap, topic, timeout).partitions[partition].leader


def _as_message(item):
    """Accepts value, (key, value), (key, value, headers) or
    (key, value, headers, partition)."""
    if not isinstance(item, tuple):
        item = (None, item)
    key, value, headers, partition = (tuple(item) + (None, None))[:4]
    return key, value, headers, partition


def produce(bootstrap, topic, messages, config=None, timeout=60.0):
    """Produces 'messages' (see _as_message) with an idempotent producer
    (override with 'config') and waits for every delivery report. Returns
    [(partition, offset)] in produce order; raises KafkaException on the
    first failed delivery and TimeoutError if reports are still missing at
    the deadline."""
    conf = {"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5,
            "message.timeout.ms": int(timeout * 1000)}
    conf.update(FAST_PRODUCER_CONFIG)
    conf.update(config or {})
    producer = Producer(conf)
    messages = list(messages)
    results = [None] * len(messages)
    errors = []

    def on_delivery(i):
        def cb(err, msg):
            if err is not None:
                errors.append((i, err))
            else:
                results[i] = (msg.partition(), msg.offset())
        return cb

    deadline = time.monotonic() + timeout
    for i, item in enumerate(messages):
        key, value, headers, partition = _as_message(item)
        kwargs = {"key": key, "value": value, "on_delivery": on_delivery(i)}
        if headers is not None:
            kwargs["headers"] = headers
        if partition is not None:
            kwargs["partition"] = partition
        while True:
            try:
                producer.produce(topic, **kwargs)
                break
            except BufferError:
                if time.monotonic() > deadline:
                    raise TimeoutError("producer queue full until the deadline")
                producer.poll(0.05)
        producer.poll(0)
    remaining = producer.flush(max(0.0, deadline - time.monotonic()))
    if errors:
        raise KafkaException(errors[0][1])
    if remaining:
        raise TimeoutError("%d of %d messages not delivered within %.1fs"
                           % (remaining, len(messages), timeout))
    return results


def consume_all(bootstrap, topic, expected_count=None, timeout=60.0, config=None):
    """Reads 'topic' from the beginning with a fresh group id (assigned, not
    subscribed: no rebalance wait, nothing committed).

    Without expected_count it stops exactly at the high watermarks taken at
    the start, so the result is deterministic. With expected_count it stops
    once that many messages arrived (messages produced meanwhile count too).
    Returns [(key, value, headers, partition, offset)] in arrival order
    (each partition in offset order). Raises TimeoutError at the deadline."""
    deadline = time.monotonic() + timeout
    conf = {"bootstrap.servers": bootstrap, "group.id": "hookd-e2e-" + uuid.uuid4().hex,
            "enable.auto.commit": False, "auto.offset.reset": "earliest",
            "enable.partition.eof": False}
    conf.update(FAST_CONSUMER_CONFIG)
    conf.update(config or {})
    consumer = Consumer(conf)
    try:
        partitions = sorted(topic_metadata(bootstrap, topic,
                                           max(1.0, deadline - time.monotonic())).partitions)
        targets, positions = {}, {}
        for p in partitions:
            lo, hi = consumer.get_watermark_offsets(
                TopicPartition(topic, p), timeout=max(1.0, deadline - time.monotonic()))
            targets[p] = hi
            positions[p] = lo - 1  # the mock prunes old data: lo may be > 0
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        out = []

        def done():
            if expected_count is not None:
                return len(out) >= expected_count
            return all(positions[p] + 1 >= targets[p] for p in partitions)

        while not done():
            if time.monotonic() > deadline:
                raise TimeoutError(
                    "consume_all(%s): %d messages after %.1fs (expected %s, positions %r, "
                    "high watermarks %r)" % (topic, len(out), timeout, expected_count,
                                             positions, targets))
            msg = consumer.poll(0.1)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    continue
                if msg.error().retriable():
                    continue
                raise KafkaException(msg.error())
            positions[msg.partition()] = msg.offset()
            if expected_count is None and msg.offset() >= targets[msg.partition()]:
                continue  # produced after the snapshot
            out.append((msg.key(), msg.value(), msg.headers(), msg.partition(), msg.offset()))
        return out
    finally:
        consumer.close()
