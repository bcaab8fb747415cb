"""Does the spatio-temporal denoiser front end (models/denoise.py, after Rouet-Leduc et al. 2021)
lower the detection floor? The same detectors with and without it, in the same run.

Cases, as in detection_bench.py, at the low-floor settings (N_m 4, A_s 3 km², null floor at
0.1 false alerts per frame-year):
  delingha  Delingha-like Mw 5.6 (±30 mm), 240x240 pixels of 250 m, 150 epochs: a real alert
            at the first post-event epoch (an object with >= half its pixels on |true
            increment| >= 10 mm)? false alerts (any other alerted epoch) in the scored period.
  null      null frames with hard nuisance and 6-acquisition gaps, 200 epochs: false alerts per
            frame-year.

For each detector (learned, classical) the front end sees the detector's own z maps (the score's
residual over its sigma and gap factor, after the common mode). It trains on the first 60 % of
the frame's usable training slots, its output spread and null floor come from the last 40 %
(never trained on), at three operating points (the |output| exceeded by the held-out null on
0.3 %, 0.1 % and 0.03 % of its pixels), and it is then run on the scored epochs. The "none"
rows are the same detector's own alerts from the same run.

Usage: python benchmarks/denoise_bench.py [--cases delingha,null] [--seeds 0,1,2] [--steps 1200]
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import xarray as xr

import ladsdin.models.classical as classical_mod
import ladsdin.models.frame as frame_mod
from ladsdin.models.batch import DetectConfig, detect_cube
from ladsdin.models.classical import detect_classical
from ladsdin.models.cube import normalize_cube, pixel_spacing_deg
from ladsdin.models.denoise import DenoiserConfig, calibrate_screen, denoise_maps, train_denoiser
from ladsdin.models.devices import configure_threads
from ladsdin.models.forecaster import BURN_IN
from ladsdin.models.null_floor import NullObjects
from ladsdin.models.simulation import simulate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from detection_bench import SPACING, _frame_years  # noqa: E402

CPU = torch.device("cpu")
KM_PER_DEG = 111.32
#: the output thresholds tried: per-pixel exceedance rates of the held-out null
P_PIXELS = (3e-3, 1e-3, 3e-4)


class _Recorder(NullObjects):
    """The null floor's sink, also keeping the training z maps it is fed (bench instrumentation)."""

    last: "_Recorder | None" = None

    def __init__(self, shape: tuple[int, int], n_slots: int, *args, **kwargs) -> None:
        super().__init__(shape, n_slots, *args, **kwargs)
        self.z = np.full((n_slots, shape[0] * shape[1]), np.nan, np.float32)
        _Recorder.last = self

    def add(self, index: np.ndarray, z: np.ndarray) -> None:
        super().add(index, z)
        self.z[:, index] = z


def _z_stack(train_z: np.ndarray, scores: list, cube: xr.Dataset, nm: float) -> np.ndarray:
    """(T, H, W) z over every calendar slot: the training slots' from the null, the scored
    epochs' from their forecasts, thresholds and common mode; NaN for missing slots."""
    shape = (cube.sizes["lat"], cube.sizes["lon"])
    n_slots = max(train_z.shape[0], max(s.slot for s in scores) + 1)
    z = np.full((n_slots, *shape), np.nan, np.float32)
    z[:train_z.shape[0]] = train_z.reshape(-1, *shape)
    times = {str(t)[:10]: i for i, t in enumerate(cube["time"].values)}
    disp = cube["displacement"].values
    with np.errstate(invalid="ignore", divide="ignore"):
        for s in scores:
            d = disp[times[s.date]]
            z[s.slot] = (d - s.predicted - s.common_mode_mm) / (s.threshold / nm)
    return z


def _increment(truth: xr.Dataset, cube: xr.Dataset) -> np.ndarray | None:
    ev = truth.attrs.get("first_post_event", "")
    if not ev:
        return None
    k = int(np.flatnonzero(cube["time"].values == np.datetime64(ev, "ns"))[0])
    h = truth["afterslip_time"].values
    return truth["coseismic"].values + truth["afterslip"].values * (h[k] - h[k - 1])


