"""Fitting a frame's forecaster in bounded memory, tile by tile (paper steps 2-3).

Memory no longer grows with the frame beyond the per-pixel results: each tile's training series
is read when it is needed (twice) and dropped, and every frame-level estimate comes from a
bounded, seeded sample of pixels.

1. **Pass 1, per tile:** the offset + velocity + annual trend and the scale of every pixel; the
   pixels with the smallest seeded keys (:func:`ladsdin.models.tiling.pixel_keys`) join the sample.
2. **On the sample:** train the network (its first ``train_pixels`` pixels), then one-step
   residuals give each slot's robust common mode, the held-out/in-sample sigma calibration, the
   gap factors g(m), training R² and the classical baseline's error. A frame no larger than the
   sample uses every pixel, exactly as an in-memory fit would.
3. **Pass 2, per tile:** run the network through the tile's training slots: the warm recurrent
   state, and sigma (eq. 3) from the tile's common-mode-corrected one-step residuals.

Samples are chosen by key, not by position, so the result does not depend on the tiling.
"""
from __future__ import annotations

import dataclasses

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from ladsdin.models.baseline import evaluate_trend, fit_trend, last_value_forecast
from ladsdin.models.cleaning import Calendar
from ladsdin.models.forecaster import BURN_IN, MAX_GAP, STATE_DTYPE, TRACK_FACTOR_DEFAULT, Forecaster, PixelState
from ladsdin.models.null_floor import NullObjects
from ladsdin.models.thresholds import MIN_PIXELS_FOR_COMMON_MODE, common_mode, common_mode_bound, residual_sigma, series_nanstd
from ladsdin.models.tiling import TileModel, pixel_keys
from ladsdin.models.training import TrainConfig, grid_search

log = logging.getLogger(__name__)

#: Bounds of the held-out/in-sample sigma calibration ratio.
CALIBRATION_BOUNDS = (1.0, 2.0)
#: Pixels of the sample on which the gap factors are measured.
GAP_PIXELS = 2000


class NoModelledPixels(ValueError):
    """No tile has a pixel to model."""


@dataclass
class TileSeries:
    """One tile's training data: ``index`` (p,) global flat indices of its modelled pixels
    (increasing) and ``y`` (T, p) float32 calendar-regular displacement, LOS mm, NaN = gap."""

    index: np.ndarray
    y: np.ndarray


