"""``/metrics``, ``/health`` and ``/ready`` against a real broker (tansu) and a real Valkey."""
from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from ladsdin.state.redis_store import RedisStateStore
from ladsdin.stream.embedded import EmbeddedBroker, EmbeddedRedis, free_port
from ladsdin.stream.metrics import MetricsRecorder, PrometheusMetrics
from ladsdin.stream.settings import Settings
from ladsdin.stream.telemetry import HealthMonitor, ReadinessProbe, TelemetryServer

TOPIC = Settings().epochs_topic


def _get(port: int, path: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, r.headers["Content-Type"], r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read().decode()


@pytest.fixture(scope="module")
def broker():
    with EmbeddedBroker() as b:
        b.create_topics([TOPIC])
        yield b


@pytest.fixture
def server_for(request):
    servers = []

    def make(bootstrap: str, store: RedisStateStore, metrics=None, started=True) -> tuple[TelemetryServer, ReadinessProbe]:
        m = metrics if metrics is not None else PrometheusMetrics([TOPIC])
        probe = ReadinessProbe(bootstrap, TOPIC, store.ping, m, timeout_s=2.0, min_interval_s=0.0)
        if started:
            probe.mark_started()
        srv = TelemetryServer("127.0.0.1", 0, m, probe).start()
        servers.append(srv)
        return srv, probe

    yield make
    for s in servers:
        s.stop()


def test_ready_when_kafka_and_redis_answer_then_503_when_redis_stops(broker, server_for):
    with EmbeddedRedis() as redis_srv:
        srv, _ = server_for(broker.bootstrap, RedisStateStore(redis_srv.url))
        code, ctype, body = _get(srv.port, "/ready")
        assert (code, json.loads(body)) == (200, {"ready": True, "checks": {"started": "ok", "redis": "ok", "kafka": "ok"}})
        assert ctype == "application/json"
        metrics = _get(srv.port, "/metrics")[2]
        assert 'ladsdin_dependency_up{dependency="kafka"} 1.0' in metrics and "ladsdin_worker_ready 1.0" in metrics
    code, _, body = _get(srv.port, "/ready")
    answer = json.loads(body)
    assert code == 503 and not answer["ready"]
    assert answer["checks"]["kafka"] == "ok" and answer["checks"]["redis"].startswith("Redis PING failed")
    assert "ladsdin_worker_ready 0.0" in _get(srv.port, "/metrics")[2]
    assert _get(srv.port, "/health")[0] == 200  # liveness does not depend on Redis


def test_not_ready_without_kafka_or_before_start(broker, server_for):
    with EmbeddedRedis() as redis_srv:
        store = RedisStateStore(redis_srv.url)
        srv, _ = server_for(f"127.0.0.1:{free_port()}", store)  # nothing listens there
        code, _, body = _get(srv.port, "/ready")
        assert code == 503 and json.loads(body)["checks"]["kafka"].startswith("Kafka metadata request")
        assert 'ladsdin_dependency_up{dependency="kafka"} 0.0' in _get(srv.port, "/metrics")[2]
        srv2, probe = server_for(broker.bootstrap, store, started=False)
        assert json.loads(_get(srv2.port, "/ready")[2])["checks"]["started"] != "ok"
        probe.mark_started()
        assert _get(srv2.port, "/ready")[0] == 200


def test_ready_needs_the_epochs_topic(server_for):
    with EmbeddedBroker() as bare, EmbeddedRedis() as redis_srv:
        srv, _ = server_for(bare.bootstrap, RedisStateStore(redis_srv.url))
        code, _, body = _get(srv.port, "/ready")
        assert code == 503 and f"topic {TOPIC} does not exist" in json.loads(body)["checks"]["kafka"]


def test_metrics_exposition_and_disabled_metrics(broker, server_for):
    with EmbeddedRedis() as redis_srv:
        store = RedisStateStore(redis_srv.url)
        srv, _ = server_for(broker.bootstrap, store)
        code, ctype, body = _get(srv.port, "/metrics")
        assert code == 200 and ctype.startswith("text/plain; version=")
        assert 'ladsdin_epochs_rejected_total{reason="all_nan"} 0.0' in body and "process_resident_memory_bytes" in body
        off, _ = server_for(broker.bootstrap, store, metrics=MetricsRecorder())
        code, _, body = _get(off.port, "/metrics")
        assert code == 404 and "LADSDIN_METRICS_ENABLED=false" in body
        assert _get(off.port, "/ready")[0] == 200  # readiness does not need metrics
        assert _get(off.port, "/nope")[0] == 404


def test_health_reports_a_long_event(broker, server_for):
    with EmbeddedRedis() as redis_srv:
        m = PrometheusMetrics([TOPIC])
        srv, _ = server_for(broker.bootstrap, RedisStateStore(redis_srv.url), metrics=m)
        assert json.loads(_get(srv.port, "/health")[2]) == {"status": "alive"}
        m.event_started()
        body = json.loads(_get(srv.port, "/health")[2])
        assert body["status"] == "alive" and body["event_in_progress_s"] >= 0


def test_health_monitor_samples_the_backlog(broker):
    from ladsdin.state.store import OutboxMessage
    from ladsdin.stream.outbox import sample_backlog

    with EmbeddedRedis() as redis_srv:
        store = RedisStateStore(redis_srv.url)
        store.commit_epoch("F1", epoch="2020-01-01", expected_cursor=None, state=b"x",
                           outbox=[OutboxMessage(f"F1:2020-01-01:{i}", "t", "F1", b"{}") for i in range(3)])
        m = PrometheusMetrics([TOPIC])
        probe = ReadinessProbe(broker.bootstrap, TOPIC, store.ping, m)
        mon = HealthMonitor(probe, lambda: sample_backlog(store, m), interval_s=0.1)
        mon.start()
        try:
            import time

            deadline = time.monotonic() + 20
            while m.registry.get_sample_value("ladsdin_outbox_backlog_messages") != 3 and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            mon.stop()
            probe.close()
        assert m.registry.get_sample_value("ladsdin_outbox_backlog_messages") == 3
        assert m.registry.get_sample_value("ladsdin_dependency_up", {"dependency": "redis"}) == 1
