"""The Lua scripts of the Redis transport (docs/protocol.md §7-§9, §11, §13; docs/cache.md).

Each script is a `Script` with its SHA-1 computed once, so a call is one EVALSHA (or EVALSHA_RO
for the read-only ones); the transport loads a script only when the server answers NOSCRIPT.

A script is atomic but not transactional: a command that fails half-way leaves the writes before
it in place. So every script checks first whatever can fail (the CAS fields, the key types, the
log append), and only then writes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Final

#: Arguments per HSET/HDEL call inside a script (Lua's ``unpack`` has a stack limit). Even, so
#: field/value pairs never straddle two calls.
BATCH: Final = 1000


@dataclass(frozen=True, slots=True)
class Script:
    name: str
    text: str
    sha: str
    read_only: bool


def _script(name: str, body: str, *, read_only: bool = False) -> Script:
    text = _PRELUDE + body
    return Script(name, text, hashlib.sha1(text.encode()).hexdigest(), read_only)


_PRELUDE: Final = f"""
-- CMD KEY ARGV[first..last], at most {BATCH} arguments per call.
local function batched(cmd, key, first, last)
  local i = first
  while i <= last do
    local j = i + {BATCH - 1}
    if j > last then j = last end
    redis.call(cmd, key, unpack(ARGV, i, j))
    i = j + 1
  end
end

-- A hash field as the head token shows it: '=' .. value, or '' when absent.
local function mark(v)
  if v then return '=' .. v end
  return ''
end

-- Append EVENT to the stream LOG with id ID. A log whose top is not older than ID (a restored
-- backup, or an empty stream that once held newer ids) is started anew. Returns nil, or the
-- error reply of a log that is not a stream.
local function append(log, maxlen, id, event)
  local r = redis.pcall('XADD', log, 'MAXLEN', '~', maxlen, id, 'e', event)
  if type(r) == 'table' and r.err then
    if not string.find(r.err, 'equal or smaller', 1, true) then return r end
    redis.call('DEL', log)
    redis.call('XADD', log, 'MAXLEN', '~', maxlen, id, 'e', event)
  end
  return nil
end

-- An error reply unless KEY is absent or of type WANT.
local function check_type(key, want)
  local t = redis.call('TYPE', key).ok
  if t ~= want and t ~= 'none' then
    return redis.error_reply('WRONGTYPE Operation against a key holding the wrong kind of ' ..
      'value: ' .. key .. ' is a ' .. t .. ', not a ' .. want)
  end
  return nil
end

