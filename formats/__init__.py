"""File formats (``ladsdin.formats``, ``formats/``): readers that turn every accepted input into
the cube contract (DESIGN.md §3), and the writers of the outputs.

- this package: :func:`open_cube` / :func:`write_cube`
- :mod:`.netcdf`, :mod:`.licsbas`, :mod:`.mintpy`: the cube readers
- :mod:`.licsar`: LiCSAR GeoTIFF products and metadata (the ingest's input)
- :mod:`.outputs`: ``alerts.geojson``, ``anomalies.nc`` and ``summary.json`` of ``ladsdin detect``

It imports only ``models``.

``open_cube(path)`` decides what the path holds from its contents, not its name:

- a Zarr store (``*.zarr`` directory, a directory with Zarr metadata, or ``*.zarr.zip``) → xarray
- HDF5 with root ``cum`` + ``imdates`` → LiCSBAS ``cum.h5``/``cum_filt.h5`` (:mod:`.licsbas`)
- HDF5 with root ``timeseries`` + ``date`` → MintPy ``timeseries.h5`` (:mod:`.mintpy`)
- any other HDF5 (NetCDF4) or a NetCDF3 classic file → xarray (:mod:`.netcdf`)

and returns the canonical in-memory cube of :func:`ladsdin.models.cube.normalize_cube`:
``displacement`` (time, lat, lon) float32, LOS mm, positive towards the satellite.
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import h5py
import xarray as xr

from ladsdin.models.cube import CubeError, normalize_cube, parse_frame

from ladsdin.formats.licsbas import is_licsbas, read_licsbas
from ladsdin.formats.mintpy import is_hdfeos5, is_mintpy, read_mintpy
from ladsdin.formats.netcdf import is_zarr, read_cube_file, write_cube_file

__all__ = ["CubeError", "CubeFileNotFoundError", "open_cube", "write_cube"]

logger = logging.getLogger(__name__)

_ACCEPTED = (
    "accepted inputs: a cube NetCDF (.nc) or Zarr (.zarr) store, a LiCSBAS cum.h5/cum_filt.h5, "
    "or a geocoded MintPy timeseries.h5"
)
_TRACK_WORDS = {
    "A": "A", "ASC": "A", "ASCENDING": "A",
    "D": "D", "DSC": "D", "DES": "D", "DESC": "D", "DESCENDING": "D",
}


class CubeFileNotFoundError(CubeError, FileNotFoundError):
    """The cube path does not exist (a CubeError, and a FileNotFoundError for generic handlers)."""


def _track_letter(value: object, *, source: str) -> str | None:
    if value is None or not str(value).strip():
        return None
    letter = _TRACK_WORDS.get(str(value).strip().upper())
    if letter is None:
        raise CubeError(f"track {value!r} from {source} is not 'A' or 'D' (ascending/descending); fix {source}")
    return letter


def _default_name(path: Path) -> str:
    name = path.name
    for suffix in (".zip", ".zarr", ".nc4", ".nc", ".cdf", ".h5", ".hdf5"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    # a file name is not a frame name: keep only what a frame name may hold (models/names.py)
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", name).lstrip("_.-")[:64]
    return name or "unknown"


def _identity(ds: xr.Dataset, path: Path, frame: str | None, track: str | None) -> tuple[str, str]:
    """frame and track from, in order: the file's attributes, a frame ID in the path, the
    keywords. Raises CubeError when no source names the track."""
    attr_frame = str(ds.attrs.get("frame") or "").strip() or None
    if attr_frame == "unknown":  # normalize_cube's placeholder names nothing
        attr_frame = None
    from_attr_frame = parse_frame(attr_frame) if attr_frame else None
    from_path = parse_frame(os.path.abspath(path))
    from_kw_frame = parse_frame(frame) if frame else None
    kw_track = _track_letter(track, source="the track argument (--track)")

    frame_out = attr_frame or (from_path[0] if from_path else None) or frame or _default_name(path)
    candidates = [
        _track_letter(ds.attrs.get("track"), source=f"the 'track' attribute of {path}"),
        from_attr_frame[1] if from_attr_frame else None,
        from_path[1] if from_path else None,
        kw_track,
        from_kw_frame[1] if from_kw_frame else None,
    ]
    track_out = next((t for t in candidates if t), None)
    if track_out is None:
        raise CubeError(
            f"track (ascending/descending) of {path} is unknown: the file has no 'track' attribute "
            "and neither its attributes nor its path contain a LiCSAR frame ID such as "
            "128A_05172_131313. Pass --track A or --track D (track= in Python), or use a path "
            "containing the frame ID"
        )
    if frame and frame != frame_out:
        logger.warning("frame %r from %s takes precedence over the frame argument %r", frame_out, path, frame)
    if kw_track and kw_track != track_out:
        logger.warning("track %r from %s takes precedence over the track argument %r", track_out, path, track)
    return frame_out, track_out


def _read_raw(path: Path, lazy: bool = False) -> xr.Dataset:
    if path.is_dir():
        if is_zarr(path):
            return read_cube_file(path, lazy=lazy)
        inside = [n for n in ("cum_filt.h5", "cum.h5", "timeseries.h5") if (path / n).is_file()]
        hint = f"; it contains {', '.join(inside)}: pass that file" if inside else ""
        raise CubeError(f"{path} is a directory but not a Zarr store{hint}. {_ACCEPTED}")
    if h5py.is_hdf5(path):
        try:
            with h5py.File(path, "r") as f:
                kind = (
                    "licsbas" if is_licsbas(f)
                    else "mintpy" if is_mintpy(f)
                    else "hdfeos5" if is_hdfeos5(f)
                    else "netcdf"
                )
        except OSError as exc:
            raise CubeError(f"{path}: HDF5 file cannot be opened ({exc}); is it complete?") from exc
        if kind == "licsbas":
            return read_licsbas(path)
        if kind == "mintpy":
            return read_mintpy(path)
        if kind == "hdfeos5":
            raise CubeError(
                f"{path} is a MintPy HDF-EOS5 export; pass the geocoded geo_timeseries*.h5 it was "
                "made from instead"
            )
        return read_cube_file(path, hdf5=True, lazy=lazy)
    if is_zarr(path):
        return read_cube_file(path, lazy=lazy)
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic[:3] == b"CDF" or path.suffix.lower() in (".nc", ".nc4", ".cdf", ".netcdf"):
        return read_cube_file(path, hdf5=False)
    raise CubeError(f"{path} is not a NetCDF, Zarr or HDF5 file (starts with {magic!r}). {_ACCEPTED}")


def open_cube(
    path: str | os.PathLike[str], *, frame: str | None = None, track: str | None = None, lazy: bool = False
) -> xr.Dataset:
    """Open any accepted displacement time series as a canonical cube, in memory or lazily.

    Args:
        path: NetCDF file, Zarr store, LiCSBAS ``cum.h5``/``cum_filt.h5`` or MintPy
            ``timeseries.h5``; the kind is sniffed from the contents.
        frame: LiCSAR frame ID or free name, used when neither the file's ``frame`` attribute nor
            the path contains one (default: the file name without suffix).
        track: 'A' or 'D', used when neither the file nor a frame ID in the path gives it.
        lazy: for NetCDF and Zarr cubes, read ``displacement`` only when indexed (window by
            window; ``detect`` on full-size frames). LiCSBAS and MintPy files load whole.

    Returns:
        Dataset with ``displacement`` (time, lat, lon) float32, LOS mm, +towards satellite,
        NaN = no data; optional ``coherence`` (lat, lon) float32 0..1; coords ``time``
        datetime64[ns] ascending, ``lat``/``lon`` float64 degrees at pixel centres; attrs
        ``frame``, ``track``, ``units``, ``sign``, ``source_format``, ``source_file``.

    Raises:
        CubeFileNotFoundError: the path does not exist.
        CubeError: unreadable or unrecognised file, a broken contract (missing variable, wrong
            dims, no time, all NaN), MintPy in radar coordinates, or unknown track.
    """
    p = Path(path)
    if not p.exists():
        raise CubeFileNotFoundError(f"cube path {p} does not exist; check the path. {_ACCEPTED}")
    raw = _read_raw(p, lazy)
    frame_out, track_out = _identity(raw, p, frame, track)
    raw.attrs.update(frame=frame_out, track=track_out)
    return normalize_cube(raw, frame=frame_out, track=track_out, lazy=lazy)


def write_cube(ds: xr.Dataset, path: str | os.PathLike[str]) -> Path:
    """Check ``ds`` against the cube contract and write it: Zarr when ``path`` ends ``.zarr``,
    otherwise NetCDF4 through h5netcdf with zlib-compressed ``displacement``/``coherence``.

    Args:
        ds: ``displacement`` (time, lat, lon) LOS mm, +towards satellite, attrs ``track``.
        path: destination file or store (replaced if it exists).

    Returns:
        The path written; :func:`open_cube` reads it back bit-exactly (float32, NaN kept).

    Raises:
        CubeError: ``ds`` breaks the contract (see normalize_cube).
    """
    return write_cube_file(normalize_cube(ds), path)
