"""Dead-letter records (``licsar.epochs.v1.dlq``): a rejected event with its reason and payload."""
from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from ladsdin.state.redaction import scrub
from ladsdin.stream.contracts import DLQ_SCHEMA, REASONS, utc_now


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
    # the detail is an error message: no registered secret may travel in it
    return {"schema": DLQ_SCHEMA, "reason": reason, "detail": scrub(detail),
            "payload": payload, "payload_base64": is_b64, "payload_bytes": len(raw),
            "payload_truncated": len(kept) < len(raw), "payload_sha256": hashlib.sha256(raw).hexdigest(),
            "key": key.decode("utf-8", "replace") if key is not None else None, **named,
            "source": {"topic": topic, "partition": int(partition), "offset": int(offset)}, "failed_at": utc_now()}
