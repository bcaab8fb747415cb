"""``python tests/stream/crash_worker.py N``: a worker that dies right after writing its N-th state tile.

The crash-safety test's deterministic "kill -9 between tile writes": ``os._exit`` skips every
cleanup, exactly as SIGKILL does, at a point a random kill would rarely hit. Not a test module.
"""
from __future__ import annotations

import os
import sys

from ladsdin.cli import main
from ladsdin.state.redis_store import RedisStateStore

_write = RedisStateStore.put_state_tile
_after = int(sys.argv[1])
_count = 0


def _put_then_maybe_die(self: RedisStateStore, frame: str, version: str, i: int, blob: bytes) -> bool:
    global _count
    ok = _write(self, frame, version, i, blob)
    _count += 1
    if _count == _after:
        os._exit(137)  # as after SIGKILL: no finally, no flush, no commit
    return ok


RedisStateStore.put_state_tile = _put_then_maybe_die  # type: ignore[method-assign]
sys.exit(main(["worker"]))
