"""``ladsdin worker`` with Redis or Kafka down at start: one clear line and status 75 (restart me)."""
from __future__ import annotations

import os
import subprocess
import sys

from ladsdin.stream.embedded import EmbeddedRedis
from tests.e2e import dead_port


def _worker(tmp_path, kafka: str, redis_url: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, LADSDIN_KAFKA_BOOTSTRAP=kafka, LADSDIN_REDIS_URL=redis_url, LADSDIN_DATA_ROOT=str(tmp_path / "data"),
               LADSDIN_METRICS_PORT="0")
    return subprocess.run([sys.executable, "-m", "ladsdin.cli", "worker"], env=env, capture_output=True, text=True, timeout=240)


def test_redis_down_at_start_exits_75_naming_redis(tmp_path):
    done = _worker(tmp_path, f"127.0.0.1:{dead_port()}", f"redis://127.0.0.1:{dead_port()}/0")
    assert done.returncode == 75, done.stderr[-2000:]
    lines = [ln for ln in done.stderr.splitlines() if ln.startswith("ladsdin worker:")]
    assert len(lines) == 1 and "Redis at redis://127.0.0.1:" in lines[0] and "status 75" in lines[0]


def test_kafka_down_at_start_exits_75_naming_kafka(tmp_path):
    with EmbeddedRedis() as srv:
        done = _worker(tmp_path, f"127.0.0.1:{dead_port()}", srv.url)
    assert done.returncode == 75, done.stderr[-2000:]
    lines = [ln for ln in done.stderr.splitlines() if ln.startswith("ladsdin worker:")]
    assert len(lines) == 1 and "Kafka at 127.0.0.1:" in lines[0] and "status 75" in lines[0]
