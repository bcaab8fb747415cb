"""The per-pixel forecaster P_k: trend normalisation + LSTM + calibrated sigma + gap factors.

For pixel p at slot k the forecast (LOS mm, +towards satellite) is

    P_k = trend_p(k) + offset_p + scale_p * f(x_{<k})

where ``trend`` is the pixel's offset + velocity + annual fit on its training epochs, ``scale``
the std of the departures from it, ``f`` the LSTM's forecast of the normalised departure from
the pixel's own observed history, and ``offset`` the level shift learned from confirmed steps
(re-anchoring; DESIGN.md §1). sigma (eq. 3) is the std of *one-step-ahead* residuals, the same
kind of residual that scoring uses, calibrated on held-out training epochs.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ladsdin.models.baseline import evaluate_trend, fit_trend, last_value_forecast
from ladsdin.models.cleaning import Calendar
from ladsdin.models.lstm import make_inputs
from ladsdin.models.thresholds import common_mode, residual_sigma
from ladsdin.models.training import TrainConfig, grid_search

log = logging.getLogger(__name__)

#: Slots at the start of the record whose forecasts are ignored while the state spins up.
BURN_IN = 6
#: Longest gap (slots) whose forecast error is measured; longer gaps reuse the last factor.
MAX_GAP = 8
#: Pixels per chunk when the network runs over whole sequences.
CHUNK = 65_536
#: Bounds of the held-out/in-sample sigma calibration ratio.
CALIBRATION_BOUNDS = (1.0, 2.0)


@dataclass
class PixelState:
    """Recurrent state of every modelled pixel after slot ``slot`` (tensors on the model device).

    h, c: (K, P, S) float32; pred: (P,) normalised forecast of slot+1; since_obs: (P,) int32
    slots since the pixel's last observation (0 = observed at ``slot``); offset: (P,) float32 mm.
    """

    h: torch.Tensor
    c: torch.Tensor
    pred: torch.Tensor
    since_obs: torch.Tensor
    offset: torch.Tensor
    slot: int


@dataclass
class Forecaster:
    """A fitted forecaster for P pixels of one frame. Arrays are (P,) unless noted."""

    net: nn.Module
    calendar: Calendar
    coef: np.ndarray  # (P, 4) float64 trend coefficients, mm and mm/yr
    scale: np.ndarray  # (P,) float32 mm
    sigma: np.ndarray  # (P,) float32 mm, NaN = not scored
    gap_factor: np.ndarray  # (MAX_GAP,) float32, g(m) for an m-step forecast, g(1) = 1
    device: torch.device
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def n_pixels(self) -> int:
        return int(self.scale.size)

    def trend(self, slot: int) -> torch.Tensor:
        """Trend of every pixel at ``slot``, (P,) float32 mm on the model device."""
        return torch.from_numpy(evaluate_trend(self.coef, self.calendar.years(np.array([slot])))[0]).to(self.device)

    def widen(self, horizon: torch.Tensor) -> torch.Tensor:
        """g(m) per pixel for forecast horizons m >= 1, (P,) float32."""
        g = torch.from_numpy(self.gap_factor).to(self.device)
        return g[(horizon.clamp(min=1, max=len(self.gap_factor)) - 1).long()]

    def init_state(self) -> PixelState:
        h, c = self.net.init_state(self.n_pixels, self.device)
        z = torch.zeros(self.n_pixels, device=self.device)
        return PixelState(h, c, z.clone(), torch.zeros(self.n_pixels, dtype=torch.int32, device=self.device), z.clone(), -1)

    @torch.no_grad()
    def predict(self, state: PixelState) -> tuple[torch.Tensor, torch.Tensor]:
        """Forecast slot ``state.slot + 1``: (P_k (P,) mm, horizon m (P,) int32 = slots since last obs + 1)."""
        k = state.slot + 1
        p = self.trend(k) + state.offset + torch.from_numpy(self.scale).to(self.device) * state.pred
        return p, state.since_obs + 1

    @torch.no_grad()
    def advance(self, state: PixelState, obs: torch.Tensor | None) -> PixelState:
        """Feed slot ``state.slot + 1``: ``obs`` (P,) mm with NaN = not observed, or None for a
        missing acquisition. Observations always advance the state, anomalous or not."""
        k = state.slot + 1
        scale = torch.from_numpy(self.scale).to(self.device)
        if obs is None:
            xn = torch.full((self.n_pixels,), float("nan"), device=self.device)
        else:
            xn = (obs - self.trend(k) - state.offset) / scale
        pred, (h, c) = self.net(make_inputs(xn[None]), (state.h, state.c))
        seen = torch.isfinite(xn)
        since = torch.where(seen, torch.zeros_like(state.since_obs), state.since_obs + 1)
        return PixelState(h, c, pred[0], since, state.offset, k)

    @torch.no_grad()
    def run_sequence(self, xn: np.ndarray, pixels: np.ndarray | None = None, chunk: int = CHUNK) -> tuple[np.ndarray, tuple[torch.Tensor, torch.Tensor]]:
        """Run the network over normalised series (T, B) from a zero state.

        Args:
            xn: (T, B) float32 normalised departures, NaN = gap.
            pixels: (B,) indices of these columns among the model's pixels (per-pixel models
                only; default all pixels in order).

        Returns:
            (forecasts (T, B) float32 where row t is the forecast *of* slot t made after slot
            t-1 (row 0, with no history, is 0: the trend itself), final (h, c) each (K, B, S)).
        """
        n_t, n_p = xn.shape
        out = np.zeros((n_t, n_p), dtype=np.float32)
        per_pixel = self.net.kind == "per-pixel"
        if per_pixel and pixels is None:
            pixels = np.arange(n_p)
        hs, cs = [], []
        for s in range(0, n_p, chunk):
            x = torch.from_numpy(np.ascontiguousarray(xn[:, s : s + chunk])).to(self.device)
            sel = torch.from_numpy(pixels[s : s + chunk]).to(self.device) if per_pixel else None
            pred, (h, c) = self.net(make_inputs(x), pixels=sel)
            out[1:, s : s + chunk] = pred[:-1].cpu().numpy()
            hs.append(h)
            cs.append(c)
        return out, (torch.cat(hs, 1), torch.cat(cs, 1))


def _residual_common_mode(resid: np.ndarray, nm: float, enabled: bool) -> np.ndarray:
    """Per-slot robust common mode of a (T, P) residual stack, (T,) mm (0 where disabled)."""
    cm = np.zeros(resid.shape[0], dtype=np.float32)
    if not enabled:
        return cm
    prelim = np.nanstd(resid, axis=0)
    for t in range(resid.shape[0]):
        cm[t] = common_mode(resid[t], prelim, nm)
    return cm


def _gap_factors(fc: Forecaster, xn: np.ndarray, y: np.ndarray, trend: np.ndarray, cm_enabled: bool, nm: float, rng: np.random.Generator) -> np.ndarray:
    """Measure g(m), the growth of forecast error across m-1 missing slots, on training data.

    Gaps are made by hiding observed inputs (never by inventing values); the error of the
    forecast at the first slot after each hidden run is compared with the one-step error at the
    same slots. The result is non-decreasing with g(1) = 1 (DESIGN.md §1: measured 1.0-1.3x for
    24 days, where a sqrt(m) rule would blind the detector after every gap).
    """
    n_t, n_p = xn.shape
    pick = rng.choice(n_p, size=min(n_p, 2000), replace=False)
    xs, ys, ts = xn[:, pick], y[:, pick], trend[:, pick]
    scale = fc.scale[pick]
    sig = fc.sigma[pick]

    def norm_errors(x_in: np.ndarray) -> np.ndarray:
        f, _ = fc.run_sequence(x_in, pixels=pick)
        r = ys - (ts + scale * f)
        return np.abs(r - _residual_common_mode(r, nm, cm_enabled)[:, None]) / sig

    one_step = norm_errors(xs)  # the same slots forecast with no gap: the reference error
    g = np.ones(MAX_GAP, dtype=np.float32)
    for m in range(2, MAX_GAP + 1):
        # Hide m-1 slots before every target, with 3 observed slots between windows so the
        # state re-settles; one run per m covers ~n_t/(m+3) targets on every sampled pixel.
        hide = np.zeros((n_t, 1), dtype=bool)
        tgt = np.zeros((n_t, 1), dtype=bool)
        for start in range(BURN_IN, n_t - m, m + 3):
            hide[start + 1 : start + m] = True
            tgt[start + m] = True
        targets = tgt & np.isfinite(xs) & np.isfinite(sig)[None, :]
        if targets.sum() < 50:
            g[m - 1] = g[m - 2]
            continue
        gap_err = norm_errors(np.where(hide, np.nan, xs))[targets]
        g[m - 1] = float(np.median(gap_err) / max(float(np.median(one_step[targets])), 1e-6))
    return np.maximum.accumulate(np.maximum(g, 1.0))


def fit_forecaster(
    y: np.ndarray,
    calendar: Calendar,
    cfg: TrainConfig,
    device: torch.device,
    nm: float = 6.0,
    common_mode_enabled: bool = True,
    progress: bool = False,
) -> tuple[Forecaster, PixelState]:
    """Fit the forecaster on the training slots and warm every pixel's state through them.

    Args:
        y: (T, P) float32 calendar-regular training displacement, LOS mm, NaN = gap.
        calendar: the frame's calendar (slot 0 = first row of ``y``).
        nm: N_m, used only to keep anomalies out of the common mode while calibrating.
        common_mode_enabled: remove each slot's robust common mode before measuring sigma,
            exactly as scoring will (disable for a single pixel).

    Returns:
        (forecaster, state after slot T-1).
    """
    n_t, n_p = y.shape
    slots = np.arange(n_t)
    years = calendar.years(slots)
    coef = fit_trend(y, years)
    trend = evaluate_trend(coef, years)
    dep = y - trend
    scale = np.maximum(np.nan_to_num(np.nanstd(dep, axis=0), nan=1.0), 1.0).astype(np.float32)
    xn = (dep / scale).astype(np.float32)

    rng = np.random.default_rng(cfg.seed)
    train_cols = np.arange(n_p) if cfg.kind == "per-pixel" or n_p <= cfg.train_pixels else np.sort(rng.choice(n_p, cfg.train_pixels, replace=False))
    net, best, candidates = grid_search(xn[:, train_cols], cfg, device, progress)
    if cfg.kind == "per-pixel" and train_cols.size != n_p:  # pragma: no cover - per-pixel trains all
        raise RuntimeError("per-pixel models must be trained on every pixel")
    fc = Forecaster(net, calendar, coef, scale, np.full(n_p, np.nan, np.float32), np.ones(MAX_GAP, np.float32), device)

    f, (h, c) = fc.run_sequence(xn)
    pred_mm = trend + scale * f
    resid = y - pred_mm
    resid[:BURN_IN] = np.nan
    cm = _residual_common_mode(resid, nm, common_mode_enabled)
    rc = resid - cm[:, None]
    n_fit = int(round(n_t * (1.0 - cfg.val_fraction)))
    sigma_fit = residual_sigma(rc[:n_fit])  # eq. 3 on one-step-ahead residuals
    sigma_val = residual_sigma(rc[n_fit:], min_samples=5)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = sigma_val / sigma_fit
    ratio = ratio[np.isfinite(ratio)]
    calib = float(np.clip(np.median(ratio), *CALIBRATION_BOUNDS)) if ratio.size else 1.0
    fc.sigma = (sigma_fit * calib).astype(np.float32)
    fc.gap_factor = _gap_factors(fc, xn, y, trend, common_mode_enabled, nm, rng)

    # Training R² like the paper (forecast vs observation over the training slots, per pixel).
    obs = np.isfinite(y) & np.isfinite(pred_mm)
    obs[:BURN_IN] = False
    ss_res = np.where(obs, (y - pred_mm) ** 2, 0).sum(0)
    ymean = np.where(obs, y, 0).sum(0) / np.maximum(obs.sum(0), 1)
    ss_tot = np.where(obs, (y - ymean) ** 2, 0).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        r2 = np.where(ss_tot > 0, 1.0 - ss_res / ss_tot, np.nan)

    # The classical baseline on the same held-out slots, with the same common-mode correction.
    base, _ = last_value_forecast(y, coef, years)
    rb = y - base
    rb[:BURN_IN] = np.nan
    rb -= _residual_common_mode(rb, nm, common_mode_enabled)[:, None]

    def rms(a: np.ndarray) -> float:
        return float(np.sqrt(np.nanmean(a**2)))

    fc.report = {
        "kind": cfg.kind,
        "layers": best.layers,
        "hidden": best.hidden,
        "passes": best.passes,
        "best_pass": best.best_pass,
        "train_pixels": int(train_cols.size),
        "grid": [{"layers": r.layers, "hidden": r.hidden, "val_loss": r.val_loss, "passes": r.passes, "seconds": round(r.seconds, 2)} for r in candidates],
        "r2_mean": float(np.nanmean(r2)),
        "r2_median": float(np.nanmedian(r2)),
        "sigma_calibration": calib,
        "sigma_median_mm": float(np.nanmedian(fc.sigma)),
        "gap_factor": [round(float(v), 3) for v in fc.gap_factor],
        "val_rms_lstm_mm": rms(rc[n_fit:]),
        "val_rms_baseline_mm": rms(rb[n_fit:]),
    }
    log.info("forecaster: R2 mean %.3f, val one-step RMS %.2f mm (baseline %.2f mm), sigma x%.2f, g=%s", fc.report["r2_mean"], fc.report["val_rms_lstm_mm"], fc.report["val_rms_baseline_mm"], calib, fc.report["gap_factor"])
    since = np.zeros(n_p, dtype=np.int32)
    for t in range(n_t):
        since = np.where(np.isfinite(y[t]), 0, since + 1)
    state = PixelState(
        h, c, torch.from_numpy(_next_forecast(fc, xn, h, c)).to(device), torch.from_numpy(since).to(device), torch.zeros(n_p, device=device), n_t - 1
    )
    return fc, state


def _next_forecast(fc: Forecaster, xn: np.ndarray, h: torch.Tensor, c: torch.Tensor) -> np.ndarray:
    """The forecast of slot T from the final state: the head of the last layer's h."""
    net = fc.net
    with torch.no_grad():
        if net.kind == "shared":
            return net.head(h[-1]).squeeze(-1).cpu().numpy()
        return ((h[-1] * net.head_w).sum(-1) + net.head_b).cpu().numpy()