def _real(masks: list[np.ndarray], inc: np.ndarray | None) -> bool:
    """Any object with at least half its pixels on |true increment| >= 10 mm."""
    return inc is not None and any((np.abs(inc[m]) >= 10.0).mean() >= 0.5 for m in masks)


def _rows(case: str, seed: int, det: str, scores: list, train_z: np.ndarray, cube: xr.Dataset, truth: xr.Dataset,
          cfg: DetectConfig, n_a: int, floor_px: int, dcfg: DenoiserConfig, secs: float) -> list[dict]:
    ev_slot = int(truth.attrs["event_slot"])
    inc = _increment(truth, cube)
    fy = _frame_years(scores)
    raw = {s.slot: _object_masks(s) for s in scores}
    rows = [_row(case, seed, det, "none", raw, ev_slot, inc, fy, max(n_a, floor_px), secs)]

    t0 = time.perf_counter()
    z = _z_stack(train_z, scores, cube, cfg.nm)
    usable = np.arange(BURN_IN + dcfg.window, train_z.shape[0])
    n_fit = int(round((1.0 - dcfg.held_out) * usable.size))
    dlat, dlon = pixel_spacing_deg(cube)
    lat0 = float(np.mean(cube["lat"].values))
    net = train_denoiser(z, usable[:n_fit], abs(dlat) * KM_PER_DEG, abs(dlon) * KM_PER_DEG * np.cos(np.radians(lat0)), dcfg)
    held = denoise_maps(net, z, usable[n_fit:], dcfg.window)
    slots = np.array([s.slot for s in scores])
    out = denoise_maps(net, z, slots, dcfg.window)
    secs += time.perf_counter() - t0
    for p_pixel in P_PIXELS:
        screen = calibrate_screen(held, cfg.nm, n_a, cfg.false_alerts_per_year, cfg.step_days, cfg.connectivity, p_pixel)
        den = {int(sl): screen.objects(out[i]) for i, sl in enumerate(slots)}
        rows.append(_row(case, seed, det, f"denoiser p {p_pixel:g}", den, ev_slot, inc, fy, screen.min_object, secs,
                         threshold_sigma=round(screen.scale * cfg.nm, 3), null_slots=int(held.shape[0]),
                         null_objects=screen.floor_info["null_objects"], event_largest=_largest(out, slots, ev_slot, screen)))
    return rows


def _largest(out: np.ndarray, slots: np.ndarray, ev_slot: int, screen) -> int:
    """The largest one-sign object of the output at the event epoch, whatever the floor (-1 = no event)."""
    hit = np.flatnonzero(slots == ev_slot)
    if hit.size == 0:
        return -1
    sizes = screen.sizes(out[int(hit[0])])
    return int(sizes.max()) if sizes.size else 0


def _object_masks(s) -> list[np.ndarray]:
    """The detector's seismic objects of one epoch as (n_lat, n_lon) bool masks."""
    out = []
    for o in s.objects:
        m = np.zeros(s.seismic.shape, bool)
        m[o.rows, o.cols] = True
        out.append(m)
    return out


def _row(case: str, seed: int, det: str, front: str, alerts: dict, ev_slot: int, inc: np.ndarray | None, fy: float,
         min_object: int, secs: float, **extra) -> dict:
    alerted = [sl for sl, m in alerts.items() if m]
    false = [sl for sl in alerted if sl != ev_slot or not _real(alerts[sl], inc)]
    row = {"case": case, "seed": seed, "detector": det, "front_end": front, "false_alerts": len(false),
           "frame_years": round(fy, 2), "min_object_px": int(min_object), "seconds": round(secs, 1), **extra}
    if ev_slot >= 0:
        row["event_alert"] = _real(alerts.get(ev_slot, []), inc)
        row["event_objects"] = len(alerts.get(ev_slot, []))
    return row