def _trend_and_scale(y: np.ndarray, years: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(coef (p, 4) float32, trend (T, p) float32, scale (p,) float32) of training series (T, p)."""
    coef = fit_trend(y, years).astype(np.float32)
    trend = evaluate_trend(coef, years)
    std = series_nanstd(y - trend) if y.shape[0] else np.ones(y.shape[1])
    return coef, trend, np.maximum(np.nan_to_num(std, nan=1.0), 1.0).astype(np.float32)


class _Sample:
    """The ``size`` pixels with the smallest keys seen so far, with their training columns."""

    def __init__(self, size: int, seed: int, n_t: int) -> None:
        self.size, self.seed = size, seed
        self.keys = np.zeros(0, np.uint64)
        self.index = np.zeros(0, np.int64)
        self.pos = np.zeros(0, np.int64)  # position among all modelled pixels, in visiting order
        self.y = np.zeros((n_t, 0), np.float32)
        self.trend = np.zeros((n_t, 0), np.float32)
        self.coef = np.zeros((0, 4), np.float32)
        self.scale = np.zeros(0, np.float32)

    def add(self, index: np.ndarray, offset: int, y: np.ndarray, coef: np.ndarray, trend: np.ndarray, scale: np.ndarray) -> None:
        keys = pixel_keys(index, self.seed)
        pos = offset + np.arange(index.size)
        if self.keys.size >= self.size:
            take = np.flatnonzero(keys < self.keys.max())
            keys, index, pos, y, coef, trend, scale = keys[take], index[take], pos[take], y[:, take], coef[take], trend[:, take], scale[take]
        if not keys.size:
            return
        self.keys = np.concatenate([self.keys, keys])
        self.index = np.concatenate([self.index, index])
        self.pos = np.concatenate([self.pos, pos])
        self.y = np.concatenate([self.y, y], axis=1)
        self.trend = np.concatenate([self.trend, trend], axis=1)
        self.coef = np.concatenate([self.coef, coef])
        self.scale = np.concatenate([self.scale, scale])
        if self.keys.size > self.size:
            self._keep(np.argpartition(self.keys, self.size - 1)[: self.size])

    def _keep(self, sel: np.ndarray) -> None:
        self.keys, self.index, self.pos = self.keys[sel], self.index[sel], self.pos[sel]
        self.y, self.trend, self.coef, self.scale = self.y[:, sel], self.trend[:, sel], self.coef[sel], self.scale[sel]

    def finish(self) -> None:
        """Columns in global pixel order (deterministic, whatever the tiling)."""
        self._keep(np.argsort(self.index, kind="stable"))

    def smallest(self, n: int) -> np.ndarray:
        """Columns (in global pixel order) of the ``n`` smallest keys."""
        if n >= self.keys.size:
            return np.arange(self.keys.size)
        return np.sort(np.argpartition(self.keys, n - 1)[:n])


def residual_common_mode(resid: np.ndarray, nm: float, enabled: bool) -> np.ndarray:
    """Per-slot robust common mode of a (T, P) residual stack, (T,) mm (0 where disabled)."""
    cm = np.zeros(resid.shape[0], dtype=np.float32)
    if not enabled:
        return cm
    with np.errstate(invalid="ignore"):
        prelim = np.nanstd(resid, axis=0)
    for t in range(resid.shape[0]):
        cm[t] = common_mode(resid[t], prelim, nm)
    return cm


def _gap_factors(fc: Forecaster, xn: np.ndarray, y: np.ndarray, trend: np.ndarray, scale: np.ndarray, sigma: np.ndarray,
                 pixels: np.ndarray, cm_enabled: bool, nm: float) -> np.ndarray:
    """Measure g(m), the growth of forecast error across m-1 missing slots, on training data.

    Gaps are made by hiding observed inputs (never by inventing values); the error of the
    forecast at the first slot after each hidden run is compared with the one-step error at the
    same slots. The result is non-decreasing with g(1) = 1 (DESIGN.md §1: measured 1.0-1.3x for
    24 days, where a sqrt(m) rule would blind the detector after every gap).
    """
    n_t = xn.shape[0]

    def norm_errors(x_in: np.ndarray) -> np.ndarray:
        f, _ = fc.run_sequence(x_in, pixels=pixels)
        r = y - (trend + scale * f)
        return np.abs(r - residual_common_mode(r, nm, cm_enabled)[:, None]) / sigma

    one_step = norm_errors(xn)  # the same slots forecast with no gap: the reference error
    g = np.ones(MAX_GAP, dtype=np.float32)
    for m in range(2, MAX_GAP + 1):
        # Hide m-1 slots before every target, with 3 observed slots between windows so the
        # state re-settles; one run per m covers ~n_t/(m+3) targets on every sampled pixel.
        hide = np.zeros((n_t, 1), dtype=bool)
        tgt = np.zeros((n_t, 1), dtype=bool)
        for start in range(BURN_IN, n_t - m, m + 3):
            hide[start + 1 : start + m] = True
            tgt[start + m] = True
        targets = tgt & np.isfinite(xn) & np.isfinite(sigma)[None, :]
        if targets.sum() < 50:
            g[m - 1] = g[m - 2]
            continue
        gap_err = norm_errors(np.where(hide, np.nan, xn))[targets]
        g[m - 1] = float(np.median(gap_err) / max(float(np.median(one_step[targets])), 1e-6))
    return np.maximum.accumulate(np.maximum(g, 1.0))


def null_z(rc: np.ndarray, sigma: np.ndarray, gap_factor: np.ndarray, gap_in: np.ndarray, n_fit: int = 0,
           calib: float = 1.0) -> np.ndarray:
    """(T, p) training residuals (common mode removed) in units of the score's sigma: over
    sigma x g(m) for a slot after m-1 missing ones, and, on the first ``n_fit`` slots (those
    sigma was fitted on, where residuals are smaller than on new epochs by the calibration
    ratio), times ``calib``."""
    g = gap_factor[np.clip(gap_in, 0, MAX_GAP - 1)]
    with np.errstate(invalid="ignore", divide="ignore"):
        z = rc / (sigma[None, :] * g)
    z[:n_fit] *= np.float32(calib)
    return z.astype(np.float32, copy=False)


def _track_factor(rc: np.ndarray, sigma: np.ndarray) -> float:
    """sigma of the post-event regime's forecast over sigma (eq. 3), median over pixels.

    In that regime the level follows each observation, so a residual becomes the difference of
    two consecutive one-step residuals: sqrt 2 for white residuals, less where they are
    correlated in time (slow atmosphere or seasonal misfit), more where they alternate.
    """
    d = np.diff(rc, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = residual_sigma(d, floor_mm=0.0) / sigma
    ratio = ratio[np.isfinite(ratio) & (ratio > 0)]
    return float(np.clip(np.median(ratio), 0.5, 3.0)) if ratio.size else TRACK_FACTOR_DEFAULT


def _rms(a: np.ndarray) -> float:
    return float(np.sqrt(np.nanmean(a**2))) if np.isfinite(a).any() else float("nan")


def _r2(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Per-pixel R² of forecasts against observations over the training slots (the paper's)."""
    obs = np.isfinite(y) & np.isfinite(pred)
    obs[:BURN_IN] = False
    ss_res = np.where(obs, (y - pred) ** 2, 0).sum(0)
    ymean = np.where(obs, y, 0).sum(0) / np.maximum(obs.sum(0), 1)
    ss_tot = np.where(obs, (y - ymean) ** 2, 0).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ss_tot > 0, 1.0 - ss_res / ss_tot, np.nan)


