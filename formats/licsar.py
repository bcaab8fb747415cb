"""Readers for a LiCSAR frame directory as the LiCSAR portal publishes it (DESIGN.md §2).

::

    <FRAME>/                                   e.g. 128A_05172_131313/
      interferograms/D1_D2/D1_D2.geo.unw.tif   unwrapped phase, rad, float32, 0 = nodata
      interferograms/D1_D2/D1_D2.geo.cc.tif    coherence, uint8 0..255 (older: float 0..1), 0 = nodata
      metadata/<FRAME>.geo.{E,N,U}.tif         ground-to-satellite unit vector (east, north, up)
      metadata/<FRAME>.geo.hgt.tif             DEM height, m
      metadata/metadata.txt                    key=value lines: master=, heading=, center_time=, ...
      metadata/baselines                       "primary secondary bperp_m dt_days" per acquisition

All rasters are geocoded on one EPSG:4326 grid at 0.001° posting, north up. Phase converts to
LOS mm with the LiCSBAS factor ``MM_PER_RAD`` (-4.414 mm/rad), so **positive = towards the
satellite**. Every read validates the file completely (a truncated or half-copied file raises
:class:`LicsarFileError`, never returns part of a map).
"""
from __future__ import annotations

import datetime as dt
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ladsdin.models.cube import MM_PER_RAD

UNW_SUFFIX = ".geo.unw.tif"
CC_SUFFIX = ".geo.cc.tif"
_PAIR_RE = re.compile(r"^(\d{8})_(\d{8})$")
# a grid's origin may differ by float noise, never by a sizeable part of a pixel
_ORIGIN_TOL = 1e-3
_STEP_RTOL = 1e-6


class LicsarFileError(ValueError):
    """A LiCSAR file that cannot be used. ``reason`` is machine-readable:
    bad_name, pair_order, truncated, unreadable, grid_mismatch, missing, bad_values."""

    def __init__(self, path: Path | str, reason: str, detail: str) -> None:
        super().__init__(f"{path}: {detail}")
        self.path, self.reason, self.detail = str(path), reason, detail


@dataclass(frozen=True)
class FrameGrid:
    """A north-up geographic grid of pixel centres: ``lat_i = lat0 + i*dlat``, ``lon_j = lon0 + j*dlon``.

    Degrees; ``dlat`` < 0 for north-up rasters (row 0 is the northern edge).
    """

    n_lat: int
    n_lon: int
    lat0: float
    lon0: float
    dlat: float
    dlon: float

    @property
    def lat(self) -> np.ndarray:
        """(n_lat,) float64 pixel-centre latitudes, degrees."""
        return self.lat0 + self.dlat * np.arange(self.n_lat)

    @property
    def lon(self) -> np.ndarray:
        """(n_lon,) float64 pixel-centre longitudes, degrees."""
        return self.lon0 + self.dlon * np.arange(self.n_lon)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n_lat, self.n_lon)

    def mismatch(self, other: FrameGrid) -> str | None:
        """None when ``other`` is the same grid, else a sentence saying how it differs."""
        if other.shape != self.shape:
            return f"shape {other.shape} (lat, lon), the frame's grid is {self.shape}"
        for name in ("dlat", "dlon"):
            a, b = getattr(self, name), getattr(other, name)
            if abs(a - b) > _STEP_RTOL * abs(a):
                return f"{name} {b:g} degrees, the frame's grid has {a:g}"
        for name, step in (("lat0", self.dlat), ("lon0", self.dlon)):
            a, b = getattr(self, name), getattr(other, name)
            if abs(a - b) > _ORIGIN_TOL * abs(step):
                return f"first pixel-centre {name[:3]} {b:.6f}, the frame's grid starts at {a:.6f}"
        return None

    def to_dict(self) -> dict[str, float | int]:
        return {k: getattr(self, k) for k in ("n_lat", "n_lon", "lat0", "lon0", "dlat", "dlon")}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FrameGrid:
        return cls(int(d["n_lat"]), int(d["n_lon"]), float(d["lat0"]), float(d["lon0"]), float(d["dlat"]), float(d["dlon"]))

    def transform(self) -> Any:
        """The GDAL affine transform (upper-left corner, pixel-is-area) of this grid."""
        from affine import Affine

        return Affine(self.dlon, 0.0, self.lon0 - self.dlon / 2, 0.0, self.dlat, self.lat0 - self.dlat / 2)


def parse_date(text: str, *, path: Path | str) -> dt.date:
    try:
        return dt.datetime.strptime(text, "%Y%m%d").date()
    except ValueError:
        raise LicsarFileError(path, "bad_name", f"{text!r} is not a date YYYYMMDD") from None


