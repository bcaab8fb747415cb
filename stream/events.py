"""The ``licsar.epochs.v1`` event: build (the producer side), encode, and parse (the worker side).

All displacements are LOS mm, positive towards the satellite. The data travel by reference
(:mod:`ladsdin.stream.objects`) or inline (little-endian float32, base64) for small frames.
"""
from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from ladsdin.models.cube import SIGN, UNITS
from ladsdin.stream.contracts import EPOCH_SCHEMA, EventError, check_bounds, check_names, latest_epoch, utc_now, validate

#: Defaults of the worker's bounds (Settings.epoch_margin_days and Settings.max_frame_pixels).
EPOCH_MARGIN_DAYS = 30
MAX_FRAME_PIXELS = 16_000_000


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
    check_names(frame, track, epoch)
    grid = grid_from_coords(lat, lon)
    event: dict[str, Any] = {"schema": EPOCH_SCHEMA, "event_id": "", "frame": frame, "track": track, "epoch": epoch,
                             "units": UNITS, "sign": SIGN, "produced_at": produced_at or utc_now(), "grid": grid}
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


def parse_epoch_event(raw: bytes, *, max_bytes: int, epoch_margin_days: int = EPOCH_MARGIN_DAYS,
                      max_pixels: int = MAX_FRAME_PIXELS) -> dict[str, Any]:
    """Decode and validate one message value, bounds included (:func:`check_bounds`);
    EventError(oversize | invalid_json | schema_violation | out_of_range)."""
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
    check_names(event["frame"], event["track"], event["epoch"])
    prefix = f"{event['frame']}:{event['epoch']}:"
    if not event["event_id"].startswith(prefix):
        raise EventError("schema_violation", f"event_id {event['event_id']!r} must start with {prefix!r}")
    check_bounds(event, latest_epoch=latest_epoch(epoch_margin_days), max_pixels=max_pixels)
    return event

