"""The state-store interface: per-frame models, pixel state + cursor, applied log, outbox, buffer.

Every frame has:

- a **model**: a small blob (the frame-level part: network, calendar, parameters) with
  ``version``, ``config_hash`` and ``saved_at`` metadata, plus its per-pixel **tiles**;
- a **state** and its **cursor**, the last applied epoch ``YYYY-MM-DD``. The state is a small
  blob (a manifest) plus, for a tiled frame, one blob per tile under a *state version*. An
  epoch commits in two steps: the new version's tiles are written first (invisible to
  readers), then :meth:`StateStore.commit_epoch` flips the manifest and the cursor to them in
  one compare-and-set on the cursor, and older versions are deleted after. A crash at any point
  leaves the previous epoch whole; an epoch replayed by an at-least-once consumer finds the
  cursor already moved and is refused, so it never applies twice (DESIGN.md §3);
- an **applied log**, one JSON record per committed epoch, and an **outbox** of messages
  (alerts, summaries) committed in the same step and published later, then acknowledged;
- a **buffer** of epoch events (a small blob each, plus its tiles) that arrived before they
  could be applied (no model yet). A bootstrap ends in :meth:`StateStore.commit_bootstrap`,
  one compare-and-set of model, first state, cursor and buffer that holds only while the frame
  has no cursor and the buffer is what the model trained on (fencing: of two racing workers,
  one commit stands); once a frame has a cursor it buffers nothing.

Tiles keep every stored value small (a 512 x 512 tile of state is ~18 MB), whatever the frame's
size. Implementations: :class:`~ladsdin.state.memory.MemoryStateStore` (tests, notebooks) and
:class:`~ladsdin.state.redis_store.RedisStateStore` (production); both pass one test suite.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import re
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ladsdin.models.names import is_frame_name

log = logging.getLogger(__name__)

#: Every key of a frame starts with ``ladsdin:{<frame>}:``; the braces are a Redis Cluster hash tag.
PREFIX = "ladsdin"
EPOCH_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
BytesLike = bytes | bytearray | memoryview


class StoreUnavailable(RuntimeError):
    """The store's server cannot be reached or refused to serve (an infrastructure failure).

    Distinct from bad input (``ValueError``/``TypeError``): the worker should crash and be
    restarted, and no data is lost because nothing was acknowledged.
    """


@dataclass(frozen=True)
class OutboxMessage:
    """A message to publish once its epoch is committed.

    ``id`` is deterministic (built by the caller, e.g. ``f"{frame}:{epoch}:alert:000"``) so a
    consumer can de-duplicate a message published twice; ``value`` is the encoded payload.
    """

    id: str
    topic: str
    key: str
    value: bytes

    def __post_init__(self) -> None:
        for name in ("id", "topic", "key"):
            v = getattr(self, name)
            if not isinstance(v, str) or (name != "key" and not v):
                raise ValueError(f"OutboxMessage.{name} must be a non-empty string, got {v!r}")
        if not isinstance(self.value, bytes):
            raise TypeError(f"OutboxMessage.value must be bytes, got {type(self.value).__name__}; encode the payload first")


def frame_key(frame: str, name: str) -> str:
    """The Redis key ``ladsdin:{<frame>}:<name>`` of one of a frame's values."""
    return f"{PREFIX}:{{{check_frame(frame)}}}:{name}"


def check_frame(frame: str) -> str:
    # one rule with the event schemas and parser (ladsdin.models.names): no braces, colons or
    # spaces, so the hash tag stays intact
    if not is_frame_name(frame):
        raise ValueError(
            f"frame {frame!r} is not a valid frame name: use a LiCSAR frame ID such as '128A_05172_131313' "
            "(1-64 letters, digits, '_', '-', '.', starting with a letter or digit)"
        )
    return frame


def check_epoch(epoch: str, what: str = "epoch") -> str:
    if isinstance(epoch, str) and EPOCH_RE.match(epoch):
        try:
            dt.date.fromisoformat(epoch)
            return epoch
        except ValueError:
            pass
    raise ValueError(f"{what} {epoch!r} is not a date 'YYYY-MM-DD' (e.g. '2022-01-10')")


