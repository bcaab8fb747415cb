"""The frame-wide screens of one epoch, on the valid pixels' residuals (paper steps 5-7).

Shared by the learned detector (:func:`ladsdin.models.scoring.score_epoch`) and the classical
baseline (:mod:`ladsdin.models.classical`), so that the two differ only in their forecasts:

1. **A robust common mode.** The epoch's frame-wide offset (or plane), estimated on the pixels
   outside the post-event regime; when the epoch holds seismic objects it is estimated again
   without them (and a margin around them), so an event that covers much of a frame, or its
   afterslip, cannot bias it.
2. **Anomalies** (eq. 4) on the corrected residual, less the confirmed steps.
3. **C_k against N_a** (eq. 5) and **seismic objects** (eq. 6): connected anomalies of one sign
   (``ScoreParams.sign_split``), more than N_a pixels (or the null floor,
   :mod:`ladsdin.models.null_floor`, where that is larger). D_s comes from the uncorrected residual
   (DESIGN.md §1).
4. **The re-anchoring region**: the pixels above half the threshold, of the object's sign,
   connected to a seismic object (the deformation field reaches beyond the N_m sigma contour).

Arrays named ``*_v`` are (V,) over the valid pixels ``vidx`` (flat, row-major) of the frame.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ladsdin.models.detector import COMMON_MODES, ScoreParams
from ladsdin.models.labelling import SeismicObject, label_objects, object_sizes, seismic_objects
from ladsdin.models.thresholds import MIN_PIXELS_FOR_COMMON_MODE, common_mode, planar_ramp
from ladsdin.models.tiling import scatter_tiles


def common_mode_at(resid_v: np.ndarray, sigma_v: np.ndarray, vidx: np.ndarray, n_lon: int, mode: str, nm: float,
                   exclude_v: np.ndarray | None = None, bound: float = float("inf")) -> np.ndarray:
    """The epoch's common mode at the valid pixels, mm, estimated on those not in ``exclude_v``
    (on all of them when fewer than ``MIN_PIXELS_FOR_COMMON_MODE`` would remain), within
    ``bound`` (:func:`ladsdin.models.thresholds.common_mode_bound`)."""
    if mode == "none" or vidx.size < MIN_PIXELS_FOR_COMMON_MODE:
        return np.zeros(vidx.size, np.float32)
    use = resid_v
    if exclude_v is not None and exclude_v.any() and (~exclude_v).sum() >= MIN_PIXELS_FOR_COMMON_MODE:
        use = np.where(exclude_v, np.float32(np.nan), resid_v)
    if mode == "median":
        return np.full(vidx.size, common_mode(use, sigma_v, nm, bound=bound), np.float32)
    if mode == "plane":
        rows, cols = np.divmod(vidx, n_lon)
        return planar_ramp(use, rows.astype(np.float64), cols.astype(np.float64), sigma_v, nm, bound=bound).astype(np.float32)
    raise ValueError(f"unknown common mode '{mode}'; use one of {COMMON_MODES}")


def object_margin_px(n_a: int) -> int:
    """Pixels around a seismic object left out of the common mode's second estimate, and within
    which pixels unobserved at the event join its post-event regime: half the side of an N_a
    square, at least 3."""
    return max(3, math.ceil(0.5 * math.sqrt(max(n_a, 1))))


@dataclass
class Screened:
    """What the screens found in one epoch."""

    rc_v: np.ndarray  # corrected residual, mm
    cm_v: np.ndarray  # common mode, mm
    hit_v: np.ndarray  # bool, anomalous (eq. 4) and not a confirmed step
    confirmed_v: np.ndarray  # bool, a step confirmed at this observation
    anomaly: np.ndarray  # (n_lat, n_lon) bool
    c_k: int
    examined: bool  # C_k >= N_a
    objects: list[SeismicObject]
    deformation: np.ndarray  # (n_lat, n_lon) float32 D_s, NaN outside seismic objects
    largest: int  # pixels in the largest connected anomaly object, seismic or not
    seismic: np.ndarray  # (n_lat, n_lon) bool


def _map(values_v: np.ndarray, vidx: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(V,) values at the valid pixels -> a (n_lat, n_lon) map: False for a bool mask, NaN otherwise."""
    if values_v.dtype == bool:
        return scatter_tiles(shape, [(vidx, values_v)], fill=False, dtype=bool)
    return scatter_tiles(shape, [(vidx, values_v)])