def run_case(case: str, seed: int, nm: float, area: float, size: int, rate: float, dcfg: DenoiserConfig) -> list[dict]:
    if case == "delingha":
        cube, truth = simulate("delingha", "A", n_lat=size, n_lon=size, spacing_deg=SPACING, n_epochs=150, seed=seed,
                               event_index=105)
        train_fraction = 0.68
    else:
        cube, truth = simulate("null", "A", n_lat=size, n_lon=size, spacing_deg=SPACING, n_epochs=200, seed=seed,
                               nuisance="hard", gap_runs=[(50, 6), (150, 6)])
        train_fraction = 0.5
    cube = normalize_cube(cube)
    cfg = DetectConfig(nm=nm, seismic_area_km2=area, train_fraction=train_fraction, false_alerts_per_year=rate)
    rows = []
    frame_mod.NullObjects = classical_mod.NullObjects = _Recorder
    try:
        t0 = time.perf_counter()
        res = detect_cube(cube, cfg, CPU)
        z_learned = _Recorder.last.z
        t1 = time.perf_counter()
        base, rep = detect_classical(cube, cfg)
        z_classical = _Recorder.last.z
        t2 = time.perf_counter()
    finally:
        frame_mod.NullObjects = classical_mod.NullObjects = NullObjects
    rows += _rows(case, seed, "learned", res.scores, z_learned, cube, truth, cfg, res.n_a,
                  int(res.forecaster.report.get("null_floor_px", 0)), dcfg, t1 - t0)
    rows += _rows(case, seed, "classical", base, z_classical, cube, truth, cfg, rep["n_a"], int(rep.get("null_floor_px", 0)),
                  dcfg, t2 - t1)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default="delingha,null")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--size", type=int, default=240)
    ap.add_argument("--nm", type=float, default=4.0)
    ap.add_argument("--area", type=float, default=3.0)
    ap.add_argument("--false-alerts-per-year", type=float, default=0.1)
    ap.add_argument("--steps", type=int, default=DenoiserConfig.steps)
    ap.add_argument("--json")
    args = ap.parse_args()
    threads = configure_threads()
    rows: list[dict] = []
    t0 = time.time()
    for seed in (int(s) for s in args.seeds.split(",")):
        for case in args.cases.split(","):
            dcfg = DenoiserConfig(steps=args.steps, seed=seed)
            new = run_case(case, seed, args.nm, args.area, args.size, args.false_alerts_per_year, dcfg)
            for r in new:
                print(json.dumps(r), flush=True)
            rows += new
    print(f"\n{platform.node()} {platform.processor() or platform.machine()}, {threads} threads, torch {torch.__version__}, "
          f"{time.time() - t0:.0f} s, {time.strftime('%Y-%m-%d')}, N_m {args.nm:g}, A_s {args.area:g} km², "
          f"{args.steps} training steps")
    print("\n| case | detector | front end | runs | real alert at the first post-event epoch | false alerts | "
          "false alerts / frame-year | objects need > px (median) | largest event object, px (median) |")
    print("|---|---|---|---|---|---|---|---|---|")
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["case"], r["detector"], r["front_end"]), []).append(r)
    for (case, det, front), rs in groups.items():
        fy = sum(r["frame_years"] for r in rs)
        fa = sum(r["false_alerts"] for r in rs)
        ev = f"{sum(bool(r.get('event_alert')) for r in rs)} of {len(rs)}" if case != "null" else "–"
        print(f"| {case} | {det} | {front} | {len(rs)} | {ev} | {fa} | {fa / fy:.2f} ({fa} in {fy:.1f}) | "
              f"{int(np.median([r['min_object_px'] for r in rs]))} | "
              f"{int(np.median([r['event_largest'] for r in rs])) if 'event_largest' in rs[0] and case != 'null' else '–'} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
