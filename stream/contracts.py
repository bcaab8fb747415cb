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
from typing import Any

from ladsdin.models.names import LICSAR_FRAME_RE, is_frame_name

EPOCH_SCHEMA = "licsar.epochs.v1"
ALERT_SCHEMA = "ladsdin.alerts.v1"
SUMMARY_SCHEMA = "ladsdin.epoch-summaries.v1"
DLQ_SCHEMA = "licsar.epochs.v1.dlq"
#: The DLQ's machine-readable reasons (the enum of ``licsar.epochs.v1.dlq.json``).
REASONS = ("invalid_json", "schema_violation", "grid_mismatch", "all_nan", "out_of_order", "unknown_frame",
           "uri_missing", "uri_disallowed", "sha256_mismatch", "oversize", "unreadable_data", "duplicate")
_DETAIL_CHARS = 400


class EventError(ValueError):
    """A bad epoch event. ``reason`` is one of :data:`REASONS`; the message says what to fix."""

    def __init__(self, reason: str, detail: str) -> None:
        if reason not in REASONS:
            raise ValueError(f"DLQ reason {reason!r} is not one of {', '.join(REASONS)}")
        super().__init__(detail)
        self.reason = reason


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


def _is_date(text: str) -> bool:
    try:
        return dt.date.fromisoformat(text) is not None
    except ValueError:
        return False

