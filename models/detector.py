"""What a frame's detector is and what scoring an epoch yields: the pixel grid, the scoring
parameters, the fitted frame model (tiled) and the per-epoch score.

Scoring itself is :func:`ladsdin.models.scoring.score_epoch`.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from ladsdin.models.forecaster import Forecaster
from ladsdin.models.labelling import SeismicObject
from ladsdin.models.tiling import TileModel, Tiling, scatter_tiles

COMMON_MODES = ("none", "median", "plane")


@dataclass(frozen=True)
class PixelGrid:
    """Where the modelled pixels sit: ``index`` (P,) flat indices into a (n_lat, n_lon) grid
    (tile by tile: increasing within each tile)."""

    lat: np.ndarray  # (n_lat,) pixel-centre latitude, degrees
    lon: np.ndarray  # (n_lon,) pixel-centre longitude, degrees
    index: np.ndarray  # (P,) int64

    @property
    def shape(self) -> tuple[int, int]:
        return (self.lat.size, self.lon.size)

    def scatter(self, values: np.ndarray, fill: float = np.nan, dtype: type = np.float32) -> np.ndarray:
        """(P,) values -> (n_lat, n_lon) map, ``fill`` off the modelled pixels."""
        out = np.full(self.lat.size * self.lon.size, fill, dtype=dtype)
        out[self.index] = values
        return out.reshape(self.shape)


@dataclass(frozen=True)
class ScoreParams:
    """Per-frame scoring parameters."""

    nm: float  # N_m (eq. 4)
    n_a: int  # N_a (eq. 5)
    connectivity: int = 4
    common_mode: str = "median"  # 'none' | 'median' | 'plane'
    reanchor: bool = True
    #: slots a pixel of a seismic object stays in the post-event regime (0 = no regime; models
    #: stored before it existed have none)
    post_event_slots: int = 0
    #: objects hold anomalies of one sign (a lobe, not the noise of the other sign beside it)
    sign_split: bool = False
    #: the object size (pixels) that the training epochs' null exceeds at the tolerated false
    #: alert rate (:mod:`ladsdin.models.null_floor`; 0 = none, as in models stored before it)
    null_floor: int = 0

    @property
    def min_object(self) -> int:
        """A seismic object has more than this many pixels: N_a, or the null floor if larger."""
        return max(self.n_a, self.null_floor)


@dataclass
class EpochScore:
    """The result of scoring one epoch; maps are (n_lat, n_lon)."""

    slot: int
    date: str  # YYYY-MM-DD
    horizon_max: int  # longest forecast horizon (slots) among valid pixels; 1 = no gap
    n_valid: int
    n_anomalous: int  # C_k
    examined: bool  # C_k >= N_a (eq. 5)
    largest_object: int  # pixels in the largest connected anomaly object
    common_mode_mm: float
    objects: list[SeismicObject] = field(default_factory=list)
    #: objects of post-event motion (afterslip) not yet reported: more than N_a connected pixels
    #: of one sign in the post-event regime that moved by more than N_m sigma since the event or
    #: their last report (D_s = that motion). Never seismic objects: a labelled signal of its own.
    afterslip_objects: list[SeismicObject] = field(default_factory=list)
    post_event_pixels: int = 0  # valid pixels in the post-event regime
    afterslip_median_mm: float = 0.0  # median motion of those pixels since they entered it, LOS mm
    anomaly: np.ndarray | None = None  # bool
    seismic: np.ndarray | None = None  # bool
    predicted: np.ndarray | None = None  # float32 P_k, LOS mm
    threshold: np.ndarray | None = None  # float32 N_m * sigma * g(m), mm
    deformation: np.ndarray | None = None  # float32 D_s, NaN outside seismic objects
    filled: bool = False  # the epoch was invented by KNN filling (paper mode only)
    seconds: float = 0.0  # wall time of scoring this epoch
    #: wall time per stage: "predict" (forecast, residual, eq. 4 thresholds, the state's LSTM
    #: step) and "cluster" (connected objects, eqs. 5-6, re-anchoring)
    stage_seconds: dict[str, float] = field(default_factory=dict)


@dataclass
class FrameModel:
    """A frame's fitted detector, cut into tiles: what ``detect`` scores with and what the stream
    persists per frame (beside the per-tile pixel state).

    ``forecaster`` holds the frame-level parts (network, calendar, gap factors, training report;
    no pixels); ``tiles[i]`` the per-pixel model of tile ``i`` of ``tiling``.
    """

    forecaster: Forecaster
    tiling: Tiling
    tiles: list[TileModel]
    grid: PixelGrid
    params: ScoreParams
    model_version: str
    pixel_area_km2: float  # native A_p at the frame centre

    @property
    def n_pixels(self) -> int:
        return sum(t.n_pixels for t in self.tiles)

    def tile_forecaster(self, i: int) -> Forecaster:
        """The forecaster of tile ``i``'s pixels."""
        t = self.tiles[i]
        return self.forecaster.with_pixels(t.coef, t.scale, t.sigma)

    @functools.cached_property
    def sigma_map(self) -> np.ndarray:
        """(n_lat, n_lon) float32 sigma (eq. 3), NaN off the modelled pixels."""
        return scatter_tiles(self.tiling.shape, [(t.index, t.sigma) for t in self.tiles])


def tiled_grid(lat: np.ndarray, lon: np.ndarray, tiles: list[TileModel]) -> PixelGrid:
    """The grid of a tiled model: every tile's modelled pixels, tile by tile."""
    index = np.concatenate([t.index for t in tiles]) if tiles else np.zeros(0, np.int64)
    return PixelGrid(np.asarray(lat), np.asarray(lon), index)