def fit_tiles(
    n_tiles: int,
    read: Callable[[int], TileSeries],
    calendar: Calendar,
    cfg: TrainConfig,
    device: torch.device,
    emit: Callable[[int, TileModel, PixelState], None],
    *,
    nm: float = 6.0,
    common_mode_enabled: bool = True,
    null: NullObjects | None = None,
    progress: bool = False,
) -> Forecaster:
    """Fit a frame's forecaster tile by tile and hand each tile's model and warm state to ``emit``.

    Args:
        read: tile number -> its :class:`TileSeries` over the training slots (called twice per
            tile; tiles are visited in order 0..n_tiles-1).
        calendar: slot 0 = row 0 of every series; ``n_slots`` = their rows.
        emit: called once per tile, in order, with (tile, model, state after the last slot).
        common_mode_enabled: remove each slot's robust common mode before measuring sigma, as
            scoring will; it is used only when the frame has enough pixels for one.
        null: given, it collects each tile's training residuals over their thresholds' sigma
            (the null of :mod:`ladsdin.models.null_floor`).

    Returns:
        The frame-level forecaster: network, calendar, gap factors and training report (its
        per-pixel arrays are empty; each tile's come through ``emit``). ``report["common_mode"]``
        says whether the common mode was used.
    """
    n_t = calendar.n_slots
    years = calendar.years(np.arange(n_t))
    per_pixel = cfg.kind == "per-pixel"
    sample = _Sample(np.iinfo(np.int64).max if per_pixel else max(cfg.calibration_pixels, cfg.train_pixels), cfg.seed, n_t)
    fits: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    n_total = 0
    for i in tqdm(range(n_tiles), desc="fit: trends", disable=not progress, leave=False):
        ts = read(i)
        coef, trend, scale = _trend_and_scale(ts.y, years)
        fits.append((ts.index, coef, scale))
        sample.add(ts.index, n_total, ts.y, coef, trend, scale)
        n_total += ts.index.size
    if n_total == 0:
        raise NoModelledPixels("no modelled pixel in any tile: nothing to fit")
    sample.finish()
    cm_on = common_mode_enabled and n_total >= MIN_PIXELS_FOR_COMMON_MODE
    xs = (sample.y - sample.trend) / sample.scale
    train_cols = np.arange(sample.index.size) if per_pixel else sample.smallest(cfg.train_pixels)
    sampled = not per_pixel and n_total > train_cols.size
    train_cfg = dataclasses.replace(cfg, pass_pixels=cfg.sample_pass_pixels) if sampled else cfg
    net, best, candidates = grid_search(xs[:, train_cols], train_cfg, device, progress)
    empty = np.zeros(0, np.float32)
    fc = Forecaster(net, calendar, np.zeros((0, 4), np.float32), empty, empty, np.ones(MAX_GAP, np.float32), device)

    # calibration on the sample: common mode per slot, sigma calibration, gap factors, report
    pixels = sample.pos if per_pixel else None
    f, _ = fc.run_sequence(xs, pixels=pixels)
    pred_mm = sample.trend + sample.scale * f
    resid = sample.y - pred_mm
    resid[:BURN_IN] = np.nan
    cm = residual_common_mode(resid, nm, cm_on)
    rc = resid - cm[:, None]
    n_fit = int(round(n_t * (1.0 - cfg.val_fraction)))
    sigma_fit = residual_sigma(rc[:n_fit])  # eq. 3 on one-step-ahead residuals
    sigma_val = residual_sigma(rc[n_fit:], min_samples=5)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = sigma_val / sigma_fit
    ratio = ratio[np.isfinite(ratio)]
    calib = float(np.clip(np.median(ratio), *CALIBRATION_BOUNDS)) if ratio.size else 1.0
    sig_s = (sigma_fit * calib).astype(np.float32)
    fc.track_factor = _track_factor(rc[:n_fit], sigma_fit)
    fc.cm_bound_mm = common_mode_bound(cm[BURN_IN:]) if cm_on else float("inf")
    g_cols = sample.smallest(GAP_PIXELS)
    fc.gap_factor = _gap_factors(fc, xs[:, g_cols], sample.y[:, g_cols], sample.trend[:, g_cols], sample.scale[g_cols],
                                 sig_s[g_cols], pixels[g_cols] if pixels is not None else None, cm_on, nm)
    base, _ = last_value_forecast(sample.y, sample.coef, years)
    rb = sample.y - base
    rb[:BURN_IN] = np.nan
    rb -= residual_common_mode(rb, nm, cm_on)[:, None]
    r2 = _r2(sample.y, pred_mm)
    fc.report = {
        "kind": cfg.kind,
        "layers": best.layers,
        "hidden": best.hidden,
        "passes": best.passes,
        "best_pass": best.best_pass,
        "train_pixels": int(train_cols.size),
        "calibration_pixels": int(sample.index.size),
        "modelled_pixels": int(n_total),
        "grid": [{"layers": r.layers, "hidden": r.hidden, "val_loss": r.val_loss, "passes": r.passes, "seconds": round(r.seconds, 2)} for r in candidates],
        "r2_mean": float(np.nanmean(r2)),
        "r2_median": float(np.nanmedian(r2)),
        "sigma_calibration": calib,
        "sigma_median_mm": float(np.nanmedian(sig_s)),
        "track_factor": round(fc.track_factor, 4),
        "common_mode_bound_mm": round(fc.cm_bound_mm, 3) if np.isfinite(fc.cm_bound_mm) else None,
        "gap_factor": [round(float(v), 3) for v in fc.gap_factor],
        "val_rms_lstm_mm": _rms(rc[n_fit:]),
        "val_rms_baseline_mm": _rms(rb[n_fit:]),
        "common_mode": bool(cm_on),
    }
    log.info("forecaster: %d px (sample %d, trained on %d), R2 mean %.3f, val one-step RMS %.2f mm (baseline %.2f mm), sigma x%.2f, g=%s",
             n_total, sample.index.size, train_cols.size, fc.report["r2_mean"], fc.report["val_rms_lstm_mm"],
             fc.report["val_rms_baseline_mm"], calib, fc.report["gap_factor"])
    del sample, xs, f, pred_mm, resid, rc

    offset = 0
    for i in tqdm(range(n_tiles), desc="fit: warm-up", disable=not progress, leave=False):
        index, coef, scale = fits[i]
        fits[i] = (index, coef[:0], scale[:0])  # the tile's arrays now belong to its TileModel
        ts = read(i)
        if not np.array_equal(ts.index, index):
            raise RuntimeError(f"tile {i} returned other pixels on its second read; the source must be stable")
        tm, state = _warm_tile(fc, ts, coef, scale, years, cm, n_fit, calib, offset if per_pixel else None, null)
        offset += index.size
        emit(i, tm, state)
    return fc


