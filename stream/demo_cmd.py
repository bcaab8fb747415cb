"""``ladsdin demo``: the whole product on one machine, with embedded broker and Redis by default.

Simulates a Menyuan-like frame, starts a worker, publishes every epoch, prints each alert as it
arrives on ``ladsdin.alerts.v1``, writes the alerts as GeoJSON and a map PNG, and stops
everything it started. With LADSDIN_KAFKA_BOOTSTRAP and LADSDIN_REDIS_URL set, it uses those.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
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
    from ..models.simulation import simulate
    from .embedded import create_topics, services
    from .publish_cmd import publish_cube

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
        env = dict(os.environ, LADSDIN_KAFKA_BOOTSTRAP=bootstrap, LADSDIN_REDIS_URL=redis_url, LADSDIN_MIN_HISTORY_EPOCHS=str(history),
                   LADSDIN_LOG_LEVEL=args.log_level or os.environ.get("LADSDIN_LOG_LEVEL", "WARNING"),
                   LADSDIN_SEISMIC_AREA_KM2=str(args.seismic_area_km2), LADSDIN_DATA_ROOT=str((out / "data").resolve()))
        worker = subprocess.Popen([sys.executable, "-m", "ladsdin.stream.cli", "worker"], env=env, start_new_session=True)
        try:
            pub_settings = settings.model_copy(update={"data_root": (out / "data").resolve(), "kafka_bootstrap": bootstrap})
            n = publish_cube(cube, pub_settings, bootstrap)
            print(f"published {n} epochs; the worker buffers {history}, bootstraps, then scores {n - history}")
            alerts = _wait_for_alerts(bootstrap, settings, n - history, args.timeout_s, worker)
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()
    (out / "alerts.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": alerts}, indent=1) + "\n")
    _map(cube, alerts, out / "alerts_map.png")
    print(f"{len(alerts)} alert(s); wrote {out / 'alerts.geojson'} and {out / 'alerts_map.png'}")
    return 0 if alerts else 1


def _wait_for_alerts(bootstrap: str, settings, n_scored: int, timeout_s: float, worker: subprocess.Popen) -> list[dict]:
    """Print alerts as they arrive until every scored epoch has a summary (or the timeout)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=1000)
    tps = [TopicPartition(settings.alerts_topic, 0), TopicPartition(settings.summaries_topic, 0)]
    consumer.assign(tps)
    for tp in tps:
        consumer.seek(tp, 0)
    alerts: dict[str, dict] = {}
    summaries: set[str] = set()
    deadline = time.monotonic() + timeout_s
    try:
        while len(summaries) < n_scored and time.monotonic() < deadline:
            if worker.poll() is not None:
                raise RuntimeError(f"the worker exited with code {worker.returncode}")
            for msg in consumer:
                rec = json.loads(msg.value)
                if msg.topic == settings.summaries_topic:
                    summaries.add(rec["epoch"])
                elif rec["properties"]["id"] not in alerts:
                    p = rec["properties"]
                    alerts[p["id"]] = rec
                    print(f"ALERT {p['id']}: {p['n_pixels']} px, {p['area_km2']:.1f} km², D_s {p['los_min_mm']:.0f}..{p['los_max_mm']:.0f} mm LOS (+towards satellite)", flush=True)
    finally:
        consumer.close()
    if len(summaries) < n_scored:
        raise RuntimeError(f"only {len(summaries)} of {n_scored} epochs were scored within {timeout_s:.0f} s")
    return list(alerts.values())


def _map(cube, alerts: list[dict], path: Path) -> None:
    """The last epoch's displacement with the alert outlines (lon/lat, north up)."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 6))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    d = cube["displacement"].values[-1]
    lat, lon = cube["lat"].values, cube["lon"].values
    lim = float(np.nanpercentile(np.abs(d), 99)) or 1.0
    im = ax.imshow(d, extent=(lon.min(), lon.max(), lat.min(), lat.max()), origin="upper" if lat[0] > lat[-1] else "lower", cmap="RdBu_r", vmin=-lim, vmax=lim)
    for f in alerts:
        ring = np.array(f["geometry"]["coordinates"][0])
        ax.plot(ring[:, 0], ring[:, 1], "k-", lw=1)
    ax.set_xlabel("longitude, °E")
    ax.set_ylabel("latitude, °N")
    ax.set_title(f"{cube.attrs['frame']}: last epoch and {len(alerts)} alert outline(s)")
    fig.colorbar(im, ax=ax, label="LOS displacement, mm (+ towards satellite)")
    fig.savefig(path, dpi=110)
