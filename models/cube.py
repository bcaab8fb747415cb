"""The cube contract (DESIGN.md §3): one in-memory form for every displacement time series.

Every reader (NetCDF/Zarr cube, LiCSBAS ``cum.h5``, MintPy ``timeseries.h5``) and the simulator
produce an :class:`xarray.Dataset` that passes :func:`normalize_cube`:

- ``displacement``: (time, lat, lon) float32, LOS mm, positive towards the satellite, NaN = no data
- ``coherence`` (optional): (lat, lon) float32 in 0..1 (a per-epoch coherence cube is averaged)
- coords ``time`` (datetime64[ns], strictly increasing), ``lat`` and ``lon`` (degrees, float64;
  lat may be ascending or descending)
- attrs ``frame`` (LiCSAR frame ID or a free name), ``track`` ('A' or 'D'), ``units``, ``sign``
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
import xarray as xr

from ladsdin.models.names import LICSAR_FRAME_RE, is_frame_name

#: Sentinel-1 C-band wavelength (m).
WAVELENGTH_M = 0.0554658
#: LiCSBAS phase-to-LOS factor: mm = MM_PER_RAD * rad, so positive = towards the satellite.
MM_PER_RAD = -WAVELENGTH_M / (4.0 * np.pi) * 1000.0
#: One 2π phase cycle in LOS mm (the size of an unwrapping error).
MM_PER_CYCLE = abs(MM_PER_RAD) * 2.0 * np.pi

#: LiCSAR's geocoded posting (degrees), used only where a grid cannot tell its own spacing.
LICSAR_POSTING_DEG = 0.001

log = logging.getLogger(__name__)

UNITS = "mm"
SIGN = "LOS, positive towards the satellite"

_DIM_ALIASES = {
    "time": ("time", "date", "dates", "epoch", "t"),
    "lat": ("lat", "latitude", "y"),
    "lon": ("lon", "longitude", "x"),
}


class CubeError(ValueError):
    """A displacement cube that breaks the contract; the message names the value and the fix."""


def parse_frame(name: str) -> tuple[str, str] | None:
    """Find a LiCSAR frame ID in ``name``; return ``(frame, track)`` or None.

    >>> parse_frame("/data/128A_05172_131313/cum.h5")
    ('128A_05172_131313', 'A')
    """
    m = LICSAR_FRAME_RE.search(name)
    if m is None:
        return None
    return m.group(0), m.group(0)[3]


def frame_centre_code(lat: float) -> str:
    """The CCCCC part of a frame ID for a frame centred at ``lat`` (DESIGN.md §2)."""
    return f"{9000 - round(100 * lat):05d}"


def _rename_dims(ds: xr.Dataset) -> xr.Dataset:
    renames: dict[str, str] = {}
    for want, aliases in _DIM_ALIASES.items():
        if want in ds.dims:
            continue
        for alias in aliases:
            if alias in ds.dims and alias not in renames:
                renames[alias] = want
                break
    return ds.rename(renames) if renames else ds


def normalize_cube(ds: xr.Dataset, *, frame: str | None = None, track: str | None = None, lazy: bool = False) -> xr.Dataset:
    """Check a dataset against the cube contract and return it in canonical form.

    Args:
        ds: a dataset with ``displacement`` (time, lat, lon) in LOS mm, +towards satellite.
        frame, track: fill ``frame``/``track`` when the dataset carries none.
        lazy: keep a file-backed ``displacement`` unread (its ``mm_per_unit`` attribute then
            says how to convert what is read; the all-NaN check is left to the reader).

    Returns:
        A new dataset: ``displacement`` float32 (time, lat, lon), optional ``coherence``
        float32 (lat, lon), time sorted ascending, attrs ``frame``, ``track``, ``units``, ``sign``.

    Raises:
        CubeError: missing variable, wrong dims, no time coordinate, duplicate dates,
            unknown track, or no finite data at all.
    """
    ds = _rename_dims(ds)
    if "displacement" not in ds.data_vars:
        raise CubeError(
            f"no 'displacement' variable (found {sorted(map(str, ds.data_vars))}); the cube "
            "contract needs displacement(time, lat, lon) in LOS mm, positive towards the satellite"
        )
    disp = ds["displacement"]
    if set(disp.dims) != {"time", "lat", "lon"}:
        raise CubeError(
            f"displacement has dims {disp.dims}; expected (time, lat, lon). Rename the dimensions "
            "or transpose the variable before writing the cube"
        )
    for c in ("time", "lat", "lon"):
        if c not in ds.coords:
            raise CubeError(f"the cube has no '{c}' coordinate; write {c} values with the cube")
    time = ds["time"].values
    if not np.issubdtype(time.dtype, np.datetime64):
        raise CubeError(
            f"the time coordinate has dtype {time.dtype}, not datetime64; store dates as CF time "
            "(e.g. 'days since 2014-10-01') so xarray decodes them"
        )
    if time.size < 2:
        raise CubeError(f"the cube has {time.size} epoch(s); a time series needs at least 2")
    _, counts = np.unique(time, return_counts=True)
    if (counts > 1).any():
        dup = np.unique(time)[counts > 1][0]
        raise CubeError(f"the epoch {str(dup)[:10]} appears twice; keep one map per acquisition date")
    units = str(disp.attrs.get("units", UNITS)).strip().lower()
    scale = {"mm": 1.0, "millimeter": 1.0, "millimetre": 1.0, "m": 1000.0, "meter": 1000.0, "metre": 1000.0}.get(units)
    if scale is None:
        raise CubeError(f"displacement units '{units}' are not understood; use 'mm' or 'm'")

    ds = ds.sortby("time")
    if lazy:  # the Variable keeps its lazily indexed backend array: nothing is read here
        values: Any = ds["displacement"].transpose("time", "lat", "lon").variable.copy(deep=False)
    else:
        values = ds["displacement"].transpose("time", "lat", "lon").values.astype(np.float32) * np.float32(scale)
        if not np.isfinite(values).any():
            raise CubeError("displacement holds no finite value (all NaN); check the nodata handling of the source")

    attrs = dict(ds.attrs)
    frame = str(attrs.get("frame") or frame or "unknown")
    if not is_frame_name(frame):
        # the name becomes a directory under the data root and a Redis hash tag: never trust it
        raise CubeError(f"frame {frame[:80]!r} is not a frame name: use a LiCSAR frame ID such as 128A_05172_131313 or 1-64 "
                        "characters [A-Za-z0-9_.-] starting with a letter or digit in the file's 'frame' attribute")
    parsed = parse_frame(frame)
    track = str(attrs.get("track") or track or (parsed[1] if parsed else "")).upper()
    if track not in ("A", "D"):
        raise CubeError(
            f"track '{track}' is not 'A' or 'D'; set the 'track' attribute (ascending/descending) "
            "or use a LiCSAR frame ID such as 128A_05172_131313 as 'frame'"
        )
    disp_attrs = {"units": UNITS, "long_name": "LOS displacement", "sign": SIGN}
    if lazy:
        values.attrs = {**disp_attrs, "mm_per_unit": scale}
        values.encoding = {}
    out_vars: dict[str, Any] = {"displacement": values if lazy else (("time", "lat", "lon"), values, disp_attrs)}
    if "coherence" in ds.data_vars:
        coh = ds["coherence"]
        if "time" in coh.dims:
            coh = coh.mean("time", skipna=True)
        coh = coh.transpose("lat", "lon").values.astype(np.float32)
        if np.nanmax(coh) > 1.0:  # LiCSAR uint8 coherence 0..255
            coh = coh / np.float32(255.0)
        out_vars["coherence"] = (("lat", "lon"), coh, {"units": "1", "long_name": "average coherence"})
    attrs.update(frame=frame, track=track, units=UNITS, sign=SIGN)
    return xr.Dataset(
        out_vars,
        coords={
            "time": ds["time"].values.astype("datetime64[ns]"),
            "lat": ds["lat"].values.astype(np.float64),
            "lon": ds["lon"].values.astype(np.float64),
        },
        attrs=attrs,
    )


def pixel_spacing_deg(ds: xr.Dataset) -> tuple[float, float]:
    """Absolute (lat, lon) grid spacing of a cube, degrees.

    A grid one pixel wide along an axis cannot tell its spacing: the ``posting_deg`` attribute
    is used there, else LiCSAR's geocoded posting of 0.001° (DESIGN.md §2), with a warning.
    """
    lat, lon = ds["lat"].values, ds["lon"].values
    fallback = float(ds.attrs.get("posting_deg", LICSAR_POSTING_DEG))
    if lat.size < 2 or lon.size < 2:
        log.warning("the grid is %dx%d pixels: assuming a posting of %g deg where it cannot be measured", lat.size, lon.size, fallback)
    dlat = float(abs(np.median(np.diff(lat)))) if lat.size > 1 else fallback
    dlon = float(abs(np.median(np.diff(lon)))) if lon.size > 1 else fallback
    return dlat, dlon
