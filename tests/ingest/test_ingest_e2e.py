"""LiCSAR ingest end to end: a generated frame directory keeps receiving interferograms while
``ladsdin ingest licsar --watch`` runs; the ingest is killed with SIGKILL and restarted; every
epoch reaches the topic exactly once and the worker alerts on the simulated earthquake. Real
services: the tansu broker and a Valkey server; the ingest and the worker are separate processes."""
from __future__ import annotations

import collections
import json
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from ladsdin.models.simulation import simulate
from ladsdin.ingest.synthetic import SyntheticFrame
from ladsdin.stream.settings import Settings

from tests.e2e import e2e_settings, read_json, settings_env, start_ladsdin, start_worker, stop_process, wait_summaries

pytestmark = pytest.mark.slow
HISTORY = 40


def _start_ingest(s: Settings, frame_dir: Path, log: Path) -> subprocess.Popen:
    env = settings_env(s, LADSDIN_INGEST_POLL_S="0.3", LADSDIN_INGEST_SETTLE_S="120")
    return start_ladsdin(["ingest", "licsar", str(frame_dir), "--watch", "--checkpoint-every", "3"], env, log)


def _ledger(s: Settings, frame: str) -> dict:
    path = Path(s.data_root) / frame / ".ingest" / "licsar" / "ledger.json"
    return json.loads(path.read_text()) if path.exists() else {"published": {}, "epochs": []}


def _wait_published(s: Settings, frame: str, n: int, proc: subprocess.Popen, log: Path, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(_ledger(s, frame)["published"]) >= n:
            return
        assert proc.poll() is None, f"ingest died:\n{log.read_text()[-3000:]}"
        time.sleep(0.2)
    raise AssertionError(f"{len(_ledger(s, frame)['published'])} of {n} epochs published:\n{log.read_text()[-3000:]}")


def test_watch_restart_publishes_each_epoch_once_and_alerts(services, tmp_path):
    bootstrap, redis_url = services
    cube, truth = simulate("menyuan", "D", n_lat=64, n_lon=64, n_epochs=80, seed=4, event_index=70)
    cube.attrs["frame"] = "026D_05217_131315"
    frame, n = cube.attrs["frame"], cube.sizes["time"]
    gen = SyntheticFrame(cube, tmp_path / "frames", truth=truth, links=3, looks=20.0, seed=5)
    frame_dir = gen.write(upto=HISTORY - 5)  # a frame with history already on disk
    s = e2e_settings(tmp_path, bootstrap, redis_url, HISTORY, "ingest-e2e")
    wlog, ilog = tmp_path / "worker.log", tmp_path / "ingest.log"
    worker = start_worker(s, wlog)
    ingest = _start_ingest(s, frame_dir, ilog)

    def arrive() -> None:  # LiCSAR keeps producing: one acquisition's interferograms at a time
        for k in range(HISTORY - 4, n):
            gen.write_epoch(k)
            time.sleep(0.25)

    writer = threading.Thread(target=arrive, daemon=True)
    try:
        writer.start()
        _wait_published(s, frame, HISTORY + 5, ingest, ilog)
        stop_process(ingest, signal.SIGKILL)  # no chance to clean up
        at_kill = _ledger(s, frame)
        assert len(at_kill["published"]) < n, "the ingest finished before it could be killed"
        ingest = _start_ingest(s, frame_dir, ilog)
        writer.join(120)
        _wait_published(s, frame, n, ingest, ilog)
        stop_process(ingest, signal.SIGTERM)
        assert ingest.returncode == 0, ilog.read_text()[-3000:]
        summaries = wait_summaries(bootstrap, s, frame, n - HISTORY, worker, wlog)
    finally:
        stop_process(ingest)
        stop_process(worker)

    events = [e for k, e in read_json(bootstrap, s.epochs_topic) if k == frame.encode()]
    counts = collections.Counter(e["epoch"] for e in events)
    expected = [str(t)[:10] for t in cube.time.values]
    assert sorted(counts) == expected, "some epoch was never published"
    assert set(counts.values()) == {1}, f"published more than once: {[e for e, c in counts.items() if c > 1]}"
    # the restart rebuilt the inversion from the last checkpoint plus the epochs inverted since
    behind = len(at_kill["epochs"]) - 1 - at_kill["checkpoint"]["epoch_index"]
    assert 0 <= behind < 3
    assert (f"replaying {behind} epoch(s)" in ilog.read_text()) == (behind > 0)
    alerts = [f for _, f in read_json(bootstrap, s.alerts_topic) if f["properties"]["frame"] == frame]
    assert {f["properties"]["epoch"] for f in alerts} == {truth.attrs["first_post_event"]}, summaries
    last = events[-1]
    assert last["quality"]["source"] == "licsar-interferograms" and last["quality"]["n_interferograms_max"] == 3
