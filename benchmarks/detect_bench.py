"""Wall time and peak memory of ``detect`` at the paper's scale and at full resolution.

Cases (each repeat runs in a fresh subprocess, so peak RSS is that run's own):
  paper   6,520 pixels x 152 epochs (the paper's Menyuan size after 30x downsampling): training
          plus detection, shared model; and the per-pixel (paper-faithful) model in the same
          run as the baseline.
  full    1,000 x 1,000 pixels x 150 epochs: bootstrap (training + warm-up of every pixel's
          state) and the time to score one new epoch.

Usage: python benchmarks/detect_bench.py [--cases paper,full] [--repeats 3]
Prints a Markdown table of medians; see docs/BENCHMARKS.md for recorded results.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time


def _worker(case: str, kind: str, seed: int) -> dict:
    import numpy as np
    import torch

    from ladsdin.models.batch import DetectConfig, detect_cube
    from ladsdin.models.devices import configure_threads, resolve_device
    from ladsdin.models.simulation import simulate
    from ladsdin.models.training import TrainConfig

    threads = configure_threads()
    device = resolve_device(os.environ.get("LADSDIN_DEVICE", "auto"))
    if case == "paper":
        # 183 x 40 pixels: ~6,600 of them coherent, i.e. >= the paper's 6,520 modelled pixels
        cube, _ = simulate("menyuan", "A", n_lat=183, n_lon=40, n_epochs=152, missing_fraction=0.0, seed=seed)
        area = 20.0
    else:
        cube, _ = simulate("menyuan", "A", n_lat=1000, n_lon=1000, spacing_deg=0.001, n_epochs=150, seed=seed)
        area = 100.0
    train = TrainConfig(kind=kind, seed=seed) if kind == "shared" else TrainConfig(kind=kind, seed=seed, max_passes=150, patience=10, lr=1e-2)
    t0 = time.perf_counter()
    res = detect_cube(cube, DetectConfig(seismic_area_km2=area, train=train), device)
    total = time.perf_counter() - t0
    per_epoch = [s.seconds for s in res.scores]
    rep = res.forecaster.report
    return {
        "case": case,
        "kind": kind,
        "pixels": int(res.grid.index.size),
        "epochs": int(cube.sizes["time"]),
        "total_s": total,
        "bootstrap_s": res.timings["prepare"] + res.timings["train_and_warmup"],
        "score_epoch_median_s": float(np.median(per_epoch)),
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
        "passes": rep["passes"],
        "rms_lstm_mm": rep["val_rms_lstm_mm"],
        "rms_baseline_mm": rep["val_rms_baseline_mm"],
        "alerts": res.alert_epochs(),
        "threads": threads,
        "device": str(device),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default="paper,full")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--worker", nargs=3, metavar=("CASE", "KIND", "SEED"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        case, kind, seed = args.worker
        print(json.dumps(_worker(case, kind, int(seed))))
        return 0
    runs = []
    plan = []
    for case in args.cases.split(","):
        plan += [(case, "shared", r) for r in range(args.repeats)]
        if case == "paper":  # the per-pixel baseline takes minutes: one run, same session
            plan.append((case, "per-pixel", 0))
    for case, kind, r in plan:
        out = subprocess.run([sys.executable, __file__, "--worker", case, kind, str(r)], capture_output=True, text=True)
        if out.returncode:
            sys.stderr.write(out.stderr)
            return out.returncode
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"  {case}/{kind} seed {r}: {runs[-1]['total_s']:.1f} s", file=sys.stderr)

    import torch

    print(f"# detect_bench — {time.strftime('%Y-%m-%d')}, {platform.node()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__}, device {runs[0]['device']}, {runs[0]['threads']} threads, repeats {args.repeats}")
    print()
    print("| case | model | pixels x epochs | total s | bootstrap s | score 1 epoch s | peak RSS GB | one-step RMS LSTM / baseline mm | alerts |")
    print("|---|---|---|---|---|---|---|---|---|")
    groups: dict[tuple[str, str], list[dict]] = {}
    for run in runs:
        groups.setdefault((run["case"], run["kind"]), []).append(run)
    med = lambda rs, k: statistics.median(r[k] for r in rs)  # noqa: E731
    for (case, kind), rs in groups.items():
        print(
            f"| {case} | {kind} | {rs[0]['pixels']:,} x {rs[0]['epochs']} | {med(rs, 'total_s'):.1f} | {med(rs, 'bootstrap_s'):.1f} | "
            f"{med(rs, 'score_epoch_median_s'):.3f} | {med(rs, 'peak_rss_gb'):.2f} | {med(rs, 'rms_lstm_mm'):.2f} / {med(rs, 'rms_baseline_mm'):.2f} | "
            f"{sorted({len(r['alerts']) for r in rs})} |"
        )
    if ("paper", "shared") in groups and ("paper", "per-pixel") in groups:
        ratio = med(groups[("paper", "per-pixel")], "total_s") / med(groups[("paper", "shared")], "total_s")
        print(f"\nper-pixel (paper) / shared wall time at the paper's scale, same run: {ratio:.1f}x")
    print("(medians; 'alerts' lists the distinct numbers of alert epochs over the repeats)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