-- Write the field/value pairs ARGV[first..last] into the hash KEY (an empty value deletes),
-- and its field 'version' = VERSION.
local function write_head(key, first, last, version)
  local sets, dels = {{}}, {{}}
  for i = first, last, 2 do
    if ARGV[i + 1] == '' then
      dels[#dels + 1] = ARGV[i]
    else
      sets[#sets + 1] = ARGV[i]
      sets[#sets + 1] = ARGV[i + 1]
    end
  end
  sets[#sets + 1] = 'version'
  sets[#sets + 1] = version
  if #dels > 0 then redis.call('HDEL', key, unpack(dels)) end
  redis.call('HSET', key, unpack(sets))
end

local function field_of(flat, name)
  for i = 1, #flat, 2 do
    if flat[i] == name then return flat[i + 1] end
  end
  return nil
end

local function int(v)
  if v and #v <= 16 and string.match(v, '^%d+$') then return tonumber(v) end
  return nil
end
"""

# §7.1. KEYS: meta, leaves, log.
# ARGV: protocol, epoch, version (expected), new version, event, channel, log maxlen, publish
# command, #meta args, #set args, #delete args, then meta pairs, leaf pairs, deleted leaves.
# Returns {1, new version, receivers} or {0, epoch, version, protocol} as found.
COMMIT_NEXT: Final = _script("commit_next", """
local head = redis.call('HMGET', KEYS[1], 'protocol', 'epoch', 'version')
if head[1] ~= ARGV[1] or head[2] ~= ARGV[2] or head[3] ~= ARGV[3] then
  return {0, head[2], head[3], head[1]}
end
local err = check_type(KEYS[2], 'hash')
if err then return err end
err = append(KEYS[3], ARGV[7], ARGV[4] .. '-0', ARGV[5])
if err then return err end
local m = 12
local s = m + tonumber(ARGV[9])
local d = s + tonumber(ARGV[10])
local e = d + tonumber(ARGV[11])
batched('HSET', KEYS[2], s, d - 1)
batched('HDEL', KEYS[2], d, e - 1)
write_head(KEYS[1], m, s - 1, ARGV[4])
return {1, ARGV[4], redis.call(ARGV[8], ARGV[6], ARGV[5])}
""")

# §7.3. KEYS: meta, leaves, checkpoint, log.
# ARGV: the head token (type, protocol, epoch, version as `mark` shows them), version, event,
# channel, log maxlen, publish command, #meta args, #leaf args, #checkpoint args, then the meta
# pairs, leaf pairs, checkpoint pairs. Works whatever the four keys hold (wrong types included).
COMMIT_NEW: Final = _script("commit_new", """
local t = redis.call('TYPE', KEYS[1]).ok
local head = {false, false, false}
if t == 'hash' then head = redis.call('HMGET', KEYS[1], 'protocol', 'epoch', 'version') end
if t ~= ARGV[1] or mark(head[1]) ~= ARGV[2] or mark(head[2]) ~= ARGV[3]
    or mark(head[3]) ~= ARGV[4] then
  return {0, head[2], head[3], head[1]}
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
local m = 13
local s = m + tonumber(ARGV[10])
local c = s + tonumber(ARGV[11])
local e = c + tonumber(ARGV[12])
batched('HSET', KEYS[2], s, c - 1)
write_head(KEYS[1], m, s - 1, ARGV[5])
batched('HSET', KEYS[3], c, e - 1)
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[8], ARGV[5] .. '-0', 'e', ARGV[6])
return {1, ARGV[5], redis.call(ARGV[9], ARGV[7], ARGV[6])}
""")

# The head token for COMMIT_NEW. KEYS: meta.
HEAD_TOKEN: Final = _script("head_token", """
local t = redis.call('TYPE', KEYS[1]).ok
if t ~= 'hash' then return {t, '', '', ''} end
local h = redis.call('HMGET', KEYS[1], 'protocol', 'epoch', 'version')
return {t, mark(h[1]), mark(h[2]), mark(h[3])}
""", read_only=True)

# §7.4. KEYS: meta, checkpoint. ARGV: epoch, version, then the checkpoint's pairs.
# Returns 1 if written: the head's epoch is ARGV[1] and no newer checkpoint of it is stored.
WRITE_CHECKPOINT: Final = _script("write_checkpoint", """
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then return 0 end
local cur = redis.call('HMGET', KEYS[2], 'epoch', 'version')
if cur[1] == ARGV[1] then
  local v = int(cur[2])
  if v and v > tonumber(ARGV[2]) then return 0 end
end
redis.call('DEL', KEYS[2])
batched('HSET', KEYS[2], 3, #ARGV)
return 1
""")

# §8 step 2. KEYS: meta, checkpoint, log, inv, protocol-1 snapshot. ARGV: most log entries.
# A checkpoint or log of the wrong type reads as absent (the reader then loads the leaves);
# a head or invalidation head of the wrong type is an error.
LOAD: Final = _script("load", """
local meta = redis.call('HGETALL', KEYS[1])
local ck = redis.pcall('HGETALL', KEYS[2])
if ck.err then ck = {} end
local tail = {}
local mv, cv = int(field_of(meta, 'version')), int(field_of(ck, 'version'))
local me = field_of(meta, 'epoch')
if mv and cv and me and field_of(ck, 'epoch') == me and cv < mv then
  local entries = redis.pcall('XRANGE', KEYS[3], string.format('%d', cv + 1),
                              string.format('%d', mv), 'COUNT', ARGV[1])
  if not entries.err then
    for i, entry in ipairs(entries) do tail[i] = field_of(entry[2], 'e') or '' end
  end
end
local inv = redis.call('HGETALL', KEYS[4])
local legacy = {}
if #meta == 0 then legacy = redis.call('HGETALL', KEYS[5]) end
return {meta, ck, tail, inv, legacy}
""", read_only=True)

# KEYS: meta, leaves.
LOAD_LEAVES: Final = _script("load_leaves", """
return {redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2])}
""", read_only=True)

# KEYS: meta, inv. The head's epoch, version and checksum and the invalidation head's epoch and
# seq (a cluster routes it like the other reads: to a replica, or with EVALSHA to the primary).
HEAD: Final = _script("head", """
return {redis.call('HMGET', KEYS[1], 'epoch', 'version', 'checksum'),
        redis.call('HMGET', KEYS[2], 'epoch', 'seq')}
""", read_only=True)

# KEYS: a log (stream). ARGV: first id, last id ('+': the newest), count ('': all), '1' for
# newest first. Returns the entries' 'e' fields ('' for an entry without one).
READ_LOG: Final = _script("read_log", """
local r
if ARGV[4] == '1' then
  if ARGV[3] == '' then r = redis.call('XREVRANGE', KEYS[1], ARGV[2], ARGV[1])
  else r = redis.call('XREVRANGE', KEYS[1], ARGV[2], ARGV[1], 'COUNT', ARGV[3]) end
else
  if ARGV[3] == '' then r = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[2])
  else r = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[2], 'COUNT', ARGV[3]) end
end
local out = {}
for i, entry in ipairs(r) do out[i] = field_of(entry[2], 'e') or '' end
return out
""", read_only=True)

# §9. KEYS: inv, invlog. ARGV: '1' to create (the head must be absent), expected epoch, expected
# seq, epoch, seq, event, channel, log maxlen, publish command.
# Returns {1, seq, receivers} or {0, epoch, seq} as found.
SEND_INVALIDATION: Final = _script("send_invalidation", """
local cur = redis.call('HMGET', KEYS[1], 'epoch', 'seq')
if ARGV[1] == '1' then
  if cur[1] or cur[2] then return {0, cur[1], cur[2]} end
  redis.call('DEL', KEYS[2])
elseif cur[1] ~= ARGV[2] or cur[2] ~= ARGV[3] then
  return {0, cur[1], cur[2]}
end
local err = append(KEYS[2], ARGV[8], ARGV[5] .. '-0', ARGV[6])
if err then return err end
redis.call('HSET', KEYS[1], 'epoch', ARGV[4], 'seq', ARGV[5])
return {1, ARGV[5], redis.call(ARGV[9], ARGV[7], ARGV[6])}
""")

# §13. KEYS: protocol-1 snapshot, protocol-1 log. ARGV: notice, channel, ttl ms, publish command.
RETIRE_LEGACY: Final = _script("retire_legacy", """
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'protocol', '2') end
local n = redis.call(ARGV[4], ARGV[2], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return n
""")

# docs/cache.md. KEYS: value, generation, epoch. ARGV: generation, epoch, payload, ttl ms.
# Returns 1 if written (both generations unchanged since the read).
CACHE_FILL: Final = _script("cache_fill", """
if (redis.call('GET', KEYS[2]) or '0') ~= ARGV[1] then return 0 end
if (redis.call('GET', KEYS[3]) or '0') ~= ARGV[2] then return 0 end
redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
return 1
""")

# KEYS: counter, value1, generation1, value2, generation2, ... ARGV: generation ttl ms.
CACHE_INVALIDATE: Final = _script("cache_invalidate", """
for i = 2, #KEYS, 2 do
  redis.call('SET', KEYS[i + 1], redis.call('INCR', KEYS[1]), 'PX', ARGV[1])
  redis.call('UNLINK', KEYS[i])
end
return (#KEYS - 1) / 2
""")

# KEYS: counter, value, generation. ARGV: payload, ttl ms, generation ttl ms. An explicit write:
# it fences the fills in flight like an invalidation, then stores the new value.
CACHE_PUT: Final = _script("cache_put", """
redis.call('SET', KEYS[3], redis.call('INCR', KEYS[1]), 'PX', ARGV[3])
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return 1
""")

# docs/cache.md. KEYS: value, generation, epoch: what `CacheStore.read` returns, in one read
# of the primary (a cluster runs it with EVALSHA: a replica may not have the latest
# invalidation yet).
CACHE_READ: Final = _script("cache_read", """
return redis.call('MGET', KEYS[1], KEYS[2], KEYS[3])
""", read_only=True)

ALL: Final = (COMMIT_NEXT, COMMIT_NEW, HEAD_TOKEN, WRITE_CHECKPOINT, LOAD, LOAD_LEAVES, HEAD,
              READ_LOG, SEND_INVALIDATION, RETIRE_LEGACY, CACHE_FILL, CACHE_INVALIDATE,
              CACHE_PUT, CACHE_READ)