def parse_pair(name: str, *, path: Path | str | None = None) -> tuple[dt.date, dt.date]:
    """``'20220101_20220113'`` -> (primary, secondary) dates; the primary must be the earlier.

    Raises:
        LicsarFileError: ``bad_name`` for anything but ``YYYYMMDD_YYYYMMDD`` of real dates,
        ``pair_order`` when the first date is not before the second.
    """
    where = path if path is not None else name
    m = _PAIR_RE.match(name)
    if m is None:
        raise LicsarFileError(where, "bad_name", f"interferogram name {name!r} is not YYYYMMDD_YYYYMMDD")
    d1, d2 = parse_date(m.group(1), path=where), parse_date(m.group(2), path=where)
    if d1 >= d2:
        raise LicsarFileError(where, "pair_order", f"date pair {name} is out of order: LiCSAR names an interferogram "
                              "PRIMARY_SECONDARY with the earlier date first; rename it or remove it")
    return d1, d2


def _read_raster(path: Path) -> tuple[np.ndarray, FrameGrid, Any]:
    """Read band 1 of a single-band EPSG:4326 GeoTIFF in full: (array, grid, nodata)."""
    import rasterio
    import rioxarray  # noqa: F401 - registers the .rio accessor used below
    import xarray as xr

    if not path.is_file():
        raise LicsarFileError(path, "missing", "file not found")
    try:
        with warnings.catch_warnings():
            # rioxarray 0.19 multiplies affine 3 transforms with `*`, which affine now flags
            warnings.simplefilter("ignore", PendingDeprecationWarning)
            with xr.open_dataarray(path, engine="rasterio", mask_and_scale=False) as da:
                if da.sizes.get("band", 1) != 1:
                    raise LicsarFileError(path, "unreadable", f"{da.sizes['band']} bands; a LiCSAR product has one")
                crs = da.rio.crs
                if crs is not None and crs.to_epsg() != 4326:
                    raise LicsarFileError(path, "grid_mismatch", f"CRS {crs}; LiCSAR products are geocoded in EPSG:4326")
                t = da.rio.transform()
                nodata = da.rio.nodata
                arr = np.asarray(da.values).reshape(da.sizes["y"], da.sizes["x"])  # decodes every block
    except LicsarFileError:
        raise
    except (rasterio.errors.RasterioError, OSError, ValueError, KeyError) as exc:
        # GDAL reports a short file as a read failure of some block ("TIFFReadEncodedTile ...")
        raise LicsarFileError(path, "truncated", f"cannot read the whole raster ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''}); the file is truncated, "
                              "corrupt or still being copied") from None
    if t.b != 0 or t.d != 0:
        raise LicsarFileError(path, "grid_mismatch", "rotated geotransform; LiCSAR grids are north up")
    grid = FrameGrid(arr.shape[0], arr.shape[1], t.f + t.e / 2, t.c + t.a / 2, t.e, t.a)
    return arr, grid, nodata


def _check_grid(path: Path, grid: FrameGrid, expected: FrameGrid | None) -> None:
    if expected is not None and (why := expected.mismatch(grid)):
        raise LicsarFileError(path, "grid_mismatch", f"wrong grid: {why}; this file does not belong to the frame")


def read_unw(path: Path, expected: FrameGrid | None = None) -> tuple[np.ndarray, FrameGrid]:
    """An unwrapped interferogram as LOS mm.

    Returns:
        (n_lat, n_lon) float32 LOS mm, +towards the satellite, NaN = no data (LiCSAR writes 0);
        and the file's grid.
    """
    rad, grid, nodata = _read_raster(path)
    _check_grid(path, grid, expected)
    if not np.issubdtype(rad.dtype, np.floating):
        raise LicsarFileError(path, "bad_values", f"dtype {rad.dtype}; unwrapped phase is float radians")
    rad = rad.astype(np.float32)
    bad = (rad == 0) | ~np.isfinite(rad)
    if nodata is not None and np.isfinite(nodata):
        bad |= rad == nodata
    if bad.all():
        raise LicsarFileError(path, "bad_values", "every pixel is nodata")
    return np.where(bad, np.float32(np.nan), rad * np.float32(MM_PER_RAD)), grid


def read_cc(path: Path, expected: FrameGrid | None = None) -> tuple[np.ndarray, FrameGrid]:
    """Coherence as float32 0..1, NaN = no data; uint8 products are scaled by 1/255."""
    raw, grid, _ = _read_raster(path)
    _check_grid(path, grid, expected)
    if raw.dtype == np.uint8:
        cc = raw.astype(np.float32) / np.float32(255.0)
    elif np.issubdtype(raw.dtype, np.floating):
        cc = raw.astype(np.float32)
        finite = cc[np.isfinite(cc)]
        if finite.size and (finite.min() < 0 or finite.max() > 1.0 + 1e-6):
            raise LicsarFileError(path, "bad_values", f"float coherence outside 0..1 ({finite.min():g}..{finite.max():g})")
    else:
        raise LicsarFileError(path, "bad_values", f"dtype {raw.dtype}; coherence is uint8 0..255 or float 0..1")
    return np.where((cc > 0) & np.isfinite(cc), cc, np.float32(np.nan)), grid


