"""Residual scale, anomaly threshold and the temporal screen (paper eqs. 3-5).

All residuals are LOS mm, positive towards the satellite.
"""
from __future__ import annotations

import math
import warnings

import numpy as np

#: Mean Earth radius (km), IUGG; used for the pixel area of a lat/lon grid.
EARTH_RADIUS_KM = 6371.0088
#: Below this many valid pixels an epoch has no meaningful spatial common mode (e.g. one pixel).
MIN_PIXELS_FOR_COMMON_MODE = 100


def pixel_area_km2(lat_deg: float, dlat_deg: float, dlon_deg: float) -> float:
    """Area of one grid cell (km²) at latitude ``lat_deg`` for a lat/lon posting.

    A 0.001° LiCSAR pixel is ~0.0111 km² at the equator and ~0.0088 km² at 37.8°N, so the
    100 m rule of thumb is never hard-coded.
    """
    dy = EARTH_RADIUS_KM * math.radians(abs(dlat_deg))
    dx = EARTH_RADIUS_KM * math.radians(abs(dlon_deg)) * math.cos(math.radians(lat_deg))
    return dy * dx


def seismic_pixel_count(seismic_area_km2: float, pixel_area_km2: float, downsample: int = 1) -> int:
    """N_a = A_s / (A_p * t^2), the minimum anomalous-pixel count of a seismic epoch (eq. 5).

    ``pixel_area_km2`` is the native pixel area A_p and ``downsample`` the factor t. The result
    is rounded up: a count of pixels reaches the expected area only at the next whole pixel.
    The paper's values A_s = 600 km², A_p = 0.01 km², t = 30 give 66.7 -> 67.
    """
    if seismic_area_km2 <= 0 or pixel_area_km2 <= 0 or downsample < 1:
        raise ValueError(
            f"N_a needs A_s > 0 (got {seismic_area_km2}), A_p > 0 (got {pixel_area_km2}) and t >= 1 "
            f"(got {downsample})"
        )
    n_a = seismic_area_km2 / (pixel_area_km2 * downsample**2)  # eq. 5
    return max(1, math.ceil(n_a - 1e-9))


def series_nanstd(a: np.ndarray, ddof: int = 0) -> np.ndarray:
    """Per-pixel std over time of a (n_time, n_pix) stack, NaN ignored.

    Each pixel's value depends on its own series only, never on how many pixels share the call:
    numpy's reductions along a non-contiguous axis sum in an order that depends on the array's
    width, so the series are made contiguous first. This keeps tiled and untiled runs identical.
    """
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN / single-sample pixels -> NaN
        return np.nanstd(np.ascontiguousarray(np.asarray(a).T), axis=1, ddof=ddof)


def residual_sigma(residuals: np.ndarray, axis: int = 0, min_samples: int = 5, floor_mm: float = 0.5) -> np.ndarray:
    """Per-pixel residual scale sigma = std(E_r) over the training epochs (eq. 3).

    Args:
        residuals: (n_time, n_pix) float, LOS mm; NaN where not observed.
        min_samples: pixels with fewer finite residuals get NaN (not scored).
        floor_mm: lower bound, so a pixel with a near-constant record cannot flag every
            millimetre (the data are quantised far coarser than this).

    Returns:
        (n_pix,) float32 sigma in mm, NaN for pixels without enough samples.
    """
    r = np.moveaxis(np.asarray(residuals, dtype=np.float64), axis, 0)
    n = np.isfinite(r).sum(axis=0)
    sigma = series_nanstd(r, ddof=1) if r.shape[0] > 1 else np.full(n.shape, np.nan)  # eq. 3
    sigma = np.where(n >= min_samples, np.maximum(sigma, floor_mm), np.nan)
    return sigma.astype(np.float32)


def anomaly_mask(residual: np.ndarray, sigma: np.ndarray, nm: float, widen: np.ndarray | float = 1.0) -> np.ndarray:
    """Pixels with |D_k - P_k| > N_m * sigma (eq. 4), widened by the gap factor where a gap precedes.

    Args:
        residual: (...) D_k - P_k in LOS mm (NaN = unobserved, never anomalous).
        sigma: broadcastable to ``residual``, mm.
        nm: N_m, the threshold in units of sigma (paper: 6 for Mw 6.7, 3 for Mw 5.6).
        widen: the factor g(m) >= 1 for an m-step forecast across a gap (1 without a gap).

    Returns:
        bool array, same shape as ``residual``.
    """
    with np.errstate(invalid="ignore"):
        return np.abs(residual) > nm * sigma * widen  # eq. 4 (NaN compares False)


def temporal_screen(n_anomalous: int, n_a: int) -> bool:
    """An epoch is examined only if its count C_k of anomalous pixels reaches N_a (eq. 5)."""
    return n_anomalous >= n_a


