"""The object-size floor calibrated on the training epochs' null (issue: a lower floor for Mw 5.5-6).

At a low N_m and a small A_s, coherent atmosphere alone makes connected anomalies of N_a pixels
on many epochs; how large they get depends on the frame and on the forecaster (a forecaster that
removes more of the per-pixel noise leaves the coherent atmosphere as a larger share of its
residual, so its null objects are larger). The floor measures that on the frame itself:

1. **The null.** Each training slot's one-step residuals (after the slot's common mode, over
   the pixels' sigma and gap factor, i.e. the score's own z) are thresholded at N_m, and the
   largest connected one-sign object of the slot is kept (:class:`NullObjects`). The training
   epochs are assumed free of events: they are what the model learns as normal.
2. **The tail.** The per-slot largest sizes over the training slots give the size that a
   slot exceeds with probability p = (false alerts per frame-year) x (days per slot) / 365.25:
   a power-law tail fitted to the largest 10 % of them (Hill estimator) and extrapolated
   (:func:`object_floor`). With ~100 training slots this extrapolates ~3x beyond the sample,
   so the floor is noisy from frame to frame (docs/BENCHMARKS.md). An event left in the
   training epochs raises it: the training epochs must be what the model is to learn as normal.
3. **The floor.** A seismic object then needs more than max(N_a, floor) pixels. At the paper's
   settings (N_m 6, A_s of tens of km²) the floor is far below N_a and changes nothing.

Hits are kept as flat pixel indices per slot (sparse: a few % of pixels at N_m >= 3), and the
objects are labelled on the whole frame after the last tile, so the floor does not depend on
the tiling.
"""
from __future__ import annotations

import math

import numpy as np

from ladsdin.models.labelling import label_objects, object_sizes

#: Fewer calibration slots than this give no floor (0): the tail cannot be estimated.
MIN_NULL_SLOTS = 20
#: Fewer null objects than this give no tail fit in :func:`exceedance_floor` (the largest seen instead).
MIN_TAIL_OBJECTS = 20
#: Share of the per-slot largest sizes, from the top, that the tail is fitted on.
TAIL_FRACTION = 0.1


class NullObjects:
    """Per-slot largest anomaly objects (one-sign with ``sign_split``) of the training residuals, over a whole frame.

    Args:
        shape: (n_lat, n_lon) of the frame's grid; pixels are flat row-major indices into it.
        n_slots: training slots.
        nm: N_m (eq. 4).
        sign_split: objects hold one sign (as scoring's ``ScoreParams.sign_split``).
    """

    def __init__(self, shape: tuple[int, int], n_slots: int, nm: float, connectivity: int = 4, sign_split: bool = True) -> None:
        self.shape = shape
        self.nm = float(nm)
        self.connectivity = connectivity
        self.sign_split = sign_split
        self._pos: list[list[np.ndarray]] = [[] for _ in range(n_slots)]
        self._neg: list[list[np.ndarray]] = [[] for _ in range(n_slots)]
        self._seen = np.zeros(n_slots, bool)

    def add(self, index: np.ndarray, z: np.ndarray) -> None:
        """Add a set of pixels: ``index`` (p,) flat grid indices, ``z`` (T, p) residual over its
        threshold's sigma (NaN = no residual)."""
        with np.errstate(invalid="ignore"):
            for t in range(z.shape[0]):
                row = z[t]
                ok = np.isfinite(row)
                if not ok.any():
                    continue
                self._seen[t] = True
                self._pos[t].append(index[row > self.nm].astype(np.int64))
                self._neg[t].append(index[row < -self.nm].astype(np.int64))

    def _slot_sizes(self, t: int) -> np.ndarray:
        """Sizes (pixels) of every one-sign object of training slot ``t`` (empty if none)."""
        n = self.shape[0] * self.shape[1]
        hit = np.zeros(n, bool)
        pos = np.zeros(n, bool)
        for a in self._pos[t]:
            hit[a] = pos[a] = True
        for a in self._neg[t]:
            hit[a] = True
        if not hit.any():
            return np.zeros(0, np.int64)
        labels, k = label_objects(hit.reshape(self.shape), pos.reshape(self.shape) if self.sign_split else None,
                                  self.connectivity)
        return object_sizes(labels, k)

    def sizes(self) -> tuple[np.ndarray, int]:
        """(sizes of every object of every slot that had data, the number of those slots)."""
        seen = np.flatnonzero(self._seen)
        parts = [self._slot_sizes(int(t)) for t in seen]
        return (np.concatenate(parts) if parts else np.zeros(0, np.int64)), int(seen.size)

    def largest(self) -> np.ndarray:
        """(S,) int64: the largest one-sign object (pixels) of each training slot that had data."""
        out = []
        for t in np.flatnonzero(self._seen):
            sz = self._slot_sizes(int(t))
            out.append(int(sz.max()) if sz.size else 0)
        return np.asarray(out, np.int64)