def read_metadata_txt(path: Path) -> dict[str, str]:
    """``metadata.txt`` as a dict (keys as written: master, center_time, heading, avg_incidence_angle, ...)."""
    out: dict[str, str] = {}
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            out[key.strip()] = value.strip()
    return out


def read_baselines(path: Path) -> dict[dt.date, float]:
    """``baselines``: perpendicular baseline (m) of each acquisition date against the frame's primary.

    Accepts the current 4-column LiCSAR format (``primary secondary bperp dt``) and the old
    9-column one (``num mdate sdate bp dt ...``), as LiCSBAS_io_lib.read_bperp_file does.
    """
    out: dict[dt.date, float] = {}
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        cols = line.split()
        if not cols or cols[0].startswith("#"):
            continue
        try:
            if len(cols) == 4:
                out[parse_date(cols[0], path=path)] = 0.0
                out[parse_date(cols[1], path=path)] = float(cols[2])
            elif len(cols) >= 9:
                out[parse_date(cols[1], path=path)] = float(cols[7])
                out[parse_date(cols[2], path=path)] = float(cols[8])
            else:
                raise ValueError(f"{len(cols)} columns")
        except ValueError as exc:
            raise LicsarFileError(path, "unreadable", f"line {n}: {exc}; expected 'primary secondary bperp dt'") from None
    return out


@dataclass(frozen=True)
class Geometry:
    """The frame's static layers, (n_lat, n_lon) float32: unit vector ground->satellite (E, N, U) and height, m."""

    e: np.ndarray | None
    n: np.ndarray | None
    u: np.ndarray | None
    hgt: np.ndarray | None
    grid: FrameGrid
    metadata: dict[str, str]
    baselines: dict[dt.date, float]

    @property
    def track(self) -> str | None:
        """'A' or 'D' from metadata.txt's heading (ascending flies north: |heading| < 90°)."""
        heading = self.metadata.get("heading")
        if heading is None:
            return None
        h = (float(heading) + 180.0) % 360.0 - 180.0
        return "A" if abs(h) < 90.0 else "D"


def read_geometry(frame_dir: Path, frame: str) -> Geometry | None:
    """``metadata/`` of a frame, or None when it has no georeferenced layer (ifgs then define the grid)."""
    meta = frame_dir / "metadata"
    layers: dict[str, np.ndarray | None] = {}
    grid: FrameGrid | None = None
    for key in ("hgt", "E", "N", "U"):
        path = meta / f"{frame}.geo.{key}.tif"
        if not path.is_file():
            layers[key] = None
            continue
        arr, g, nodata = _read_raster(path)
        _check_grid(path, g, grid)
        grid = grid or g
        a = arr.astype(np.float32)
        if nodata is not None and np.isfinite(nodata):
            a[arr == nodata] = np.nan
        layers[key] = a
    if grid is None:
        return None
    txt = meta / "metadata.txt"
    bl = meta / "baselines"
    return Geometry(layers["E"], layers["N"], layers["U"], layers["hgt"], grid,
                    read_metadata_txt(txt) if txt.is_file() else {},
                    read_baselines(bl) if bl.is_file() else {})


def ifg_paths(frame_dir: Path, name: str) -> tuple[Path, Path]:
    """(unw, cc) paths of interferogram ``name`` (``D1_D2``)."""
    d = frame_dir / "interferograms" / name
    return d / f"{name}{UNW_SUFFIX}", d / f"{name}{CC_SUFFIX}"


def write_raster(path: Path, array: np.ndarray, grid: FrameGrid, *, nodata: float | int | None = 0) -> Path:
    """Write a single-band EPSG:4326 GeoTIFF the way LiCSAR does (DEFLATE, pixel-is-area), atomically."""
    import os
    import uuid

    import rasterio

    arr = np.asarray(array)
    if arr.shape != grid.shape:
        raise ValueError(f"array {arr.shape} does not match the grid {grid.shape}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    profile = {"driver": "GTiff", "height": arr.shape[0], "width": arr.shape[1], "count": 1, "dtype": arr.dtype.name,
               "crs": "EPSG:4326", "transform": grid.transform(), "nodata": nodata, "compress": "deflate",
               "tiled": True, "blockxsize": 256, "blockysize": 256}
    if arr.shape[0] < 256 or arr.shape[1] < 256:
        profile.update(tiled=False, blockxsize=None, blockysize=None)
        profile = {k: v for k, v in profile.items() if v is not None}
    try:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(arr, 1)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
