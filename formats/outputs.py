"""Writers of the ``detect`` outputs (DESIGN.md §3): alerts.geojson, anomalies.nc, summary.json.

``anomalies.nc`` is written epoch by epoch while ``detect`` scores (:class:`AnomalyWriter`), so a
full-size frame's maps never have to be in memory together: the time dimension is unlimited and
each variable is chunked one epoch by 512 x 512 pixels, so a reader can take one epoch's map or
one pixel's series cheaply. The file is CF-NetCDF4 (HDF5), read by xarray as any other.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ladsdin.models.alerts import feature_collection
from ladsdin.models.batch import DetectionResult, epoch_variables
from ladsdin.models.cube import UNITS
from ladsdin.models.detector import EpochScore

#: Chunk edge (pixels) of the maps in anomalies.nc.
CHUNK = 512
_TIME_UNITS = "days since 1970-01-01"


class AnomalyWriter:
    """``anomalies.nc`` written one scored epoch at a time (use as a context manager).

    Args:
        path: the file (replaced).
        lat, lon: (n_lat,), (n_lon,) pixel-centre coordinates of the (downsampled) grid.
    """

    def __init__(self, path: Path, lat: np.ndarray, lon: np.ndarray) -> None:
        import h5netcdf.legacyapi as nc

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._ds = nc.Dataset(self.path, "w")
        self._ds.createDimension("time", None)
        self._ds.createDimension("lat", len(lat))
        self._ds.createDimension("lon", len(lon))
        for name, values, units in (("lat", lat, "degrees_north"), ("lon", lon, "degrees_east")):
            v = self._ds.createVariable(name, "f8", (name,))
            v[:] = np.asarray(values, np.float64)
            v.setncattr("units", units)
        t = self._ds.createVariable("time", "f8", ("time",))
        t.setncattr("units", _TIME_UNITS)
        t.setncattr("calendar", "proleptic_gregorian")
        self._chunks = (1, min(CHUNK, len(lat)), min(CHUNK, len(lon)))
        self._vars: dict[str, Any] = {}
        self._n_anomalous: list[int] = []
        self._common_mode: list[float] = []
        self.n = 0

    def append(self, s: EpochScore) -> None:
        """Write one scored epoch's maps (the score must still hold them)."""
        k = self.n
        self._ds.variables["time"][k] = float((np.datetime64(s.date, "D") - np.datetime64("1970-01-01", "D")).astype(int))
        for name, (values, attrs) in epoch_variables(s).items():
            var = self._vars.get(name)
            if var is None:
                fill = {"fill_value": np.float32(np.nan)} if values.dtype == np.float32 else {}
                var = self._ds.createVariable(name, values.dtype, ("time", "lat", "lon"), chunksizes=self._chunks,
                                              zlib=True, complevel=1, shuffle=True, **fill)
                for a, v in attrs.items():
                    var.setncattr(a, v)
                self._vars[name] = var
            var[k, :, :] = values
        self._n_anomalous.append(s.n_anomalous)
        self._common_mode.append(s.common_mode_mm)
        self.n += 1

    def finish(self, result: DetectionResult) -> Path:
        """Add sigma, C_k, the common mode and the global attributes, and close the file."""
        sig = self._ds.createVariable("sigma", "f4", ("lat", "lon"), chunksizes=self._chunks[1:], zlib=True, complevel=1,
                                      fill_value=np.float32(np.nan))
        sig[:, :] = result.model.sigma_map
        sig.setncattr("long_name", "one-step residual std (eq. 3)")
        sig.setncattr("units", UNITS)
        for name, values, dtype, attrs in (("n_anomalous", self._n_anomalous, "i8", {"long_name": "C_k"}),
                                           ("common_mode", self._common_mode, "f4", {"units": UNITS})):
            v = self._ds.createVariable(name, dtype, ("time",))
            v[:] = np.asarray(values, dtype)
            for a, val in attrs.items():
                v.setncattr(a, val)
        for a, v in result.attributes().items():
            self._ds.setncattr(a, v)
        self.close()
        return self.path

    def close(self) -> None:
        if self._ds is not None:
            self._ds.close()
            self._ds = None

    def __enter__(self) -> AnomalyWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_outputs(result: DetectionResult, out: Path, *, anomalies_written: bool = False) -> list[Path]:
    """Write the three contract files into ``out`` (created); return their paths.

    ``anomalies_written``: ``anomalies.nc`` was already written while scoring (an
    :class:`AnomalyWriter` in ``out``); otherwise it is written now from the result's maps.
    """
    out.mkdir(parents=True, exist_ok=True)
    geojson = out / "alerts.geojson"
    geojson.write_text(json.dumps(feature_collection(result.features()), indent=1) + "\n")
    nc = out / "anomalies.nc"
    if not anomalies_written:
        ds = result.dataset()
        enc = {v: {"zlib": True, "complevel": 4} for v in ds.data_vars if ds[v].ndim == 3}
        ds.to_netcdf(nc, engine="h5netcdf", encoding=enc)
    summary = out / "summary.json"
    summary.write_text(json.dumps(result.summary(), indent=1) + "\n")
    return [geojson, nc, summary]
