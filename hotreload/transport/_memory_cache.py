"""The L2 of a named cache on a `MemoryServer`: docs/cache.md's semantics, in-process."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from ..wire.names import Keys
from ._store import Store

if TYPE_CHECKING:
    from .memory import MemoryTransport

#: How long a key's generation outlives its last invalidation (seconds).
GENERATION_TTL: Final = 3600.0


class MemoryCacheStore:
    """The L2 of one named cache on a `MemoryServer` (docs/cache.md semantics)."""

    def __init__(self, transport: MemoryTransport, keys: Keys, name: str) -> None:
        self._t = transport
        self.value_prefix = keys.cache(name)
        self.gen_prefix = f"{keys.base}:cachegen:{name}:"
        self.epoch_key = f"{keys.base}:cacheepoch:{name}"
        self.counter_key = f"{keys.base}:cacheseq:{name}"

    async def read(self, key: str) -> tuple[bytes | None, tuple[bytes, bytes]]:
        def run(s: Store) -> tuple[bytes | None, tuple[bytes, bytes]]:
            value, gen, epoch = (s.typed(n, bytes) for n in (
                self.value_prefix + key, self.gen_prefix + key, self.epoch_key))
            return value, (gen or b"0", epoch or b"0")
        return await self._t._call("reading the L2 cache", run, self._t.server.store)

    async def fill(self, key: str, payload: bytes, gens: tuple[bytes, bytes],
                   ttl: float) -> bool:
        def run(s: Store) -> bool:
            if (s.typed(self.gen_prefix + key, bytes) or b"0") != gens[0]:
                return False
            if (s.typed(self.epoch_key, bytes) or b"0") != gens[1]:
                return False
            s.set(self.value_prefix + key, payload, ttl)
            return True
        return await self._t._call("filling the L2 cache", run, self._t.server.store)

    async def put(self, key: str, payload: bytes, ttl: float) -> None:
        def run(s: Store) -> None:
            s.set(self.gen_prefix + key, s.incr(self.counter_key), GENERATION_TTL)
            s.set(self.value_prefix + key, payload, ttl)
        await self._t._call("writing the L2 cache", run, self._t.server.store)

    async def invalidate(self, keys: Sequence[str]) -> None:
        if not keys:
            return

        def run(s: Store) -> None:
            for key in keys:
                s.set(self.gen_prefix + key, s.incr(self.counter_key), GENERATION_TTL)
                s.delete(self.value_prefix + key)
        await self._t._call("invalidating the L2 cache", run, self._t.server.store)

    async def invalidate_prefix(self, prefix: str) -> int:
        def run(s: Store) -> int:
            s.incr(self.epoch_key)
            start = self.value_prefix + prefix
            names = [k for k in list(s.data) if k.startswith(start) and s.get(k) is not None]
            return sum(s.delete(k) for k in names)
        return await self._t._call("invalidating an L2 cache prefix", run, self._t.server.store)
