"""Preparing and fitting a frame (paper steps 1-3), once for every caller: ``detect``, the stream's
bootstrap and the plots.

:func:`prepare_frame` places the acquisitions on the 12-day calendar (an acquisition sharing its
slot with a nearer one is dropped), applies the downsampling ``D_d = D(1:t:end)`` to the grid,
and splits training from scoring; :meth:`PreparedFrame.tile_training` picks a tile's modelled
pixels (coherent and observed often enough in training) and their calendar-regular training
series; :func:`bootstrap_frame` fits the frame's tiled detector from them.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ladsdin.models.bootstrap import NoModelledPixels, TileSeries, fit_tiles
from ladsdin.models.cleaning import Calendar, regularise, to_calendar, valid_pixels
from ladsdin.models.config import DetectConfig
from ladsdin.models.cube import CubeError
from ladsdin.models.detector import FrameModel, ScoreParams, tiled_grid
from ladsdin.models.forecaster import PixelState
from ladsdin.models.null_floor import NullObjects, object_floor
from ladsdin.models.thresholds import pixel_area_km2, seismic_pixel_count
from ladsdin.models.tiling import TileModel, Tiling

MODEL_VERSION = "ladsdin-1"


log = logging.getLogger(__name__)


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

    def tiling(self, cfg: DetectConfig) -> Tiling:
        """The tiles of the (downsampled) grid: ``cfg.tile`` pixels a side; one tile for a
        per-pixel model (its weights are per pixel of the whole frame: small areas only)."""
        shape = (self.lat.size, self.lon.size)
        return Tiling.of(shape, cfg.tile if cfg.train.kind == "shared" else max(shape))

    def tile_training(self, d_tile: np.ndarray, coherence: np.ndarray | None, tiling: Tiling, i: int, cfg: DetectConfig) -> TileSeries:
        """The modelled pixels of tile ``i`` and their training series.

        Args:
            d_tile: (>= n_train, h, w) float32 kept acquisitions in the tile's window, LOS mm,
                on the downsampled grid; only the first ``n_train`` are read.
            coherence: (h, w) mean coherence 0..1 in the window, or None.

        Returns:
            The tile's pixels coherent enough and observed in enough training acquisitions
            (``cfg.min_coherence``, ``cfg.min_valid_fraction``), with (split, p) float32
            calendar-regular training displacement, NaN = gap.
        """
        d_train = to_calendar(d_tile[: self.n_train], self.slots[: self.n_train], self.split)
        mask = valid_pixels(d_train, coherence, cfg.min_coherence, cfg.min_valid_fraction, n_acquired=self.n_train)
        return TileSeries(tiling.global_index(i, mask), np.ascontiguousarray(d_train[:, mask]))


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


def bootstrap_frame(read: Callable[[int], TileSeries], tiling: Tiling, lat: np.ndarray, lon: np.ndarray, train_calendar: Calendar,
                    pixel_area: float, cfg: DetectConfig, device: torch.device, emit_state: Callable[[int, PixelState], None],
                    progress: bool = False) -> FrameModel:
    """Fit a frame's detector tile by tile; each tile's warm state goes to ``emit_state``.

    Args:
        read: tile -> its :class:`TileSeries` (see :meth:`PreparedFrame.tile_training`).
        lat, lon: the (downsampled) grid's pixel-centre coordinates.
        train_calendar: slot 0 = row 0 of every series.
        pixel_area: native A_p (km²) at the frame centre, for N_a (eq. 5).

    Raises:
        CubeError: when no pixel qualifies for modelling.
    """
    tiles: list[TileModel] = []

    def keep(i: int, tm: TileModel, state: PixelState) -> None:
        tiles.append(tm)
        emit_state(i, state)

    null = NullObjects(tiling.shape, train_calendar.n_slots, cfg.nm, cfg.connectivity, cfg.sign_split) \
        if cfg.false_alerts_per_year > 0 else None
    try:
        fc = fit_tiles(tiling.n_tiles, read, train_calendar, cfg.train, device, keep, nm=cfg.nm,
                       common_mode_enabled=cfg.common_mode != "none", null=null, progress=progress)
    except NoModelledPixels:
        raise CubeError(
            f"no pixel is coherent (>= {cfg.min_coherence}) and observed in >= {cfg.min_valid_fraction:.0%} of the "
            "training epochs; lower --min-coherence or check the cube's NaN mask"
        ) from None
    n_a = seismic_pixel_count(cfg.seismic_area_km2, pixel_area, cfg.downsample)  # eq. 5
    cm = cfg.common_mode if fc.report["common_mode"] else "none"
    post_slots = int(np.ceil(cfg.post_event_days / cfg.step_days - 1e-9)) if cfg.reanchor else 0
    floor, info = object_floor(null.largest() if null is not None else np.zeros(0, np.int64), cfg.false_alerts_per_year,
                               cfg.step_days)
    fc.report.update(info)
    if floor > n_a:
        log.info("null floor: objects need > %d pixels (N_a %d) for <= %.2f false alerts per frame-year (%d training slots)",
                 floor, n_a, cfg.false_alerts_per_year, info["null_slots"])
    params = ScoreParams(cfg.nm, n_a, cfg.connectivity, cm, cfg.reanchor, post_slots, cfg.sign_split, floor)
    version = f"{MODEL_VERSION}/{fc.report['kind']}-K{fc.report['layers']}S{fc.report['hidden']}/{cfg.digest()}"
    return FrameModel(fc, tiling, tiles, tiled_grid(lat, lon, tiles), params, version, pixel_area)


def frame_pixel_area(lat: np.ndarray, dlat: float, dlon: float) -> float:
    """Native pixel area A_p (km²) at the centre latitude of a frame."""
    return pixel_area_km2(float(np.mean(lat)), dlat, dlon)