def _histogram_mode(r: np.ndarray, bin_width: float) -> float:
    """Centre of the most populated bin (3-bin smoothed) of ``r``: the far-field level of an epoch.

    Unlike the median, the mode stays with the undeformed far field even when an earthquake
    covers most of a frame, because coseismic values spread over hundreds of mm while the far
    field piles up within a sigma or two.
    """
    lo, hi = np.percentile(r, [0.5, 99.5])
    bin_width = max(bin_width, (hi - lo) / 20_000, 1e-3)
    n_bins = max(int(np.ceil((hi - lo) / bin_width)), 1)
    counts, edges = np.histogram(r, bins=n_bins, range=(lo, lo + n_bins * bin_width))
    smooth = np.convolve(counts, np.ones(3), mode="same")
    k = int(np.argmax(smooth))
    return float(0.5 * (edges[k] + edges[k + 1]))


#: The common-mode bound: this factor times the largest training common mode, plus the margin.
COMMON_MODE_BOUND_FACTOR = 1.5
COMMON_MODE_BOUND_MARGIN_MM = 2.0


def common_mode_bound(cm_train: np.ndarray) -> float:
    """The largest common mode an epoch may have, mm: 1.5 x the largest of the training epochs'
    plus 2 mm (inf without training values).

    The common mode is a nuisance (reference-area noise, an unwrapping error at the reference):
    its size in training tells what it can be. An earthquake that covers most of a frame leaves
    too little far field for the histogram mode to find; without a bound, the mode lands on a
    deformed plateau (measured: -81 mm on a Menyuan frame whose training common modes stay within
    a few mm), every far-field pixel then looks anomalous, and the lobes shrink.
    """
    v = np.abs(np.asarray(cm_train, dtype=np.float64))
    v = v[np.isfinite(v)]
    if not v.size:
        return float("inf")
    return float(COMMON_MODE_BOUND_FACTOR * v.max() + COMMON_MODE_BOUND_MARGIN_MM)


def common_mode(residual: np.ndarray, sigma: np.ndarray, nm: float, iterations: int = 5, bound: float = float("inf")) -> float:
    """Robust frame-wide offset of one epoch's residual map (mm).

    Reference-area and unwrapping effects shift a whole epoch by tens of mm; removing that offset
    before thresholding matters more than the choice of model (DESIGN.md §1). The estimate starts
    at the histogram mode of the residuals and is refined by the median of the pixels within
    N_m sigma of it, so an earthquake covering most of a frame drags neither.

    Args:
        residual: (n_pix,) D_k - P_k, mm, NaN where unobserved.
        sigma: (n_pix,) residual scale, mm.

        bound: the largest plausible offset, mm (:func:`common_mode_bound`): the mode is sought
            among the residuals within it, and the result is clipped to it.

    Returns:
        The offset in mm; 0.0 when too few pixels are valid to estimate one.
    """
    ok = np.isfinite(residual) & np.isfinite(sigma)
    if ok.sum() < MIN_PIXELS_FOR_COMMON_MODE:
        return 0.0
    r, s = residual[ok], sigma[ok]
    inside = np.abs(r) <= bound
    start = r[inside] if inside.sum() >= MIN_PIXELS_FOR_COMMON_MODE else r
    cm = float(np.clip(_histogram_mode(start, 0.5 * float(np.median(s))), -bound, bound))
    for _ in range(iterations):
        keep = np.abs(r - cm) <= nm * s
        if keep.sum() < MIN_PIXELS_FOR_COMMON_MODE:
            break
        new = float(np.clip(np.median(r[keep]), -bound, bound))
        if abs(new - cm) < 1e-3:
            cm = new
            break
        cm = new
    return cm


def planar_ramp(
    residual: np.ndarray, rows: np.ndarray, cols: np.ndarray, sigma: np.ndarray, nm: float, iterations: int = 5,
    bound: float = float("inf"),
) -> np.ndarray:
    """Robust plane a + b*row + c*col fitted to one epoch's residuals (orbital/long-wave trend).

    Iteratively re-weighted: pixels further from the current plane than N_m sigma (or 3 robust
    std of the fit, whichever is larger) are left out of the next fit, so coseismic lobes do
    not tilt it while a genuine ramp keeps all its pixels.

    Returns:
        The plane at every pixel, (n_pix,) mm; zeros if too few pixels are valid.
    """
    ok0 = np.isfinite(residual) & np.isfinite(sigma)
    if ok0.sum() < MIN_PIXELS_FOR_COMMON_MODE:
        return np.zeros_like(residual)
    g_all = np.column_stack([np.ones(residual.size), rows, cols]).astype(np.float64)
    r = np.where(ok0, residual, 0.0).astype(np.float64)
    s = np.where(ok0, sigma, np.inf)
    # Start from the pixels near the epoch's far-field level, not from all of them.
    keep = ok0 & (np.abs(r - common_mode(residual, sigma, nm, bound=bound)) <= np.maximum(nm * s, 3.0 * float(np.nanmedian(sigma))))
    if keep.sum() < MIN_PIXELS_FOR_COMMON_MODE:
        keep = ok0.copy()
    plane = np.zeros(residual.size)
    for _ in range(iterations):
        coef, *_ = np.linalg.lstsq(g_all[keep], r[keep], rcond=None)
        plane = g_all @ coef
        dev = np.abs(r - plane)
        robust = 3.0 * 1.4826 * float(np.median(dev[keep]))
        new = ok0 & (dev <= np.maximum(nm * s, robust))
        if new.sum() < MIN_PIXELS_FOR_COMMON_MODE or (new == keep).all():
            break
        keep = new
    return plane.astype(residual.dtype)
