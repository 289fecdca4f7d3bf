"""The L2 of a named cache in Redis (docs/cache.md): fenced fills, generations, epochs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from ..wire.names import Keys
from . import _scripts as S
from ._client import REDIS_ERRORS
from ._client import failed as _failed
from ._client import ms as _ms

if TYPE_CHECKING:
    from .redis import BaseRedisTransport

#: How long a key's generation outlives its last invalidation: longer than any load may run.
GENERATION_TTL_MS: Final = 3_600_000
SCAN_COUNT: Final = 1000
_GLOB_SPECIAL: Final = frozenset("*?[]\\")


def glob_escape(text: str) -> str:
    """Escape Redis glob specials so ``text`` matches itself in SCAN MATCH."""
    return "".join("\\" + c if c in _GLOB_SPECIAL else c for c in text)


class RedisCacheStore:
    """The L2 of one named cache (docs/cache.md): values under ``keys.cache(name)``, and the
    cache's generations, counter and epoch beside them."""

    def __init__(self, transport: BaseRedisTransport, keys: Keys, name: str) -> None:
        self._t = transport
        self.value_prefix = keys.cache(name)
        self.gen_prefix = f"{keys.base}:cachegen:{name}:"
        self.epoch_key = f"{keys.base}:cacheepoch:{name}"
        self.counter_key = f"{keys.base}:cacheseq:{name}"

    async def read(self, key: str) -> tuple[bytes | None, tuple[bytes, bytes]]:
        try:
            value, gen, epoch = await self._t._cmd.mget(
                self.value_prefix + key, self.gen_prefix + key, self.epoch_key)
        except REDIS_ERRORS as exc:
            raise _failed("reading the L2 cache", exc) from exc
        return value, (gen or b"0", epoch or b"0")

    async def fill(self, key: str, payload: bytes, gens: tuple[bytes, bytes],
                   ttl: float) -> bool:
        try:
            done = await self._t._eval(
                S.CACHE_FILL, [self.value_prefix + key, self.gen_prefix + key, self.epoch_key],
                [gens[0], gens[1], payload, _ms(ttl)])
        except REDIS_ERRORS as exc:
            raise _failed("filling the L2 cache", exc) from exc
        return bool(done)

    async def put(self, key: str, payload: bytes, ttl: float) -> None:
        try:
            await self._t._eval(
                S.CACHE_PUT, [self.counter_key, self.value_prefix + key, self.gen_prefix + key],
                [payload, _ms(ttl), GENERATION_TTL_MS])
        except REDIS_ERRORS as exc:
            raise _failed("writing the L2 cache", exc) from exc

    async def invalidate(self, keys: Sequence[str]) -> None:
        if not keys:
            return
        names = [self.counter_key]
        for key in keys:
            names += (self.value_prefix + key, self.gen_prefix + key)
        try:
            await self._t._eval(S.CACHE_INVALIDATE, names, [GENERATION_TTL_MS])
        except REDIS_ERRORS as exc:
            raise _failed("invalidating the L2 cache", exc) from exc

    async def invalidate_prefix(self, prefix: str) -> int:
        client = self._t._cmd
        pattern = glob_escape(self.value_prefix + prefix) + "*"
        deleted = 0
        try:
            await client.incr(self.epoch_key)
            batch: list[bytes] = []
            async for name in client.scan_iter(match=pattern, count=SCAN_COUNT):
                batch.append(name)
                if len(batch) >= SCAN_COUNT:
                    deleted += int(await client.unlink(*batch))
                    batch = []
            if batch:
                deleted += int(await client.unlink(*batch))
        except REDIS_ERRORS as exc:
            raise _failed("invalidating an L2 cache prefix", exc) from exc
        return deleted
