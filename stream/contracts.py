"""The event contracts: the JSON Schemas in ``stream/schemas/``, the DLQ reasons, and the checks
a schema cannot make (a real calendar date, the track letter of a LiCSAR frame ID).

Every bad event is answered with :class:`EventError`, whose ``reason`` is the DLQ's
machine-readable reason. Frame names follow :data:`ladsdin.models.cube.FRAME_NAME_PATTERN`, the
one rule the schemas, the event parser and the state store share.
"""
from __future__ import annotations

import datetime as dt
import functools
import importlib.resources
import json
import re
import time
from typing import Any

import numpy as np

from ladsdin.models.names import LICSAR_FRAME_RE, is_frame_name

EPOCH_SCHEMA = "licsar.epochs.v1"
ALERT_SCHEMA = "ladsdin.alerts.v1"
SUMMARY_SCHEMA = "ladsdin.epoch-summaries.v1"
DLQ_SCHEMA = "licsar.epochs.v1.dlq"
#: The DLQ's machine-readable reasons (the enum of ``licsar.epochs.v1.dlq.json``).
REASONS = ("invalid_json", "schema_violation", "grid_mismatch", "all_nan", "out_of_order", "unknown_frame",
           "uri_missing", "uri_disallowed", "sha256_mismatch", "oversize", "unreadable_data", "duplicate",
           "out_of_range", "frame_failed", "processing_error")
#: The first Sentinel-1 acquisition (S1A): no LiCSAR epoch is older.
S1_ERA_START = "2014-04-03"
_DETAIL_CHARS = 400


class EventError(ValueError):
    """A bad epoch event. ``reason`` is one of :data:`REASONS`; the message says what to fix.
    ``transient``: the cause may pass (a data object not there yet, an I/O error), so the
    worker retries before the event counts as bad."""

    def __init__(self, reason: str, detail: str, *, transient: bool = False) -> None:
        if reason not in REASONS:
            raise ValueError(f"DLQ reason {reason!r} is not one of {', '.join(REASONS)}")
        super().__init__(detail)
        self.reason = reason
        self.transient = transient


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


def utc_now() -> str:
    """Now, UTC, ISO 8601 with microseconds and a ``Z``."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def check_names(frame: str, track: str, epoch: str) -> None:
    """EventError(schema_violation) unless frame, track and epoch are valid and agree."""
    if not isinstance(frame, str) or not is_frame_name(frame):
        raise EventError("schema_violation", f"frame {frame!r}: use a LiCSAR frame ID like 128A_05172_131313 or "
                         "1-64 characters [A-Za-z0-9_.-] starting with a letter or digit")
    if track not in ("A", "D"):
        raise EventError("schema_violation", f"track {track!r}: use 'A' (ascending) or 'D' (descending)")
    if LICSAR_FRAME_RE.fullmatch(frame) and frame[3] != track:
        raise EventError("schema_violation", f"frame {frame} is track {frame[3]} by its ID but the event says track {track}")
    if not (isinstance(epoch, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", epoch) and _is_date(epoch)):
        raise EventError("schema_violation", f"epoch {epoch!r}: use a real date YYYY-MM-DD")


#: Pixel spacing limits, degrees: LiCSAR posts at 0.001 deg (about 100 m); anything outside
#: these is a units mistake (metres or radians) or garbage.
MIN_SPACING_DEG, MAX_SPACING_DEG = 1e-5, 1.0


def check_bounds(event: dict[str, Any], *, latest_epoch: str, max_pixels: int) -> None:
    """EventError(out_of_range) for an epoch outside the Sentinel-1 era (S1_ERA_START to
    ``latest_epoch``) or a grid off the Earth, with an implausible spacing, or over ``max_pixels``.

    Checked before anything is allocated: a far date would make the calendar allocate, a huge
    grid the decoder.
    """
    epoch = event["epoch"]
    if not S1_ERA_START <= epoch <= latest_epoch:
        raise EventError("out_of_range", f"epoch {epoch} is outside the Sentinel-1 era ({S1_ERA_START} to {latest_epoch}, "
                         "today plus LADSDIN_EPOCH_MARGIN_DAYS); check the date")
    g = event["grid"]
    n_px = int(g["n_lat"]) * int(g["n_lon"])
    if n_px > max_pixels:
        raise EventError("out_of_range", f"grid {g['n_lat']}x{g['n_lon']} = {n_px} pixels exceeds LADSDIN_MAX_FRAME_PIXELS={max_pixels}")
    for axis, lo, hi in (("lat", -90.0, 90.0), ("lon", -180.0, 360.0)):
        step, first = float(g[f"d{axis}"]), float(g[f"{axis}0"])
        if not MIN_SPACING_DEG <= abs(step) <= MAX_SPACING_DEG:
            raise EventError("out_of_range", f"grid d{axis}={step} degrees: the spacing must be {MIN_SPACING_DEG:g} to "
                             f"{MAX_SPACING_DEG:g} degrees in magnitude (LiCSAR posts at 0.001)")
        last = first + step * (int(g[f"n_{axis}"]) - 1)
        if not (lo <= min(first, last) and max(first, last) <= hi):
            raise EventError("out_of_range", f"grid {axis} runs {first:g}..{last:g} degrees, outside {lo:g}..{hi:g}")


def latest_epoch(margin_days: int) -> str:
    """The latest epoch date accepted now: today (UTC) plus ``margin_days``."""
    return (dt.datetime.now(dt.timezone.utc).date() + dt.timedelta(days=margin_days)).isoformat()


def _is_date(text: str) -> bool:
    try:
        return dt.date.fromisoformat(text) is not None
    except ValueError:
        return False


def now_iso() -> str:
    """Now, UTC, as ``YYYY-MM-DDTHH:MM:SSZ`` (the ``produced_at`` and ``at`` fields)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def iso_to_unix_s(text: str | None) -> float:
    """Seconds since 1970 of an ISO-8601 UTC timestamp (now when missing or unreadable)."""
    if not text:
        return time.time()
    try:
        return float(np.datetime64(text.rstrip("Z"), "ms").astype("int64")) / 1000.0
    except ValueError:
        return time.time()
