"""The classical per-pixel detector: the baseline a learned detector must beat (DESIGN.md §1).

Each pixel's forecast is its last observed value plus the increment of its offset + velocity +
annual trend (fitted on the training epochs); its sigma is the std of those forecasts' errors
over the training epochs (after each epoch's common mode), and a gap of m slots widens the
threshold by the error ratio measured across m-slot gaps in training. Everything after the
forecast is the learned detector's own code (:func:`ladsdin.models.screens.screen_epoch`): the
same pixels, common mode, N_m, N_a, null floor (calibrated on its own training errors), objects
and D_s, so the two differ only in their forecasts.

A persistence forecast re-anchors at every observation by construction: after a step it is
quiet at once, but it cannot see a step that builds up over two epochs, and its error is the
difference of two epochs' noise.
"""
from __future__ import annotations

import math
import time

import numpy as np
import xarray as xr

from ladsdin.models.baseline import fit_trend, evaluate_trend, last_value_forecast
from ladsdin.models.bootstrap import residual_common_mode
from ladsdin.models.config import DetectConfig
from ladsdin.models.cube import CubeError, pixel_spacing_deg
from ladsdin.models.detector import EpochScore, ScoreParams
from ladsdin.models.forecaster import BURN_IN, MAX_GAP
from ladsdin.models.frame import frame_pixel_area, prepare_frame
from ladsdin.models.null_floor import NullObjects, object_floor
from ladsdin.models.screens import screen_epoch
from ladsdin.models.thresholds import MIN_PIXELS_FOR_COMMON_MODE, common_mode_bound, residual_sigma, seismic_pixel_count
from ladsdin.models.tiling import scatter_tiles
from ladsdin.models.windows import CubeWindows


