"""``ladsdin demo``: the whole product on one machine, with embedded broker and Redis by default.

Simulates a Menyuan-like frame, starts a worker, publishes every epoch, prints each alert as it
arrives on ``ladsdin.alerts.v1``, writes the alerts as GeoJSON and a map PNG, and stops
everything it started. With LADSDIN_KAFKA_BOOTSTRAP and LADSDIN_REDIS_URL set, it uses those.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="simulate a Menyuan-like frame and stream it through the detector (embedded services)")
    p.add_argument("--out", default="demo", help="output directory")
    p.add_argument("--size", default="200x200", help="frame size NLATxNLON")
    p.add_argument("--epochs", type=int, default=120, help="calendar slots to simulate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seismic-area-km2", type=float, default=100.0, help="A_s for the simulated frame")
    p.add_argument("--timeout-s", type=float, default=480.0, help="give up after this long")


def run(args: argparse.Namespace) -> int:
    from ladsdin.models.simulation import simulate
    from ladsdin.ingest.cube import publish_cube
    from ladsdin.plots.maps import alerts_map
    from ladsdin.stream.embedded import services
    from ladsdin.stream.supervise import start_worker, stop_process
    from ladsdin.stream.topics import create_topics

    settings = args.settings
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    n_lat, n_lon = (int(v) for v in args.size.lower().split("x"))
    cube, truth = simulate("menyuan", "A", n_lat=n_lat, n_lon=n_lon, n_epochs=args.epochs, seed=args.seed)
    n_obs = cube.sizes["time"]
    history = int(round(0.85 * n_obs))
    print(f"simulated {cube.attrs['frame']}: {n_lat}x{n_lon} px, {n_obs} epochs; the earthquake shows from {truth.attrs['first_post_event']}")
    with services(settings) as (bootstrap, redis_url):
        create_topics(bootstrap, settings.topics)
        worker_settings = settings.model_copy(update={
            "kafka_bootstrap": bootstrap, "redis_url": redis_url, "min_history_epochs": history,
            "log_level": args.log_level or os.environ.get("LADSDIN_LOG_LEVEL", "WARNING"),
            "seismic_area_km2": args.seismic_area_km2, "data_root": (out / "data").resolve()})
        worker = start_worker(worker_settings)
        try:
            n = publish_cube(cube, worker_settings, bootstrap)
            print(f"published {n} epochs; the worker buffers {history}, bootstraps, then scores {n - history}")
            alerts = _wait_for_alerts(bootstrap, settings, n - history, args.timeout_s, worker)
        finally:
            stop_process(worker)
    (out / "alerts.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": alerts}, indent=1) + "\n")
    alerts_map(cube, alerts, out / "alerts_map.png")
    print(f"{len(alerts)} alert(s); wrote {out / 'alerts.geojson'} and {out / 'alerts_map.png'}")
    return 0 if alerts else 1


def _wait_for_alerts(bootstrap: str, settings, n_scored: int, timeout_s: float, worker: subprocess.Popen) -> list[dict]:
    """Print alerts as they arrive until every scored epoch has a summary (or the timeout)."""
    from ladsdin.stream.topics import read_topics

    alerts: dict[str, dict] = {}
    summaries: set[str] = set()
    deadline = time.monotonic() + timeout_s
    records = read_topics(bootstrap, [settings.alerts_topic, settings.summaries_topic], idle_ms=1000, follow=True)
    try:
        for msg in records:
            if len(summaries) >= n_scored or time.monotonic() > deadline:
                break
            if msg is None:  # a quiet second
                if worker.poll() is not None:
                    raise RuntimeError(f"the worker exited with code {worker.returncode}")
                continue
            rec = json.loads(msg.value)
            if msg.topic == settings.summaries_topic:
                summaries.add(rec["epoch"])
            elif rec["properties"]["id"] not in alerts:
                p = rec["properties"]
                alerts[p["id"]] = rec
                print(f"ALERT {p['id']}: {p['n_pixels']} px, {p['area_km2']:.1f} km², D_s {p['los_min_mm']:.0f}..{p['los_max_mm']:.0f} mm LOS (+towards satellite)", flush=True)
    finally:
        records.close()
    if len(summaries) < n_scored:
        raise RuntimeError(f"only {len(summaries)} of {n_scored} epochs were scored within {timeout_s:.0f} s")
    return list(alerts.values())
