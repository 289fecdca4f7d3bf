"""The transport contract (tests/transport_contract.py) on `SentinelTransport`, RESP2 and RESP3."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

import pytest
import redis.asyncio as aioredis

from hotreload.config import build_config
from hotreload.transport import Subscription
from hotreload.transport.redis import RedisSubscription
from hotreload.transport.sentinel import SentinelTransport
from tests.conftest import unique
from tests.integration.cluster_servers import MASTER, SentinelServers
from tests.transport_contract import *  # noqa: F403


class SentinelBackend:
    def __init__(self, deployment: SentinelServers, resp: int, prefix: str) -> None:
        self.config = build_config({"prefix": prefix, "redis": {
            "protocol": resp, "sentinel": {"master": MASTER, "nodes": deployment.nodes}}})
        self.raw = aioredis.Redis(host="127.0.0.1", port=deployment.master().port)
        self._others: list[SentinelTransport] = []
        self.transport = self.other()

    def other(self) -> SentinelTransport:
        t = SentinelTransport(self.config.redis, prefix=self.config.prefix)
        self._others.append(t)
        return t

    def listen(self, channel: str) -> Subscription:
        return RedisSubscription(self._others[0].client, {channel: "config"})

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
        assert isinstance(sub, RedisSubscription)
        conn = sub._pubsub.connection
        assert conn is not None
        await conn.send_command("UNSUBSCRIBE", sub._channels[0])

    async def aclose(self) -> None:
        for t in self._others:
            await t.aclose()
        await self.raw.aclose()


@pytest.fixture
async def backend(resp: int, redis_sentinel: SentinelServers) -> AsyncIterator[SentinelBackend]:
    b = SentinelBackend(redis_sentinel, resp, unique("tp"))
    try:
        yield b
    finally:
        await b.aclose()
