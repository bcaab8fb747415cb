"""Epoch data by reference: where an event's ``data.uri`` may point, and reading and writing the
objects.

Data by reference is read only from ``file://`` URIs inside allowed roots (symlinks resolved),
and its sha256 is checked on the very bytes that are then decoded. Every failure is an
:class:`~ladsdin.stream.contracts.EventError` with its DLQ reason.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import io
import os
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import numpy as np

from ladsdin.models.cube import SIGN, UNITS
from ladsdin.stream.contracts import EventError, check_names

#: A referenced object may exceed its raw float32 size by this much (HDF5/Zarr metadata).
_OBJECT_OVERHEAD_BYTES = 4 * 1024 * 1024
# float32 displacement plus the ingest's quality layers (2 x float32 + 2 x int8), uncompressed
_OBJECT_BYTES_PER_PIXEL = 4 + 4 + 4 + 1 + 1


def resolve_uri(uri: str, allowed_roots: Sequence[Path]) -> Path:
    """The real local path of a ``file://`` URI inside one of ``allowed_roots``.

    EventError(uri_disallowed) for other schemes or hosts, ``..`` segments, or a real path
    (symlinks resolved) outside every root; EventError(uri_missing) when nothing is there.
    """
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme == "s3":
        raise EventError("uri_disallowed", f"{uri}: s3:// is not supported yet; copy the object under an allowed "
                         "file:// root (LADSDIN_DATA_ROOT or LADSDIN_ALLOWED_URI_ROOTS)")
    if scheme != "file":
        raise EventError("uri_disallowed", f"{uri}: only file:// URIs are read; copy the object under an allowed root")
    if parts.netloc not in ("", "localhost"):
        raise EventError("uri_disallowed", f"{uri}: host {parts.netloc!r} is not this machine; use file:///path")
    if parts.query or parts.fragment:
        raise EventError("uri_disallowed", f"{uri}: a file:// URI takes no query or fragment")
    path = unquote(parts.path)
    if not path.startswith("/") or "\x00" in path or ".." in path.split("/"):
        raise EventError("uri_disallowed", f"{uri}: need an absolute path without '..' segments")
    real = Path(os.path.realpath(path))
    roots = [Path(os.path.realpath(r)) for r in allowed_roots]
    if not any(real != root and real.is_relative_to(root) for root in roots):
        # Checked before existence so a probe cannot learn which files exist outside the roots.
        raise EventError("uri_disallowed", f"{uri} resolves to {real}, outside the allowed roots "
                         f"{[str(r) for r in roots]}; add its directory to LADSDIN_ALLOWED_URI_ROOTS")
    if not real.exists():
        raise EventError("uri_missing", f"{uri}: no such file ({real}); publish the object before its event", transient=True)
    return real


def object_sha256(path: Path) -> str:
    """sha256 of a file's bytes; for a directory (a Zarr store), of its manifest: one line
    ``<relative posix path>\\0<sha256 of the file>\\n`` per file, sorted by path."""
    if path.is_file():
        return hashlib.sha256(path.read_bytes()).hexdigest()
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f"{f.relative_to(path).as_posix()}\0{hashlib.sha256(f.read_bytes()).hexdigest()}\n".encode())
    return h.hexdigest()


def _grid_mismatch(grid: Mapping[str, Any], expected: Mapping[str, Any]) -> str | None:
    for key, want in expected.items():
        got = grid.get(key)
        if key.startswith("n_"):
            bad = got != want
        else:
            # coordinates agree to 1 % of a pixel (float32 round-off in some writers)
            axis = "lat" if "lat" in key else "lon"
            tol = 1e-2 * abs(float(expected.get(f"d{axis}", grid[f"d{axis}"])))
            bad = got is None or abs(float(got) - float(want)) > tol
        if bad:
            return f"{key}={got}, the frame has {want}"
    return None


def _displacement(ds: Any, uri: str, grid: Mapping[str, Any]) -> np.ndarray:
    if "displacement" not in ds.variables:
        raise EventError("unreadable_data", f"{uri}: no 'displacement' variable (has {sorted(ds.variables)})")
    var = ds["displacement"]
    var = var[0] if var.ndim == 3 and var.shape[0] == 1 else var
    units = str(var.attrs.get("units", UNITS)).strip().lower()
    if var.ndim != 2 or units != UNITS:
        raise EventError("unreadable_data", f"{uri}: 'displacement' has dims {var.dims} in {units!r}; need (lat, lon) in mm")
    # the declared shape and type, before a value is read: a few KB of sparse HDF5 can declare
    # gigabytes, and a string or compound variable is no map
    want = (int(grid["n_lat"]), int(grid["n_lon"]))
    if tuple(var.shape) != want:
        raise EventError("grid_mismatch", f"{uri}: 'displacement' is declared {tuple(var.shape)}, the event grid says {want}")
    if var.dtype.kind not in "fiu" or var.dtype.itemsize > 8:
        raise EventError("unreadable_data", f"{uri}: 'displacement' has type {var.dtype}; need float32 (or another real number type)")
    for axis in ("lat", "lon"):  # a map written on another grid than the event announces
        c = np.asarray(var.coords[axis]) if axis in var.coords and var.coords[axis].size == want[axis == "lon"] else np.empty(0)
        if c.size and not (np.isfinite(c[0]) and abs(c[0] - grid[f"{axis}0"]) <= 1e-2 * abs(grid[f"d{axis}"])):
            raise EventError("grid_mismatch", f"{uri}: first {axis} {c[0]} differs from the event's {axis}0 {grid[f'{axis}0']}")
    return np.asarray(var.values)


def _check_store(path: Path, limit: int, uri: str) -> None:
    """A Zarr directory store: every entry a plain file or folder inside it (no symlink out of
    it, no device or FIFO), and at most ``limit`` bytes in all."""
    total, root = 0, Path(os.path.realpath(path))
    for dirpath, dirnames, filenames in os.walk(path, followlinks=False):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            real = Path(os.path.realpath(p))
            if real != root and not real.is_relative_to(root):
                raise EventError("uri_disallowed", f"{uri}: {p.relative_to(path)} links to {real}, outside the store")
            if name in filenames:
                if not real.is_file():
                    raise EventError("unreadable_data", f"{uri}: {p.relative_to(path)} is not a regular file")
                total += real.stat().st_size
                if total > limit:
                    raise EventError("oversize", f"{uri}: the store holds over {limit} bytes (the grid's limit)")


def _read_object(path: Path, fmt: str, sha256: str, grid: Mapping[str, Any], uri: str) -> np.ndarray:
    import xarray as xr

    n_pixels = grid["n_lat"] * grid["n_lon"]
    limit = _OBJECT_BYTES_PER_PIXEL * n_pixels + _OBJECT_OVERHEAD_BYTES
    try:
        if fmt == "netcdf":
            if not path.is_file():
                raise EventError("unreadable_data", f"{uri}: format netcdf needs a file, {path} is not one")
            if path.stat().st_size > limit:
                raise EventError("oversize", f"{uri}: {path.stat().st_size} bytes for {n_pixels} pixels (limit {limit})")
            blob = path.read_bytes()  # hash and decode the same bytes: no swap in between
            digest = hashlib.sha256(blob).hexdigest()
        else:
            if not path.is_dir():
                raise EventError("unreadable_data", f"{uri}: format zarr needs a directory store, {path} is not one")
            _check_store(path, limit, uri)
            digest = object_sha256(path)
    except PermissionError as exc:  # permanent: this worker may not read it
        raise EventError("unreadable_data", f"{uri}: permission denied ({exc.strerror}); let the worker's user read the object") from None
    except OSError as exc:  # an I/O error or a file vanishing mid-read: may pass, retried
        raise EventError("unreadable_data", f"{uri}: I/O error reading the object ({type(exc).__name__}: {exc})", transient=True) from None
    if digest != sha256:
        raise EventError("sha256_mismatch", f"{uri}: sha256 {digest} differs from the event's {sha256}; "
                         "republish the event after the object is complete")
    try:
        with (xr.open_dataset(io.BytesIO(blob), engine="h5netcdf") if fmt == "netcdf" else xr.open_zarr(path)) as ds:
            return _displacement(ds, uri, grid)
    except EventError:
        raise
    except Exception as exc:  # noqa: BLE001 - any decoder failure on foreign bytes is a poison event, not a crash loop
        raise EventError("unreadable_data", f"{uri}: cannot read as {fmt}: {type(exc).__name__}: {exc}") from None


def load_epoch_data(event: Mapping[str, Any], allowed_roots: Sequence[Path],
                    expected_grid: Mapping[str, Any] | None = None) -> np.ndarray:
    """The event's map: (n_lat, n_lon) float32, LOS mm, +towards satellite, NaN = no data.

    ``expected_grid`` (any subset of the grid keys) is the frame's known grid. Raises
    EventError: grid_mismatch, uri_disallowed, uri_missing, oversize, sha256_mismatch,
    unreadable_data, all_nan.
    """
    grid = event["grid"]
    shape = (int(grid["n_lat"]), int(grid["n_lon"]))
    if expected_grid and (why := _grid_mismatch(grid, expected_grid)):
        raise EventError("grid_mismatch", f"event grid differs from the frame's grid: {why}")
    if "inline" in event:
        try:
            raw = base64.b64decode(event["inline"]["values"], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise EventError("unreadable_data", f"inline.values is not base64: {exc}") from None
        if len(raw) != 4 * shape[0] * shape[1]:
            raise EventError("grid_mismatch", f"inline carries {len(raw) / 4:g} float32 values, the grid "
                             f"{shape[0]}x{shape[1]} needs {shape[0] * shape[1]}")
        arr = np.frombuffer(raw, dtype="<f4").reshape(shape).astype(np.float32)
        where = "inline"
    else:
        data, where = event["data"], event["data"]["uri"]
        arr = _read_object(resolve_uri(where, allowed_roots), data["format"], data["sha256"], grid, where)
        if arr.shape != shape:
            raise EventError("grid_mismatch", f"{where}: map shape {arr.shape}, the event grid says {shape}")
        arr = np.ascontiguousarray(arr, dtype=np.float32)
    if np.isinf(arr).any():
        raise EventError("unreadable_data", f"{where}: map contains +-inf; use NaN for no data")
    if np.isnan(arr).all():
        raise EventError("all_nan", f"{where}: every pixel is NaN; do not publish epochs without data")
    return arr


def write_epoch_object(data_root: Path, frame: str, epoch: str, displacement: np.ndarray, lat: np.ndarray,
                       lon: np.ndarray, track: str, *,
                       layers: Mapping[str, tuple[np.ndarray, Mapping[str, str]]] | None = None) -> tuple[str, str]:
    """Write ``data_root/<frame>/<epoch>.nc`` atomically (temp file, fsync, rename).

    Args:
        displacement: (n_lat, n_lon) float32, LOS mm, +towards satellite, NaN = no data.
        lat, lon: (n_lat,), (n_lon,) pixel-centre coordinates, degrees.
        layers: further (n_lat, n_lon) variables with their attributes (units, long_name), e.g. the
            inversion's quality layers; readers of the event use only ``displacement``.
    Returns:
        (``file://`` URI of the object, sha256 of its bytes).
    """
    import xarray as xr

    check_names(frame, track, epoch)
    d = np.asarray(displacement, dtype=np.float32)
    if d.shape != (np.size(lat), np.size(lon)):
        raise ValueError(f"displacement has shape {d.shape}, lat/lon give ({np.size(lat)}, {np.size(lon)})")
    ds = xr.Dataset(
        {"displacement": (("lat", "lon"), d, {"units": UNITS, "sign": SIGN, "long_name": "LOS displacement"})},
        coords={"lat": ("lat", np.asarray(lat, np.float64), {"units": "degrees_north"}),
                "lon": ("lon", np.asarray(lon, np.float64), {"units": "degrees_east"})},
        attrs={"frame": frame, "track": track, "epoch": epoch, "units": UNITS, "sign": SIGN, "Conventions": "CF-1.8"},
    )
    # level 1 + byte shuffle: nearly level 4's size on float maps at a fraction of the time
    # (a full LiCSAR frame is 6 M pixels per layer)
    encoding = {"displacement": {"zlib": True, "complevel": 1, "shuffle": True}}
    for name, (values, attrs) in (layers or {}).items():
        if np.shape(values) != d.shape or name in ds.variables:
            raise ValueError(f"layer {name!r}: shape {np.shape(values)} (need {d.shape}) or a reserved name")
        values = np.asarray(values)
        ds[name] = (("lat", "lon"), values, dict(attrs))
        # noise-like float layers barely compress, and deflate would be most of the write time
        encoding[name] = {"zlib": True, "complevel": 1} if values.dtype.itemsize == 1 else {}
    out_dir = Path(data_root) / frame
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / f"{epoch}.nc"
    # Readers see either no file or the whole file: the event may be published the moment we return.
    tmp = out_dir / f".{epoch}.nc.{uuid.uuid4().hex}.tmp"
    try:
        ds.to_netcdf(tmp, engine="h5netcdf", encoding=encoding)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        digest = object_sha256(tmp)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return final.resolve().as_uri(), digest

