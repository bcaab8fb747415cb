"""Read a MintPy ``timeseries.h5`` into the cube contract (DESIGN.md §2, §3).

Layout (MintPy docs/api/data_structure.md, "timeseries"), datasets and attributes at the root:

- ``/timeseries``: (n, l, w) float32, LOS **metres**, cumulative displacement
- ``/date``: (n,) bytes ``|S8`` YYYYMMDD; ``/bperp`` (n,) float32 m
- attributes (strings, ROI_PAC style): ``FILE_TYPE='timeseries'``, ``UNIT='m'``, ``LENGTH``,
  ``WIDTH``, ``X_FIRST``, ``Y_FIRST``, ``X_STEP``, ``Y_STEP`` (negative), ``X_UNIT``/``Y_UNIT``,
  ``WAVELENGTH``, ``REF_Y``, ``REF_X``, ``REF_LAT``, ``REF_LON``, ``REF_DATE``,
  ``ORBIT_DIRECTION``. Files in radar coordinates lack ``X_FIRST``/``Y_FIRST``.

Sign: MintPy converts phase with ``phase2range = -WAVELENGTH / (4 pi)`` (src/mintpy/
ifgram_inversion.py) and documents LOS as "motion toward satellite as positive"
(src/mintpy/utils/utils0.py, ``enu2los``); a maintainer states "subsidence comes out as negative
values and uplift as positive" (insarlab/MintPy PR #76). That is the LiCSBAS sign, so only the
unit changes here (m -> mm).
"""
from __future__ import annotations

import logging
import os
from typing import Any

import h5py
import numpy as np
import xarray as xr

from ladsdin.models.cube import CubeError

from ladsdin.formats.licsbas import dates_from_yyyymmdd, decode_text

logger = logging.getLogger(__name__)

_TO_MM = {"m": 1000.0, "meter": 1000.0, "meters": 1000.0, "cm": 10.0, "mm": 1.0}


def is_mintpy(f: h5py.File) -> bool:
    """True when an open HDF5 file is a MintPy time series (root ``/timeseries`` and ``/date``)."""
    return isinstance(f.get("timeseries"), h5py.Dataset) and isinstance(f.get("date"), h5py.Dataset)


def is_hdfeos5(f: h5py.File) -> bool:
    """True for MintPy's HDF-EOS5 export (``S1_*.he5``), which nests data under ``/HDFEOS``."""
    return isinstance(f.get("HDFEOS"), h5py.Group)


def _attr(attrs: Any, key: str) -> str | None:
    if key not in attrs:
        return None
    return decode_text(attrs[key])


def _float_attr(attrs: Any, key: str, src: str) -> float:
    text = _attr(attrs, key)
    try:
        return float(text if text is not None else "missing")
    except ValueError:
        raise CubeError(f"{src}: MintPy attribute {key}={text!r} is not a number") from None


def _track(orbit_direction: str | None) -> str | None:
    if not orbit_direction:
        return None
    first = orbit_direction.strip().upper()[:1]
    return first if first in ("A", "D") else None


def read_mintpy(path: str | os.PathLike[str]) -> xr.Dataset:
    """Read a geocoded MintPy ``timeseries.h5`` (any corrected variant) whole into memory.

    Args:
        path: the HDF5 file, e.g. ``geo/geo_timeseries_ERA5_ramp_demErr.h5``.

    Returns:
        A dataset ready for :func:`ladsdin.models.cube.normalize_cube`: ``displacement``
        (time, lat, lon) float32, LOS mm, +towards satellite (MintPy metres x 1000), NaN = no
        data (and ``NO_DATA_VALUE`` when the file declares one); lat descending as stored.
        Attrs carry ``track`` from ``ORBIT_DIRECTION`` when present, and ``mintpy_ref_*``.

    Raises:
        CubeError: radar coordinates (not geocoded), projected (UTM) grid, unknown unit, bad
            dates, or shapes that disagree.
    """
    src = os.fspath(path)
    with h5py.File(src, "r") as f:
        if not is_mintpy(f):
            raise CubeError(f"{src}: not a MintPy time series (needs root datasets 'timeseries' and 'date')")
        a = f.attrs
        if "X_FIRST" not in a or "Y_FIRST" not in a:
            raise CubeError(
                f"{src}: MintPy time series is in radar coordinates (no X_FIRST/Y_FIRST "
                "attributes); geocode first with MintPy geocode.py (e.g. `geocode.py "
                "timeseries.h5 -l inputs/geometryRadar.h5`) and pass the geo_timeseries*.h5"
            )
        for key in ("X_UNIT", "Y_UNIT"):
            unit = (_attr(a, key) or "degrees").lower()
            if not unit.startswith("deg"):
                raise CubeError(
                    f"{src}: {key}={unit!r}; the cube needs a lat/lon grid in degrees. Geocode to "
                    "EPSG:4326 (geocode.py --lalo-step) instead of a projected grid"
                )
        unit = (_attr(a, "UNIT") or "m").lower()
        if unit not in _TO_MM:
            raise CubeError(f"{src}: MintPy UNIT={unit!r} is not a length unit (expected 'm')")

        ts = np.asarray(f["timeseries"][()], dtype=np.float32)
        if ts.ndim != 3:
            raise CubeError(f"{src}: /timeseries has shape {ts.shape}; expected (n_date, length, width)")
        n, length, width = ts.shape
        times = dates_from_yyyymmdd(f["date"][()], source=f"{src}:/date")
        if times.size != n:
            raise CubeError(f"{src}: {times.size} dates for {n} /timeseries epochs; the file is inconsistent")

        if "NO_DATA_VALUE" in a and (_attr(a, "NO_DATA_VALUE") or "").lower() not in ("", "none", "nan"):
            ts[ts == np.float32(_float_attr(a, "NO_DATA_VALUE", src))] = np.nan
        ts *= np.float32(_TO_MM[unit])

        # MintPy docs/api/attributes.md: X/Y_FIRST is "the upper left corner of the first pixel",
        # and src/mintpy/utils/utils0.py get_lat_lon returns pixel centres as
        # Y_FIRST + Y_STEP * (row + 0.5), X_FIRST + X_STEP * (col + 0.5).
        y_first, y_step = _float_attr(a, "Y_FIRST", src), _float_attr(a, "Y_STEP", src)
        x_first, x_step = _float_attr(a, "X_FIRST", src), _float_attr(a, "X_STEP", src)
        lat = y_first + y_step * (np.arange(length, dtype=np.float64) + 0.5)
        lon = x_first + x_step * (np.arange(width, dtype=np.float64) + 0.5)

        attrs: dict[str, Any] = {"source_format": "mintpy", "source_file": src}
        track = _track(_attr(a, "ORBIT_DIRECTION"))
        if track:
            attrs["track"] = track
        for key in ("REF_Y", "REF_X", "REF_LAT", "REF_LON"):
            if key in a:
                attrs[f"mintpy_{key.lower()}"] = _float_attr(a, key, src)
        for key in ("REF_DATE", "WAVELENGTH", "PLATFORM", "PROCESSOR"):
            value = _attr(a, key)
            if value:
                attrs[f"mintpy_{key.lower()}"] = value

    logger.info("read MintPy %s: %d epochs on a %dx%d grid", src, n, length, width)
    return xr.Dataset(
        {"displacement": (("time", "lat", "lon"), ts, {"units": "mm"})},
        coords={"time": times, "lat": lat, "lon": lon},
        attrs=attrs,
    )
