"""Persistence of per-pixel state and models (``ladsdin.state``, ``state/``); imports only ``models``.

One interface, :class:`StateStore`, with an in-memory and a Redis implementation that pass one
test suite. A frame's state and its "last applied epoch" cursor change together in one atomic
compare-and-set (:meth:`StateStore.commit_epoch`), so a replayed epoch never applies twice.
Everything is stored as binary arrays with a versioned header (:mod:`.codec`), never pickle.

- ``codec``: named numeric arrays + JSON meta <-> one blob
- ``store``: the interface, :class:`OutboxMessage`, :class:`StoreUnavailable`, key naming
- ``memory``: :class:`MemoryStateStore`; ``redis_store``: :class:`RedisStateStore`
- ``frame_model``: a fitted forecaster / pixel state <-> blob

Importing this package does not import redis or torch; the names that need them load on first use.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ladsdin.state.codec import FORMAT_VERSION, StateFormatError, decode_arrays, encode_arrays, read_header
from ladsdin.state.memory import MemoryStateStore
from ladsdin.state.store import OutboxMessage, StateStore, StoreUnavailable, frame_key

if TYPE_CHECKING:  # pragma: no cover
    from ladsdin.state.frame_model import (check_state_fits, decode_model, decode_state, decode_state_manifest, encode_model,
                                           encode_state, encode_state_manifest)
    from ladsdin.state.redis_store import RedisStateStore

_LAZY = {
    "RedisStateStore": "redis_store",
    "encode_model": "frame_model",
    "decode_model": "frame_model",
    "encode_state": "frame_model",
    "decode_state": "frame_model",
    "check_state_fits": "frame_model",
    "encode_state_manifest": "frame_model",
    "decode_state_manifest": "frame_model",
}

__all__ = [
    "FORMAT_VERSION",
    "MemoryStateStore",
    "OutboxMessage",
    "RedisStateStore",
    "StateFormatError",
    "StateStore",
    "StoreUnavailable",
    "check_state_fits",
    "decode_arrays",
    "decode_model",
    "decode_state",
    "decode_state_manifest",
    "encode_arrays",
    "encode_model",
    "encode_state",
    "encode_state_manifest",
    "frame_key",
    "read_header",
]


def __getattr__(name: str) -> Any:
    # redis and torch are heavy imports: load them only for the names that need them
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
