"""Tiled and untiled detection give identical results (issue 10's parity check, at 1 M pixels).

A simulated Menyuan frame (``--size`` pixels a side at 0.001 deg, ``--epochs`` slots) is scored by
``detect_cube`` twice in this process: untiled (one tile as large as the frame) and tiled
(``--tile`` pixels a side). It prints whether the anomaly masks, the seismic masks, D_s, the alert
epochs and the alert polygons are identical, with both runs' times and peak memory.

Usage: python benchmarks/parity_bench.py [--size 1000] [--epochs 80] [--tile 512]
"""
from __future__ import annotations

import argparse
import resource
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=80)
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    import numpy as np
    import torch

    from ladsdin.models.batch import DetectConfig, detect_cube
    from ladsdin.models.devices import configure_threads
    from ladsdin.models.simulation import simulate

    configure_threads()
    cube, truth = simulate("menyuan", "A", n_lat=args.size, n_lon=args.size, spacing_deg=0.001, n_epochs=args.epochs, seed=args.seed)
    runs = {}
    for name, tile in (("untiled", args.size), ("tiled", args.tile)):
        t0 = time.perf_counter()
        runs[name] = detect_cube(cube, DetectConfig(seismic_area_km2=100.0, tile=tile), torch.device("cpu"))
        runs[name].timings["wall"] = time.perf_counter() - t0
    a, b = runs["untiled"], runs["tiled"]
    checks = {
        "anomaly masks": all(np.array_equal(x.anomaly, y.anomaly) for x, y in zip(a.scores, b.scores)),
        "seismic masks": all(np.array_equal(x.seismic, y.seismic) for x, y in zip(a.scores, b.scores)),
        "D_s": all(np.array_equal(x.deformation, y.deformation, equal_nan=True) for x, y in zip(a.scores, b.scores)),
        "C_k and common mode": all(x.n_anomalous == y.n_anomalous and x.common_mode_mm == y.common_mode_mm for x, y in zip(a.scores, b.scores)),
        "alert epochs": a.alert_epochs() == b.alert_epochs(),
        "alert polygons": [f["geometry"] for f in a.features()] == [f["geometry"] for f in b.features()],
        "sigma": np.array_equal(a.model.sigma_map, b.model.sigma_map, equal_nan=True),
    }
    print(f"frame {args.size}x{args.size} ({a.model.n_pixels:,} pixels modelled), {cube.sizes['time']} epochs, "
          f"{len(a.scores)} scored; simulated event {truth.attrs['first_post_event']}; alerts {a.alert_epochs()}")
    print("\n| run | tiles | wall s | fit s | score s/epoch |")
    print("|---|---|---|---|---|")
    for name, r in runs.items():
        print(f"| {name} | {r.model.tiling.n_tiles} | {r.timings['wall']:.1f} | {r.timings['train_and_warmup']:.1f} | {r.timings['score_per_epoch']:.2f} |")
    print(f"\npeak RSS of this process (both runs): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GB\n")
    print("| identical | |")
    print("|---|---|")
    for k, v in checks.items():
        print(f"| {k} | {'yes' if v else 'NO'} |")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