def _warm_tile(fc: Forecaster, ts: TileSeries, coef: np.ndarray, scale: np.ndarray, years: np.ndarray, cm: np.ndarray,
               n_fit: int, calib: float, offset: int | None, null: NullObjects | None = None) -> tuple[TileModel, PixelState]:
    """One tile's sigma and warm state (pass 2); its null residuals to ``null``."""
    n_t, n_p = ts.y.shape
    trend = evaluate_trend(coef, years)
    xn = ((ts.y - trend) / scale).astype(np.float32)
    pixels = None if offset is None else offset + np.arange(n_p)
    f, (h, c) = fc.run_sequence(xn, pixels=pixels)
    resid = ts.y - (trend + scale * f)
    resid[:BURN_IN] = np.nan
    sigma = (residual_sigma(resid[:n_fit] - cm[:n_fit, None]) * calib).astype(np.float32)
    since = np.zeros(n_p, dtype=np.int32)
    # missing slots before each slot, for the null's g(m); only when there is a null to feed
    gap_in = np.zeros((n_t, n_p), dtype=np.int16) if null is not None else None
    for t in range(n_t):
        if gap_in is not None:
            gap_in[t] = since
        since = np.where(np.isfinite(ts.y[t]), 0, since + 1)
    if null is not None:
        null.add(ts.index, null_z(resid - cm[:, None], sigma, fc.gap_factor, gap_in, n_fit, calib))
    dev = fc.device
    state = PixelState(h.to(STATE_DTYPE), c.to(STATE_DTYPE), torch.from_numpy(since).to(dev), torch.zeros(n_p, device=dev), n_t - 1)
    return TileModel(ts.index, coef, scale, sigma), state


def fit_forecaster(
    y: np.ndarray,
    calendar: Calendar,
    cfg: TrainConfig,
    device: torch.device,
    nm: float = 6.0,
    common_mode_enabled: bool = True,
    progress: bool = False,
) -> tuple[Forecaster, PixelState]:
    """Fit the forecaster on in-memory training series (one tile of P pixels).

    Args:
        y: (T, P) float32 calendar-regular training displacement, LOS mm, NaN = gap.
        calendar: the frame's calendar (slot 0 = first row of ``y``).
        nm: N_m, used only to keep anomalies out of the common mode while calibrating.
        common_mode_enabled: remove each slot's robust common mode before measuring sigma,
            exactly as scoring will (disable for a single pixel).

    Returns:
        (forecaster over the P pixels, state after slot T-1).
    """
    out: list[tuple[TileModel, PixelState]] = []
    fc = fit_tiles(1, lambda _: TileSeries(np.arange(y.shape[1], dtype=np.int64), y), calendar, cfg, device,
                   lambda _, tm, st: out.append((tm, st)), nm=nm, common_mode_enabled=common_mode_enabled, progress=progress)
    tm, state = out[0]
    return fc.with_pixels(tm.coef, tm.scale, tm.sigma), state
