"""The worker's HTTP endpoints (``/metrics``, ``/health``, ``/ready``) and its health monitor.

- ``/metrics``: the Prometheus text exposition of the worker's registry (404 when
  ``LADSDIN_METRICS_ENABLED=false``).
- ``/health``: liveness. 200 while the process serves HTTP; the body says whether an event is
  in progress and for how long (a stuck worker is an alert, not a restart loop: a long
  bootstrap is legitimate).
- ``/ready``: readiness. 200 only when the worker app has started, Redis answers PING and a
  Kafka metadata request lists the epochs topic; otherwise 503 with the failing check named.

The server is a stdlib ``ThreadingHTTPServer`` on its own daemon thread, off faust's event
loop and off the scoring executor, so a scrape never waits for an epoch. It binds loopback unless
``LADSDIN_METRICS_HOST`` says otherwise (0.0.0.0 in a container), drops a client that is silent
for ``LADSDIN_METRICS_REQUEST_TIMEOUT_S`` and serves at most ``LADSDIN_METRICS_MAX_THREADS``
requests at once. :class:`HealthMonitor`
repeats the checks every ``LADSDIN_HEALTH_INTERVAL_S`` and samples the outbox backlog, so the
dependency and backlog gauges stay current when nobody calls ``/ready``.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ladsdin.stream.connection import KafkaConnection, client_kwargs
from ladsdin.stream.metrics import MetricsRecorder

log = logging.getLogger(__name__)


class ReadinessProbe:
    """Real connectivity checks of Kafka and Redis, cached for ``min_interval_s``.

    Args:
        bootstrap: Kafka bootstrap servers; a metadata request must list ``topic``.
        ping_redis: raises when Redis does not answer (``StateStore.ping``).
        timeout_s: per-check budget for Kafka (bootstrap and request timeouts).
    """

    def __init__(self, bootstrap: str | KafkaConnection, topic: str, ping_redis: Callable[[], None], metrics: MetricsRecorder,
                 *, timeout_s: float = 3.0, min_interval_s: float = 1.0) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.ping_redis = ping_redis
        self.metrics = metrics
        self.timeout_ms = int(timeout_s * 1000)
        self.min_interval_s = min_interval_s
        self.started = threading.Event()
        self._admin: Any = None
        self._lock = threading.Lock()
        self._last: tuple[float, bool, dict[str, str]] | None = None

    def mark_started(self) -> None:
        """The worker app runs (its startup outbox drain is done)."""
        self.started.set()

    def check(self) -> tuple[bool, dict[str, str]]:
        """(ready, {check: "ok" or what failed}); at most one real check per ``min_interval_s``."""
        with self._lock:
            now = time.monotonic()
            if self._last is not None and now - self._last[0] < self.min_interval_s:
                return self._last[1], dict(self._last[2])
            checks = {"started": "ok" if self.started.is_set() else "the worker app has not started yet",
                      "redis": self._check_redis(), "kafka": self._check_kafka()}
            ready = all(v == "ok" for v in checks.values())
            self.metrics.dependency("redis", checks["redis"] == "ok")
            self.metrics.dependency("kafka", checks["kafka"] == "ok")
            self.metrics.ready(ready)
            self._last = (now, ready, checks)
            return ready, dict(checks)

    def _check_redis(self) -> str:
        try:
            self.ping_redis()
            return "ok"
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready", named in the answer
            return f"Redis PING failed: {exc}"

    def _check_kafka(self) -> str:
        from kafka import KafkaAdminClient

        try:
            if self._admin is None:
                self._admin = KafkaAdminClient(**client_kwargs(self.bootstrap), client_id="ladsdin-ready",
                                               request_timeout_ms=self.timeout_ms, bootstrap_timeout_ms=self.timeout_ms)
            topics = self._admin.list_topics()  # a real metadata round trip
        except Exception as exc:  # noqa: BLE001
            self.close()  # a fresh client next time: this one may hold a dead connection
            return f"Kafka metadata request to {self.bootstrap} failed: {type(exc).__name__}: {exc}"
        if self.topic not in topics:
            return f"topic {self.topic} does not exist on {self.bootstrap}; create it (the worker does at start)"
        return "ok"

    def close(self) -> None:
        admin, self._admin = self._admin, None
        if admin is not None:
            try:
                admin.close()
            except Exception:  # noqa: BLE001 - closing a broken client must not raise
                log.debug("closing the readiness Kafka client failed", exc_info=True)


class HealthMonitor(threading.Thread):
    """Every ``interval_s``: the readiness checks and the outbox backlog (gauges only)."""

    def __init__(self, probe: ReadinessProbe, backlog: Callable[[], int], interval_s: float) -> None:
        super().__init__(name="ladsdin-health", daemon=True)
        self.probe = probe
        self.backlog = backlog
        self.interval_s = interval_s
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.probe.check()
            try:
                self.backlog()
            except Exception as exc:  # noqa: BLE001 - Redis down shows in ladsdin_dependency_up; keep sampling
                log.warning("could not sample the outbox backlog: %s", exc)
            self._halt.wait(self.interval_s)

    def stop(self) -> None:
        self._halt.set()
        self.join(5)


class _BoundedHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server that serves at most ``max_threads`` requests at once.

    A connection beyond the bound is closed at once (the client sees a reset and retries, as
    Prometheus does), so a flood of slow clients cannot grow the worker's threads without end.
    """

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], max_threads: int) -> None:
        self._slots = threading.BoundedSemaphore(max_threads)
        self.refused = 0
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.refused += 1
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class TelemetryServer:
    """``/metrics``, ``/health`` and ``/ready`` on ``host:port`` (port 0: any free port).

    Args:
        host: the bind address (LADSDIN_METRICS_HOST; loopback by default).
        request_timeout_s: a client that sends nothing for this long is dropped.
        max_threads: requests served at once; further connections are closed.
    """

    def __init__(self, host: str, port: int, metrics: MetricsRecorder, probe: ReadinessProbe, *,
                 request_timeout_s: float = 5.0, max_threads: int = 8) -> None:
        self.metrics = metrics
        self.probe = probe
        self._httpd = _BoundedHTTPServer((host, port), _handler(self, request_timeout_s), max_threads)
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="ladsdin-telemetry", daemon=True)

    def start(self) -> TelemetryServer:
        self._thread.start()
        log.info("serving /metrics, /health and /ready on %s:%d", self._httpd.server_address[0], self.port)
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self.probe.close()

    def health(self) -> tuple[int, dict[str, Any]]:
        body: dict[str, Any] = {"status": "alive"}
        since = self.metrics.busy_since
        if since is not None:
            body["event_in_progress_s"] = round(time.time() - since, 1)
        return 200, body

    def ready(self) -> tuple[int, dict[str, Any]]:
        ok, checks = self.probe.check()
        return (200 if ok else 503), {"ready": ok, "checks": checks}


def _handler(server: TelemetryServer, request_timeout_s: float) -> type[BaseHTTPRequestHandler]:
    from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

    class Handler(BaseHTTPRequestHandler):
        timeout = request_timeout_s  # socket timeout of every read and write (StreamRequestHandler)

        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            path = self.path.split("?", 1)[0]
            if path == "/metrics" and server.metrics.registry is not None:
                self._send(200, generate_latest(server.metrics.registry), CONTENT_TYPE_LATEST)
            elif path in ("/health", "/ready"):
                code, body = server.health() if path == "/health" else server.ready()
                self._send(code, json.dumps(body).encode() + b"\n", "application/json")
            else:
                hint = "metrics are disabled (LADSDIN_METRICS_ENABLED=false); " if path == "/metrics" else ""
                self._send(404, f"{hint}try /metrics, /health or /ready\n".encode(), "text/plain; charset=utf-8")

        def _send(self, code: int, body: bytes, ctype: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt: str, *args: Any) -> None:  # scrapes every few seconds: not at INFO
            log.debug("%s " + fmt, self.address_string(), *args)

    return Handler
