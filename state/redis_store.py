"""The production :class:`StateStore` on Redis (or Valkey), cluster-slot-safe.

Key layout (``F`` = frame ID; the braces are literal, a Redis Cluster hash tag, so every key of
a frame lives in one slot and one script may touch them all):

=============================== ======== ==================================================
``ladsdin:{F}:model``           hash     ``blob`` (raw bytes), ``version``, ``config_hash``,
                                         ``saved_at`` (UTC ISO 8601)
``ladsdin:{F}:state``           string   the pixel-state blob (raw bytes)
``ladsdin:{F}:cursor``          string   last applied epoch ``YYYY-MM-DD``
``ladsdin:{F}:applied``         list     one JSON record per committed epoch, in order
``ladsdin:{F}:outbox``          list     pending message ids, in insertion order
``ladsdin:{F}:outbox:messages`` hash     id -> packed message (see :func:`pack_message`)
``ladsdin:{F}:buffer``          hash     epoch ``YYYY-MM-DD`` -> buffered event blob
``ladsdin:frames``              set      names of frames ever written (until deleted)
=============================== ======== ==================================================

``ladsdin:frames`` is outside every hash tag (it spans frames, so it cannot share one slot) and
is therefore updated by its own command, *before* the frame's data is written: a crash in
between leaves a listed frame with no data (harmless, and :meth:`frames` filters it out), never
data that no listing can find.

Blobs travel as raw binary bulk strings (no base64, no JSON): a 1M-pixel state is hundreds of
MB. One value is capped by the server's ``proto-max-bulk-len`` (512 MB by default).
"""
from __future__ import annotations

import json
import logging
import re
import struct
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import redis
from redis import exceptions as rexc

from ladsdin.state.store import (
    PREFIX,
    BytesLike,
    OutboxMessage,
    StateStore,
    StoreUnavailable,
    check_blob,
    check_epoch,
    check_frame,
    utc_now,
)

log = logging.getLogger(__name__)

FRAMES_KEY = f"{PREFIX}:frames"
_MSG_FORMAT = 1
_MSG_HEAD = struct.Struct("<BII")  # format, topic length, key length (then topic, key, value)

# The compare-and-set of one epoch. KEYS: cursor, state, applied, outbox, outbox:messages (all
# one frame's, one slot). ARGV: expected cursor ('' = none), epoch, state blob, applied record,
# then (id, packed message) pairs. Key types are checked before the first write because a Lua
# error does not roll back the writes before it.
_COMMIT_LUA = """
local want = {'string', 'string', 'list', 'list', 'hash'}
for i = 1, 5 do
  local t = redis.call('TYPE', KEYS[i])['ok']
  if t ~= 'none' and t ~= want[i] then
    return redis.error_reply('WRONGTYPE ladsdin key ' .. KEYS[i] .. ' holds a ' .. t .. ', expected a ' .. want[i])
  end
end
local cur = redis.call('GET', KEYS[1])
if not cur then cur = '' end
if cur ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[3])
redis.call('SET', KEYS[1], ARGV[2])
redis.call('RPUSH', KEYS[3], ARGV[4])
for i = 5, #ARGV, 2 do
  if redis.call('HSETNX', KEYS[5], ARGV[i], ARGV[i + 1]) == 1 then
    redis.call('RPUSH', KEYS[4], ARGV[i])
  end
end
return 1
"""


def pack_message(m: OutboxMessage) -> bytes:
    """Binary outbox record: uint8 format, uint32 topic and key lengths, then topic, key, value."""
    topic, key = m.topic.encode("utf-8"), m.key.encode("utf-8")
    return b"".join((_MSG_HEAD.pack(_MSG_FORMAT, len(topic), len(key)), topic, key, m.value))


def unpack_message(msg_id: str, packed: bytes) -> OutboxMessage:
    fmt, n_topic, n_key = _MSG_HEAD.unpack_from(packed)
    if fmt != _MSG_FORMAT:
        raise ValueError(f"outbox message {msg_id!r} has format {fmt}, this ladsdin reads {_MSG_FORMAT}; upgrade ladsdin")
    i = _MSG_HEAD.size
    topic = packed[i : i + n_topic].decode("utf-8")
    key = packed[i + n_topic : i + n_topic + n_key].decode("utf-8")
    return OutboxMessage(msg_id, topic, key, packed[i + n_topic + n_key :])


