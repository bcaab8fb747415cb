"""Read a LiCSBAS ``cum.h5`` / ``cum_filt.h5`` into the cube contract (DESIGN.md §2, §3).

Layout written by LiCSBAS13_sb_inv.py (``cum.h5``) and LiCSBAS16_filt_ts.py (``cum_filt.h5``),
all datasets at the HDF5 root:

- ``cum``: (n_im, length, width) float32, LOS mm, positive towards the satellite (LiCSBAS
  converts phase with ``coef_r2m = -wavelength/4/pi*1000``, "positive is -LOS"), NaN = no data,
  ``cum[0] = 0`` where the pixel has data
- ``imdates``: (n_im,) int32 YYYYMMDD
- ``vel``: (length, width) float32 mm/yr; ``refarea``: scalar string ``'x1:x2/y1:y2'`` (pixel
  index ranges; bytes when read back through h5py >= 3)
- ``corner_lat``, ``corner_lon``, ``post_lat`` (negative), ``post_lon``: scalar float64 degrees,
  present only for geocoded data
- optional ``coh_avg`` (length, width) float32 0..1; ``mask`` (length, width) float32 in
  ``cum_filt.h5`` (1 = keep, 0 = masked, NaN = no data)
"""
from __future__ import annotations

import logging
import os
import re
from typing import Any

import h5py
import numpy as np
import xarray as xr

from ladsdin.models.cube import CubeError

logger = logging.getLogger(__name__)

_REFAREA_RE = re.compile(r"^\s*(\d+):(\d+)/(\d+):(\d+)\s*$")


def is_licsbas(f: h5py.File) -> bool:
    """True when an open HDF5 file has the LiCSBAS layout (root ``cum`` and ``imdates``).

    Both are required: LiCSBAS_out2nc.py writes NetCDF files with a ``cum`` variable too, and
    those belong to the NetCDF reader.
    """
    return isinstance(f.get("cum"), h5py.Dataset) and isinstance(f.get("imdates"), h5py.Dataset)


def decode_text(value: Any) -> str:
    """An HDF5 string (str, bytes, numpy bytes/str scalar or 0-d array) as a Python str."""
    if isinstance(value, np.ndarray):
        value = value.item() if value.size == 1 else value.tolist()
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("utf-8", errors="replace").strip()
    return str(value).strip()


def dates_from_yyyymmdd(values: Any, *, source: str) -> np.ndarray:
    """Acquisition dates from YYYYMMDD integers or strings.

    Args:
        values: (n,) int, str or bytes, each YYYYMMDD.
        source: file and dataset name, for the error message.

    Returns:
        (n,) datetime64[ns] at 00:00 UTC of each date.

    Raises:
        CubeError: a value that is not an 8-digit calendar date.
    """
    out = []
    for raw in np.asarray(values).ravel():
        text = decode_text(raw)
        try:
            if re.fullmatch(r"\d{8}", text) is None:
                raise ValueError
            out.append(np.datetime64(f"{text[:4]}-{text[4:6]}-{text[6:8]}", "ns"))  # rejects month 13
        except ValueError:
            raise CubeError(
                f"{source}: date {text!r} is not YYYYMMDD; the file must list one acquisition "
                "date per epoch as an 8-digit YYYYMMDD value"
            ) from None
    return np.array(out, dtype="datetime64[ns]")


def _scalar(f: h5py.File, name: str, path: str) -> float:
    ds = f.get(name)
    if not isinstance(ds, h5py.Dataset):
        raise CubeError(
            f"{path}: LiCSBAS file has no '{name}' dataset, so it is in radar coordinates; run "
            "LiCSBAS on geocoded LiCSAR products (GEOC) so the cube has a lat/lon grid"
        )
    return float(np.asarray(ds[()]).ravel()[0])


def _refarea_attrs(refarea: str, lat: np.ndarray, lon: np.ndarray) -> dict[str, Any]:
    attrs: dict[str, Any] = {"licsbas_refarea": refarea}
    m = _REFAREA_RE.match(refarea)
    if m is None:
        logger.warning("LiCSBAS refarea %r is not 'x1:x2/y1:y2'; kept as text only", refarea)
        return attrs
    x1, x2, y1, y2 = (int(g) for g in m.groups())
    # x2/y2 are exclusive (LiCSBAS slices [y1:y2, x1:x2]); the centre of the last included pixel
    # is index x2 - 1.
    if 0 <= x1 < x2 <= lon.size and 0 <= y1 < y2 <= lat.size:
        attrs["licsbas_ref_lon"] = float((lon[x1] + lon[x2 - 1]) / 2.0)
        attrs["licsbas_ref_lat"] = float((lat[y1] + lat[y2 - 1]) / 2.0)
    return attrs