def object_floor(largest: np.ndarray, false_alerts_per_year: float, step_days: int) -> tuple[int, dict]:
    """The object size (pixels) that the null exceeds at the requested rate.

    A Pareto (power-law) tail through the largest ``TAIL_FRACTION`` of the per-slot sizes,
    with its index from the Hill estimator, extrapolated to p = rate x step / 365.25. Per-slot
    null sizes are heavy-tailed (most slots hold a few pixels, the rare storm or unwrapping
    error hundreds), so an exponential tail would under-state them.

    Args:
        largest: per-slot largest null objects (:meth:`NullObjects.largest`).
        false_alerts_per_year: the tolerated rate of null alerts per frame-year; 0 = no floor.
        step_days: days per slot.

    Returns:
        (floor in pixels, 0 = none; a report of the fit for the training report).
    """
    info: dict = {"null_slots": int(largest.size), "null_rate_per_year": float(false_alerts_per_year)}
    if false_alerts_per_year <= 0 or largest.size < MIN_NULL_SLOTS:
        return 0, {**info, "null_floor_px": 0}
    p = min(false_alerts_per_year * step_days / 365.25, 0.5)
    x = np.sort(np.maximum(largest.astype(np.float64), 1.0))[::-1]
    k = max(int(round(TAIL_FRACTION * x.size)), 5)
    u = float(x[k])
    info.update(null_p50_px=float(np.median(largest)), null_max_px=int(largest.max()), null_tail_from_px=u)
    tail = _pareto_floor(x, k, k / x.size, p)
    if tail is None:  # a flat null (e.g. no anomalies at all): nothing to extrapolate
        floor_px = int(largest.max())
        return floor_px, {**info, "null_floor_px": floor_px}
    floor_px, alpha = tail
    return floor_px, {**info, "null_tail_index": round(alpha, 3), "null_floor_px": floor_px}


def _pareto_floor(x: np.ndarray, k: int, rate_above_u: float, p: float) -> tuple[int, float] | None:
    """The size exceeded at rate ``p`` by a Pareto tail through the ``k`` largest of ``x``
    (sorted, largest first) above u = x[k], which is exceeded at ``rate_above_u``: (floor in
    pixels, the Hill (1975) tail index), or None for a flat tail (nothing to extrapolate)."""
    u = float(x[k])
    mean_log = float(np.mean(np.log(x[:k] / u)))
    if mean_log <= 0.0:
        return None
    alpha = 1.0 / mean_log
    floor = u * max(rate_above_u / p, 1.0) ** (1.0 / alpha)
    return int(math.ceil(min(floor, 1e9))), alpha


def exceedance_floor(sizes: np.ndarray, n_slots: int, false_alerts_per_year: float, step_days: int) -> tuple[int, dict]:
    """The object size that null objects exceed at the requested rate, from *every* null object.

    :func:`object_floor` fits the tail of one number per slot (its largest object), which is
    unstable with a few tens of slots or a sparse null. Here the expected number of null objects
    per slot larger than x, N(x), is fitted over all objects of all slots: a Pareto tail through
    the largest ``TAIL_FRACTION`` of them (at least 10, Hill estimator), and the floor is the x
    with N(x) = p (P(largest > x) = 1 - exp(-N(x)) ~ N(x) at small p). With no null object at
    all there is nothing to extrapolate from, and the floor is 0 (N_a alone); with fewer than
    ``MIN_TAIL_OBJECTS`` it is the largest one seen, which under-states it for rates below one
    per ``n_slots`` (the report says ``null_tail: too few objects``).

    Args:
        sizes: every null object's size (:meth:`NullObjects.sizes`).
        n_slots: the slots they come from.
    """
    info: dict = {"null_slots": int(n_slots), "null_rate_per_year": float(false_alerts_per_year),
                  "null_objects": int(sizes.size)}
    if false_alerts_per_year <= 0 or n_slots < MIN_NULL_SLOTS or sizes.size == 0:
        return 0, {**info, "null_floor_px": 0}
    p = min(false_alerts_per_year * step_days / 365.25, 0.5)
    x = np.sort(sizes.astype(np.float64))[::-1]
    info["null_max_px"] = int(x[0])
    if x.size < MIN_TAIL_OBJECTS:  # too few to fit a tail: the largest one seen (rate 1 / n_slots)
        floor_px = int(x[0])
        return floor_px, {**info, "null_floor_px": floor_px, "null_tail": "too few objects"}
    need = int(math.ceil(p * n_slots))  # objects per n_slots at rate p: within the sample when > k
    k = min(max(int(round(TAIL_FRACTION * x.size)), 10), x.size - 1)
    if need > k:
        floor_px = int(x[min(need, x.size) - 1])
        return floor_px, {**info, "null_floor_px": floor_px}
    tail = _pareto_floor(x, k, k / n_slots, p)
    if tail is None:
        floor_px = int(x[0])
        return floor_px, {**info, "null_floor_px": floor_px}
    floor_px, alpha = tail
    return floor_px, {**info, "null_tail_from_px": float(x[k]), "null_tail_index": round(alpha, 3), "null_floor_px": floor_px}


__all__ = ["MIN_NULL_SLOTS", "MIN_TAIL_OBJECTS", "NullObjects", "exceedance_floor", "object_floor"]
