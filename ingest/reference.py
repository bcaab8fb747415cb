"""The reference area: every unwrapped interferogram is relative to an arbitrary constant, so each
one is shifted to zero mean over one fixed window before the inversion (LiCSBAS step 13 does the
same with its ``refarea``).

The window is given as LiCSBAS does (``x1:x2/y1:y2``, pixel columns/rows, end exclusive) or in
degrees (``lon1/lon2/lat1/lat2``), or chosen automatically as the most coherent, smoothest window
among those usable in the most interferograms seen at start. It never changes afterwards: a new
window would shift every later epoch against the earlier ones. An interferogram where the window
is decorrelated is referenced to the window grown about its centre, and as a last resort to its
own median over the frame; the choice never stops the ingest.
"""
from __future__ import annotations

import logging
import re
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ladsdin.formats.licsar import FrameGrid

log = logging.getLogger(__name__)

#: side of the automatic reference window, pixels (~1 km at LiCSAR's 0.001°)
AUTO_WINDOW_PX = 10
#: an interferogram needs this fraction of valid reference pixels to be referenced reliably
MIN_VALID_FRACTION = 0.5
#: ... and the widest fallback window at least this many
MIN_VALID_PIXELS = 10
#: mm of spatial roughness that halves a window's automatic score
_ROUGHNESS_MM = 5.0
#: ``RefWindow.how`` of the last resort: each interferogram minus its median over the frame
FRAME_MEDIAN = "frame-median"


@dataclass(frozen=True)
class RefWindow:
    """Rows ``y1:y2`` and columns ``x1:x2`` (end exclusive) of the frame grid."""

    x1: int
    x2: int
    y1: int
    y2: int
    how: str = "configured"

    @property
    def area(self) -> int:
        """Pixels in the window."""
        return (self.x2 - self.x1) * (self.y2 - self.y1)

    def as_licsbas(self) -> str:
        return f"{self.x1}:{self.x2}/{self.y1}:{self.y2}"

    def to_dict(self) -> dict[str, object]:
        return {"x1": self.x1, "x2": self.x2, "y1": self.y1, "y2": self.y2, "how": self.how}

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> RefWindow:
        return cls(int(d["x1"]), int(d["x2"]), int(d["y1"]), int(d["y2"]), str(d.get("how", "configured")))


def parse_ref(text: str, grid: FrameGrid) -> RefWindow:
    """``'x1:x2/y1:y2'`` (pixels) or ``'lon1/lon2/lat1/lat2'`` (degrees) -> a window inside ``grid``."""
    text = text.strip()
    m = re.fullmatch(r"(\d+):(\d+)/(\d+):(\d+)", text)
    if m:
        x1, x2, y1, y2 = (int(v) for v in m.groups())
    else:
        try:
            lon1, lon2, lat1, lat2 = (float(v) for v in text.split("/"))
        except ValueError:
            raise ValueError(f"reference area {text!r}: use 'x1:x2/y1:y2' (pixel columns/rows, LiCSBAS) "
                             "or 'lon1/lon2/lat1/lat2' (degrees)") from None
        cols = np.sort([(lon - grid.lon0) / grid.dlon for lon in (lon1, lon2)])
        rows = np.sort([(lat - grid.lat0) / grid.dlat for lat in (lat1, lat2)])
        x1, x2 = int(np.floor(cols[0] + 0.5)), int(np.floor(cols[1] + 0.5)) + 1
        y1, y2 = int(np.floor(rows[0] + 0.5)), int(np.floor(rows[1] + 0.5)) + 1
    if not (0 <= x1 < x2 <= grid.n_lon and 0 <= y1 < y2 <= grid.n_lat):
        raise ValueError(f"reference area {text!r} -> columns {x1}:{x2}, rows {y1}:{y2} is not inside the "
                         f"{grid.n_lon} x {grid.n_lat} (columns x rows) frame grid")
    return RefWindow(x1, x2, y1, y2, "configured")