def check_blob(blob: BytesLike, what: str) -> bytes:
    """Blobs are opaque bytes; anything else is a caller error (they are never pickled)."""
    if isinstance(blob, bytes):
        return blob
    if isinstance(blob, (bytearray, memoryview)):
        return bytes(blob)
    raise TypeError(f"{what} must be bytes, got {type(blob).__name__}; encode it with ladsdin.state.codec first")


def applied_record(epoch: str, applied: Mapping[str, Any] | None) -> str:
    """The applied-log record ``{"epoch": epoch, **applied}`` as JSON text."""
    extra = dict(applied or {})
    if "epoch" in extra:
        raise ValueError("applied must not contain 'epoch': the store records the committed epoch itself")
    try:
        return json.dumps({"epoch": epoch, **extra}, separators=(",", ":"), sort_keys=False)
    except (TypeError, ValueError) as e:
        raise ValueError(f"applied is not JSON-serialisable ({e}); pass str/int/float/bool/None values") from e


def check_outbox(outbox: Sequence[OutboxMessage]) -> list[OutboxMessage]:
    msgs = list(outbox)
    for m in msgs:
        if not isinstance(m, OutboxMessage):
            raise TypeError(f"outbox entries must be OutboxMessage, got {type(m).__name__}")
    ids = [m.id for m in msgs]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"outbox message ids must be unique within a commit; repeated: {dup}")
    return msgs


def check_commit(frame: str, epoch: str, expected_cursor: str | None) -> bool:
    """Validate commit arguments; False when ``epoch`` is not after ``expected_cursor`` (a replay)."""
    check_frame(frame)
    check_epoch(epoch)
    if expected_cursor is None:
        return True
    return check_epoch(expected_cursor, "expected_cursor") < epoch  # ISO dates sort as strings


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


#: A tile version id: 16 hex digits, a dot, the number of tiles (so the store can name them all).
VERSION_RE = re.compile(r"^[0-9a-f]{16}\.(\d{1,6})$")


def new_version(n_tiles: int) -> str:
    """A fresh tile-version id for ``n_tiles`` tiles."""
    if not isinstance(n_tiles, int) or not 1 <= n_tiles <= 999_999:
        raise ValueError(f"a tiled state or model needs 1..999999 tiles, got {n_tiles!r}")
    return f"{uuid.uuid4().hex[:16]}.{n_tiles}"


def version_tiles(version: str) -> int:
    """The tile count of a version id; ValueError if it is not one."""
    m = VERSION_RE.match(version) if isinstance(version, str) else None
    if m is None:
        raise ValueError(f"{version!r} is not a tile version id (from StateStore.begin_state)")
    return int(m.group(1))


def check_tile(version: str, i: int) -> None:
    n = version_tiles(version)
    if not isinstance(i, int) or not 0 <= i < n:
        raise ValueError(f"tile {i!r} is not in 0..{n - 1} of version {version}")


class TilesIncomplete(RuntimeError):
    """A tiled commit named a version whose tiles were not all written (a caller bug)."""


class FrameBootstrapped(RuntimeError):
    """The frame has a committed state: an epoch is now scored, not buffered (another worker's
    bootstrap committed while this one looked the other way)."""


