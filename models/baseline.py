"""The classical per-pixel model: offset + velocity + annual harmonics.

It serves twice. As the LSTM's per-pixel normaliser (the network sees the departure from this
trend in units of the pixel's scale), and as the baseline a learned forecaster must beat:
"last value + model increment" (DESIGN.md §1, method notes).
"""
from __future__ import annotations

import numpy as np

#: Columns of the design matrix.
TERMS = ("offset", "velocity_mm_per_yr", "annual_cos", "annual_sin")


def design_matrix(years: np.ndarray) -> np.ndarray:
    """(n_slots, 4) float64 design matrix [1, t, cos 2πt, sin 2πt] for times in years."""
    w = 2.0 * np.pi * years
    return np.column_stack([np.ones_like(years), years, np.cos(w), np.sin(w)])


def fit_trend(y: np.ndarray, years: np.ndarray, ridge: float = 1e-3) -> np.ndarray:
    """Least-squares trend per pixel over its observed slots.

    Args:
        y: (n_slots, n_pix) float32 LOS mm, NaN = not observed.
        years: (n_slots,) time in years.
        ridge: a small ridge on the harmonic and velocity terms, so pixels with short records
            stay well-posed without changing well-observed ones.

    Returns:
        (n_pix, 4) float64 coefficients (see ``TERMS``).
    """
    g = design_matrix(years)  # (T, 4)
    m = np.isfinite(y).astype(np.float64)  # (T, P)
    y0 = np.where(m > 0, y, 0.0).astype(np.float64)
    gg = (g[:, :, None] * g[:, None, :]).reshape(g.shape[0], 16)  # (T, 16)
    a = (m.T @ gg).reshape(-1, 4, 4)  # (P, 4, 4)
    a[:, [1, 2, 3], [1, 2, 3]] += ridge
    b = (y0.T @ g)  # (P, 4)
    a[:, 0, 0] = np.maximum(a[:, 0, 0], 1e-9)
    return np.linalg.solve(a, b[..., None])[..., 0]


def evaluate_trend(coef: np.ndarray, years: np.ndarray) -> np.ndarray:
    """Trend values (n_slots, n_pix) float32 for coefficients (n_pix, 4) at ``years`` (n_slots,)."""
    return (design_matrix(np.atleast_1d(years)) @ coef.T).astype(np.float32)


def last_value_forecast(y: np.ndarray, coef: np.ndarray, years: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The classical one-step forecast: last observed value + the trend's increment since then.

    Args:
        y: (n_slots, n_pix) LOS mm, NaN = gap.
        coef: (n_pix, 4) trend coefficients.
        years: (n_slots,) slot times.

    Returns:
        (forecast (n_slots, n_pix) float32, NaN before a pixel's first observation;
        horizon (n_slots, n_pix) int32 = slots since the last observation).
    """
    trend = evaluate_trend(coef, years)
    n_slots, n_pix = y.shape
    out = np.full((n_slots, n_pix), np.nan, dtype=np.float32)
    horizon = np.zeros((n_slots, n_pix), dtype=np.int32)
    last_anchor = np.full(n_pix, np.nan, dtype=np.float32)  # y_last - trend_last
    since = np.zeros(n_pix, dtype=np.int32)
    for s in range(n_slots):
        since += 1
        out[s] = trend[s] + last_anchor
        horizon[s] = since
        obs = np.isfinite(y[s])
        last_anchor[obs] = y[s, obs] - trend[s, obs]
        since[obs] = 0
    return out, horizon