def auto_reference(ifgs_mm: Sequence[np.ndarray], coherence: Sequence[np.ndarray], *,
                   size: int = AUTO_WINDOW_PX) -> RefWindow:
    """Choose the ``size`` x ``size`` window usable in the largest share of the interferograms,
    and among those the most coherent and smoothest one. Never fails for lack of a window.

    Args:
        ifgs_mm: interferograms, each (n_lat, n_lon) float32 LOS mm, NaN = no data.
        coherence: matching (n_lat, n_lon) float32 0..1, NaN = no data.

    A window is usable in an interferogram when at least MIN_VALID_FRACTION of it is valid
    (what :func:`reference` needs without growing it). Winter decorrelation, water and low
    coherence often leave no window valid in every interferogram: the window valid in the most
    of them wins, and the others are referenced to it grown, or to the frame's median
    (:func:`reference`). Score among the best-covered windows: mean coherence / (1 + mean
    spatial std of the phase / 5 mm), over the interferograms where each is usable. A deforming
    or turbulent window has a rough phase, a decorrelated one a low coherence; both lose. When no
    window is usable in any interferogram, every interferogram is referenced to its own median
    over the frame (``how = 'frame-median'``).
    """
    if not ifgs_mm:
        raise ValueError("no interferogram to choose a reference area from")
    n_lat, n_lon = ifgs_mm[0].shape
    s = max(1, min(size, n_lat, n_lon))
    by, bx = n_lat // s, n_lon // s

    def blocks(a: np.ndarray) -> np.ndarray:
        return a[: by * s, : bx * s].reshape(by, s, bx, s).transpose(0, 2, 1, 3).reshape(by, bx, s * s)

    usable = np.zeros((by, bx))
    coh_sum = np.zeros((by, bx))
    rough_sum = np.zeros((by, bx))
    for mm, cc in zip(ifgs_mm, coherence):
        b = blocks(mm)
        ok = np.isfinite(b).mean(axis=2) >= MIN_VALID_FRACTION
        usable += ok
        with warnings.catch_warnings():  # all-NaN blocks: their statistics are NaN, and they are not usable anyway
            warnings.simplefilter("ignore", RuntimeWarning)
            coh_sum += np.where(ok, np.nan_to_num(np.nanmean(np.where(np.isfinite(b), blocks(cc), np.nan), axis=2)), 0.0)
            rough_sum += np.where(ok, np.nan_to_num(np.nanstd(b, axis=2)), 0.0)
    n = len(ifgs_mm)
    best = usable.max()
    if best == 0:
        log.warning("no %d x %d window is usable (>= %.0f%% valid) in any of %d interferograms: each is referenced to its "
                    "median over the frame; give --ref x1:x2/y1:y2 to choose", s, s, 100 * MIN_VALID_FRACTION, n)
        return RefWindow(0, n_lon, 0, n_lat, FRAME_MEDIAN)
    with np.errstate(invalid="ignore", divide="ignore"):
        score = np.where(usable == best, (coh_sum / usable) / (1.0 + rough_sum / usable / _ROUGHNESS_MM), -np.inf)
    iy, ix = np.unravel_index(int(np.argmax(score)), score.shape)
    win = RefWindow(int(ix * s), int(ix * s + s), int(iy * s), int(iy * s + s), "auto")
    if best < n:
        log.warning("no %d x %d window is usable in all %d interferograms; the reference area %s is usable in %d of them, "
                    "the others are referenced to it grown or to their frame median (give --ref x1:x2/y1:y2 to choose)",
                    s, s, n, win.as_licsbas(), int(best))
    return win


def _grown(window: RefWindow, factor: int, shape: tuple[int, int]) -> RefWindow:
    """``window`` grown ``factor`` times about its centre, clipped to the grid."""
    cy, cx = (window.y1 + window.y2) / 2, (window.x1 + window.x2) / 2
    hy, hx = (window.y2 - window.y1) * factor / 2, (window.x2 - window.x1) * factor / 2
    return RefWindow(max(0, int(cx - hx)), min(shape[1], int(np.ceil(cx + hx))),
                     max(0, int(cy - hy)), min(shape[0], int(np.ceil(cy + hy))), window.how)


def reference(mm: np.ndarray, window: RefWindow) -> tuple[np.ndarray, float, RefWindow]:
    """``mm`` minus its mean over ``window``; returns (referenced map, offset in mm, window used).

    When less than MIN_VALID_FRACTION of the window is valid in this interferogram (a
    coseismic pair decorrelates the near field, wherever the window sits), the window grows about
    its centre (x2, x4, x8, x16) until enough of it is valid (the x16 window: MIN_VALID_PIXELS).
    When even that fails, or the window is ``frame-median``, the map's median over the whole
    frame is the reference. The epoch is still published, with a reference as close as the data
    allow, and the event's ``quality.reference`` and ``quality.reference_how`` say which.

    Raises:
        ValueError: the map has fewer than MIN_VALID_PIXELS valid pixels in all.
    """
    if window.how != FRAME_MEDIAN:
        for factor in (1, 2, 4, 8, 16):
            win_used = _grown(window, factor, mm.shape) if factor > 1 else window
            win = mm[win_used.y1:win_used.y2, win_used.x1:win_used.x2]
            ok = np.isfinite(win)
            # the last, widest window settles for what there is
            if ok.mean() >= MIN_VALID_FRACTION or (factor == 16 and ok.sum() >= MIN_VALID_PIXELS):
                offset = float(win[ok].mean(dtype=np.float64))
                return (mm - np.float32(offset)).astype(np.float32), offset, win_used
    valid = np.isfinite(mm)
    if valid.sum() < MIN_VALID_PIXELS:
        raise ValueError(f"the interferogram has {int(valid.sum())} valid pixels, fewer than {MIN_VALID_PIXELS}: "
                         "it cannot be referenced")
    offset = float(np.median(mm[valid]))
    return (mm - np.float32(offset)).astype(np.float32), offset, RefWindow(0, mm.shape[1], 0, mm.shape[0], FRAME_MEDIAN)
