"""The transport contract (tests/transport_contract.py) on `RedisTransport`, RESP2 and RESP3."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

import pytest
import redis.asyncio as aioredis

from hotreload.config import RedisSettings
from hotreload.transport import Subscription
from hotreload.transport.redis import RedisSubscription, RedisTransport
from tests.conftest import REDIS_URL, delete_keys, unique
from tests.transport_contract import *  # noqa: F403


class RedisBackend:
    def __init__(self, resp: int, prefix: str, url: str = REDIS_URL) -> None:
        self.settings = RedisSettings(url=url, protocol=resp)  # type: ignore[arg-type]
        self.prefix = prefix
        self.transport = RedisTransport(self.settings, prefix=prefix)
        self.raw = aioredis.Redis.from_url(url)
        self._others: list[RedisTransport] = []

    def other(self) -> RedisTransport:
        t = RedisTransport(self.settings, prefix=self.prefix)
        self._others.append(t)
        return t

    def listen(self, channel: str) -> Subscription:
        return RedisSubscription(self.transport.client, {channel: "config"})

    async def put(self, key: str, value: bytes | Mapping[bytes, bytes] | list[bytes]) -> None:
        pipe = self.raw.pipeline(transaction=True)
        pipe.delete(key)
        if isinstance(value, bytes):
            pipe.set(key, value)
        elif isinstance(value, list):
            pipe.rpush(key, *value)
        elif value:
            pipe.hset(key, mapping=dict(value))
        await pipe.execute()

    async def delete(self, key: str) -> None:
        await self.raw.delete(key)

    async def key_type(self, key: str) -> str:
        return (await self.raw.type(key)).decode()

    async def hgetall(self, key: str) -> dict[bytes, bytes]:
        return await self.raw.hgetall(key)  # type: ignore[no-any-return]

    async def xadd(self, key: str, version: int, fields: Mapping[bytes, bytes]) -> None:
        await self.raw.xadd(key, dict(fields), id=f"{version}-0")

    async def xlen(self, key: str) -> int:
        return int(await self.raw.xlen(key))

    async def pttl(self, key: str) -> int:
        return int(await self.raw.pttl(key))

    async def force_unsubscribe(self, sub: Subscription) -> None:
        # As the server does when a sharded channel's slot moves: an UNSUBSCRIBE that the
        # client did not ask for (redis-py does not see it go out, so it keeps the channel).
        assert isinstance(sub, RedisSubscription)
        conn = sub._pubsub.connection
        assert conn is not None
        await conn.send_command("UNSUBSCRIBE", sub._channels[0])

    async def aclose(self) -> None:
        for t in [self.transport, *self._others]:
            await t.aclose()
        await self.raw.aclose()


@pytest.fixture
async def backend(resp: int) -> AsyncIterator[RedisBackend]:
    prefix = unique("tp")
    b = RedisBackend(resp, prefix)
    try:
        yield b
    finally:
        await b.aclose()
        delete_keys(f"{prefix}:*")
