"""The production :class:`StateStore` on Redis (or Valkey), cluster-slot-safe.

Key layout (``F`` = frame ID; the braces are literal, a Redis Cluster hash tag, so every key of
a frame lives in one slot and one script may touch them all; ``V`` = a tile version id
``<16 hex>.<n tiles>``, ``i`` = a tile number, ``E`` = an epoch):

=================================== ======== ==============================================
``ladsdin:{F}:model``               hash     ``blob`` (raw bytes), ``version``, ``config_hash``,
                                             ``saved_at`` (UTC ISO 8601), ``tiles`` (``V``)
``ladsdin:{F}:model:tile:V:i``      string   one tile of the model
``ladsdin:{F}:model:versions``      zset     model tile versions written (score: ms since 1970)
``ladsdin:{F}:model:garbage``       zset     replaced model tile versions, being deleted
``ladsdin:{F}:state``               string   the pixel-state blob (a manifest for a tiled frame)
``ladsdin:{F}:state:version``       string   the committed state version ``V`` ('' = untiled)
``ladsdin:{F}:state:tile:V:i``      string   one tile of a state version
``ladsdin:{F}:state:versions``      zset     registered state versions (the committed one and
                                             any being written)
``ladsdin:{F}:state:garbage``       zset     superseded state versions, being deleted
``ladsdin:{F}:cursor``              string   last applied epoch ``YYYY-MM-DD``
``ladsdin:{F}:applied``             list     one JSON record per committed epoch, in order
``ladsdin:{F}:outbox``              list     pending message ids, in insertion order
``ladsdin:{F}:outbox:messages``     hash     id -> packed message (see ``pack_message``)
``ladsdin:{F}:buffer``              hash     epoch ``YYYY-MM-DD`` -> buffered event blob
``ladsdin:{F}:buffer:tile:E:i``     string   one tile of a buffered epoch's data
``ladsdin:{F}:failed``              string   JSON failure record of a parked frame (absent:
                                             not parked)
``ladsdin:frames``                  set      names of frames ever written (until deleted)
=================================== ======== ==============================================

An epoch's new state tiles are written under a registered version (a script refuses a tile of a
version that another writer's commit discarded), then one script compares the cursor, checks the
version is still registered and complete, flips state, cursor and version, and moves every
other version to the garbage set; the client then deletes the garbage's tiles. A crash anywhere
leaves the previous epoch whole, and garbage left by a crash is deleted at the next commit.

``ladsdin:frames`` is outside every hash tag (it spans frames, so it cannot share one slot) and
is therefore updated by its own command, *before* the frame's data is written: a crash in
between leaves a listed frame with no data (harmless, and :meth:`frames` filters it out), never
data that no listing can find.

Blobs travel as raw binary bulk strings (no base64, no JSON). Tiles keep every value small: a
512 x 512 state tile is ~18 MB, far under the server's ``proto-max-bulk-len`` (512 MB).
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any

import redis

from ladsdin.state.redaction import register_secret
from ladsdin.state.redis_errors import redact, unavailable_as
from ladsdin.state.redis_scripts import (BOOTSTRAP_LUA, BUFFER_LUA, COMMIT_LUA, DISCARD_LUA, MODEL_LUA, PUT_TILE_LUA, pack_message,
                                         unpack_message)
from ladsdin.state.store import (PREFIX, BytesLike, FrameBootstrapped, OutboxMessage, StateStore, TilesIncomplete,
                                 check_blob, check_epoch, check_frame, check_tile, new_version, utc_now, version_tiles)

log = logging.getLogger(__name__)

FRAMES_KEY = f"{PREFIX}:frames"
#: Keys deleted per DEL command when a frame's tiles go.
_DEL_BATCH = 500


class RedisStateStore(StateStore):
    """:class:`StateStore` on a Redis/Valkey server via redis-py (thread-safe: a connection pool).

    Args:
        url: ``redis://[:password@]host:port/db`` (or ``rediss://``, ``unix://``), or a
            ``redis.Redis`` client built with ``decode_responses=False``.
        connect_timeout: seconds to wait for a connection before :class:`StoreUnavailable`.
    """

    def __init__(self, url: str | redis.Redis, connect_timeout: float = 5.0) -> None:
        if isinstance(url, redis.Redis):
            self._r = url
            kw = url.connection_pool.connection_kwargs
            self.url = f"redis://{kw.get('host', kw.get('path', '?'))}:{kw.get('port', '')}/{kw.get('db', 0)}"
        elif isinstance(url, str) and url:
            self.url = redact(url)
            try:
                self._r = redis.Redis.from_url(url, socket_connect_timeout=connect_timeout, health_check_interval=30)
            except ValueError as e:
                raise ValueError(f"Redis URL {self.url!r} is invalid ({e}); use redis://host:port/db") from e
        else:
            raise TypeError(f"url must be a Redis URL or a redis.Redis client, got {url!r}")
        register_secret(self._r.connection_pool.connection_kwargs.get("password"))  # redis-py may log its kwargs
        if self._r.connection_pool.connection_kwargs.get("decode_responses"):
            raise ValueError("the redis.Redis client decodes responses; build it with decode_responses=False (blobs are binary)")
        self._commit = self._r.register_script(COMMIT_LUA)
        self._put_tile = self._r.register_script(PUT_TILE_LUA)
        self._model = self._r.register_script(MODEL_LUA)
        self._discard = self._r.register_script(DISCARD_LUA)
        self._bootstrap = self._r.register_script(BOOTSTRAP_LUA)
        self._buffer = self._r.register_script(BUFFER_LUA)

    def __repr__(self) -> str:
        return f"RedisStateStore({self.url!r})"

    @property
    def client(self) -> redis.Redis:
        """The underlying redis-py client (tests, operations)."""
        return self._r

    def close(self) -> None:
        self._r.close()

    def _guard(self, what: str) -> AbstractContextManager[None]:
        """Map connection-level failures to :class:`StoreUnavailable` naming the server."""
        return unavailable_as(self.url, what)

    def ping(self) -> None:
        with self._guard("ping"):
            self._r.ping()

    def register_frame(self, frame: str) -> None:
        """List the frame in ``ladsdin:frames`` (before the frame's own writes: see the module docstring)."""
        self._r.sadd(FRAMES_KEY, frame)

    # -- tiles ---------------------------------------------------------------------------------
    def _tile_key(self, frame: str, kind: str, version: str, i: int) -> str:
        return self.key(frame, f"{kind}:tile:{version}:{i}")

    def _tile_keys(self, frame: str, kind: str, version: str) -> list[str]:
        return [self._tile_key(frame, kind, version, i) for i in range(version_tiles(version))]

    def _register(self, frame: str, kind: str, version: str) -> None:
        self._r.zadd(self.key(frame, f"{kind}:versions"), {version: int(time.time() * 1000)})

    def _write_tile(self, frame: str, kind: str, version: str, i: int, blob: bytes) -> bool:
        return bool(self._put_tile(keys=[self.key(frame, f"{kind}:versions"), self._tile_key(frame, kind, version, i)], args=[version, blob]))

    def _collect(self, frame: str, kind: str) -> None:
        """Delete the tiles of every version in ``<kind>:garbage`` (after a commit)."""
        garbage = self.key(frame, f"{kind}:garbage")
        for raw in self._r.zrange(garbage, 0, -1):
            version = raw.decode()
            keys = self._tile_keys(frame, kind, version)
            for s in range(0, len(keys), _DEL_BATCH):
                self._r.delete(*keys[s : s + _DEL_BATCH])
            self._r.zrem(garbage, version)

    def _stage_model_tiles(self, frame: str, parts: Sequence[bytes]) -> tuple[str, list[str]]:
        """Write a new model's tiles under a fresh registered id, invisible until a script names
        it: (tiles id, their keys); ("", []) for an untiled model."""
        if not parts:
            return "", []
        tiles_id = new_version(len(parts))
        self._register(frame, "model", tiles_id)
        for i, t in enumerate(parts):
            self._write_tile(frame, "model", tiles_id, i, t)
        return tiles_id, self._tile_keys(frame, "model", tiles_id)

    # -- model ---------------------------------------------------------------------------------
    def put_model(self, frame: str, blob: BytesLike, *, version: str, config_hash: str, tiles: Sequence[BytesLike] = ()) -> None:
        check_frame(frame)
        data = check_blob(blob, "model blob")
        parts = [check_blob(t, "model tile") for t in tiles]
        with self._guard(f"put_model({frame})"):
            self.register_frame(frame)
            tiles_id, tile_keys = self._stage_model_tiles(frame, parts)
            keys = [self.key(frame, n) for n in ("model", "model:versions", "model:garbage")] + tile_keys
            if self._model(keys=keys, args=[data, str(version), str(config_hash), utc_now(), tiles_id]) != 1:
                raise TilesIncomplete(f"model tiles {tiles_id} of {frame} went missing while the model was written; retry")
            self._collect(frame, "model")

    def get_model(self, frame: str) -> tuple[bytes, dict[str, str]] | None:
        with self._guard(f"get_model({frame})"):
            h = self._r.hgetall(self.key(frame, "model"))
        if b"blob" not in h:
            return None
        blob = h.pop(b"blob")
        meta = {k.decode(): v.decode() for k, v in h.items()}
        meta.setdefault("tiles", "")
        return blob, meta

    def get_model_tile(self, frame: str, tiles: str, i: int) -> bytes | None:
        check_tile(tiles, i)
        with self._guard(f"get_model_tile({frame}, {i})"):
            return self._r.get(self._tile_key(frame, "model", tiles, i))

    # -- state ---------------------------------------------------------------------------------
    def get_state(self, frame: str) -> tuple[bytes | None, str | None]:
        with self._guard(f"get_state({frame})"):
            # one MGET: a single command is atomic, so state and cursor are from the same commit
            state, cursor = self._r.mget([self.key(frame, "state"), self.key(frame, "cursor")])
        return state, None if cursor is None else cursor.decode()

    def begin_state(self, frame: str, n_tiles: int) -> str:
        check_frame(frame)
        version = new_version(n_tiles)
        with self._guard(f"begin_state({frame})"):
            self.register_frame(frame)
            self._register(frame, "state", version)
        return version

    def put_state_tile(self, frame: str, version: str, i: int, blob: BytesLike) -> bool:
        check_tile(version, i)
        data = check_blob(blob, "state tile")
        with self._guard(f"put_state_tile({frame}, {i})"):
            return self._write_tile(frame, "state", version, i, data)

    def get_state_tile(self, frame: str, version: str, i: int) -> bytes | None:
        check_tile(version, i)
        with self._guard(f"get_state_tile({frame}, {i})"):
            return self._r.get(self._tile_key(frame, "state", version, i))

    def discard_state(self, frame: str, version: str) -> None:
        version_tiles(version)
        keys = [self.key(frame, n) for n in ("state:versions", "state:garbage", "state:version")]
        with self._guard(f"discard_state({frame})"):
            if self._discard(keys=keys, args=[version]):
                self._collect(frame, "state")

    def _apply_commit(self, frame: str, epoch: str, expected_cursor: str | None, data: Any, msgs: list[OutboxMessage], record: Any,
                      tiles: str | None) -> bool:
        names = ("cursor", "state", "applied", "outbox", "outbox:messages", "state:versions", "state:garbage", "state:version")
        keys = [self.key(frame, n) for n in names] + (self._tile_keys(frame, "state", tiles) if tiles else [])
        args: list[Any] = [expected_cursor or "", epoch, data, record, tiles or ""]
        for m in msgs:
            args += [m.id, pack_message(m)]
        with self._guard(f"commit_epoch({frame}, {epoch})"):
            self.register_frame(frame)
            code = int(self._commit(keys=keys, args=args))
            if code == 1:
                self._collect(frame, "state")
        if code == -2:
            raise TilesIncomplete(f"state version {tiles} of {frame} lacks tiles; write every tile before committing")
        if code != 1:
            log.info("frame %s: refused epoch %s (%s)", frame, epoch, "the cursor is not " + str(expected_cursor) if code == 0 else f"state version {tiles} was discarded")
        return code == 1

    def _apply_bootstrap(self, frame: str, epoch: str, model: bytes, model_version: str, config_hash: str, model_tiles: list[bytes],
                         state: bytes, tiles: str, record: str, buffered: list[str]) -> bool:
        state_keys = self._tile_keys(frame, "state", tiles)
        names = ("cursor", "state", "applied", "state:versions", "state:garbage", "state:version", "model", "model:versions", "model:garbage",
                 "buffer")
        with self._guard(f"commit_bootstrap({frame}, {epoch})"):
            self.register_frame(frame)
            tiles_id, model_keys = self._stage_model_tiles(frame, model_tiles)
            n_buffer = self._buffer_tile_count(frame, buffered[-1])
            buffer_keys = [self.key(frame, f"buffer:tile:{e}:{i}") for e in buffered for i in range(n_buffer)]
            keys = [self.key(frame, n) for n in names] + state_keys + model_keys + buffer_keys
            args: list[Any] = [epoch, state, record, tiles, model, model_version, config_hash, utc_now(), tiles_id, len(state_keys),
                               len(model_keys), *buffered]
            code = int(self._bootstrap(keys=keys, args=args))
            if code == 1:
                self._collect(frame, "state")
                self._collect(frame, "model")
                self._delete_matching(self.key(frame, "buffer:tile:*"))  # tiles of a crashed buffering, if any
            elif tiles_id:  # refused: our model tiles were never visible
                self._r.zrem(self.key(frame, "model:versions"), tiles_id)
                self._r.delete(*model_keys)
        if code == -2:
            raise TilesIncomplete(f"the bootstrap of {frame} lacks a state or model tile; write every tile before committing")
        if code != 1:
            why = {0: "the frame already has a cursor", -3: "its buffer changed", -1: f"state version {tiles} was discarded"}.get(code, code)
            log.info("frame %s: refused the bootstrap at %s (%s)", frame, epoch, why)
        return code == 1

    def _buffer_tile_count(self, frame: str, epoch: str) -> int:
        """How many tiles a buffered epoch has (its tile keys are numbered from 0)."""
        n = 0
        while self._r.exists(self.key(frame, f"buffer:tile:{epoch}:{n}")):
            n += 1
        return n

    def applied_log(self, frame: str) -> list[dict[str, Any]]:
        with self._guard(f"applied_log({frame})"):
            records = self._r.lrange(self.key(frame, "applied"), 0, -1)
        return [json.loads(r) for r in records]

    def _pending(self, frame: str) -> list[OutboxMessage]:
        ids = self._r.lrange(self.key(frame, "outbox"), 0, -1)
        if not ids:
            return []
        packed = self._r.hmget(self.key(frame, "outbox:messages"), ids)
        # an id acknowledged between the two reads has no message any more: it is gone, skip it
        return [unpack_message(i.decode(), p) for i, p in zip(ids, packed) if p is not None]

    def pending_outbox(self, frame: str | None = None) -> list[OutboxMessage]:
        with self._guard("pending_outbox"):
            names = self._members() if frame is None else [check_frame(frame)]
            return [m for name in names for m in self._pending(name)]

    def ack_outbox(self, frame: str, ids: Iterable[str]) -> None:
        ids = list(ids)
        if not ids:
            return
        box, messages = self.key(frame, "outbox"), self.key(frame, "outbox:messages")
        with self._guard(f"ack_outbox({frame})"):
            pipe = self._r.pipeline(transaction=True)  # MULTI/EXEC on one slot's keys
            for i in ids:
                pipe.lrem(box, 0, i)
            pipe.hdel(messages, *ids)
            pipe.execute()

    def buffer_epoch(self, frame: str, epoch: str, blob: BytesLike, tiles: Sequence[BytesLike] = ()) -> bool:
        check_frame(frame)
        check_epoch(epoch)
        data = check_blob(blob, "buffered event")
        parts = [check_blob(t, "buffered tile") for t in tiles]
        with self._guard(f"buffer_epoch({frame}, {epoch})"):
            if self._r.hexists(self.key(frame, "buffer"), epoch):
                return False
            self.register_frame(frame)
            tile_keys = [self.key(frame, f"buffer:tile:{epoch}:{i}") for i in range(len(parts))]
            for k, t in zip(tile_keys, parts):  # the data first: the hash field makes the epoch visible
                self._r.set(k, t)
            code = int(self._buffer(keys=[self.key(frame, "cursor"), self.key(frame, "buffer")], args=[epoch, data]))
            if code == -1 and tile_keys:
                self._r.delete(*tile_keys)
        if code == -1:
            raise FrameBootstrapped(f"frame {frame} is bootstrapped: epoch {epoch} is scored, not buffered")
        return code == 1

    def buffered_epoch_tile(self, frame: str, epoch: str, i: int) -> bytes | None:
        check_epoch(epoch)
        with self._guard(f"buffered_epoch_tile({frame}, {epoch}, {i})"):
            return self._r.get(self.key(frame, f"buffer:tile:{epoch}:{i}"))

    def buffered_epochs(self, frame: str) -> list[tuple[str, bytes]]:
        with self._guard(f"buffered_epochs({frame})"):
            h = self._r.hgetall(self.key(frame, "buffer"))
        return sorted((k.decode(), v) for k, v in h.items())

    def model_version(self, frame: str) -> str | None:
        with self._guard(f"model_version({frame})"):
            v = self._r.hget(self.key(frame, "model"), "version")
        return None if v is None else v.decode()

    def buffered_epoch_names(self, frame: str) -> list[str]:
        with self._guard(f"buffered_epoch_names({frame})"):
            return sorted(k.decode() for k in self._r.hkeys(self.key(frame, "buffer")))

    def buffered_epoch(self, frame: str, epoch: str) -> bytes | None:
        with self._guard(f"buffered_epoch({frame}, {epoch})"):
            return self._r.hget(self.key(frame, "buffer"), epoch)

    def clear_buffer(self, frame: str) -> None:
        with self._guard(f"clear_buffer({frame})"):
            self._r.delete(self.key(frame, "buffer"))
            self._delete_matching(self.key(frame, "buffer:tile:*"))

    def _delete_matching(self, pattern: str) -> None:
        """Delete every key matching ``pattern`` (SCAN: rare operations only, never per epoch)."""
        batch: list[bytes] = []
        for k in self._r.scan_iter(match=pattern, count=1000):
            batch.append(k)
            if len(batch) >= _DEL_BATCH:
                self._r.delete(*batch)
                batch = []
        if batch:
            self._r.delete(*batch)

    def _members(self) -> list[str]:
        return sorted(m.decode() for m in self._r.smembers(FRAMES_KEY))

    def frames(self) -> list[str]:
        with self._guard("frames"):
            names = self._members()
            pipe = self._r.pipeline(transaction=False)
            for name in names:
                pipe.exists(*(self.key(name, n) for n in ("model", "state", "buffer")))
            counts = pipe.execute()
        return [n for n, c in zip(names, counts) if c]

    def mark_failed(self, frame: str, record: dict[str, Any]) -> None:
        with self._guard(f"mark_failed({frame})"):
            self.register_frame(frame)
            self._r.set(self.key(frame, "failed"), json.dumps(record))

    def failed(self, frame: str) -> dict[str, Any] | None:
        with self._guard(f"failed({frame})"):
            raw = self._r.get(self.key(frame, "failed"))
        return None if raw is None else json.loads(raw)

    def clear_failed(self, frame: str) -> None:
        with self._guard(f"clear_failed({frame})"):
            self._r.delete(self.key(frame, "failed"))

    def delete_frame(self, frame: str) -> None:
        check_frame(frame)
        with self._guard(f"delete_frame({frame})"):
            self._delete_matching(self.key(frame, "*"))
            self._r.srem(FRAMES_KEY, frame)
