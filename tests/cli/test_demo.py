"""``ladsdin demo``: embedded broker and Valkey, a Menyuan-like frame, alerts printed, nothing left running."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def _ours() -> set[int]:
    """PIDs of broker and Valkey processes on this machine."""
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout.splitlines()[1:]
    return {int(line.split()[0]) for line in out if ("tansu" in line and "broker" in line) or "valkey-server" in line}


def test_demo_prints_a_menyuan_alert_and_leaves_nothing_behind(tmp_path):
    before = _ours()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LADSDIN_")}
    proc = subprocess.run(
        [sys.executable, "-m", "ladsdin.cli", "demo", "--out", str(tmp_path / "demo"), "--size", "160x160", "--epochs", "110"],
        capture_output=True, text=True, timeout=600, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    alerts = [line for line in proc.stdout.splitlines() if line.startswith("ALERT ")]
    assert alerts and "LOS (+towards satellite)" in alerts[0]
    fc = json.loads((tmp_path / "demo" / "alerts.geojson").read_text())
    assert fc["features"] and all(f["properties"]["frame"].startswith("128A_") for f in fc["features"])
    assert (tmp_path / "demo" / "alerts_map.png").stat().st_size > 10_000
    assert _ours() <= before, "the demo left a broker or Valkey process running"