def _anomalies(rc_v: np.ndarray, thr_v: np.ndarray, pending_v: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(invalid="ignore"):
        # A step confirmed: anomalous last time it was seen, not re-anchored then, and the level
        # has held since (DESIGN.md §1). Measured against that level it is normal.
        if pending_v is None:
            confirmed = np.zeros(rc_v.size, bool)
        else:
            confirmed = np.isfinite(pending_v) & (np.abs(rc_v - pending_v) <= thr_v)
        hit = (np.abs(rc_v) > thr_v) & ~confirmed  # eq. 4 on the common-mode-corrected residual
    return hit, confirmed


def screen_epoch(resid_v: np.ndarray, thr_v: np.ndarray, sigma_v: np.ndarray, vidx: np.ndarray, shape: tuple[int, int],
                 params: ScoreParams, pending_v: np.ndarray | None = None, exclude_v: np.ndarray | None = None,
                 cm_bound: float = float("inf")) -> Screened:
    """Run the screens on one epoch.

    Args:
        resid_v: D_k - P_k, mm; thr_v: the pixels' thresholds (N_m sigma g(m), or the
            post-event regime's), mm; sigma_v: eq. 3 sigma, mm (weights the common mode).
        pending_v: steps awaiting confirmation, mm (NaN = none); None for a detector without.
        exclude_v: pixels kept out of the common mode (the post-event regime's).
        cm_bound: the largest plausible common mode, mm (from training; inf = unbounded).
    """
    n = shape[0] * shape[1]
    cm_v = common_mode_at(resid_v, sigma_v, vidx, shape[1], params.common_mode, params.nm, exclude_v, cm_bound)
    rc_v = resid_v - cm_v
    hit, confirmed = _anomalies(rc_v, thr_v, pending_v)
    objects, deformation, largest = _objects(hit, rc_v, resid_v, vidx, shape, params)
    if objects and params.common_mode != "none":
        # the common mode again, without the objects and a margin around them
        seismic = np.isfinite(deformation)
        near = ndimage.binary_dilation(seismic, iterations=object_margin_px(params.n_a)).reshape(-1)[vidx]
        excl = near if exclude_v is None else (near | exclude_v)
        cm2 = common_mode_at(resid_v, sigma_v, vidx, shape[1], params.common_mode, params.nm, excl, cm_bound)
        if np.abs(cm2 - cm_v).max(initial=0.0) > 1e-3:
            cm_v, rc_v = cm2, resid_v - cm2
            hit, confirmed = _anomalies(rc_v, thr_v, pending_v)
            objects, deformation, largest = _objects(hit, rc_v, resid_v, vidx, shape, params)
    c_k = int(hit.sum())
    return Screened(rc_v, cm_v, hit, confirmed, _map(hit, vidx, shape), c_k, c_k >= params.n_a, objects, deformation,
                    largest, np.isfinite(deformation))


def _objects(hit: np.ndarray, rc_v: np.ndarray, resid_v: np.ndarray, vidx: np.ndarray, shape: tuple[int, int],
             params: ScoreParams) -> tuple[list[SeismicObject], np.ndarray, int]:
    anomaly_map = _map(hit, vidx, shape)
    positive = _map(rc_v > 0, vidx, shape) if params.sign_split else None
    if hit.sum() >= params.n_a:  # eq. 5, temporal screen
        # D_s from the uncorrected residual (DESIGN.md §1): a large event moves the median too.
        return seismic_objects(anomaly_map, _map(resid_v, vidx, shape), params.min_object, params.connectivity, positive)
    labels, n_obj = label_objects(anomaly_map, positive, params.connectivity)
    largest = int(object_sizes(labels, n_obj).max()) if n_obj else 0
    return [], np.full(shape, np.nan, np.float32), largest


def grow_region(sc: Screened, thr_v: np.ndarray, vidx: np.ndarray, shape: tuple[int, int], params: ScoreParams,
                fraction: float = 0.5) -> np.ndarray:
    """(V,) bool: pixels above ``fraction`` of their threshold, connected to a seismic object
    (of its sign with ``sign_split``): the pixels re-anchored with it (hysteresis)."""
    with np.errstate(invalid="ignore"):
        weak_map = _map(np.abs(sc.rc_v) > fraction * thr_v, vidx, shape)
    labels, _ = label_objects(weak_map, _map(sc.rc_v > 0, vidx, shape) if params.sign_split else None, params.connectivity)
    hit_labels = np.unique(labels[sc.seismic])
    return np.isin(labels, hit_labels[hit_labels > 0]).reshape(-1)[vidx]


def near_objects(seismic: np.ndarray, n_a: int) -> np.ndarray:
    """(n_lat, n_lon) bool: within :func:`object_margin_px` of a seismic object."""
    return ndimage.binary_dilation(seismic, iterations=object_margin_px(n_a))


def afterslip_objects(after_v: np.ndarray, thr_v: np.ndarray, vidx: np.ndarray, shape: tuple[int, int],
                      params: ScoreParams) -> tuple[list[SeismicObject], np.ndarray]:
    """Objects of unreported post-event motion: connected pixels of one sign whose motion since
    the last report (``after_v``, NaN off the regime) exceeds their threshold, more than ``ScoreParams.min_object`` of
    them. Returns (objects with their motion as D_s, (V,) bool pixels in them)."""
    with np.errstate(invalid="ignore"):
        sig = np.abs(after_v) > thr_v
    if sig.sum() <= params.min_object:
        return [], np.zeros(vidx.size, bool)
    objs, field, _ = seismic_objects(_map(sig, vidx, shape), _map(after_v, vidx, shape), params.min_object, params.connectivity,
                                     _map(after_v > 0, vidx, shape))
    return objs, np.isfinite(field).reshape(-1)[vidx]


__all__ = ["Screened", "afterslip_objects", "common_mode_at", "grow_region", "near_objects",
           "object_margin_px", "screen_epoch"]