class StateStore(ABC):
    """Persistence of each frame's model, pixel state, cursor, applied log, outbox and buffer.

    Epochs and cursors are ``'YYYY-MM-DD'`` strings; blobs are opaque ``bytes``
    (:mod:`ladsdin.state.codec`). Methods raise :class:`StoreUnavailable` when the backing
    service is down, ``ValueError``/``TypeError`` on bad arguments.
    """

    def key(self, frame: str, name: str) -> str:
        """``ladsdin:{<frame>}:<name>``: all of a frame's keys share one Redis Cluster slot."""
        return frame_key(frame, name)

    @abstractmethod
    def ping(self) -> None:
        """Return if the store serves requests; raise :class:`StoreUnavailable` otherwise."""

    @abstractmethod
    def put_model(self, frame: str, blob: bytes, *, version: str, config_hash: str, tiles: Sequence[bytes] = ()) -> None:
        """Store (replace) the frame's model: its ``tiles`` first, then the blob that names them;
        ``saved_at`` (UTC ISO 8601) is added and the previous model's tiles are deleted."""

    @abstractmethod
    def get_model(self, frame: str) -> tuple[bytes, dict[str, str]] | None:
        """(blob, {"version", "config_hash", "saved_at", "tiles"}), or None if the frame has no
        model; ``tiles`` is the id to read the model's tiles with ("" for none)."""

    @abstractmethod
    def get_model_tile(self, frame: str, tiles: str, i: int) -> bytes | None:
        """Tile ``i`` of the model tiles ``tiles`` (from :meth:`get_model`); None once replaced."""

    @abstractmethod
    def get_state(self, frame: str) -> tuple[bytes | None, str | None]:
        """(state blob, cursor = last applied epoch), read together; (None, None) if never committed."""

    @abstractmethod
    def begin_state(self, frame: str, n_tiles: int) -> str:
        """Register a new state version of ``n_tiles`` tiles and return its id; its tiles are
        written with :meth:`put_state_tile` and become the state at :meth:`commit_epoch`."""

    @abstractmethod
    def put_state_tile(self, frame: str, version: str, i: int, blob: bytes) -> bool:
        """Write tile ``i`` of an uncommitted version; False (nothing written) if the version was
        discarded because another writer committed first."""

    @abstractmethod
    def get_state_tile(self, frame: str, version: str, i: int) -> bytes | None:
        """Tile ``i`` of a state version; None if that version is gone (superseded and deleted)."""

    @abstractmethod
    def discard_state(self, frame: str, version: str) -> None:
        """Delete an uncommitted version's tiles (idempotent; a committed version is kept)."""

    def commit_epoch(
        self,
        frame: str,
        *,
        epoch: str,
        expected_cursor: str | None,
        state: bytes,
        outbox: Sequence[OutboxMessage],
        applied: Mapping[str, Any] | None = None,
        tiles: str | None = None,
    ) -> bool:
        """Atomically apply ``epoch`` if the stored cursor equals ``expected_cursor``.

        On success the state blob is replaced (and, with ``tiles``, the state version becomes
        ``tiles``), the cursor set to ``epoch``, ``{"epoch": epoch, **applied}`` appended to the
        applied log and every outbox message added (a message whose id is already pending is
        kept once), and True is returned; every other state version is then deleted. Otherwise
        nothing changes and False is returned: another writer got there first (its commit also
        discarded ``tiles``), or the epoch is a replay (an ``epoch`` not after
        ``expected_cursor`` is always refused). After a connection error the outcome is
        unknown: re-read :meth:`get_state` (a retried commit that had in fact succeeded returns
        False, and the cursor then equals ``epoch``).

        Raises:
            TilesIncomplete: ``tiles`` is registered but some of its tiles were never written.
        """
        after = check_commit(frame, epoch, expected_cursor)
        data = check_blob(state, "state blob")
        msgs = check_outbox(outbox)
        record = applied_record(epoch, applied)
        if tiles is not None:
            version_tiles(tiles)
        if not after:
            log.info("frame %s: refused epoch %s, not after the expected cursor %s (replay)", frame, epoch, expected_cursor)
            return False
        return self._apply_commit(frame, epoch, expected_cursor, data, msgs, record, tiles)

    @abstractmethod
    def _apply_commit(self, frame: str, epoch: str, expected_cursor: str | None, data: Any, msgs: list[OutboxMessage], record: Any,
                      tiles: str | None) -> bool:
        """The atomic compare-and-set of :meth:`commit_epoch`, on validated arguments."""

    def commit_bootstrap(
        self,
        frame: str,
        *,
        epoch: str,
        model: bytes,
        model_version: str,
        config_hash: str,
        model_tiles: Sequence[bytes],
        state: bytes,
        tiles: str,
        applied: Mapping[str, Any] | None,
        buffered: Sequence[str],
    ) -> bool:
        """Atomically install a frame's first model and state: the fenced end of a bootstrap.

        The model's tiles are written first (invisible to readers), then one compare-and-set
        that holds only while the frame has **no cursor** and its buffer holds exactly the
        epochs ``buffered`` (those the model trained on) stores the model, flips the state to
        version ``tiles``, sets the cursor to ``epoch``, appends ``{"epoch": epoch, **applied}``
        to the applied log and deletes the buffer, tiles included. Returns True; or False with
        nothing changed when another writer bootstrapped first or an epoch was buffered meanwhile
        (the caller retrains or takes the winner's model). Model and state therefore always come
        from one bootstrap, and no buffered epoch is dropped unseen.

        Raises:
            TilesIncomplete: a tile of ``tiles`` was never written.
        """
        check_frame(frame)
        check_epoch(epoch)
        names = sorted(check_epoch(e, "buffered epoch") for e in buffered)
        if not names or names[-1] != epoch:
            raise ValueError(f"the bootstrap's epoch {epoch} must be the last of its buffered epochs {names[-1:]}")
        data, blob = check_blob(state, "state blob"), check_blob(model, "model blob")
        parts = [check_blob(t, "model tile") for t in model_tiles]
        version_tiles(tiles)
        return self._apply_bootstrap(frame, epoch, blob, str(model_version), str(config_hash), parts, data, tiles,
                                     applied_record(epoch, applied), names)

    @abstractmethod
    def _apply_bootstrap(self, frame: str, epoch: str, model: bytes, model_version: str, config_hash: str, model_tiles: list[bytes],
                         state: bytes, tiles: str, record: str, buffered: list[str]) -> bool:
        """The fenced compare-and-set of :meth:`commit_bootstrap`, on validated arguments."""

    @abstractmethod
    def model_version(self, frame: str) -> str | None:
        """The stored model's version without its blob (a cheap check before using a cached model)."""

    @abstractmethod
    def buffered_epoch_names(self, frame: str) -> list[str]:
        """Epochs buffered for a new frame, sorted, without their data."""

    @abstractmethod
    def buffered_epoch(self, frame: str, epoch: str) -> bytes | None:
        """One buffered epoch's blob, or None."""

    @abstractmethod
    def applied_log(self, frame: str) -> list[dict[str, Any]]:
        """Every applied-log record of the frame, in commit order."""

    @abstractmethod
    def pending_outbox(self, frame: str | None = None) -> list[OutboxMessage]:
        """Unacknowledged messages of one frame (or of every frame, frame by frame in sorted
        frame order), each frame's in insertion order."""

    @abstractmethod
    def ack_outbox(self, frame: str, ids: Iterable[str]) -> None:
        """Drop published messages from the outbox; unknown ids are ignored (idempotent)."""

    @abstractmethod
    def buffer_epoch(self, frame: str, epoch: str, blob: bytes, tiles: Sequence[bytes] = ()) -> bool:
        """Keep an epoch's event (a small blob, plus its data in ``tiles``) until it can be
        applied; False (and no change) if already buffered. The tiles are written first.

        Raises:
            FrameBootstrapped: the frame has a cursor (a committed bootstrap): nothing is kept,
                and the epoch is to be scored against the frame's model instead.
        """

    @abstractmethod
    def buffered_epoch_tile(self, frame: str, epoch: str, i: int) -> bytes | None:
        """Tile ``i`` of a buffered epoch, or None."""

    @abstractmethod
    def buffered_epochs(self, frame: str) -> list[tuple[str, bytes]]:
        """Buffered (epoch, blob) pairs sorted by epoch (the small blobs; tiles apart)."""

    @abstractmethod
    def clear_buffer(self, frame: str) -> None:
        """Forget every buffered epoch of the frame, tiles included."""

    @abstractmethod
    def frames(self) -> list[str]:
        """Sorted names of the frames that have a model, a state or buffered epochs."""

    @abstractmethod
    def delete_frame(self, frame: str) -> None:
        """Remove everything stored for the frame (tests, operations)."""

    @abstractmethod
    def mark_failed(self, frame: str, record: dict[str, Any]) -> None:
        """Park the frame: its bootstrap failed on its data (``record``: reason, detail, when).
        Its events go to the DLQ until :meth:`clear_failed` (``ladsdin frames reset``)."""

    @abstractmethod
    def failed(self, frame: str) -> dict[str, Any] | None:
        """The frame's failure record, or None when it is not parked."""

    @abstractmethod
    def clear_failed(self, frame: str) -> None:
        """Un-park the frame (its buffer is kept: the next event retries the bootstrap)."""
