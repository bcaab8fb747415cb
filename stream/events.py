"""The ``licsar.epochs.v1`` event: build, encode, parse, fetch its data, and DLQ records.

The contracts are the JSON Schemas (draft 2020-12) in ``stream/schemas/``; this module checks
what a schema cannot (a real calendar date, the track letter of a LiCSAR frame ID, the data's
digest and grid) and answers every bad event with :class:`EventError`, whose ``reason`` is the
DLQ's machine-readable reason. All displacements are LOS mm, positive towards the satellite.

Frames: a LiCSAR frame ID (``\\d{3}[AD]_\\d{5}_\\d{6}``, its P letter must equal ``track``) or any
safe name of 1-64 characters ``[A-Za-z0-9_.-]`` not starting with '.' or '-' (a simulated or
cropped frame), because the cube contract allows free names too. The name becomes a directory
under the data root and a Redis key prefix, hence the character set.

Data by reference is read only from ``file://`` URIs inside allowed roots (symlinks resolved),
and its sha256 is checked on the very bytes that are then decoded.
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import hashlib
import importlib.resources
import io
import json
import os
import re
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import numpy as np

from ..models.cube import FRAME_RE as LICSAR_FRAME_RE
from ..models.cube import SIGN, UNITS

EPOCH_SCHEMA = "licsar.epochs.v1"
ALERT_SCHEMA = "ladsdin.alerts.v1"
SUMMARY_SCHEMA = "ladsdin.epoch-summaries.v1"
DLQ_SCHEMA = "licsar.epochs.v1.dlq"
#: The DLQ's machine-readable reasons (the enum of ``licsar.epochs.v1.dlq.json``).
REASONS = ("invalid_json", "schema_violation", "grid_mismatch", "all_nan", "out_of_order", "unknown_frame",
           "uri_missing", "uri_disallowed", "sha256_mismatch", "oversize", "unreadable_data", "duplicate")
FRAME_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
#: A referenced object may exceed its raw float32 size by this much (HDF5/Zarr metadata).
_OBJECT_OVERHEAD_BYTES = 4 * 1024 * 1024
# float32 displacement plus the ingest's quality layers (2 x float32 + 2 x int8), uncompressed
_OBJECT_BYTES_PER_PIXEL = 4 + 4 + 4 + 1 + 1
_DETAIL_CHARS = 400


class EventError(ValueError):
    """A bad epoch event. ``reason`` is one of :data:`REASONS`; the message says what to fix."""

    def __init__(self, reason: str, detail: str) -> None:
        if reason not in REASONS:
            raise ValueError(f"DLQ reason {reason!r} is not one of {', '.join(REASONS)}")
        super().__init__(detail)
        self.reason = reason


# -- schemas ----------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def load_schema(name: str) -> dict[str, Any]:
    """The JSON Schema ``stream/schemas/<name>.json`` (package data)."""
    text = importlib.resources.files("ladsdin.stream").joinpath("schemas", f"{name}.json").read_text("utf-8")
    return json.loads(text)


@functools.lru_cache(maxsize=None)
def _validator(name: str) -> Any:
    from jsonschema import Draft202012Validator
    return Draft202012Validator(load_schema(name))


def validate(name: str, obj: Any) -> None:
    """Check ``obj`` against schema ``name``; EventError(schema_violation) names the failing path."""
    from jsonschema.exceptions import best_match

    err = best_match(_validator(name).iter_errors(obj))
    if err is not None:
        # The message may quote the whole instance (megabytes of inline values): keep it short.
        msg = err.message if len(err.message) <= _DETAIL_CHARS else err.message[:_DETAIL_CHARS] + "..."
        raise EventError("schema_violation", f"{name}: at {err.json_path}: {msg}")


# -- building events (the producer side) ----------------------------------------------------------
def _utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _check_names(frame: str, track: str, epoch: str) -> None:
    if not isinstance(frame, str) or not FRAME_NAME_RE.fullmatch(frame):
        raise EventError("schema_violation", f"frame {frame!r}: use a LiCSAR frame ID like 128A_05172_131313 or "
                         "1-64 characters [A-Za-z0-9_.-] not starting with '.' or '-'")
    if track not in ("A", "D"):
        raise EventError("schema_violation", f"track {track!r}: use 'A' (ascending) or 'D' (descending)")
    if LICSAR_FRAME_RE.fullmatch(frame) and frame[3] != track:
        raise EventError("schema_violation", f"frame {frame} is track {frame[3]} by its ID but the event says track {track}")
    if not (isinstance(epoch, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", epoch) and _is_date(epoch)):
        raise EventError("schema_violation", f"epoch {epoch!r}: use a real date YYYY-MM-DD")


def _is_date(text: str) -> bool:
    try:
        return dt.date.fromisoformat(text) is not None
    except ValueError:
        return False


def grid_from_coords(lat: np.ndarray, lon: np.ndarray) -> dict[str, Any]:
    """The event's ``grid`` from pixel-centre coordinates (n_lat,), (n_lon,) in degrees."""
    grid: dict[str, Any] = {}
    for axis, values in (("lat", lat), ("lon", lon)):
        v = np.asarray(values, dtype=np.float64)
        if v.ndim != 1 or v.size < 2 or not np.all(np.isfinite(v)):
            raise ValueError(f"{axis}: need at least 2 finite pixel-centre coordinates in a 1-D array, got shape {v.shape}")
        step = (v[-1] - v[0]) / (v.size - 1)
        # float32 coordinates carry ~1e-6 degree of error, i.e. 1e-3 of a 0.001 degree posting
        if step == 0 or np.max(np.abs(np.diff(v) - step)) > 1e-2 * abs(step):
            raise ValueError(f"{axis}: the event grid must be regular; steps range {np.diff(v).min()}..{np.diff(v).max()} degrees")
        # 12 significant digits drop the float noise of (last - first) / (n - 1), not the posting
        grid.update({f"n_{axis}": int(v.size), f"{axis}0": float(v[0]), f"d{axis}": float(f"{step:.12g}")})
    return {k: grid[k] for k in ("n_lat", "n_lon", "lat0", "lon0", "dlat", "dlon")}