def _gap_factors(resid: np.ndarray, horizon: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """g(m), m = 1..MAX_GAP: median |error| / sigma at horizon m over that at horizon 1 (>= 1)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.abs(resid) / sigma[None, :]
    ok = np.isfinite(z)
    base = float(np.median(z[ok & (horizon == 1)])) if (ok & (horizon == 1)).any() else 1.0
    g = np.ones(MAX_GAP, np.float32)
    for m in range(2, MAX_GAP + 1):
        sel = ok & (horizon == m)
        if sel.sum() >= 50:
            g[m - 1] = max(1.0, float(np.median(z[sel])) / max(base, 1e-6))
        else:
            g[m - 1] = g[m - 2]
    return g


def detect_classical(cube: xr.Dataset, cfg: DetectConfig) -> tuple[list[EpochScore], dict]:
    """Score every epoch after the training period with the classical detector.

    Args:
        cube: a normalised cube (``models.cube.normalize_cube``), in memory: the baseline is for
            benchmark-sized frames.
        cfg: the same configuration as the learned run (N_m, A_s, train fraction, common mode,
            connectivity, sign split, pixel selection).

    Returns:
        (one :class:`EpochScore` per scored acquisition, maps kept; a report with sigma and g).
    """
    cfg.validate()
    prep = prepare_frame(cube["time"].values, cube["lat"].values, cube["lon"].values, cfg)
    if prep.n_train < 2 or prep.n_train >= prep.slots.size:
        raise CubeError(f"{prep.slots.size} epochs give {prep.n_train} training epochs; need >= 2 and >= 1 to score")
    windows = CubeWindows(cube, prep)
    tiling = prep.tiling(cfg)
    idx, ys = [], []
    for i in range(tiling.n_tiles):
        rows, cols = tiling.window(i)
        ts = prep.tile_training(windows.training(rows, cols), windows.coherence_window(rows, cols), tiling, i, cfg)
        idx.append(ts.index)
        ys.append(ts.y)
    index = np.concatenate(idx)
    y = np.concatenate(ys, axis=1)  # (split, P) calendar-regular training series
    if index.size == 0:
        raise CubeError("no pixel is coherent and observed enough to model")
    cal = prep.calendar
    years_train = cal.years(np.arange(prep.split))
    coef = fit_trend(y, years_train)
    pred, horizon = last_value_forecast(y, coef, years_train)
    resid = y - pred
    resid[:BURN_IN] = np.nan
    cm_on = cfg.common_mode != "none" and index.size >= MIN_PIXELS_FOR_COMMON_MODE
    cm_train = residual_common_mode(resid, cfg.nm, cm_on)
    rc = resid - cm_train[:, None]
    cm_bound = common_mode_bound(cm_train[BURN_IN:]) if cm_on else float("inf")
    sigma = residual_sigma(rc)  # eq. 3 on the persistence forecast's errors
    gap = _gap_factors(rc, horizon, sigma)

    dlat, dlon = pixel_spacing_deg(cube)
    a_p = frame_pixel_area(cube["lat"].values, dlat, dlon)
    n_a = seismic_pixel_count(cfg.seismic_area_km2, a_p, cfg.downsample)
    shape = tiling.shape
    null = NullObjects(shape, prep.split, cfg.nm, cfg.connectivity, cfg.sign_split)
    if cfg.false_alerts_per_year > 0:
        with np.errstate(invalid="ignore", divide="ignore"):
            null.add(index, rc / (sigma[None, :] * gap[np.clip(horizon, 1, MAX_GAP) - 1]))
    floor, null_info = object_floor(null.largest(), cfg.false_alerts_per_year, cfg.step_days)
    params = ScoreParams(cfg.nm, n_a, cfg.connectivity, cfg.common_mode if cm_on else "none", False, 0, cfg.sign_split, floor)

    # state after the training period: each pixel's last departure from its trend and its age
    anchor = np.full(index.size, np.nan, np.float32)
    since = np.zeros(index.size, np.int64)
    trend_train = evaluate_trend(coef, years_train)
    for s in range(prep.split):
        since += 1
        ok = np.isfinite(y[s])
        anchor[ok] = y[s, ok] - trend_train[s, ok]
        since[ok] = 0
    last_slot = prep.split - 1
    scores = []
    for k in range(prep.n_train, prep.slots.size):
        t0 = time.perf_counter()
        slot = int(prep.slots[k])
        since += slot - last_slot
        last_slot = slot
        obs = windows.epoch(k).reshape(-1)[index]
        tr = evaluate_trend(coef, cal.years(np.array([slot])))[0]
        p = tr + anchor
        r = obs - p
        thr = cfg.nm * sigma * gap[np.clip(since, 1, MAX_GAP) - 1]
        valid = np.isfinite(r) & np.isfinite(sigma)
        vsel = np.flatnonzero(valid)
        order = np.argsort(index[vsel], kind="stable")  # the screens expect row-major valid pixels
        vsel = vsel[order]
        vidx = index[vsel]
        sc = screen_epoch(r[vsel], thr[vsel].astype(np.float32), sigma[vsel], vidx, shape, params, cm_bound=cm_bound)
        seen = np.isfinite(obs)
        anchor[seen] = obs[seen] - tr[seen]
        since[seen] = 0
        scores.append(EpochScore(
            slot=slot, date=str(cal.date(slot)), horizon_max=int(since[valid].max(initial=1)) if valid.any() else 1,
            n_valid=int(vidx.size), n_anomalous=sc.c_k, examined=sc.examined, largest_object=sc.largest,
            common_mode_mm=float(np.median(sc.cm_v)) if vidx.size else 0.0, objects=sc.objects, anomaly=sc.anomaly,
            seismic=sc.seismic, predicted=scatter_tiles(shape, [(index, p)]), threshold=scatter_tiles(shape, [(index, thr)]),
            deformation=sc.deformation, seconds=time.perf_counter() - t0,
        ))
    report = {"sigma_median_mm": float(np.nanmedian(sigma)), "gap_factor": [round(float(v), 3) for v in gap],
              "n_a": n_a, **null_info, "pixels": int(index.size), "pixel_area_km2": a_p,
              "n_train_epochs": int(prep.n_train), "common_mode": bool(cm_on), "common_mode_bound_mm": cm_bound}
    if not math.isfinite(report["sigma_median_mm"]):
        raise CubeError("the classical baseline found no pixel with enough training residuals")
    return scores, report
