"""The Lua scripts of :class:`~ladsdin.state.redis_store.RedisStateStore` and its binary outbox records.

Every script touches one frame's keys only (one hash tag, one Redis Cluster slot) and declares
them all in KEYS. Key types are checked before the first write, because a Lua error does not roll
back the writes before it.
"""
from __future__ import annotations

import struct

from ladsdin.state.store import OutboxMessage

_MSG_FORMAT = 1
_MSG_HEAD = struct.Struct("<BII")  # format, topic length, key length (then topic, key, value)

_HELPERS = """
local function retire_others(versions, garbage, keep)
  for _, v in ipairs(redis.call('ZRANGE', versions, 0, -1)) do
    if v ~= keep then
      redis.call('ZREM', versions, v)
      redis.call('ZADD', garbage, 0, v)
    end
  end
end
local function check_types(want)
  for i = 1, #want do
    local t = redis.call('TYPE', KEYS[i])['ok']
    if t ~= 'none' and t ~= want[i] then
      return redis.error_reply('WRONGTYPE ladsdin key ' .. KEYS[i] .. ' holds a ' .. t .. ', expected a ' .. want[i])
    end
  end
  return nil
end
"""

#: The compare-and-set of one epoch. KEYS: cursor, state, applied, outbox, outbox:messages,
#: state:versions, state:garbage, state:version, then the new version's tile keys. ARGV:
#: expected cursor ('' = none), epoch, state blob, applied record, state version ('' = untiled),
#: then (id, packed message) pairs. Returns 1 (applied), 0 (cursor moved), -1 (the version was
#: discarded by another writer's commit) or -2 (a tile of the version is missing). On success every
#: other registered version moves to state:garbage, whose tiles the client deletes afterwards.
COMMIT_LUA = _HELPERS + """
local err = check_types({'string', 'string', 'list', 'list', 'hash', 'zset', 'zset', 'string'})
if err then return err end
local cur = redis.call('GET', KEYS[1])
if not cur then cur = '' end
if cur ~= ARGV[1] then return 0 end
local version = ARGV[5]
if version ~= '' then
  if not redis.call('ZSCORE', KEYS[6], version) then return -1 end
  for i = 9, #KEYS do
    if redis.call('EXISTS', KEYS[i]) == 0 then return -2 end
  end
end
redis.call('SET', KEYS[2], ARGV[3])
redis.call('SET', KEYS[1], ARGV[2])
redis.call('SET', KEYS[8], version)
redis.call('RPUSH', KEYS[3], ARGV[4])
for i = 6, #ARGV, 2 do
  if redis.call('HSETNX', KEYS[5], ARGV[i], ARGV[i + 1]) == 1 then
    redis.call('RPUSH', KEYS[4], ARGV[i])
  end
end
retire_others(KEYS[6], KEYS[7], version)
return 1
"""

#: Write one tile of a registered (not yet discarded) version. KEYS: <kind>:versions, the tile key.
#: ARGV: version, blob. Returns 1, or 0 if the version is no longer registered.
PUT_TILE_LUA = """
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('SET', KEYS[2], ARGV[2])
  return 1
end
return 0
"""

#: Replace the model. KEYS: model, model:versions, model:garbage, then the new tiles' keys. ARGV:
#: blob, version, config_hash, saved_at, tiles id ('' = none). Returns 1, or -2 if a tile is missing.
MODEL_LUA = _HELPERS + """
local err = check_types({'hash', 'zset', 'zset'})
if err then return err end
for i = 4, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 0 then return -2 end
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'blob', ARGV[1], 'version', ARGV[2], 'config_hash', ARGV[3], 'saved_at', ARGV[4], 'tiles', ARGV[5])
retire_others(KEYS[2], KEYS[3], ARGV[5])
return 1
"""

#: The fenced end of a bootstrap: first model and first state in one step. KEYS: cursor, state,
#: applied, state:versions, state:garbage, state:version, model, model:versions, model:garbage,
#: buffer, then the state version's tile keys, the model tiles' keys and the buffered epochs' tile
#: keys. ARGV: epoch, state blob, applied record, state version, model blob, model version,
#: config hash, saved_at, model tiles id ('' = none), number of state tile keys, number of model
#: tile keys, then the buffered epochs. Returns 1; 0 when the frame has a cursor (another worker
#: bootstrapped), -3 when the buffer is not exactly the given epochs (one arrived meanwhile),
#: -1 when the state version was discarded, -2 when a tile is missing.
BOOTSTRAP_LUA = _HELPERS + """
local err = check_types({'string', 'string', 'list', 'zset', 'zset', 'string', 'hash', 'zset', 'zset', 'hash'})
if err then return err end
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local n_epochs = #ARGV - 11
if redis.call('HLEN', KEYS[10]) ~= n_epochs then return -3 end
for i = 12, #ARGV do
  if redis.call('HEXISTS', KEYS[10], ARGV[i]) == 0 then return -3 end
end
if not redis.call('ZSCORE', KEYS[4], ARGV[4]) then return -1 end
local n_state, n_model = tonumber(ARGV[10]), tonumber(ARGV[11])
for i = 11, 10 + n_state + n_model do
  if redis.call('EXISTS', KEYS[i]) == 0 then return -2 end
end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[6], ARGV[4])
redis.call('RPUSH', KEYS[3], ARGV[3])
retire_others(KEYS[4], KEYS[5], ARGV[4])
redis.call('DEL', KEYS[7])
redis.call('HSET', KEYS[7], 'blob', ARGV[5], 'version', ARGV[6], 'config_hash', ARGV[7], 'saved_at', ARGV[8], 'tiles', ARGV[9])
retire_others(KEYS[8], KEYS[9], ARGV[9])
redis.call('DEL', KEYS[10])
for i = 11 + n_state + n_model, #KEYS do
  redis.call('DEL', KEYS[i])
end
return 1
"""

#: Buffer one epoch of a frame that has no cursor yet (its tiles are written before). KEYS: cursor,
#: buffer. ARGV: epoch, blob. Returns 1, 0 when already buffered, -1 when the frame has a cursor.
BUFFER_LUA = """
if redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
return redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2])
"""

#: Give up an uncommitted state version. KEYS: state:versions, state:garbage, state:version.
#: ARGV: version. Returns 1, or 0 when it is the committed version (kept).
DISCARD_LUA = """
if redis.call('GET', KEYS[3]) == ARGV[1] then return 0 end
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then redis.call('ZADD', KEYS[2], 0, ARGV[1]) end
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