def inline_payload(displacement: np.ndarray) -> dict[str, str]:
    """The event's ``inline`` member for a map: its little-endian float32 bytes in base64."""
    raw = np.asarray(displacement).astype("<f4").tobytes()
    return {"dtype": "float32", "encoding": "base64", "byteorder": "little", "values": base64.b64encode(raw).decode("ascii")}


def build_epoch_event(frame: str, track: str, epoch: str, lat: np.ndarray, lon: np.ndarray, *,
                      uri: str | None = None, sha256: str | None = None, inline: np.ndarray | Mapping[str, str] | None = None,
                      data_format: str | None = None, produced_at: str | None = None,
                      quality: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A ``licsar.epochs.v1`` event: by reference (``uri`` + ``sha256``) or ``inline``.

    Args:
        lat, lon: (n_lat,), (n_lon,) pixel-centre coordinates, degrees, regular.
        inline: (n_lat, n_lon) LOS mm, +towards satellite, NaN = no data (or its inline_payload).
        data_format: 'netcdf' or 'zarr'; default from the URI ('.zarr' -> zarr, else netcdf).
        quality: the optional ``quality`` summary (see the schema), e.g. from ``ladsdin ingest``.
    """
    if (uri is None) == (inline is None):
        raise ValueError("give exactly one of uri= (with sha256=) or inline=")
    _check_names(frame, track, epoch)
    grid = grid_from_coords(lat, lon)
    event: dict[str, Any] = {"schema": EPOCH_SCHEMA, "event_id": "", "frame": frame, "track": track, "epoch": epoch,
                             "units": UNITS, "sign": SIGN, "produced_at": produced_at or _utc_now(), "grid": grid}
    if inline is not None:
        if not isinstance(inline, Mapping) and np.shape(inline) != (grid["n_lat"], grid["n_lon"]):
            raise ValueError(f"inline map has shape {np.shape(inline)}, the grid is ({grid['n_lat']}, {grid['n_lon']})")
        event["inline"] = dict(inline) if isinstance(inline, Mapping) else inline_payload(np.asarray(inline))
        digest = hashlib.sha256(base64.b64decode(event["inline"]["values"])).hexdigest()
    else:
        if sha256 is None:
            raise ValueError(f"uri {uri!r} needs sha256= (the object's digest, see object_sha256)")
        digest = sha256
        fmt = data_format or ("zarr" if str(uri).rstrip("/").endswith(".zarr") else "netcdf")
        event["data"] = {"uri": uri, "sha256": sha256, "format": fmt}
    if quality is not None:
        event["quality"] = dict(quality)
    event["event_id"] = f"{frame}:{epoch}:{digest[:12]}"
    validate(EPOCH_SCHEMA, event)
    return event


def encode_event(event: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON (NaN/Infinity refused: JSON has none)."""
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_epoch_event(raw: bytes, *, max_bytes: int) -> dict[str, Any]:
    """Decode and validate one message value; EventError(oversize | invalid_json | schema_violation)."""
    if len(raw) > max_bytes:
        raise EventError("oversize", f"event of {len(raw)} bytes exceeds LADSDIN_MAX_MESSAGE_BYTES={max_bytes}; "
                         "send large maps by reference (data.uri) rather than inline")
    try:
        event = json.loads(bytes(raw).decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError as exc:
        raise EventError("invalid_json", f"event is not UTF-8 (byte {exc.start}); publish UTF-8 JSON") from None
    except ValueError as exc:  # json.JSONDecodeError and NaN/Infinity literals
        raise EventError("invalid_json", f"event is not JSON: {exc}") from None
    if not isinstance(event, dict):
        raise EventError("schema_violation", f"{EPOCH_SCHEMA}: at $: expected a JSON object, got {type(event).__name__}")
    validate(EPOCH_SCHEMA, event)
    _check_names(event["frame"], event["track"], event["epoch"])
    prefix = f"{event['frame']}:{event['epoch']}:"
    if not event["event_id"].startswith(prefix):
        raise EventError("schema_violation", f"event_id {event['event_id']!r} must start with {prefix!r}")
    return event


# -- data by reference ---------------------------------------------------------------------
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
        raise EventError("uri_missing", f"{uri}: no such file ({real}); publish the object before its event")
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
    for axis in ("lat", "lon"):  # a map written on another grid than the event announces
        c = np.asarray(var.coords[axis]) if axis in var.coords else np.empty(0)
        if c.size == grid[f"n_{axis}"] and abs(c[0] - grid[f"{axis}0"]) > 1e-2 * abs(grid[f"d{axis}"]):
            raise EventError("grid_mismatch", f"{uri}: first {axis} {c[0]} differs from the event's {axis}0 {grid[f'{axis}0']}")
    return np.asarray(var.values)


def _read_object(path: Path, fmt: str, sha256: str, grid: Mapping[str, Any], uri: str) -> np.ndarray:
    import xarray as xr

    n_pixels = grid["n_lat"] * grid["n_lon"]
    limit = _OBJECT_BYTES_PER_PIXEL * n_pixels + _OBJECT_OVERHEAD_BYTES
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
        digest = object_sha256(path)
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

    _check_names(frame, track, epoch)
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


# -- the dead-letter queue ------------------------------------------------------------------
def dlq_record(raw: bytes, reason: str, detail: str, topic: str, partition: int, offset: int, *,
               key: bytes | None = None, max_payload_bytes: int | None = None) -> dict[str, Any]:
    """A ``licsar.epochs.v1.dlq`` record keeping the original payload (UTF-8 text, else base64).

    ``max_payload_bytes`` keeps only the payload's first bytes (``payload_truncated``), so an
    oversize event still fits a DLQ message; ``payload_sha256`` identifies the whole payload.
    """
    if reason not in REASONS:
        raise ValueError(f"DLQ reason {reason!r} is not one of {', '.join(REASONS)}")
    raw = bytes(raw)
    kept = raw if max_payload_bytes is None else raw[:max_payload_bytes]
    payload, is_b64 = base64.b64encode(kept).decode("ascii"), True
    # A cut may split one UTF-8 character: drop up to 3 trailing bytes before giving up on text.
    for trim in range(4 if len(kept) < len(raw) else 1):
        try:
            payload, is_b64 = kept[:len(kept) - trim].decode("utf-8"), False
            kept = kept[:len(kept) - trim]
            break
        except UnicodeDecodeError:
            continue
    try:
        obj = json.loads(raw)
    except ValueError:  # not JSON (or not UTF-8): nothing more to tell
        obj = None
    named = {k: obj.get(k) if isinstance(obj, dict) and isinstance(obj.get(k), str) else None for k in ("frame", "epoch")}
    return {"schema": DLQ_SCHEMA, "reason": reason, "detail": detail,
            "payload": payload, "payload_base64": is_b64, "payload_bytes": len(raw),
            "payload_truncated": len(kept) < len(raw), "payload_sha256": hashlib.sha256(raw).hexdigest(),
            "key": key.decode("utf-8", "replace") if key is not None else None, **named,
            "source": {"topic": topic, "partition": int(partition), "offset": int(offset)}, "failed_at": _utc_now()}
