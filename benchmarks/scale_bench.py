"""Full-size frames through the streaming worker (issue 10), and ``detect`` at full size.

Stream cases (``--sizes``), each in a fresh subprocess that starts its own embedded broker and
Valkey and the worker as a separate process (``python -m ladsdin.cli worker``), as in production:

  1m     1,000 x 1,000 pixels     3.5m   1,870 x 1,870 (the real Fernandina frame is 1,913 x 1,840)
  7.5m   2,500 x 3,000 pixels

A simulated Menyuan frame at 0.001 deg (``--epochs`` calendar slots, ~5 % missed passes, the
earthquake in the scored part) is published with ``ladsdin publish``'s code: the ``--history``
first epochs as fast as possible (the worker buffers them, then bootstraps), then every later
epoch alone, each sent once the previous epoch's summary arrived. Figures:

- bootstrap: the worker's own "bootstrapped ... in X s" (the tile-by-tile fit and the first
  state written), and the history's publish + buffer time before it;
- publish->summary p50/p99: wall clock in this process, from the send of a scored epoch's event
  (its object already written) to the arrival of its record on ladsdin.epoch-summaries.v1;
- the floor, measured in the same run against the same Valkey: raw GET then SET of every byte of
  the frame's committed state tiles (one thread, like the worker's I/O thread), plus the scoring
  compute alone (``score_in_memory`` on the decoded model and states in this process, same
  thread count as the worker);
- state bytes per modelled pixel; the worker's peak RSS (VmHWM); the largest value in Valkey
  (MEMORY USAGE over every key) and Valkey's peak memory;
- correctness: every epoch scored, and alerts only at the simulated earthquake's epoch.

``--detect SIZE`` instead simulates a frame with ``--epochs`` slots (``ladsdin simulate``),
then runs ``ladsdin detect`` on the file in a child process and reports its wall time, peak RSS
(getrusage of the child) and alert epochs.

Usage: python benchmarks/scale_bench.py --sizes 1m,3.5m,7.5m [--epochs 66 --history 40] [--repeats 1]
       python benchmarks/scale_bench.py --detect 7.5m --epochs 150
Prints Markdown tables; results are recorded in docs/BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZES = {"1m": (1000, 1000), "3.5m": (1870, 1870), "7.5m": (2500, 3000)}
AREA_KM2 = 600.0  # the paper's A_s: these frames are full LiCSAR frames


def _vm_hwm_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def _wait_for(what: str, ok, timeout: float, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not ok():
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited ({proc.returncode}) waiting for {what}:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


def _snapshot(redis_url: str, frame: str) -> tuple[dict, list[bytes]]:
    """The committed state manifest and tile blobs (taken right after the bootstrap)."""
    from ladsdin.state.frame_model import decode_state_manifest
    from ladsdin.state.redis_store import RedisStateStore

    store = RedisStateStore(redis_url)
    manifest = decode_state_manifest(store.get_state(frame)[0])
    return manifest, [store.get_state_tile(frame, manifest["version"], i) for i in range(manifest["tiles"])]


def _floor(redis_url: str, frame: str, cube, device, boot: tuple[dict, list[bytes]], scored: list[int]) -> dict:
    """The floor of every scored epoch: raw GET + SET of the state tiles' bytes, plus the scoring
    compute alone (from the post-bootstrap state, epoch by epoch, alert features included)."""
    import numpy as np
    import redis

    from ladsdin.models.alerts import object_feature
    from ladsdin.models.scoring import score_in_memory
    from ladsdin.state.frame_model import decode_state
    from ladsdin.state.redis_store import RedisStateStore
    from ladsdin.stream.frames import load_model

    store = RedisStateStore(redis_url)
    r = redis.Redis.from_url(redis_url)
    manifest, blobs = boot
    t0 = time.perf_counter()
    for i, b in enumerate(blobs):
        r.set(f"bench:floor:{i}", b)
    t_set = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(len(blobs)):
        r.get(f"bench:floor:{i}")
    t_get = time.perf_counter() - t0
    r.delete(*[f"bench:floor:{i}" for i in range(len(blobs))])
    loaded = load_model(store, frame, device)
    model = loaded.model
    states = [decode_state(b, device) for b in blobs]
    compute = []
    for k in scored:
        obs = np.ascontiguousarray(cube["displacement"][k].values, np.float32)
        date = str(cube["time"].values[k])[:10]
        t0 = time.perf_counter()
        score = score_in_memory(model, states, obs, model.forecaster.calendar.slot_of(np.datetime64(date)), date)
        [object_feature(o, lat=model.grid.lat, lon=model.grid.lon, frame=frame, track="A", epoch=date, nm=model.params.nm,
                        n_a=model.params.n_a, model_version=loaded.version) for o in score.objects]
        compute.append(time.perf_counter() - t0)
    return {"state_bytes": sum(len(b) for b in blobs), "pixels": model.n_pixels, "tiles": manifest["tiles"], "io_get_s": t_get,
            "io_set_s": t_set, "compute_s": compute}


def _p(values: list[float], q: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(round(q * (len(v) - 1))))]


def _redis_sizes(redis_url: str) -> dict:
    import redis

    r = redis.Redis.from_url(redis_url)
    largest, where = 0, ""
    for k in r.scan_iter(count=1000):
        n = int(r.memory_usage(k, samples=0) or 0)
        if n > largest:
            largest, where = n, k.decode()
    return {"largest_value_bytes": largest, "largest_key": where, "valkey_peak_bytes": int(r.info("memory")["used_memory_peak"])}


def _stream_case(size: str, seed: int, n_epochs: int, history: int) -> dict:
    import torch

    from ladsdin.ingest.cube import epoch_events
    from ladsdin.models.devices import configure_threads
    from ladsdin.models.simulation import simulate
    from ladsdin.state.redis_store import RedisStateStore
    from ladsdin.stream.contracts import utc_now
    from ladsdin.stream.embedded import EmbeddedBroker, EmbeddedRedis
    from ladsdin.stream.events import encode_event
    from ladsdin.stream.outbox import make_producer
    from ladsdin.stream.settings import Settings
    from ladsdin.stream.supervise import start_worker, stop_process
    from ladsdin.stream.topics import read_topics

    n_lat, n_lon = SIZES[size]
    t0 = time.perf_counter()
    cube, truth = simulate("menyuan", "A", n_lat=n_lat, n_lon=n_lon, spacing_deg=0.001, n_epochs=n_epochs, seed=seed, missing_fraction=0.05)
    t_sim = time.perf_counter() - t0
    frame, n_obs = str(cube.attrs["frame"]), cube.sizes["time"]
    tmp = Path(tempfile.mkdtemp(prefix=f"scale-bench-{size}-"))
    log = tmp / "worker.log"
    with EmbeddedBroker() as broker, EmbeddedRedis() as redis_srv:
        s = Settings(kafka_bootstrap=broker.bootstrap, redis_url=redis_srv.url, data_root=tmp / "data", min_history_epochs=history,
                     seismic_area_km2=AREA_KM2, device="cpu", threads=2, metrics_port=0, consumer_group=f"scale-{size}",
                     log_level="INFO", max_message_bytes=16 << 20)
        broker.create_topics(s.topics)
        proc = start_worker(s, log)
        producer = make_producer(broker.bootstrap, s.max_message_bytes)
        store = RedisStateStore(redis_srv.url)
        summaries: dict[str, float] = {}
        reader = read_topics(broker.bootstrap, s.summaries_topic, idle_ms=100, follow=True)

        def drain() -> None:
            for m in reader:
                if m is None:
                    return
                rec = json.loads(m.value)
                if rec["frame"] == frame:
                    summaries.setdefault(rec["epoch"], time.time())

        try:
            events = epoch_events(cube, Path(s.data_root))
            t_hist = time.perf_counter()
            for k, (_, epoch, ev) in zip(range(history), events):
                producer.send(s.epochs_topic, key=frame.encode(), value=encode_event(ev)).get(timeout=60)
            _wait_for("the bootstrap", lambda: store.get_state(frame)[1] is not None, 3600, proc, log)
            t_hist = time.perf_counter() - t_hist
            boot_state = _snapshot(redis_srv.url, frame)
            latencies = []
            for _, epoch, ev in events:
                ev["produced_at"] = utc_now()
                t_send = time.time()
                producer.send(s.epochs_topic, key=frame.encode(), value=encode_event(ev)).get(timeout=60)
                _wait_for(f"the summary of {epoch}", lambda: drain() or epoch in summaries, 600, proc, log)
                latencies.append(summaries[epoch] - t_send)
            peak_kb = _vm_hwm_kb(proc.pid)
        finally:
            stop_process(proc)
            reader.close()
            producer.close(10)
        text = log.read_text()
        boot = re.search(r"bootstrapped on (\d+) epochs .* (\d+) pixels in (\d+) tile\(s\), in ([\d.]+) s", text)
        alerts = [json.loads(m.value)["properties"]["epoch"] for m in read_topics(broker.bootstrap, s.alerts_topic)]
        configure_threads(2)
        floor = _floor(redis_srv.url, frame, cube, torch.device("cpu"), boot_state, list(range(history, n_obs)))
        sizes = _redis_sizes(redis_srv.url)
    io = floor["io_get_s"] + floor["io_set_s"]
    floors = [io + c for c in floor["compute_s"]]
    return {
        "size": size, "grid": f"{n_lat}x{n_lon}", "epochs": n_obs, "history": history, "scored": len(latencies),
        "simulate_s": t_sim, "history_s": t_hist, "bootstrap_s": float(boot.group(4)) if boot else float("nan"),
        "p50_s": _p(latencies, 0.5), "p99_s": _p(latencies, 0.99), "floor_p50_s": _p(floors, 0.5), "floor_p99_s": _p(floors, 0.99),
        "p99_over_floor": _p(latencies, 0.99) / _p(floors, 0.99), "p50_over_floor": _p(latencies, 0.5) / _p(floors, 0.5),
        "latencies_s": latencies, **floor,
        "bytes_per_pixel": floor["state_bytes"] / floor["pixels"], "worker_peak_rss_gb": peak_kb / 2**20, **sizes,
        "alert_epochs": sorted(set(alerts)), "event_epoch": truth.attrs["first_post_event"],
        "alerts_ok": sorted(set(alerts)) == [truth.attrs["first_post_event"]], "all_scored": len(latencies) == n_obs - history,
    }


def _detect_case(size: str, seed: int, n_epochs: int) -> dict:
    n_lat, n_lon = SIZES[size]
    tmp = Path(tempfile.mkdtemp(prefix=f"scale-detect-{size}-"))
    cube = tmp / "menyuan.nc"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ladsdin.cli", "simulate", "--preset", "menyuan", "--track", "A", "--out", str(cube),
                    "--size", f"{n_lat}x{n_lon}", "--spacing-deg", "0.001", "--epochs", str(n_epochs), "--seed", str(seed),
                    "--missing-fraction", "0.05"], check=True, capture_output=True)
    t_sim = time.perf_counter() - t0
    # detect runs as the only child of a fresh wrapper process, so the wrapper's RUSAGE_CHILDREN
    # peak is detect's alone (in this process it would be the larger simulate child's)
    wrapper = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
               "print('PEAK_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(r.returncode)")
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", wrapper, sys.executable, "-m", "ladsdin.cli", "detect", str(cube), "--out", str(tmp / "out"),
                          "--seismic-area-km2", str(AREA_KM2), "--quiet"], capture_output=True, text=True,
                         env=dict(os.environ, LADSDIN_LOG_LEVEL="WARNING"))
    wall = time.perf_counter() - t0
    peak_kb = int(re.search(r"PEAK_KB (\d+)", out.stderr).group(1)) if "PEAK_KB" in out.stderr else 0
    if out.returncode:
        raise RuntimeError(f"detect failed ({out.returncode}):\n{out.stderr[-3000:]}")
    summary = json.loads((tmp / "out" / "summary.json").read_text())
    import xarray as xr

    with xr.open_dataset(tmp / "menyuan.truth.nc") as truth:
        event = str(truth.attrs["first_post_event"])
    return {"size": size, "grid": f"{n_lat}x{n_lon}", "epochs": len(summary["epochs"]), "simulate_s": t_sim, "detect_s": wall,
            "peak_rss_gb": peak_kb / 2**20 if peak_kb else float("nan"), "pixels": summary["n_pixels_modelled"],
            "timings": summary["timings_s"], "alert_epochs": summary["alert_epochs"], "event_epoch": event,
            "alerts_ok": summary["alert_epochs"] == [event]}


def _machine() -> str:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("model name")), "?")
    mem = int(next(ln.split()[1] for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemTotal"))) / 2**20
    return f"{os.cpu_count()} CPUs ({cpu}), {mem:.0f} GiB, Python {platform.python_version()}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1m,3.5m,7.5m")
    ap.add_argument("--detect", default=None, help="run ladsdin detect at this size instead of the stream cases")
    ap.add_argument("--epochs", type=int, default=66, help="calendar slots simulated (~5 %% are missed passes)")
    ap.add_argument("--history", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--case", default=None, help=argparse.SUPPRESS)  # internal: run one case in this process
    args = ap.parse_args()
    if args.case:
        kind, size, seed = args.case.split(":")
        res = _detect_case(size, int(seed), args.epochs) if kind == "detect" else _stream_case(size, int(seed), args.epochs, args.history)
        print("RESULT " + json.dumps(res))
        return 0
    print(f"machine: {_machine()}; date {time.strftime('%Y-%m-%d')}; command: {' '.join(sys.argv)}\n")
    cases = [("detect", args.detect)] if args.detect else [("stream", s) for s in args.sizes.split(",")]
    rows = []
    for kind, size in cases:
        for rep in range(args.repeats):
            cmd = [sys.executable, __file__, "--case", f"{kind}:{size}:{args.seed + rep}", "--epochs", str(args.epochs),
                   "--history", str(args.history)]
            out = subprocess.run(cmd, capture_output=True, text=True)
            line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if line is None:
                print(f"case {kind} {size} failed:\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}")
                return 1
            rows.append(json.loads(line[7:]))
            print(json.dumps(rows[-1]), flush=True)
    print()
    if args.detect:
        print("| frame | epochs | pixels | simulate s | detect s | peak RSS GB | alert epochs | simulated event |")
        print("|---|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['grid']} | {r['epochs']} scored | {r['pixels']:,} | {r['simulate_s']:.0f} | {r['detect_s']:.0f} | {r['peak_rss_gb']:.2f} | "
                  f"{', '.join(r['alert_epochs'])} | {r['event_epoch']} |")
        return 0
    print("| frame | pixels (tiles) | bootstrap s | history publish+buffer s | p50 s | p99 s | floor p50 / p99 s (of which GET+SET) | "
          "p50, p99 / floor | state B/px | worker peak RSS GB | largest Valkey value MB | Valkey peak GB | alerts at the event, all scored |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['grid']} | {r['pixels']:,} ({r['tiles']}) | {r['bootstrap_s']:.0f} | {r['history_s']:.0f} | {r['p50_s']:.2f} | {r['p99_s']:.2f} | "
              f"{r['floor_p50_s']:.2f} / {r['floor_p99_s']:.2f} ({r['io_get_s'] + r['io_set_s']:.2f}) | "
              f"{r['p50_over_floor']:.2f}, {r['p99_over_floor']:.2f} | "
              f"{r['bytes_per_pixel']:.1f} | {r['worker_peak_rss_gb']:.2f} | {r['largest_value_bytes'] / 2**20:.1f} | "
              f"{r['valkey_peak_bytes'] / 2**30:.2f} | {r['alerts_ok'] and r['all_scored']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
