"""Helpers of the end-to-end tests, written once: real services, workers as child processes, and
topics read from their beginning. The tests start a real Kafka-protocol broker (tansu) and a real
Redis-protocol server (Valkey); the worker runs as a separate process, as in production."""
from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ladsdin.stream.embedded import EmbeddedBroker, EmbeddedRedis
from ladsdin.stream.settings import Settings
from ladsdin.stream.supervise import settings_env, start_ladsdin, start_worker, stop_process
from ladsdin.stream.topics import read_topics

__all__ = ["dead_port", "e2e_settings", "embedded_services", "read_json", "settings_env", "start_ladsdin", "start_worker", "stop_process",
           "wait_summaries"]


def embedded_services() -> Iterator[tuple[str, str]]:
    """(bootstrap, redis_url) of a broker with the product's topics and a Valkey server (a fixture body)."""
    with EmbeddedBroker() as broker, EmbeddedRedis() as redis_srv:
        broker.create_topics(Settings().topics)
        yield broker.bootstrap, redis_srv.url


def e2e_settings(tmp: Path, bootstrap: str, redis_url: str, history: int, group: str, **update: Any) -> Settings:
    """Worker settings for one test: its own data root and consumer group, one CPU thread."""
    s = Settings(kafka_bootstrap=bootstrap, redis_url=redis_url, data_root=tmp / "data", min_history_epochs=history,
                 seismic_area_km2=40.0, consumer_group=group, device="cpu", threads=1)
    return s.model_copy(update=update) if update else s


def read_json(bootstrap: str, topic: str, idle_ms: int = 1500) -> list[tuple[bytes | None, Any]]:
    """(key, decoded JSON value) of every record of ``topic``, from the beginning."""
    return [(m.key, json.loads(m.value)) for m in read_topics(bootstrap, topic, idle_ms=idle_ms)]


def wait_summaries(bootstrap: str, s: Settings, frame: str, n: int, proc: subprocess.Popen, log: Path,
                   timeout: float = 240.0) -> list[dict]:
    """The epoch summaries of ``frame`` once there are ``n`` (one per epoch); fails if the worker dies."""
    deadline = time.monotonic() + timeout
    got: dict[str, dict] = {}
    while time.monotonic() < deadline:
        got = {r["epoch"]: r for _, r in read_json(bootstrap, s.summaries_topic) if r["frame"] == frame}
        if len(got) >= n:
            return list(got.values())
        assert proc.poll() is None, f"worker died:\n{log.read_text()[-3000:]}"
        time.sleep(1.0)
    raise AssertionError(f"only {len(got)} of {n} summaries after {timeout} s:\n{log.read_text()[-3000:]}")


def dead_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
