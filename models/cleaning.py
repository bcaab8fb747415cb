"""Cleaning (paper step 1): the regular acquisition calendar, gaps, masking, downsampling, KNN fill."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DAY = np.timedelta64(1, "D")


@dataclass(frozen=True)
class Calendar:
    """A regular acquisition calendar: slot i is the date ``start + i * step_days``."""

    start: np.datetime64
    step_days: int
    n_slots: int

    def date(self, slot: int) -> np.datetime64:
        return (self.start + int(slot) * self.step_days * DAY).astype("datetime64[D]")

    def dates(self) -> np.ndarray:
        """(n_slots,) datetime64[D] of every slot."""
        return (self.start + np.arange(self.n_slots) * self.step_days * DAY).astype("datetime64[D]")

    def slot_of(self, date: np.datetime64) -> int:
        """Nearest slot of a date (may lie beyond ``n_slots`` for a date after the calendar)."""
        days = (np.datetime64(date, "D") - self.start) / DAY
        return int(np.round(days / self.step_days))

    def years(self, slots: np.ndarray) -> np.ndarray:
        """Time of each slot in years since ``start`` (float64), for trend models."""
        return np.asarray(slots, dtype=np.float64) * self.step_days / 365.25

    def day_of_year(self, slots: np.ndarray) -> np.ndarray:
        """Day of year of each slot (float64), for seasonal terms."""
        d = self.start + np.asarray(slots) * self.step_days * DAY
        return ((d - d.astype("datetime64[Y]")) / DAY).astype(np.float64)


def regularise(times: np.ndarray, step_days: int = 12) -> tuple[Calendar, np.ndarray, np.ndarray]:
    """Place acquisition dates on a regular calendar and find the missing slots.

    Dates a day or two off the calendar (e.g. S1A/S1B alternation) round to the nearest slot.
    Where two acquisitions round to the same slot, the one nearer the slot date is kept.

    Args:
        times: (n_time,) datetime64, strictly increasing acquisition dates.
        step_days: calendar step; 12 days for Sentinel-1A alone (the paper's calendar).

    Returns:
        (calendar, slots (n_time,) int64 slot of every acquisition, keep (n_time,) bool: False for
        an acquisition that shares its slot with a closer one).
    """
    if step_days < 1:
        raise ValueError(f"step_days must be >= 1, got {step_days}")
    t = np.asarray(times).astype("datetime64[D]")
    days = ((t - t[0]) / DAY).astype(np.float64)
    slots = np.round(days / step_days).astype(np.int64)
    offset = np.abs(days - slots * step_days)
    keep = np.ones(t.size, dtype=bool)
    for s in np.unique(slots):
        idx = np.flatnonzero(slots == s)
        if idx.size > 1:
            best = idx[np.argmin(offset[idx])]
            keep[idx] = False
            keep[best] = True
    cal = Calendar(start=t[0], step_days=step_days, n_slots=int(slots.max()) + 1)
    return cal, slots, keep


def missing_slots(slots: np.ndarray, n_slots: int) -> np.ndarray:
    """Calendar slots with no acquisition, (n_missing,) int64."""
    present = np.zeros(n_slots, dtype=bool)
    present[slots] = True
    return np.flatnonzero(~present)


def gap_runs(slots: np.ndarray) -> list[tuple[int, int]]:
    """Runs of consecutive missing slots as (first missing slot, length)."""
    s = np.sort(np.asarray(slots))
    d = np.diff(s)
    return [(int(s[i]) + 1, int(d[i]) - 1) for i in np.flatnonzero(d > 1)]


def to_calendar(d: np.ndarray, slots: np.ndarray, n_slots: int) -> np.ndarray:
    """Scatter acquisitions onto the calendar.

    Args:
        d: (n_time, ...) float32 LOS mm.
        slots: (n_time,) slot of each acquisition (unique).

    Returns:
        (n_slots, ...) float32 with NaN in missing slots.
    """
    out = np.full((n_slots,) + d.shape[1:], np.nan, dtype=np.float32)
    out[slots] = d
    return out


def valid_pixels(
    d_train: np.ndarray, coherence: np.ndarray | None = None, min_coherence: float = 0.25, min_valid_fraction: float = 0.5,
    n_acquired: int | None = None,
) -> np.ndarray:
    """Pixels worth modelling: coherent enough and observed often enough in training.

    Args:
        d_train: (n_slots_train, n_lat, n_lon) calendar-regular training displacement, NaN = gap
            (the whole frame, or one tile of it).
        coherence: (n_lat, n_lon) average coherence 0..1, or None.
        n_acquired: training acquisitions of the whole frame (a tile cannot tell: a tile may be
            all water in an acquisition); default, the slots where ``d_train`` has any data.

    Returns:
        (n_lat, n_lon) bool.
    """
    if n_acquired is None:
        n_acquired = int(np.isfinite(d_train).any(axis=(1, 2)).sum())  # slots where the frame was acquired at all
    frac = np.isfinite(d_train).sum(axis=0) / max(n_acquired, 1)
    ok = frac >= min_valid_fraction
    if coherence is not None:
        with np.errstate(invalid="ignore"):
            ok &= np.nan_to_num(coherence, nan=0.0) >= min_coherence
    return ok


def downsample(a: np.ndarray, t: int) -> np.ndarray:
    """The paper's D_d = D(1:t:end, 1:t:end) on the last two axes (no averaging)."""
    if t < 1:
        raise ValueError(f"the downsampling factor must be >= 1, got {t}")
    return a[..., ::t, ::t] if t > 1 else a


def knn_fill(series: np.ndarray, k: int = 4) -> np.ndarray:
    """The paper's KNN gap filling: each missing value becomes the mean of the k nearest
    observed values in time (ties broken towards the earlier slot).

    This invents observations; it is kept to show the difference with native gap handling.

    Args:
        series: (n_slots, n_pix) float32, NaN = missing.

    Returns:
        (n_slots, n_pix) float32 with every fillable NaN filled (pixels with no data stay NaN).
    """
    out = series.copy()
    n_slots = series.shape[0]
    finite = np.isfinite(series)
    for s in range(n_slots):
        miss = np.flatnonzero(~finite[s] & finite.any(axis=0))
        if miss.size == 0:
            continue
        order = np.argsort(np.abs(np.arange(n_slots) - s) + np.arange(n_slots) * 1e-6, kind="stable")
        vals = series[order][:, miss]
        ok = np.isfinite(vals)
        rank = np.cumsum(ok, axis=0)
        use = ok & (rank <= k)
        out[s, miss] = np.where(use, vals, 0.0).sum(axis=0) / np.maximum(use.sum(axis=0), 1)
    return out
