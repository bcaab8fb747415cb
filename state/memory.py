"""An in-process :class:`StateStore`: a dict per frame behind one lock (tests, notebooks, demos).

Same semantics as the Redis store, but nothing survives the process. Applied-log records are
kept as JSON text, exactly as Redis keeps them, so both stores accept and return the same values.
Tiles live under their version id; a committed state version replaces (and deletes) every other.
"""
from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ladsdin.state.store import (
    BytesLike,
    FrameBootstrapped,
    OutboxMessage,
    StateStore,
    TilesIncomplete,
    check_blob,
    check_epoch,
    check_frame,
    check_tile,
    new_version,
    utc_now,
    version_tiles,
)

log = logging.getLogger(__name__)


@dataclass
class _Frame:
    model: tuple[bytes, dict[str, str]] | None = None
    model_tiles: dict[str, list[bytes]] = field(default_factory=dict)  # tiles id -> tiles
    state: bytes | None = None
    cursor: str | None = None
    versions: dict[str, dict[int, bytes]] = field(default_factory=dict)  # registered state versions -> tiles
    applied: list[str] = field(default_factory=list)
    outbox: dict[str, OutboxMessage] = field(default_factory=dict)  # insertion-ordered
    buffer: dict[str, bytes] = field(default_factory=dict)
    buffer_tiles: dict[str, list[bytes]] = field(default_factory=dict)
    committed_version: str | None = None
    failed: dict[str, Any] | None = None

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

    def put_model(self, frame: str, blob: BytesLike, *, version: str, config_hash: str, tiles: Sequence[BytesLike] = ()) -> None:
        data = check_blob(blob, "model blob")
        parts = [check_blob(t, "model tile") for t in tiles]
        tiles_id = new_version(len(parts)) if parts else ""
        meta = {"version": str(version), "config_hash": str(config_hash), "saved_at": utc_now(), "tiles": tiles_id}
        with self._lock:
            f = self._get(frame)
            f.model = (data, meta)
            f.model_tiles = {tiles_id: parts} if parts else {}

    def get_model(self, frame: str) -> tuple[bytes, dict[str, str]] | None:
        with self._lock:
            model = self._peek(frame).model
            return None if model is None else (model[0], dict(model[1]))

    def get_model_tile(self, frame: str, tiles: str, i: int) -> bytes | None:
        check_tile(tiles, i)
        with self._lock:
            parts = self._peek(frame).model_tiles.get(tiles)
            return None if parts is None else parts[i]

    def get_state(self, frame: str) -> tuple[bytes | None, str | None]:
        with self._lock:
            f = self._peek(frame)
            return f.state, f.cursor

    def begin_state(self, frame: str, n_tiles: int) -> str:
        version = new_version(n_tiles)
        with self._lock:
            self._get(frame).versions[version] = {}
        return version

    def put_state_tile(self, frame: str, version: str, i: int, blob: BytesLike) -> bool:
        check_tile(version, i)
        data = check_blob(blob, "state tile")
        with self._lock:
            tiles = self._peek(frame).versions.get(version)
            if tiles is None:
                return False
            tiles[i] = data
            return True

    def get_state_tile(self, frame: str, version: str, i: int) -> bytes | None:
        check_tile(version, i)
        with self._lock:
            return self._peek(frame).versions.get(version, {}).get(i)

    def discard_state(self, frame: str, version: str) -> None:
        version_tiles(version)
        with self._lock:
            f = self._peek(frame)
            if version != f.committed_version:
                f.versions.pop(version, None)

    def _apply_commit(self, frame: str, epoch: str, expected_cursor: str | None, data: Any, msgs: list[OutboxMessage], record: Any,
                      tiles: str | None) -> bool:
        with self._lock:
            f = self._peek(frame)
            if f.cursor != expected_cursor:
                log.info("frame %s: refused epoch %s, cursor is %s not %s", frame, epoch, f.cursor, expected_cursor)
                return False
            if tiles is not None:
                written = f.versions.get(tiles)
                if written is None:
                    log.info("frame %s: refused epoch %s, its state version %s was discarded", frame, epoch, tiles)
                    return False
                if len(written) != version_tiles(tiles):
                    raise TilesIncomplete(f"state version {tiles} has {len(written)} of {version_tiles(tiles)} tiles; write them all first")
            f = self._get(frame)
            f.state, f.cursor = data, epoch
            f.committed_version = tiles
            f.versions = {tiles: f.versions[tiles]} if tiles is not None else {}
            f.applied.append(record)
            for m in msgs:
                f.outbox.setdefault(m.id, m)
            return True

    def _apply_bootstrap(self, frame: str, epoch: str, model: bytes, model_version: str, config_hash: str, model_tiles: list[bytes],
                         state: bytes, tiles: str, record: str, buffered: list[str]) -> bool:
        with self._lock:
            f = self._peek(frame)
            if f.cursor is not None or sorted(f.buffer) != buffered or tiles not in f.versions:
                log.info("frame %s: refused the bootstrap at %s (cursor %s, %d buffered epochs, %d trained on)", frame, epoch, f.cursor,
                         len(f.buffer), len(buffered))
                return False
            if len(f.versions[tiles]) != version_tiles(tiles):
                raise TilesIncomplete(f"state version {tiles} has {len(f.versions[tiles])} of {version_tiles(tiles)} tiles; write them all first")
            tiles_id = new_version(len(model_tiles)) if model_tiles else ""
            f = self._get(frame)
            f.model = (model, {"version": model_version, "config_hash": config_hash, "saved_at": utc_now(), "tiles": tiles_id})
            f.model_tiles = {tiles_id: list(model_tiles)} if model_tiles else {}
            f.state, f.cursor, f.committed_version = state, epoch, tiles
            f.versions = {tiles: f.versions[tiles]}
            f.applied.append(record)
            f.buffer.clear()
            f.buffer_tiles.clear()
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

    def buffer_epoch(self, frame: str, epoch: str, blob: BytesLike, tiles: Sequence[BytesLike] = ()) -> bool:
        check_epoch(epoch)
        data = check_blob(blob, "buffered event")
        parts = [check_blob(t, "buffered tile") for t in tiles]
        with self._lock:
            f = self._get(frame)
            if epoch in f.buffer:
                return False
            if f.cursor is not None:
                raise FrameBootstrapped(f"frame {frame} is bootstrapped (cursor {f.cursor}): epoch {epoch} is scored, not buffered")
            f.buffer[epoch] = data
            f.buffer_tiles[epoch] = parts
            return True

    def buffered_epoch_tile(self, frame: str, epoch: str, i: int) -> bytes | None:
        with self._lock:
            parts = self._peek(frame).buffer_tiles.get(epoch)
            return parts[i] if parts is not None and 0 <= i < len(parts) else None

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
            f = self._peek(frame)
            f.buffer.clear()
            f.buffer_tiles.clear()

    def frames(self) -> list[str]:
        with self._lock:
            return sorted(name for name, f in self._frames.items() if f.has_data())

    def delete_frame(self, frame: str) -> None:
        with self._lock:
            self._frames.pop(check_frame(frame), None)

    def mark_failed(self, frame: str, record: dict[str, Any]) -> None:
        with self._lock:
            self._get(frame).failed = json.loads(json.dumps(record))

    def failed(self, frame: str) -> dict[str, Any] | None:
        with self._lock:
            rec = self._peek(frame).failed
            return None if rec is None else dict(rec)

    def clear_failed(self, frame: str) -> None:
        with self._lock:
            self._peek(frame).failed = None