def read_licsbas(path: str | os.PathLike[str]) -> xr.Dataset:
    """Read a LiCSBAS ``cum.h5`` or ``cum_filt.h5`` whole into memory.

    Args:
        path: the HDF5 file.

    Returns:
        A dataset ready for :func:`ladsdin.models.cube.normalize_cube`:
        ``displacement`` (time, lat, lon) float32, LOS mm, +towards satellite, NaN where LiCSBAS
        has no data or ``mask`` is 0; optional ``coherence`` (lat, lon) float32 0..1 from
        ``coh_avg``; lat descending (first row north) as LiCSBAS stores it. Attrs carry
        ``source_format``, ``licsbas_refarea`` (and its centre ``licsbas_ref_lat/lon``), and a
        velocity summary ``licsbas_vel_median_mm_yr``.

    Raises:
        CubeError: not geocoded, bad dates, or shapes that disagree.
    """
    src = os.fspath(path)
    with h5py.File(src, "r") as f:
        if not is_licsbas(f):
            raise CubeError(f"{src}: not a LiCSBAS file (needs root datasets 'cum' and 'imdates')")
        cum = np.asarray(f["cum"][()], dtype=np.float32)
        if cum.ndim != 3:
            raise CubeError(
                f"{src}: LiCSBAS 'cum' has shape {cum.shape}; expected (n_im, length, width)"
            )
        n_im, length, width = cum.shape
        times = dates_from_yyyymmdd(f["imdates"][()], source=f"{src}:imdates")
        if times.size != n_im:
            raise CubeError(
                f"{src}: {times.size} imdates for {n_im} cum epochs; the file is truncated or "
                "mixed from two runs, re-run LiCSBAS13"
            )
        # LiCSBAS02_ml_prep.py shifts the GeoTIFF's pixel-edge origin half a pixel inwards
        # ("lat_n_g = lat_n_p + dlat/2 ... to grid registration") before writing corner_lat to
        # EQA.dem_par, which LiCSBAS13_sb_inv.py copies into cum.h5; LiCSBAS_out2nc.py then uses
        # lat = corner_lat + post_lat*arange(length). So corner_lat/lon is the first pixel's centre.
        lat0, lon0 = _scalar(f, "corner_lat", src), _scalar(f, "corner_lon", src)
        dlat, dlon = _scalar(f, "post_lat", src), _scalar(f, "post_lon", src)
        lat = lat0 + dlat * np.arange(length, dtype=np.float64)
        lon = lon0 + dlon * np.arange(width, dtype=np.float64)

        if "mask" in f:
            mask = np.asarray(f["mask"][()], dtype=np.float32)
            if mask.shape != (length, width):
                raise CubeError(f"{src}: 'mask' has shape {mask.shape}, cum maps are {(length, width)}")
            # LiCSBAS16: 1 = keep, 0 = masked by LiCSBAS15, NaN = no cum data.
            cum[:, ~(np.isfinite(mask) & (mask != 0))] = np.nan

        data_vars: dict[str, Any] = {
            "displacement": (("time", "lat", "lon"), cum, {"units": "mm"}),
        }
        if "coh_avg" in f:
            coh = np.asarray(f["coh_avg"][()], dtype=np.float32)
            if coh.shape == (length, width):
                data_vars["coherence"] = (("lat", "lon"), coh, {"units": "1"})
            else:
                logger.warning("%s: coh_avg shape %s does not match the grid; ignored", src, coh.shape)

        attrs: dict[str, Any] = {
            "source_format": "licsbas",
            "source_file": src,
            "licsbas_filtered": int("filtwidth_yr" in f),
        }
        if "refarea" in f:
            attrs.update(_refarea_attrs(decode_text(f["refarea"][()]), lat, lon))
        if "vel" in f:
            vel = np.asarray(f["vel"][()], dtype=np.float32)
            if np.isfinite(vel).any():
                attrs["licsbas_vel_median_mm_yr"] = float(np.nanmedian(vel))

    logger.info("read LiCSBAS %s: %d epochs on a %dx%d grid", src, n_im, length, width)
    return xr.Dataset(data_vars, coords={"time": times, "lat": lat, "lon": lon}, attrs=attrs)
