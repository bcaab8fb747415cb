"""An in-process :class:`StateStore`: a dict per frame behind one lock (tests, notebooks, demos).

Same semantics as the Redis store, but nothing survives the process. Applied-log records are
kept as JSON text, exactly as Redis keeps them, so both stores accept and return the same values.
"""
from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ladsdin.state.store import (
    BytesLike,
    OutboxMessage,
    StateStore,
    check_blob,
    check_epoch,
    check_frame,
    utc_now,
)

log = logging.getLogger(__name__)


@dataclass
class _Frame:
    model: tuple[bytes, dict[str, str]] | None = None
    state: bytes | None = None
    cursor: str | None = None
    applied: list[str] = field(default_factory=list)
    outbox: dict[str, OutboxMessage] = field(default_factory=dict)  # insertion-ordered
    buffer: dict[str, bytes] = field(default_factory=dict)

    def has_data(self) -> bool:
        return self.model is not None or self.state is not None or bool(self.buffer)


class MemoryStateStore(StateStore):
    """Thread-safe in-memory store; every method holds one lock, so each is atomic."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._frames: dict[str, _Frame] = {}

    def __repr__(self) -> str:
        return f"MemoryStateStore({len(self._frames)} frames)"

    def _get(self, frame: str) -> _Frame:
        """The frame's record, created on first write (callers hold the lock)."""
        return self._frames.setdefault(check_frame(frame), _Frame())

    def _peek(self, frame: str) -> _Frame:
        return self._frames.get(check_frame(frame)) or _Frame()

    def ping(self) -> None:
        return None

    def put_model(self, frame: str, blob: BytesLike, *, version: str, config_hash: str) -> None:
        data = check_blob(blob, "model blob")
        meta = {"version": str(version), "config_hash": str(config_hash), "saved_at": utc_now()}
        with self._lock:
            self._get(frame).model = (data, meta)

    def get_model(self, frame: str) -> tuple[bytes, dict[str, str]] | None:
        with self._lock:
            model = self._peek(frame).model
            return None if model is None else (model[0], dict(model[1]))

    def get_state(self, frame: str) -> tuple[bytes | None, str | None]:
        with self._lock:
            f = self._peek(frame)
            return f.state, f.cursor

    def _apply_commit(self, frame: str, epoch: str, expected_cursor: str | None, data: Any, msgs: list[OutboxMessage], record: Any) -> bool:
        with self._lock:
            f = self._peek(frame)
            if f.cursor != expected_cursor:
                log.info("frame %s: refused epoch %s, cursor is %s not %s", frame, epoch, f.cursor, expected_cursor)
                return False
            f = self._get(frame)
            f.state, f.cursor = data, epoch
            f.applied.append(record)
            for m in msgs:
                f.outbox.setdefault(m.id, m)
            return True

    def applied_log(self, frame: str) -> list[dict[str, Any]]:
        with self._lock:
            records = list(self._peek(frame).applied)
        return [json.loads(r) for r in records]

    def pending_outbox(self, frame: str | None = None) -> list[OutboxMessage]:
        with self._lock:
            names = sorted(self._frames) if frame is None else [check_frame(frame)]
            return [m for name in names for m in self._peek(name).outbox.values()]

    def ack_outbox(self, frame: str, ids: Iterable[str]) -> None:
        with self._lock:
            box = self._peek(frame).outbox
            for i in ids:
                box.pop(i, None)

    def buffer_epoch(self, frame: str, epoch: str, blob: BytesLike) -> bool:
        check_epoch(epoch)
        data = check_blob(blob, "buffered event")
        with self._lock:
            buf = self._get(frame).buffer
            if epoch in buf:
                return False
            buf[epoch] = data
            return True

    def buffered_epochs(self, frame: str) -> list[tuple[str, bytes]]:
        with self._lock:
            return sorted(self._peek(frame).buffer.items())

    def model_version(self, frame: str) -> str | None:
        with self._lock:
            model = self._peek(frame).model
            return None if model is None else model[1].get("version")

    def buffered_epoch_names(self, frame: str) -> list[str]:
        with self._lock:
            return sorted(self._peek(frame).buffer)

    def buffered_epoch(self, frame: str, epoch: str) -> bytes | None:
        with self._lock:
            return self._peek(frame).buffer.get(epoch)

    def clear_buffer(self, frame: str) -> None:
        with self._lock:
            self._peek(frame).buffer.clear()

    def frames(self) -> list[str]:
        with self._lock:
            return sorted(name for name, f in self._frames.items() if f.has_data())

    def delete_frame(self, frame: str) -> None:
        with self._lock:
            self._frames.pop(check_frame(frame), None)
