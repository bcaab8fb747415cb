"""Figure plumbing of the detection plots: the grid geometry, the cube's observations on the result's
grid, and Agg figures built with the object API.

Maps are drawn with rows flipped to ascending latitude and ``origin='lower'``: north up and east
right whatever order the cube stores its rows and columns in. Figures are ``Figure`` objects on an
Agg canvas, not pyplot: no global backend switch in a caller's notebook, no figure registry to
leak memory in a long-running worker, and nothing to close.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ladsdin.models.frame import prepare_frame

if TYPE_CHECKING:
    import xarray as xr
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from ladsdin.models.batch import DetectionResult
    from ladsdin.models.detector import EpochScore

#: LiCSAR posting, used only when a 1-pixel-wide grid leaves no spacing to measure.
FALLBACK_POSTING_DEG = 0.001
#: Mask categories in the anomaly maps: not modelled, normal, anomalous (eq. 4), seismic object.
MASK_COLOURS = ("white", "#e8e8e8", "#6e6e6e", "#d62728")
DPI = 110


class PlotContext:
    """What every figure needs: the grid's geometry and the cube's observations on it."""

    def __init__(self, result: DetectionResult, cube: xr.Dataset, maps_file: Path | None = None) -> None:
        self.r = result
        self.cube = cube
        self.maps_file = maps_file
        self._maps: xr.Dataset | None = None
        self.t = max(int(result.config.downsample), 1)
        lat, lon = np.asarray(result.grid.lat, float), np.asarray(result.grid.lon, float)
        dlat = _spacing(lat, np.asarray(cube["lat"].values, float), self.t)
        dlon = _spacing(lon, np.asarray(cube["lon"].values, float), self.t)
        # Maps are drawn with rows flipped to ascending lat and origin='lower': north up and
        # east right whatever order the cube stores its rows and columns in.
        self.flip_lat = lat.size > 1 and lat[0] > lat[-1]
        self.flip_lon = lon.size > 1 and lon[0] > lon[-1]
        la, lo = np.sort(lat), np.sort(lon)
        self.extent = (lo[0] - dlon / 2, lo[-1] + dlon / 2, la[0] - dlat / 2, la[-1] + dlat / 2)
        # Enough decimals that ~3 ticks across the smaller side get distinct labels.
        span = min(self.extent[1] - self.extent[0], self.extent[3] - self.extent[2])
        self.decimals = int(np.clip(np.ceil(-np.log10(span / 3)), 2, 5))
        # Degrees of lon are shorter than degrees of lat away from the equator.
        self.aspect = 1.0 / max(np.cos(np.deg2rad(float(np.mean(lat)))), 0.05)
        self.features = result.features()
        self.modelled = result.grid.scatter(np.ones(result.grid.index.size, bool), fill=False, dtype=bool)
        self.px_km2 = result.pixel_area_km2 * self.t**2  # downsampled pixel (eq. 5: A_p t²)
        self.dates = np.array([np.datetime64(s.date, "D") for s in result.scores])
        # The frame prepared as detect_cube prepared it, so each scored slot finds its acquisition.
        times = np.asarray(cube["time"].values)
        prep = prepare_frame(times, cube["lat"].values, cube["lon"].values, result.config)
        self.times = times.astype("datetime64[D]")
        self.slot_index = prep.acquisition_of_slot()

    def oriented(self, a: np.ndarray) -> np.ndarray:
        """(n_lat, n_lon) grid array -> row 0 south, column 0 west."""
        if self.flip_lat:
            a = a[::-1]
        if self.flip_lon:
            a = a[:, ::-1]
        return a

    def observed(self, score: EpochScore) -> np.ndarray | None:
        """(n_lat, n_lon) float32 D_k of a scored epoch on the result grid, None if not acquired."""
        i = self.slot_index.get(score.slot)
        if i is None or score.filled:
            return None
        return np.asarray(self.cube["displacement"][i, :: self.t, :: self.t].values, np.float32)

    def _maps_ds(self) -> xr.Dataset:
        if self._maps is None:
            import xarray as xr

            if self.maps_file is None:
                raise ValueError("the scores kept no maps; pass the anomalies.nc written while scoring (maps_file)")
            self._maps = xr.open_dataset(self.maps_file, engine="h5netcdf", cache=False)
        return self._maps

    def score(self, k: int) -> EpochScore:
        """Scored epoch ``k`` with its maps: kept by the result, or read from ``anomalies.nc``."""
        s = self.r.scores[k]
        if s.anomaly is not None:
            return s
        ds = self._maps_ds()
        m = {n: ds[n][k].values for n in ("anomaly", "seismic", "predicted", "threshold", "deformation")}
        return dataclasses.replace(s, anomaly=m["anomaly"].astype(bool), seismic=m["seismic"].astype(bool),
                                   predicted=m["predicted"], threshold=m["threshold"], deformation=m["deformation"])

    def pixel(self, name: str, row: int, col: int) -> np.ndarray:
        """(n_scored,) values of one map variable at one pixel, over the scored epochs."""
        if self.r.scores and self.r.scores[0].anomaly is not None:
            return np.array([getattr(s, name)[row, col] for s in self.r.scores])
        return np.asarray(self._maps_ds()[name][:, row, col].values)

    def imshow(self, ax: Axes, a: np.ndarray, **kw: Any) -> Any:
        im = ax.imshow(self.oriented(a), origin="lower", extent=self.extent, interpolation="nearest", **kw)
        ax.set_aspect(self.aspect)
        return im


def _spacing(coord: np.ndarray, native: np.ndarray, t: int) -> float:
    if coord.size > 1:
        return float(abs(np.median(np.diff(coord))))
    if native.size > 1:
        return float(abs(np.median(np.diff(native)))) * t
    return FALLBACK_POSTING_DEG * t


def new_figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=DPI, facecolor="white")
    fig.clear()  # drop the artists (and their arrays) now rather than at garbage collection
    return path


def geo_axes(ax: Axes, decimals: int, left: bool = True, bottom: bool = True) -> None:
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(3))
    ax.yaxis.set_major_locator(MaxNLocator(4))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{abs(v):.{decimals}f}°{'E' if v >= 0 else 'W'}"))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{abs(v):.{decimals}f}°{'N' if v >= 0 else 'S'}"))
    ax.tick_params(labelleft=left, labelbottom=bottom, labelsize=7)


def date_axis(ax: Axes) -> None:
    import matplotlib.dates as mdates

    loc = mdates.AutoDateLocator(minticks=3, maxticks=8)
    ax.xaxis.set_major_locator(loc)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(loc))
