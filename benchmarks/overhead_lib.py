"""Helpers of ``stream_bench.py --metrics-overhead`` (issue 5): a /metrics scraper, the worker's
CPU time, the recorder's direct cost and the on/off table."""
from __future__ import annotations

import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path


class Scraper(threading.Thread):
    """GETs the worker's /metrics every ``interval_s``, as Prometheus would; keeps the last body."""

    def __init__(self, port: int, interval_s: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.interval_s = interval_s
        self.n = 0
        self.last = ""
        self._halt = threading.Event()

    def run(self) -> None:
        import urllib.request

        while not self._halt.wait(self.interval_s):
            try:
                with urllib.request.urlopen(self.url, timeout=5) as r:
                    self.last = r.read().decode()
                    self.n += 1
            except OSError:
                pass  # not serving yet

    def stop(self) -> None:
        self._halt.set()
        self.join(10)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (/proc/<pid>/stat, all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def instrumentation_us(n: int = 20000) -> dict[str, float]:
    """Microseconds per scored epoch of the recorder calls the processor and outbox make for one
    scored epoch (stream/processor.py, stream/outbox.py), for the no-op and the Prometheus recorder."""
    from ladsdin.stream.metrics import MetricsRecorder, PrometheusMetrics

    out = {}
    for name, m in (("off", MetricsRecorder()), ("on", PrometheusMetrics(["a", "s", "d"]))):
        t0 = time.perf_counter()
        for _ in range(n):
            m.event_started()
            for stage in ("model_load", "fetch", "predict", "cluster", "state_write", "publish"):
                with m.stage(stage):
                    pass
            m.observe_stage("state_load", 0.001)
            m.scored("F", epoch="2022-01-08", c_k=10, n_a=20, n_valid=6000, largest_px=5, pixel_area_km2=0.04, n_alerts=0,
                     latency_s=0.5, state_bytes=100000)
            m.frame_event("F", 1036800.0)
            m.published("s", 1)
            m.event_finished("scored", 0.04)
        out[name] = (time.perf_counter() - t0) / n * 1e6
    return out


def overhead_table(runs: list[dict], failures: list) -> int:
    """Print the metrics on/off table of --metrics-overhead; 1 on a failure or a run without metrics."""
    import torch

    cmd = "python benchmarks/stream_bench.py " + " ".join(sys.argv[1:])
    print(f"# stream_bench metrics overhead — {time.strftime('%Y-%m-%d')}, {platform.node()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__}, device cpu; command: `{cmd}`\n")
    by = {m: [r for r in runs if r["metrics"] == m] for m in ("off", "on")}
    print("| metrics | runs | scored epochs | epochs/s per run | median epochs/s | worker CPU ms per scored epoch, per run | median worker CPU ms/epoch | worker process() p50 s | /metrics scrapes per run |")
    print("|---|---|---|---|---|---|---|---|---|")
    for m, rs in by.items():
        if rs:
            print(f"| {m} | {len(rs)} | {rs[0]['n_scored']} | {', '.join(format(r['replay_eps'], '.1f') for r in rs)} | "
                  f"{statistics.median(r['replay_eps'] for r in rs):.2f} | "
                  f"{', '.join(format(r['worker_cpu_ms_per_epoch'], '.1f') for r in rs)} | "
                  f"{statistics.median(r['worker_cpu_ms_per_epoch'] for r in rs):.1f} | {statistics.median(r['process_p50_s'] for r in rs):.4f} | "
                  f"{', '.join(str(r.get('scrapes', '-')) for r in rs)} |")
    bad = [r for r in by["on"] if r.get("metrics_scored") != r["n_scored"]]
    if by["on"] and by["off"]:
        ratio = statistics.median(r["replay_eps"] for r in by["on"]) / statistics.median(r["replay_eps"] for r in by["off"])
        pairs = [on["replay_eps"] / off["replay_eps"] for on in by["on"] for off in by["off"] if on["seed"] == off["seed"]]
        print(f"\non/off median epochs/s: **{ratio:.3f}** (overhead {100 * (1 - ratio):+.1f} %); per seed pair: "
              f"{', '.join(f'{p:.3f}' for p in pairs)}")
        cpu = {m: statistics.median(r["worker_cpu_ms_per_epoch"] for r in by[m]) for m in ("off", "on")}
        cpu_pairs = [on["worker_cpu_ms_per_epoch"] / off["worker_cpu_ms_per_epoch"] for on in by["on"] for off in by["off"]
                     if on["seed"] == off["seed"]]
        print(f"\non/off median worker CPU per scored epoch: **{cpu['on'] / cpu['off']:.3f}** "
              f"(overhead {100 * (cpu['on'] / cpu['off'] - 1):+.1f} %); per seed pair: {', '.join(f'{p:.3f}' for p in cpu_pairs)}")
    cost = instrumentation_us()
    p50_on = statistics.median(r["process_p50_s"] for r in by["on"]) if by["on"] else float("nan")
    print(f"\nrecorder calls per scored epoch, timed alone in this process: on {cost['on']:.1f} us, off {cost['off']:.1f} us "
          f"= {100 * (cost['on'] - cost['off']) * 1e-6 / p50_on:.2f} % of the worker's process() p50 ({1000 * p50_on:.1f} ms)")
    if bad:
        print(f"\nruns whose /metrics did not count every scored epoch: {[r['seed'] for r in bad]}")
    for case, r, err in failures:
        print(f"- FAILED {case} seed {r}: {err.strip().splitlines()[-1] if err.strip() else 'no stderr'}")
    return 1 if failures or bad else 0
