"""Streaming worker: publish->summary latency, replay throughput and Redis state I/O.

Every case runs in a fresh subprocess that starts its own embedded broker (tansu) and Valkey,
then the worker as a separate process (``python -m ladsdin.cli worker``, LADSDIN_* env,
as in production and in tests/stream/test_stream_e2e.py). Every process it starts is stopped
at the end, also on error.

Cases:
  lat100k  316 x 316 pixels at 0.001 deg (~100k), 80 epochs, 60 history: bootstrap, then the
           remaining epochs one at a time, each sent after the previous epoch's summary arrived.
  lat1m    1000 x 1000 pixels at 0.001 deg (1M), same procedure.
  replay   163 x 40 pixels (6,520) at 0.002 deg, 160 epochs, 60 history: bootstrap, then the
           remaining 100 epochs sent as fast as the producer can.
  replay_long  the replay frame with 460 epochs (400 scored): the metrics-overhead comparison.

Metrics overhead (``--metrics-overhead``, issue 5): replay_long with the worker's metrics off
(LADSDIN_METRICS_ENABLED=false, LADSDIN_METRICS_PORT=0: no-op instruments, no endpoint, no
health monitor) and on (instruments, /metrics served and scraped here every second, as
Prometheus would, plus the 15 s health monitor), in pairs on the same seed within one run, the
order alternating between pairs. It prints median epochs/s on and off and their ratio.

Latency is wall clock in the benchmark process: from the producer's send of a scored epoch's
event to the arrival of that epoch's record on ladsdin.epoch-summaries.v1 (a consumer thread,
manual assignment, from offset 0). ``latency_s`` is the summary's own field (the event's
produced_at, stamped just before the send, to the summary's creation in the worker).

After the stream part, each case times the Redis state I/O against the same Valkey: the
frame's state (every tile of its committed version), read through RedisStateStore and written
as a new version and committed, and plain SET/GET of the same tiles as the raw baseline.

Usage: python benchmarks/stream_bench.py [--cases lat100k,lat1m,replay] [--repeats 3] [--repeats-1m 1]
       python benchmarks/stream_bench.py --metrics-overhead [--repeats 3]
Prints one Markdown table per figure (medians over repeats); see docs/BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from overhead_lib import Scraper, cpu_seconds, overhead_table  # benchmarks/ is on sys.path when run as a script

CASES = {
    # name: (n_lat, n_lon, spacing_deg, n_epochs, history, A_s km2, missing_fraction)
    "lat100k": (316, 316, 0.001, 80, 60, 40.0, 0.08),
    "lat1m": (1000, 1000, 0.001, 80, 60, 100.0, 0.08),
    "replay": (163, 40, 0.002, 160, 60, 20.0, 0.0),
    "replay_long": (163, 40, 0.002, 460, 60, 20.0, 0.0),
}
IO_REPEATS = 5


# -- helpers of the case subprocess -------------------------------------------------------------
class SummaryWatcher(threading.Thread):
    """Consumes the summaries topic from offset 0; records (wall-clock arrival, record) per epoch."""

    def __init__(self, bootstrap: str, topic: str, frame: str) -> None:
        super().__init__(daemon=True)
        from kafka import KafkaConsumer, TopicPartition

        self.frame = frame
        self.got: dict[str, tuple[float, dict]] = {}
        self.cond = threading.Condition()
        self._halt = threading.Event()
        self.c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=5)
        tp = TopicPartition(topic, 0)
        self.c.assign([tp])
        self.c.seek(tp, 0)

    def run(self) -> None:
        while not self._halt.is_set():
            batches = self.c.poll(timeout_ms=20)
            now = time.time()
            for recs in batches.values():
                for m in recs:
                    r = json.loads(m.value)
                    if r.get("frame") == self.frame:
                        with self.cond:
                            self.got.setdefault(r["epoch"], (now, r))
                            self.cond.notify_all()
        self.c.close()

    def wait_for(self, epochs, timeout: float, proc: subprocess.Popen, log: Path) -> None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not all(e in self.got for e in epochs):
                if proc.poll() is not None:
                    raise RuntimeError(f"worker exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
                if time.monotonic() > deadline:
                    missing = [e for e in epochs if e not in self.got]
                    raise RuntimeError(f"{len(missing)} summaries missing after {timeout:.0f} s:\n{log.read_text()[-3000:]}")
                self.cond.wait(0.5)

    def stop(self) -> None:
        self._halt.set()
        self.join(10)


def _redis_io(redis_url: str, frame: str) -> dict:
    """The frame's state (every tile of its committed version): reading it through the store, and
    writing it as a new version and committing it, against plain GET/SET of the same bytes."""
    import numpy as np
    import redis

    from ladsdin.state.frame_model import decode_state_manifest
    from ladsdin.state.redis_store import RedisStateStore

    store = RedisStateStore(redis_url)
    r = redis.Redis.from_url(redis_url)
    manifest, _ = store.get_state(frame)
    m = decode_state_manifest(manifest)
    n = m["tiles"]
    t_get, t_commit, t_set, t_rget = [], [], [], []
    bench_frame = "999A_00000_000000"
    cursor = None
    for i in range(IO_REPEATS):
        t0 = time.perf_counter()
        blob, _ = store.get_state(frame)
        tiles = [store.get_state_tile(frame, m["version"], k) for k in range(n)]
        t_get.append(time.perf_counter() - t0)
        epoch = str(np.datetime64("2000-01-01") + np.timedelta64(12 * i, "D"))
        t0 = time.perf_counter()
        v = store.begin_state(bench_frame, n)
        for k, t in enumerate(tiles):
            store.put_state_tile(bench_frame, v, k, t)
        ok = store.commit_epoch(bench_frame, epoch=epoch, expected_cursor=cursor, state=blob, outbox=[], applied={"bench": True}, tiles=v)
        t_commit.append(time.perf_counter() - t0)
        assert ok
        cursor = epoch
    for _ in range(IO_REPEATS):
        t0 = time.perf_counter()
        for k, t in enumerate(tiles):
            r.set(f"bench:raw:{k}", t)
        t_set.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        back = [r.get(f"bench:raw:{k}") for k in range(n)]
        t_rget.append(time.perf_counter() - t0)
        assert sum(map(len, back)) == sum(map(len, tiles))
    store.delete_frame(bench_frame)
    r.delete(*[f"bench:raw:{k}" for k in range(n)])
    med = statistics.median
    return {"state_bytes": sum(map(len, tiles)), "get_state_s": med(t_get), "commit_s": med(t_commit), "raw_get_s": med(t_rget),
            "raw_set_s": med(t_set)}


def _case(case: str, seed: int, pidfile: Path, metrics: str = "default") -> dict:
    import numpy as np
    import torch

    from ladsdin.models.simulation import simulate
    from ladsdin.state.redis_store import RedisStateStore
    from ladsdin.stream.embedded import EmbeddedBroker, EmbeddedRedis
    from ladsdin.stream.contracts import utc_now as _utc_now
    from ladsdin.stream.events import encode_event
    from ladsdin.stream.outbox import make_producer
    from ladsdin.ingest.cube import epoch_events
    from ladsdin.stream.settings import Settings
    from ladsdin.stream.supervise import start_worker, stop_process

    n_lat, n_lon, spacing, n_epochs, history, area, missing = CASES[case]
    t0 = time.perf_counter()
    cube, _ = simulate("menyuan", "A", n_lat=n_lat, n_lon=n_lon, spacing_deg=spacing, n_epochs=n_epochs, seed=seed, missing_fraction=missing)
    t_sim = time.perf_counter() - t0
    frame = str(cube.attrs["frame"])
    tmp = Path(tempfile.mkdtemp(prefix=f"stream-bench-{case}-"))
    pids: dict[str, int] = {}
    proc = None
    watcher = None
    try:
        with EmbeddedBroker() as broker, EmbeddedRedis() as redis_srv:
            pids.update(broker=broker.pid, valkey=redis_srv.pid)
            pidfile.write_text(json.dumps(pids))
            bootstrap, redis_url = broker.bootstrap, redis_srv.url
            from ladsdin.stream.embedded import free_port

            # metrics: "off" = no-op instruments and no endpoint; "on"/"default" = the product default
            # (instruments, endpoint, health monitor) on a free port; "on" also scrapes it every second
            obs = {"metrics_enabled": False, "metrics_port": 0} if metrics == "off" else {"metrics_enabled": True, "metrics_port": free_port()}
            s = Settings(kafka_bootstrap=bootstrap, redis_url=redis_url, data_root=tmp / "data", min_history_epochs=history,
                         seismic_area_km2=area, consumer_group=f"bench-{case}", device="cpu", **obs)
            broker.create_topics(s.topics)
            # every epoch's data object is written before anything is timed
            t0 = time.perf_counter()
            events = list(epoch_events(cube, Path(s.data_root)))
            t_write = time.perf_counter() - t0
            epochs = [e for _, e, _ in events]
            hist, scored = events[:history], events[history:]
            log = tmp / "worker.log"
            proc = start_worker(s, log)
            pids["worker"] = proc.pid
            pidfile.write_text(json.dumps(pids))
            scraper = Scraper(s.metrics_port) if metrics == "on" else None
            if scraper is not None:
                scraper.start()
            watcher = SummaryWatcher(bootstrap, s.summaries_topic, frame)
            watcher.start()
            producer = make_producer(bootstrap, s.max_message_bytes)

            def send(ev: dict) -> float:
                ev["produced_at"] = _utc_now()
                raw = encode_event(ev)
                t = time.time()
                producer.send(s.epochs_topic, key=frame.encode(), value=raw)
                return t

            t_boot0 = time.time()
            for _, _, ev in hist:
                send(ev)
            producer.flush(30)
            # bootstrap done = the cursor exists (read the small cursor key alone, not the state blob)
            r = RedisStateStore(redis_url)
            deadline = time.monotonic() + 600
            while r._r.get(r.key(frame, "cursor")) is None:
                if proc.poll() is not None:
                    raise RuntimeError(f"worker exited ({proc.returncode}) during bootstrap:\n{log.read_text()[-3000:]}")
                if time.monotonic() > deadline:
                    raise RuntimeError("bootstrap did not finish in 600 s")
                time.sleep(0.2)
            t_boot = time.time() - t_boot0
            cpu0 = cpu_seconds(proc.pid)
            sent: dict[str, float] = {}
            if case.startswith("replay"):
                for _, ep, ev in scored:
                    sent[ep] = send(ev)
                producer.flush(30)
                watcher.wait_for([e for _, e, _ in scored], 600, proc, log)
            else:
                for _, ep, ev in scored:
                    sent[ep] = send(ev)
                    producer.flush(30)
                    watcher.wait_for([ep], 300, proc, log)
            worker_cpu = cpu_seconds(proc.pid) - cpu0  # every thread of the worker: scoring, scrapes, monitor
            producer.close(10)
            arr = {ep: watcher.got[ep][0] for ep in sent}
            recs = [watcher.got[ep][1] for ep in sent]
            lat = np.array([arr[ep] - sent[ep] for ep in sent])
            proc_s = {m.group(1): float(m.group(2)) for m in
                      re.finditer(r"scored frame \S+ epoch (\S+) in ([\d.]+) s", log.read_text())}
            scraped = {}
            if scraper is not None:
                time.sleep(1.5)  # one more scrape after the last epoch
                scraper.stop()
                scored_metric = [float(ln.split()[-1]) for ln in scraper.last.splitlines() if ln.startswith("ladsdin_epochs_scored_total{")]
                scraped = {"scrapes": scraper.n, "metrics_scored": sum(scored_metric)}
            stop_process(proc)
            watcher.stop()
            watcher = None
            out = {
                "case": case, "seed": seed, "pixels": n_lat * n_lon, "epochs": len(epochs), "history": history,
                "n_scored": len(sent), "simulate_s": t_sim, "write_objects_s": t_write, "bootstrap_s": t_boot,
                "lat_p50_s": float(np.percentile(lat, 50)), "lat_p99_s": float(np.percentile(lat, 99)),
                "lat_max_s": float(lat.max()), "lat_first_s": float(lat[0]),
                "field_latency_p50_s": float(np.percentile([x["latency_s"] for x in recs], 50)),
                "field_latency_p99_s": float(np.percentile([x["latency_s"] for x in recs], 99)),
                "process_p50_s": float(np.median([proc_s[e] for e in sent if e in proc_s])) if proc_s else float("nan"),
                "n_alert_epochs": sum(1 for x in recs if x["n_seismic_objects"]),
                "replay_eps": len(sent) / (max(arr.values()) - min(sent.values())),
                "worker_cpu_ms_per_epoch": 1000.0 * worker_cpu / len(sent),
                "threads": torch.get_num_threads(),
                "metrics": metrics, **scraped,
            }
            print(json.dumps(out), file=sys.stderr, flush=True)  # the stream figures, before the I/O part
            if metrics == "default":
                out.update(_redis_io(redis_url, frame))
    finally:
        if watcher is not None:
            watcher.stop()
        if proc is not None:
            stop_process(proc)
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)
    return out


def _cleanup(pidfile: Path) -> None:
    """Kill whatever a failed case left running (its broker and worker lead their own groups)."""
    try:
        pids = json.loads(pidfile.read_text())
    except (OSError, ValueError):
        return
    for name, pid in pids.items():
        try:
            os.killpg(pid, signal.SIGKILL) if name != "valkey" else os.kill(pid, signal.SIGKILL)
            print(f"  killed leftover {name} pid {pid}", file=sys.stderr)
        except (ProcessLookupError, PermissionError):
            pass


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default="lat100k,lat1m,replay")
    ap.add_argument("--repeats", type=int, default=3, help="repeats of the small cases (lat100k, replay)")
    ap.add_argument("--repeats-1m", type=int, default=1, help="repeats of lat1m")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per case subprocess")
    ap.add_argument("--metrics-overhead", action="store_true", help="replay_long with metrics off and on, in pairs (issue 5)")
    ap.add_argument("--case", nargs=4, metavar=("CASE", "SEED", "PIDFILE", "METRICS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.case:
        case, seed, pidfile, metrics = args.case
        print(json.dumps(_case(case, int(seed), Path(pidfile), metrics)))
        return 0
    runs, failures = [], []

    def run_case(case: str, r: int, metrics: str = "default") -> None:
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
            pidfile = Path(f.name)
        t0 = time.perf_counter()
        try:
            out = subprocess.run([sys.executable, __file__, "--case", case, str(r), str(pidfile), metrics], capture_output=True,
                                 text=True, timeout=args.timeout)
            rc, err, stdout = out.returncode, out.stderr, out.stdout
        except subprocess.TimeoutExpired as exc:
            rc, err, stdout = -1, f"timed out after {args.timeout:.0f} s\n{exc.stderr or ''}", ""
        finally:
            _cleanup(pidfile)
            pidfile.unlink(missing_ok=True)
        if rc:
            failures.append((case, r, err[-3000:] if isinstance(err, str) else str(err)))
            print(f"  {case} seed {r} metrics {metrics}: FAILED after {time.perf_counter() - t0:.0f} s", file=sys.stderr)
            sys.stderr.write(failures[-1][2] + "\n")
            return
        runs.append(json.loads(stdout.strip().splitlines()[-1]))
        print(f"  {case} seed {r} metrics {metrics}: {time.perf_counter() - t0:.0f} s {json.dumps(runs[-1])}", file=sys.stderr)

    if args.metrics_overhead:
        for r in range(args.repeats):
            for metrics in (("off", "on") if r % 2 == 0 else ("on", "off")):  # alternate the order: drift cancels
                run_case("replay_long", r, metrics)
        return overhead_table(runs, failures)
    for case in args.cases.split(","):
        for r in range(args.repeats_1m if case == "lat1m" else args.repeats):
            run_case(case, r)

    import torch

    cmd = "python benchmarks/stream_bench.py " + " ".join(sys.argv[1:])
    threads = runs[0]["threads"] if runs else "?"
    print(f"# stream_bench — {time.strftime('%Y-%m-%d')}, {platform.node()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"device cpu, {threads} worker threads; command: `{cmd}`")
    groups: dict[str, list[dict]] = {}
    for run in runs:
        groups.setdefault(run["case"], []).append(run)
    med = lambda rs, k: statistics.median(r[k] for r in rs)  # noqa: E731

    print("\n## 1. publish -> summary latency (epochs sent one at a time)\n")
    print("| frame | pixels | runs | scored epochs | bootstrap s | latency p50 s | latency p99 s | max s | first s | summary latency_s p50 / p99 | worker process() p50 s | alert epochs |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for case in ("lat100k", "lat1m"):
        rs = groups.get(case)
        if rs:
            print(f"| {case} | {rs[0]['pixels']:,} | {len(rs)} | {rs[0]['n_scored']} | {med(rs, 'bootstrap_s'):.1f} | {med(rs, 'lat_p50_s'):.2f} | "
                  f"{med(rs, 'lat_p99_s'):.2f} | {med(rs, 'lat_max_s'):.2f} | {med(rs, 'lat_first_s'):.2f} | "
                  f"{med(rs, 'field_latency_p50_s'):.2f} / {med(rs, 'field_latency_p99_s'):.2f} | {med(rs, 'process_p50_s'):.2f} | "
                  f"{sorted({r['n_alert_epochs'] for r in rs})} |")

    print("\n## 2. replay throughput (epochs sent back to back after bootstrap)\n")
    print("| frame | pixels | runs | scored epochs | bootstrap s | epochs/s | worker process() p50 s |")
    print("|---|---|---|---|---|---|---|")
    for rs in [groups["replay"]] if "replay" in groups else []:
        print(f"| replay | {rs[0]['pixels']:,} | {len(rs)} | {rs[0]['n_scored']} | {med(rs, 'bootstrap_s'):.1f} | "
              f"{med(rs, 'replay_eps'):.1f} | {med(rs, 'process_p50_s'):.3f} |")

    print(f"\n## 3. Redis state per epoch (medians of {IO_REPEATS} calls per run, same Valkey)\n")
    print("| frame | pixels | state MB | get_state s | commit_epoch s | raw GET s | raw SET s | get_state MB/s | commit MB/s | raw GET / SET MB/s | get_state / raw GET | commit / raw SET |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for case, rs in groups.items():
        mb = med(rs, "state_bytes") / 1e6
        g, c, rg, rs_ = med(rs, "get_state_s"), med(rs, "commit_s"), med(rs, "raw_get_s"), med(rs, "raw_set_s")
        print(f"| {case} | {rs[0]['pixels']:,} | {mb:.2f} | {g:.4f} | {c:.4f} | {rg:.4f} | {rs_:.4f} | {mb / g:.0f} | {mb / c:.0f} | "
              f"{mb / rg:.0f} / {mb / rs_:.0f} | {g / rg:.2f}x | {c / rs_:.2f}x |")
    print("\n(bandwidth = state MB / time; ratios > 1 mean slower than the raw command)")
    if failures:
        print("\n## failures\n")
        for case, r, err in failures:
            print(f"- {case} seed {r}: {err.strip().splitlines()[-1] if err.strip() else 'no stderr'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
