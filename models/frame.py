"""Preparing a frame for the method (paper step 1), once for every caller: ``detect``, the stream's
bootstrap and the plots.

:func:`prepare_frame` places the acquisitions on the 12-day calendar (an acquisition sharing its
slot with a nearer one is dropped), applies the downsampling ``D_d = D(1:t:end)`` to the grid,
and splits training from scoring; :meth:`PreparedFrame.training` then picks the modelled pixels
(coherent and observed often enough in training) and their calendar-regular training series.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ladsdin.models.cleaning import Calendar, regularise, to_calendar, valid_pixels
from ladsdin.models.config import DetectConfig
from ladsdin.models.cube import CubeError
from ladsdin.models.detector import PixelGrid
from ladsdin.models.thresholds import pixel_area_km2


@dataclass(frozen=True)
class PreparedFrame:
    """Where a frame's acquisitions and pixels go.

    ``keep`` (n_time,) bool selects the acquisitions used, in input order; ``slots`` (n_kept,) is
    the calendar slot of each of them. The first ``n_train`` kept acquisitions train; training
    covers slots ``[0, split)``. ``lat``/``lon`` are the downsampled pixel-centre coordinates.
    """

    calendar: Calendar
    keep: np.ndarray
    slots: np.ndarray
    n_train: int
    split: int
    lat: np.ndarray
    lon: np.ndarray
    downsample: int

    @property
    def train_calendar(self) -> Calendar:
        """The calendar of the training slots (slot 0 = the first acquisition)."""
        return Calendar(self.calendar.start, self.calendar.step_days, self.split)

    def sample(self, d: np.ndarray) -> np.ndarray:
        """Every ``downsample``-th row and column of a (..., n_lat, n_lon) array (a view)."""
        t = self.downsample
        return d[..., ::t, ::t] if t > 1 else d

    def acquisition_of_slot(self) -> dict[int, int]:
        """Calendar slot -> index into the input times of the acquisition used there."""
        return {int(s): int(i) for s, i in zip(self.slots, np.flatnonzero(self.keep))}

    def training(self, d_kept: np.ndarray, coherence: np.ndarray | None, cfg: DetectConfig) -> tuple[PixelGrid, np.ndarray]:
        """The modelled pixels and their training series.

        Args:
            d_kept: (>= n_train, n_lat, n_lon) float32 kept acquisitions, LOS mm, already
                downsampled (:meth:`sample`); only the first ``n_train`` are read.
            coherence: (n_lat, n_lon) downsampled mean coherence 0..1, or None.

        Returns:
            (grid, y): y is (split, P) float32, the calendar-regular training displacement of
            the modelled pixels, NaN = gap.
        """
        d_train = to_calendar(d_kept[: self.n_train], self.slots[: self.n_train], self.split)
        grid = select_pixels(d_train, self.lat, self.lon, coherence, cfg)
        return grid, d_train.reshape(self.split, -1)[:, grid.index]


def prepare_frame(times: np.ndarray, lat: np.ndarray, lon: np.ndarray, cfg: DetectConfig, n_train: int | None = None) -> PreparedFrame:
    """Plan a frame: calendar, kept acquisitions, downsampled grid and the training split.

    Args:
        times: (n_time,) datetime64 acquisition dates, increasing.
        lat, lon: (n_lat,), (n_lon,) native pixel-centre coordinates, degrees.
        n_train: acquisitions to train on (at most the kept ones); default
            ``round(cfg.train_fraction * n_kept)``. The stream trains on all it buffered.
    """
    cal, slots, keep = regularise(np.asarray(times), cfg.step_days)
    kept = slots[keep]
    n = int(round(cfg.train_fraction * kept.size)) if n_train is None else min(int(n_train), kept.size)
    split = int(kept[n - 1]) + 1 if 0 < n <= kept.size else 0
    t = max(int(cfg.downsample), 1)
    return PreparedFrame(cal, keep, kept, n, split, np.asarray(lat)[::t], np.asarray(lon)[::t], t)


def select_pixels(d_train: np.ndarray, lat: np.ndarray, lon: np.ndarray, coherence: np.ndarray | None, cfg: DetectConfig) -> PixelGrid:
    """The modelled pixels of a frame: coherent enough and observed often enough in training.

    Args:
        d_train: (n_slots, n_lat, n_lon) calendar-regular training displacement, NaN = gap.

    Raises:
        CubeError: when no pixel qualifies.
    """
    mask = valid_pixels(d_train, coherence, cfg.min_coherence, cfg.min_valid_fraction)
    if not mask.any():
        raise CubeError(
            f"no pixel is coherent (>= {cfg.min_coherence}) and observed in >= {cfg.min_valid_fraction:.0%} of the "
            "training epochs; lower --min-coherence or check the cube's NaN mask"
        )
    return PixelGrid(lat=lat, lon=lon, index=np.flatnonzero(mask.ravel()))


def frame_pixel_area(lat: np.ndarray, dlat: float, dlon: float) -> float:
    """Native pixel area A_p (km²) at the centre latitude of a frame."""
    return pixel_area_km2(float(np.mean(lat)), dlat, dlon)
