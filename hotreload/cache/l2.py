"""The L2 cache in Redis: key layout, serializers and the fenced (conditional) writes.

Per cache ``name`` in namespace ``ns`` (``base`` = ``{prefix}:{ns}`` with braces around ns, the
same hash tag as the namespace's snapshot, so every key of a cache lives in one Cluster slot):

* ``{base}:cache:{name}:{key}``      -- the serialised value, with a TTL;
* ``{base}:cachegen:{name}:{key}``   -- the key's invalidation generation, with a TTL;
* ``{base}:cacheseq:{name}``         -- the counter the generations are drawn from, no TTL;
* ``{base}:cacheepoch:{name}``       -- the cache's prefix/clear generation (INCR), no TTL.

A load reads the value and both generations in one MGET before calling the loader, and writes
its result with a Lua script that only SETs when both generations are unchanged: an
invalidation that lands while the loader runs changes a generation, so the load's (old) value
never reaches L2. Invalidating keys sets their generation to a fresh value of the cache's
counter and UNLINKs them atomically; invalidating a prefix bumps the epoch, then SCANs and
UNLINKs the matching keys.

A key's generation is never INCRed in place: once it expired, an INCR would recreate a value
seen before (1 again), and a load that read that value before the expiry would pass the fence.
Drawn from a counter that never expires, a generation never repeats.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final, Protocol, runtime_checkable

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

from ..connection import wrap_errors

#: How long a key's generation outlives its last invalidation: longer than any load may run.
GENERATION_TTL_MS: Final = 3_600_000
SCAN_COUNT: Final = 1000
_GLOB_SPECIAL: Final = frozenset("*?[]\\")

# KEYS: value, generation, epoch. ARGV: generation, epoch, payload, ttl ms. Returns 1 if written.
_FILL_LUA: Final = """
if (redis.call('GET', KEYS[2]) or '0') ~= ARGV[1] then return 0 end
if (redis.call('GET', KEYS[3]) or '0') ~= ARGV[2] then return 0 end
redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
return 1
"""

# KEYS: counter, value1, generation1, value2, generation2, ... ARGV: generation ttl ms.
_INVALIDATE_LUA: Final = """
for i = 2, #KEYS, 2 do
  redis.call('SET', KEYS[i + 1], redis.call('INCR', KEYS[1]), 'PX', ARGV[1])
  redis.call('UNLINK', KEYS[i])
end
return (#KEYS - 1) / 2
"""

# KEYS: counter, value, generation. ARGV: payload, ttl ms, generation ttl ms. An explicit write:
# it fences the loads in flight like an invalidation, then stores the new value.
_PUT_LUA: Final = """
redis.call('SET', KEYS[3], redis.call('INCR', KEYS[1]), 'PX', ARGV[3])
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return 1
"""


@runtime_checkable
class Serializer(Protocol):
    """How values are stored in L2: ``dumps(value) -> bytes`` and ``loads(bytes) -> value``.

    ``loads(dumps(v))`` must give back an equal value; ``None`` must round-trip (it is how a
    negative-cached "not found" is stored). Errors of ``dumps`` propagate to the caller of
    ``get``/``set``; a value that ``loads`` cannot read is treated as an L2 miss.
    """

    def dumps(self, value: Any) -> bytes: ...

    def loads(self, data: bytes) -> Any: ...


class JsonSerializer:
    """Compact UTF-8 JSON; NaN and Infinity are rejected. Tuples come back as lists."""

    def dumps(self, value: Any) -> bytes:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False).encode()

    def loads(self, data: bytes) -> Any:
        return json.loads(data)


def glob_escape(text: str) -> str:
    """Escape Redis glob specials so ``text`` matches itself in SCAN MATCH."""
    return "".join("\\" + c if c in _GLOB_SPECIAL else c for c in text)


class L2Store:
    """The Redis side of one named cache. Errors come out as `BackendError`."""

    def __init__(self, client: aioredis.Redis, *, prefix: str, namespace: str,
                 name: str) -> None:
        base = f"{prefix}:{{{namespace}}}"
        self.redis = client
        self.value_prefix = f"{base}:cache:{name}:"
        self.gen_prefix = f"{base}:cachegen:{name}:"
        self.epoch_key = f"{base}:cacheepoch:{name}"
        self.counter_key = f"{base}:cacheseq:{name}"
        self._fill: AsyncScript = client.register_script(_FILL_LUA)
        self._invalidate: AsyncScript = client.register_script(_INVALIDATE_LUA)
        self._put: AsyncScript = client.register_script(_PUT_LUA)

    def value_key(self, key: str) -> str:
        return self.value_prefix + key

    async def read(self, key: str) -> tuple[bytes | None, tuple[bytes, bytes]]:
        """The stored value (None if absent) and the generations a later `fill` must match."""
        async with wrap_errors("reading the L2 cache"):
            value, gen, epoch = await self.redis.mget(
                self.value_prefix + key, self.gen_prefix + key, self.epoch_key)
        return _bytes(value), (_bytes(gen) or b"0", _bytes(epoch) or b"0")

    async def fill(self, key: str, payload: bytes, gens: tuple[bytes, bytes],
                   ttl: float) -> bool:
        """Store ``payload`` unless the key was invalidated since `read` returned ``gens``."""
        async with wrap_errors("filling the L2 cache"):
            done = await self._fill(
                keys=[self.value_prefix + key, self.gen_prefix + key, self.epoch_key],
                args=[gens[0], gens[1], payload, _ms(ttl)])
        return bool(done)

    async def put(self, key: str, payload: bytes, ttl: float) -> None:
        async with wrap_errors("writing the L2 cache"):
            await self._put(keys=[self.counter_key, self.value_prefix + key,
                                  self.gen_prefix + key],
                            args=[payload, _ms(ttl), GENERATION_TTL_MS])

    async def invalidate(self, keys: Sequence[str]) -> None:
        """Give each key a new generation and delete its value, atomically."""
        if not keys:
            return
        names: list[str] = [self.counter_key]
        for key in keys:
            names += (self.value_prefix + key, self.gen_prefix + key)
        async with wrap_errors("invalidating the L2 cache"):
            await self._invalidate(keys=names, args=[GENERATION_TTL_MS])

    async def invalidate_prefix(self, prefix: str) -> int:
        """Bump the epoch (fencing every load in flight), then SCAN+UNLINK the prefix."""
        pattern = glob_escape(self.value_prefix + prefix) + "*"
        deleted = 0
        async with wrap_errors("invalidating an L2 cache prefix"):
            await self.redis.incr(self.epoch_key)
            batch: list[bytes] = []
            async for name in self.redis.scan_iter(match=pattern, count=SCAN_COUNT):
                batch.append(name)
                if len(batch) >= SCAN_COUNT:
                    deleted += int(await self.redis.unlink(*batch))
                    batch = []
            if batch:
                deleted += int(await self.redis.unlink(*batch))
        return deleted


def _bytes(value: bytes | str | None) -> bytes | None:
    return value.encode() if isinstance(value, str) else value


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))
