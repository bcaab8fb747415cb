"""The ingest's durable memory of one frame: a small JSON ledger plus inversion checkpoints.

Everything lives in one state directory per frame (``Settings.ingest_state_dir/<frame>`` or
``<data_root>/<frame>/.ingest``). Every write is atomic (temporary file, fsync, rename, fsync of the
directory), and the ledger is the single commit point: a checkpoint file is written *before* the
ledger that names it, so a crash at any instant leaves a ledger that points at complete files.
An exclusive ``flock`` stops two ingest processes from writing one frame.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ladsdin.state.codec import decode_arrays, write_arrays

log = logging.getLogger(__name__)
LEDGER_VERSION = 1


def atomic_write(path: Path, data: bytes | Callable[[BinaryIO], object]) -> None:
    """Replace ``path`` with ``data`` (bytes, or a function writing to the open file) so readers
    see the old or the new file, never a part."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)  # the rename itself must survive a power cut
    finally:
        os.close(fd)


class FrameBusy(RuntimeError):
    """Another ingest process holds this frame's state directory."""


class Ledger:
    """The per-frame ledger. ``data`` is plain JSON; call :meth:`save` to commit a change.

    Keys: ``version``, ``frame``, ``track``, ``source``; for LiCSAR also ``grid``, ``reference``,
    ``epochs`` (dates inverted, in order: the filter's epoch indices), ``consumed`` (date ->
    interferogram names used), ``late``, ``rejected`` (name -> reason and the file signature),
    ``checkpoint`` (epoch index and file of the last filter checkpoint); and for every source
    ``published`` (date -> event_id) and ``pending`` (events being sent, or null).
    """

    def __init__(self, state_dir: Path, frame: str, track: str, source: str) -> None:
        self.dir = Path(state_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / "ledger.json"
        self._lock_file = open(self.dir / "lock", "a+")  # noqa: SIM115 - held for the ledger's lifetime
        try:
            fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            raise FrameBusy(f"another `ladsdin ingest` is running on frame {frame} (lock {self.dir / 'lock'}); "
                            "stop it first, or give this one its own LADSDIN_INGEST_STATE_DIR") from None
        if self.path.exists():
            try:
                self.data: dict[str, Any] = json.loads(self.path.read_text())
            except json.JSONDecodeError as exc:
                raise RuntimeError(f"{self.path} is not valid JSON ({exc}); it is only ever replaced atomically, "
                                   "so the state directory was edited by hand: restore it or remove it to start over") from None
            for key, want in (("frame", frame), ("source", source)):
                if self.data.get(key) != want:
                    raise RuntimeError(f"{self.path} belongs to {key} {self.data.get(key)!r}, not {want!r}; "
                                       "use a separate LADSDIN_INGEST_STATE_DIR per frame and source")
            if self.data.get("version") != LEDGER_VERSION:
                raise RuntimeError(f"{self.path}: ledger version {self.data.get('version')}, this build reads {LEDGER_VERSION}")
        else:
            self.data = {"version": LEDGER_VERSION, "frame": frame, "track": track, "source": source,
                         "epochs": [], "consumed": {}, "late": [], "rejected": {}, "published": {},
                         "pending": None, "checkpoint": None}

    def save(self) -> None:
        atomic_write(self.path, json.dumps(self.data, indent=1, sort_keys=True).encode())

    def close(self) -> None:
        if not self._lock_file.closed:
            fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_UN)
            self._lock_file.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- checkpoints of the inversion filter --------------------------------------------------
    def write_checkpoint(self, epoch_index: int, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> str:
        """Write the filter state after ``epoch_index``; returns the file name to record in the ledger."""
        name = f"filter-{epoch_index:06d}.bin"
        atomic_write(self.dir / name, lambda f: write_arrays(f, arrays, meta))
        return name

    def read_checkpoint(self, name: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        path = self.dir / name
        if not path.is_file():
            raise RuntimeError(f"the ledger names checkpoint {path}, which is missing; restore it, or remove "
                               f"{self.dir} to re-ingest the frame from the start")
        arrays, meta = decode_arrays(path.read_bytes())
        return meta, arrays

    def prune_checkpoints(self, keep: str | None) -> None:
        """Remove checkpoint files other than ``keep`` (call after the ledger naming ``keep`` is saved)."""
        for p in self.dir.glob("filter-*.bin"):
            if p.name != keep:
                p.unlink(missing_ok=True)
