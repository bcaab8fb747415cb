"""Detection quality of the learned detector against the classical baseline, in the same run.

Cases (each with several seeds; the baseline scores the same cube with the same screens):
  menyuan   Menyuan Mw 6.6, tracks A and D, with logarithmic afterslip, 250 m pixels, N_m 6,
            A_s 100 km²: alert at the first post-event epoch? alerts over the next 12 months,
            recall (|increment| >= 100 mm), precision (flagged pixels with |increment| >= 20 mm),
            median |D_s - increment|.
  delingha  Delingha-like Mw 5.6 (±30 mm): detected at the first post-event epoch? at the
            low-floor settings (--low-nm, --low-area).
  null      null frames with hard nuisance (strong stratified delay, 30 mm seasonal motion on
            most pixels, 15 % of epochs with unwrapping errors, 6-acquisition gaps in training
            and in scoring): false alerts per frame-year, at the Menyuan and the low-floor
            settings.
  usud      the real GNSS station USUD across Tohoku 2011, projected to ascending LOS every 12
            days: flagged at the first post-event epoch? flagged epochs in the next 8 months.

Both detectors calibrate a null floor on their own training epochs (models/null_floor.py,
--false-alerts-per-year, default 0.1; 0 = N_a alone).

Usage: python benchmarks/detection_bench.py [--cases menyuan,delingha,null,usud] [--seeds 0,1,2]
Prints one row per case, seed and detector, then a summary; see docs/BENCHMARKS.md.
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

from ladsdin.models.batch import DetectConfig, detect_cube
from ladsdin.models.classical import detect_classical
from ladsdin.models.cube import normalize_cube
from ladsdin.models.devices import configure_threads
from ladsdin.models.simulation import simulate

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"
#: 250 m pixels at the Menyuan latitude: 0.0025° (278 m N-S, 219 m E-W, A_p 0.061 km²)
SPACING = 0.0025
CPU = torch.device("cpu")
#: USUD's ground-to-satellite unit vector for a Sentinel-1 ascending track (DATA_NOTES.md)
USUD_LOS = (-0.616, -0.131, 0.777)  # E, N, U
TOHOKU = np.datetime64("2011-03-11")


def _event_metrics(scores: list, truth: xr.Dataset, cube: xr.Dataset) -> dict:
    ev = truth.attrs["first_post_event"]
    ev_slot = int(truth.attrs["event_slot"])
    by_slot = {s.slot: s for s in scores}
    first = by_slot.get(ev_slot)
    out: dict = {"event_alert": bool(first is not None and first.objects)}
    ev_date = np.datetime64(ev)
    late = [s.date for s in scores if s.slot > ev_slot and s.objects and np.datetime64(s.date) <= ev_date + np.timedelta64(365, "D")]
    out["late_alerts_12mo"] = len(late)
    out["late_alert_dates"] = late
    out["pre_event_alerts"] = sum(1 for s in scores if s.slot < ev_slot and s.objects)
    if first is None:
        return out
    times = cube["time"].values
    k = int(np.flatnonzero(times == np.datetime64(ev, "ns"))[0])
    h = truth["afterslip_time"].values
    # the true increment since the previous acquisition: the step plus the afterslip by then
    inc = truth["coseismic"].values + truth["afterslip"].values * (h[k] - h[k - 1])
    obs = np.isfinite(cube["displacement"].values[k]) & np.isfinite(first.threshold)
    flagged = first.seismic & obs
    big = obs & (np.abs(inc) >= 100.0)
    out["recall_100mm"] = float(flagged[big].mean()) if big.any() else float("nan")
    out["precision_20mm"] = float((np.abs(inc[flagged]) >= 20.0).mean()) if flagged.any() else float("nan")
    out["ds_mae_mm"] = float(np.median(np.abs(first.deformation[flagged] - inc[flagged]))) if flagged.any() else float("nan")
    out["flagged_px"] = int(flagged.sum())
    return out


def _frame_years(scores: list) -> float:
    if len(scores) < 2:
        return 0.0
    d = (np.datetime64(scores[-1].date) - np.datetime64(scores[0].date)).astype(int) + 12
    return d / 365.25


def _run_both(cube: xr.Dataset, cfg: DetectConfig) -> dict:
    t0 = time.perf_counter()
    res = detect_cube(cube, cfg, CPU)
    t1 = time.perf_counter()
    base, rep = detect_classical(cube, cfg)
    t2 = time.perf_counter()
    return {"learned": (res.scores, t1 - t0, {**res.forecaster.report, "n_a": res.n_a}), "classical": (base, t2 - t1, rep)}


def _floor(report: dict) -> dict:
    """The null floor of a run: objects need > min_object_px pixels."""
    return {"null_floor_px": int(report.get("null_floor_px", 0)),
            "min_object_px": max(int(report.get("n_a", 0)), int(report.get("null_floor_px", 0)))}


def case_event(preset: str, track: str, seed: int, nm: float, area: float, size: int, rate: float) -> list[dict]:
    cube, truth = simulate(preset, track, n_lat=size, n_lon=size, spacing_deg=SPACING, n_epochs=150, seed=seed,
                           event_index=105)
    cube = normalize_cube(cube)
    cfg = DetectConfig(nm=nm, seismic_area_km2=area, train_fraction=0.68, false_alerts_per_year=rate)
    rows = []
    for det, (scores, secs, rep) in _run_both(cube, cfg).items():
        m = _event_metrics(scores, truth, cube)
        m.update(_floor(rep))
        m.update(case=f"{preset} {track}", seed=seed, detector=det, nm=nm, area_km2=area, seconds=round(secs, 1),
                 false_alerts=m["pre_event_alerts"] + m["late_alerts_12mo"])
        rows.append(m)
    return rows


def case_null(seed: int, settings: list[tuple[float, float]], size: int, rate: float) -> list[dict]:
    # 6-acquisition gaps in both training and scoring
    cube, _ = simulate("null", "A", n_lat=size, n_lon=size, spacing_deg=SPACING, n_epochs=200, seed=seed,
                       nuisance="hard", gap_runs=[(50, 6), (150, 6)])
    cube = normalize_cube(cube)
    rows = []
    for nm, area in settings:
        cfg = DetectConfig(nm=nm, seismic_area_km2=area, train_fraction=0.5, false_alerts_per_year=rate)
        for det, (scores, secs, rep) in _run_both(cube, cfg).items():
            alerts = [s.date for s in scores if s.objects]
            fy = _frame_years(scores)
            rows.append({"case": "null hard", "seed": seed, "detector": det, "nm": nm, "area_km2": area, "seconds": round(secs, 1),
                         **_floor(rep),
                         "false_alerts": len(alerts), "frame_years": round(fy, 2), "alert_dates": alerts})
    return rows


def usud_cube() -> tuple[xr.Dataset, np.datetime64]:
    """USUD projected to ascending LOS, sampled every 12 days (the day's position; NaN where the
    station has none), 190 slots before Tohoku (from December 2004) and 24 after (to 2011-11)."""
    a = np.loadtxt(SHARED / "gnss_formats" / "USUD.icd.final_igs08.pos.neu", comments="#")
    a = a[np.argsort(a[:, 0])]
    days = np.array([np.datetime64(f"{int(y)}-01-01") + np.timedelta64(int(d) - 1, "D") for y, d in a[:, 1:3]])
    los = 1000.0 * (USUD_LOS[0] * a[:, 4] + USUD_LOS[1] * a[:, 3] + USUD_LOS[2] * a[:, 5])  # mm, +towards satellite
    by_day = dict(zip(days.tolist(), los))
    # a 12-day calendar whose slots straddle the event: the last pre-event slot 2011-03-08
    start = np.datetime64("2011-03-08") - np.timedelta64(12 * 190, "D")
    dates = start + np.arange(0, 190 + 24) * np.timedelta64(12, "D")
    vals = np.array([by_day.get(d.item(), np.nan) for d in dates], np.float32)
    keep = np.isfinite(vals)
    dates, vals = dates[keep], vals[keep] - vals[keep][0]
    ds = xr.Dataset({"displacement": (("time", "lat", "lon"), vals[:, None, None], {"units": "mm"})},
                    coords={"time": dates.astype("datetime64[ns]"), "lat": [36.133], "lon": [138.362]},
                    attrs={"frame": "039A_05400_131313"})
    first_post = dates[dates > TOHOKU][0]
    return normalize_cube(ds), first_post


def case_usud(seed: int, rate: float) -> list[dict]:
    from ladsdin.models.training import TrainConfig

    cube, first_post = usud_cube()
    n_pre = int((cube["time"].values < np.datetime64(TOHOKU, "ns")).sum())
    cfg = DetectConfig(nm=6.0, seismic_area_km2=0.001, train_fraction=min(0.95, (n_pre - 10) / cube.sizes["time"]),
                       train=TrainConfig(seed=seed), false_alerts_per_year=rate)
    rows = []
    end = first_post + np.timedelta64(243, "D")
    for det, (scores, secs, _) in _run_both(cube, cfg).items():
        flagged = [s.date for s in scores if s.anomaly.any()]
        fp = str(first_post)
        after = [d for d in flagged if np.datetime64(d) > first_post and np.datetime64(d) <= end]
        before = [d for d in flagged if np.datetime64(d) < first_post]
        rows.append({"case": "usud tohoku", "seed": seed, "detector": det, "nm": 6.0, "seconds": round(secs, 1),
                     "event_alert": fp in flagged, "flagged_8mo": len(after), "flagged_before": len(before),
                     "flag_dates": flagged})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default="menyuan,delingha,null,usud")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--size", type=int, default=240, help="frame edge, pixels (250 m)")
    ap.add_argument("--low-nm", type=float, default=4.0)
    ap.add_argument("--low-area", type=float, default=3.0)
    ap.add_argument("--false-alerts-per-year", type=float, default=0.1, help="the null floor's rate (0 = N_a alone)")
    ap.add_argument("--json", help="write every row here")
    args = ap.parse_args()
    rate = args.false_alerts_per_year
    threads = configure_threads()
    seeds = [int(s) for s in args.seeds.split(",")]
    cases = args.cases.split(",")
    rows: list[dict] = []
    t0 = time.time()
    for seed in seeds:
        if "menyuan" in cases:
            for track in "AD":
                rows += case_event("menyuan", track, seed, 6.0, 100.0, args.size, rate)
                _print_rows(rows[-2:])
        if "delingha" in cases:
            rows += case_event("delingha", "A", seed, args.low_nm, args.low_area, args.size, rate)
            _print_rows(rows[-2:])
        if "null" in cases:
            rows += case_null(seed, [(6.0, 100.0), (args.low_nm, args.low_area)], args.size, rate)
            _print_rows(rows[-4:])
        if "usud" in cases and seed == seeds[0]:
            rows += case_usud(seed, rate)
            _print_rows(rows[-2:])
    print(f"\n{platform.node()} {platform.processor() or platform.machine()}, {threads} threads, torch {torch.__version__}, "
          f"{time.time() - t0:.0f} s, {time.strftime('%Y-%m-%d')}")
    _summary(rows)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1, default=str))
    return 0


def _print_rows(rows: list[dict]) -> None:
    for r in rows:
        keys = [k for k in ("event_alert", "late_alerts_12mo", "pre_event_alerts", "recall_100mm", "precision_20mm", "ds_mae_mm",
                            "flagged_px", "min_object_px", "false_alerts", "frame_years", "flagged_8mo", "flagged_before", "seconds") if k in r]
        vals = ", ".join(f"{k}={r[k]:.3f}" if isinstance(r[k], float) else f"{k}={r[k]}" for k in keys)
        extra = r.get("late_alert_dates") or r.get("alert_dates") or r.get("flag_dates") or ""
        print(f"{r['case']:>12} seed {r['seed']} {r['detector']:>9} (N_m {r['nm']}): {vals} {extra}", flush=True)


def _summary(rows: list[dict]) -> None:
    print("\n| case | detector | runs | alert at first post-event epoch | alerts in the next 12 months (or 8 for USUD) | "
          "recall >= 100 mm (median) | precision >= 20 mm (median) | D_s median abs. error, mm (median) | false alerts / frame-year | "
          "objects need > px (median) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["case"].split()[0], r["detector"], r["nm"]), []).append(r)
    for (case, det, nm), rs in groups.items():
        def med(k: str) -> str:
            v = [r[k] for r in rs if k in r and np.isfinite(r[k])]
            return f"{np.median(v):.3f}" if v else "–"
        ev = sum(bool(r.get("event_alert")) for r in rs)
        late = [r.get("late_alerts_12mo", r.get("flagged_8mo")) for r in rs]
        fy = sum(r.get("frame_years", 0.0) for r in rs)
        fa = f"{sum(r['false_alerts'] for r in rs) / fy:.2f} ({sum(r['false_alerts'] for r in rs)} in {fy:.1f})" if fy else "–"
        evs = f"{ev} of {len(rs)}" if case != "null" else "–"
        lates = ", ".join(str(x) for x in late) if case != "null" else "–"
        print(f"| {case} (N_m {nm:g}) | {det} | {len(rs)} | {evs} | {lates} | {med('recall_100mm')} | {med('precision_20mm')} | "
              f"{med('ds_mae_mm')} | {fa} | {med('min_object_px')} |")


if __name__ == "__main__":
    sys.exit(main())
