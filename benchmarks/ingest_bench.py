"""LiCSAR ingest throughput: seconds per new epoch on a full-size frame, inversion included.

A seeded LiCSAR frame directory (``ladsdin.ingest.synthetic``: real file names, dtypes and
nodata, DEFLATE GeoTIFFs) of SIZE x SIZE pixels at 0.001° with 3 interferograms per new epoch is
ingested by ``LicsarIngest`` (one-shot) against the embedded Kafka-wire broker, REPEATS times from
an empty state. Per epoch it times: reading + referencing the 3 pairs, the incremental inversion,
writing the NetCDF object with its quality layers, and the commit (filter checkpoint + ledger +
publish). Only epochs with the full 3 links count (epoch >= 3).

Baselines measured in the same run:
- ``io``: reading the same 3 unw + 3 cc GeoTIFFs alone (the floor any ingest pays);
- ``batch``: re-solving the whole network with ``batch_inversion`` at the last epoch (what a
  design without the incremental filter would pay per epoch; it grows with the history).

    python benchmarks/ingest_bench.py --size 2500 --epochs 8 --repeats 3
"""
from __future__ import annotations

import argparse
import logging
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def _frame(size: int, n_epochs: int, root: Path):
    from ladsdin.models.simulation import simulate
    from ladsdin.ingest.synthetic import SyntheticFrame

    t = time.perf_counter()
    cube, truth = simulate("menyuan", "A", n_lat=size, n_lon=size, n_epochs=n_epochs, seed=0, spacing_deg=0.001,
                           missing_fraction=0.0)
    gen = SyntheticFrame(cube, root / "frames", truth=truth, links=3, looks=20.0, seed=1)
    frame_dir = gen.write()
    print(f"# frame {size} x {size} x {cube.sizes['time']} epochs written in {time.perf_counter() - t:.0f} s: {frame_dir}")
    return cube, gen, frame_dir


def _ingest_once(frame_dir: Path, frame: str, bootstrap: str, root: Path) -> list:
    from ladsdin.ingest.ledger import Ledger
    from ladsdin.ingest.scheduler import IngestOptions, LicsarIngest
    from ladsdin.ingest.publisher import EventPublisher
    from ladsdin.stream.outbox import make_producer
    from ladsdin.stream.settings import Settings

    s = Settings()
    producer = make_producer(bootstrap, s.max_message_bytes)
    try:
        with Ledger(root / "state", frame, frame[3], "licsar") as ledger:
            ingest = LicsarIngest(frame_dir, frame, frame[3], IngestOptions(), ledger,
                                  EventPublisher(producer, s.epochs_topic, ledger), root / "data")
            return ingest.step()
    finally:
        producer.close(30)


def _io_floor(gen, frame_dir: Path) -> list[float]:
    from ladsdin.ingest.frame import read_pair, scan_frame

    entries, _ = scan_frame(frame_dir)
    out = []
    for k in range(3, gen.n_epochs):
        mine = [e for e in entries if e.name in {gen.name(a, b) for a, b in gen.pairs_to(k)}]
        t = time.perf_counter()
        for e in mine:
            read_pair(e, gen.grid, 0.15)
        out.append(time.perf_counter() - t)
    return out


def _batch_last(gen, frame_dir: Path) -> float:
    from ladsdin.models.inversion import batch_inversion
    from ladsdin.ingest.frame import load_interferogram, scan_frame
    from ladsdin.ingest.reference import RefWindow

    entries, _ = scan_frame(frame_dir)
    dates = sorted({e.d1 for e in entries} | {e.d2 for e in entries})
    ref = RefWindow(0, 10, 0, 10)
    loaded = [load_interferogram(e, gen.grid, ref, min_coherence=0.15, looks=20.0) for e in entries]
    pairs = np.array([[dates.index(e.d1), dates.index(e.d2)] for e in entries])
    t = time.perf_counter()
    batch_inversion(pairs, np.array([m for m, _, _ in loaded]), np.array([w for _, w, _ in loaded]), len(dates))
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=2500, help="frame side, pixels (LiCSAR: ~2500 at 0.001°)")
    ap.add_argument("--epochs", type=int, default=8, help="calendar slots simulated (>= 5)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from ladsdin.stream.embedded import EmbeddedBroker
    from ladsdin.stream.settings import Settings

    with tempfile.TemporaryDirectory(prefix="ingest-bench-") as tmp, EmbeddedBroker() as broker:
        root = Path(tmp)
        broker.create_topics(Settings().topics)
        cube, gen, frame_dir = _frame(args.size, args.epochs, root)
        frame = str(cube.attrs["frame"])
        per_epoch, mean_epoch, max_epoch = [], [], []
        stages, io, batch = {"read": [], "invert": [], "write": [], "publish": []}, [], []
        for r in range(args.repeats):
            reports = _ingest_once(frame_dir, frame, broker.bootstrap, root / f"run{r}")
            full = [rep for rep in reports if len(rep.interferograms) == 3]
            totals = [sum(rep.seconds.values()) for rep in full]
            per_epoch.append(statistics.median(totals))
            mean_epoch.append(statistics.mean(totals))  # checkpoint epochs included: the amortised cost
            max_epoch.append(max(totals))
            for name in stages:
                stages[name].append(statistics.median(rep.seconds[name] for rep in full))
            io.append(statistics.median(_io_floor(gen, frame_dir)))
            batch.append(_batch_last(gen, frame_dir))
        med = statistics.median
        print(f"# {platform.node()} {platform.machine()}, {args.repeats} runs, medians over epochs with 3 links "
              f"({len(full)} per run), then over runs")
        print("| measure | seconds per epoch | x io floor |")
        print("|---|---|---|")
        print(f"| ingest total, median epoch (read + invert + write + commit/publish) | {med(per_epoch):.2f} | {med(per_epoch) / med(io):.2f} |")
        print(f"| ingest total, mean (checkpoint epochs amortised) | {med(mean_epoch):.2f} | {med(mean_epoch) / med(io):.2f} |")
        print(f"| ingest total, slowest epoch (writes the checkpoint) | {med(max_epoch):.2f} | {med(max_epoch) / med(io):.2f} |")
        for name, vals in stages.items():
            label = "commit + publish (median: no checkpoint)" if name == "publish" else name
            print(f"| - {label} | {med(vals):.2f} | |")
        print(f"| baseline io: read 3 unw + 3 cc GeoTIFFs | {med(io):.2f} | 1.00 |")
        print(f"| baseline batch: re-invert all {gen.n_epochs} epochs' network once | {med(batch):.2f} | {med(batch) / med(io):.2f} |")
        print(f"# runs: total {[round(v, 2) for v in per_epoch]}")


if __name__ == "__main__":
    main()
