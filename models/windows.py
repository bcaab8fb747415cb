"""Reading a cube window by window, so ``detect`` never holds a whole frame's time series.

A normalised cube (:func:`ladsdin.models.cube.normalize_cube`) may be in memory or lazily backed
by its file (``open_cube(..., lazy=True)``: xarray's lazy indexing reads only the HDF5/Zarr chunks
a window touches, no dask needed). :class:`CubeWindows` reads, on the downsampled grid of a
:class:`~ladsdin.models.frame.PreparedFrame`, a tile's training acquisitions or one epoch's map,
as float32 LOS mm (positive towards the satellite).
"""
from __future__ import annotations

import numpy as np
import xarray as xr

from ladsdin.models.frame import PreparedFrame


class CubeWindows:
    """Windows of a normalised cube's ``displacement`` on a prepared frame's grid."""

    def __init__(self, cube: xr.Dataset, prep: PreparedFrame) -> None:
        self.var = cube["displacement"]
        self.scale = np.float32(cube["displacement"].attrs.get("mm_per_unit", 1.0))
        self.prep = prep
        self.kept = np.flatnonzero(prep.keep)  # index into the cube's times of each kept acquisition
        coh = cube["coherence"].values if "coherence" in cube else None
        self.coherence = prep.sample(np.asarray(coh, np.float32)) if coh is not None else None
        self.any_finite = False  # whether any window read so far held data (a lazy cube is not checked up front)

    def _native(self, s: slice) -> slice:
        """Native rows/columns of a window of the downsampled grid."""
        t = self.prep.downsample
        return slice(s.start * t, (s.stop - 1) * t + 1, t) if t > 1 else s

    def _read(self, times: np.ndarray | int, rows: slice, cols: slice) -> np.ndarray:
        v = self.var.isel(time=times, lat=self._native(rows), lon=self._native(cols)).values
        out = np.asarray(v, dtype=np.float32)
        self.any_finite = self.any_finite or bool(np.isfinite(out).any())
        return out * self.scale if self.scale != 1 else out

    def training(self, rows: slice, cols: slice) -> np.ndarray:
        """(n_train, h, w) float32: the training acquisitions in a window, in time order."""
        return self._read(self.kept[: self.prep.n_train], rows, cols)

    def acquisitions(self, rows: slice, cols: slice) -> np.ndarray:
        """(n_kept, h, w) float32: every kept acquisition in a window (KNN filling needs them all)."""
        return self._read(self.kept, rows, cols)

    def epoch(self, k: int) -> np.ndarray:
        """(n_lat, n_lon) float32 map of the ``k``-th kept acquisition."""
        return self._read(int(self.kept[k]), slice(0, self.prep.lat.size), slice(0, self.prep.lon.size))

    def coherence_window(self, rows: slice, cols: slice) -> np.ndarray | None:
        return None if self.coherence is None else self.coherence[rows, cols]