def _redact(url: str) -> str:
    """The URL without its password (it goes into error messages and logs)."""
    return re.sub(r"(//[^:/@]*:)[^@/]*@", r"\1***@", url)


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
            self.url = _redact(url)
            try:
                self._r = redis.Redis.from_url(url, socket_connect_timeout=connect_timeout, health_check_interval=30)
            except ValueError as e:
                raise ValueError(f"Redis URL {self.url!r} is invalid ({e}); use redis://host:port/db") from e
        else:
            raise TypeError(f"url must be a Redis URL or a redis.Redis client, got {url!r}")
        if self._r.connection_pool.connection_kwargs.get("decode_responses"):
            raise ValueError("the redis.Redis client decodes responses; build it with decode_responses=False (blobs are binary)")
        self._commit = self._r.register_script(_COMMIT_LUA)

    def __repr__(self) -> str:
        return f"RedisStateStore({self.url!r})"

    @property
    def client(self) -> redis.Redis:
        """The underlying redis-py client (tests, operations)."""
        return self._r

    def close(self) -> None:
        self._r.close()

    @contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        """Map connection-level failures to :class:`StoreUnavailable` naming the server."""
        try:
            yield
        except rexc.AuthenticationError as e:  # pragma: no cover - needs a password-protected server
            # before ConnectionError, its base class in redis-py
            raise StoreUnavailable(f"Redis at {self.url} refused the credentials during {what}: fix the password in the URL") from e
        except (rexc.ConnectionError, rexc.TimeoutError, rexc.ReadOnlyError, rexc.MasterDownError, rexc.ClusterDownError, rexc.TryAgainError) as e:
            raise StoreUnavailable(
                f"Redis at {self.url} is unavailable during {what} ({type(e).__name__}: {e}); "
                "check that the server is running and reachable and that LADSDIN_REDIS_URL names it"
            ) from e
        except rexc.OutOfMemoryError as e:
            raise StoreUnavailable(
                f"Redis at {self.url} is out of memory during {what} ({e}); raise its maxmemory or free space "
                "(a frame's state is ~(2 K S + 3) * 4 bytes per pixel)"
            ) from e

    def ping(self) -> None:
        with self._guard("ping"):
            self._r.ping()

    def _register(self, frame: str) -> None:
        # before the frame's own writes: see the module docstring
        self._r.sadd(FRAMES_KEY, frame)

    def put_model(self, frame: str, blob: BytesLike, *, version: str, config_hash: str) -> None:
        check_frame(frame)
        data = check_blob(blob, "model blob")
        with self._guard(f"put_model({frame})"):
            self._register(frame)
            # one HSET replaces every field at once, so readers never see a mixed model
            self._r.hset(self.key(frame, "model"), mapping={"blob": data, "version": str(version), "config_hash": str(config_hash), "saved_at": utc_now()})

    def get_model(self, frame: str) -> tuple[bytes, dict[str, str]] | None:
        with self._guard(f"get_model({frame})"):
            h = self._r.hgetall(self.key(frame, "model"))
        if b"blob" not in h:
            return None
        return h.pop(b"blob"), {k.decode(): v.decode() for k, v in h.items()}

    def get_state(self, frame: str) -> tuple[bytes | None, str | None]:
        with self._guard(f"get_state({frame})"):
            # one MGET: a single command is atomic, so state and cursor are from the same commit
            state, cursor = self._r.mget([self.key(frame, "state"), self.key(frame, "cursor")])
        return state, None if cursor is None else cursor.decode()

    def _apply_commit(self, frame: str, epoch: str, expected_cursor: str | None, data: Any, msgs: list[OutboxMessage], record: Any) -> bool:
        keys = [self.key(frame, n) for n in ("cursor", "state", "applied", "outbox", "outbox:messages")]
        args: list[Any] = [expected_cursor or "", epoch, data, record]
        for m in msgs:
            args += [m.id, pack_message(m)]
        with self._guard(f"commit_epoch({frame}, {epoch})"):
            self._register(frame)
            ok = bool(self._commit(keys=keys, args=args))
        if not ok:
            log.info("frame %s: refused epoch %s, the cursor is not %s", frame, epoch, expected_cursor)
        return ok

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

    def buffer_epoch(self, frame: str, epoch: str, blob: BytesLike) -> bool:
        check_frame(frame)
        check_epoch(epoch)
        data = check_blob(blob, "buffered event")
        with self._guard(f"buffer_epoch({frame}, {epoch})"):
            self._register(frame)
            return bool(self._r.hsetnx(self.key(frame, "buffer"), epoch, data))

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

    def _frame_keys(self, frame: str) -> list[str]:
        return [self.key(frame, n) for n in ("model", "state", "cursor", "applied", "outbox", "outbox:messages", "buffer")]

    def delete_frame(self, frame: str) -> None:
        check_frame(frame)
        with self._guard(f"delete_frame({frame})"):
            self._r.delete(*self._frame_keys(frame))
            self._r.srem(FRAMES_KEY, frame)
