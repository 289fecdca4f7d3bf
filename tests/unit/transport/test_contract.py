"""The transport contract (tests/transport_contract.py) on `MemoryTransport`."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from hotreload.transport import MemoryServer, MemoryTransport, Subscription
from hotreload.transport.memory import MemorySubscription
from tests.transport_contract import *  # noqa: F403


class MemoryBackend:
    def __init__(self) -> None:
        self.server = MemoryServer()
        self.transport = MemoryTransport(self.server, prefix="hr")

    def other(self) -> MemoryTransport:
        return MemoryTransport(self.server, prefix="hr")

    def listen(self, channel: str) -> Subscription:
        return self.server.listen(channel)

    async def put(self, key: str, value: bytes | Mapping[bytes, bytes] | list[bytes]) -> None:
        self.server.put(key, value)

    async def delete(self, key: str) -> None:
        self.server.delete(key)

    async def key_type(self, key: str) -> str:
        return self.server.key_type(key)

    async def hgetall(self, key: str) -> dict[bytes, bytes]:
        return dict(self.server.raw(key) or {})

    async def xadd(self, key: str, version: int, fields: Mapping[bytes, bytes]) -> None:
        self.server.xadd(key, version, fields)

    async def xlen(self, key: str) -> int:
        return len(self.server.raw(key) or [])

    async def pttl(self, key: str) -> int:
        if self.server.key_type(key) == "none":
            return -2
        ttl = self.server.ttl(key)
        return -1 if ttl is None else int(ttl * 1000)

    async def force_unsubscribe(self, sub: Subscription) -> None:
        assert isinstance(sub, MemorySubscription)
        self.server.unsubscribe(sub)


@pytest.fixture
def backend() -> MemoryBackend:
    return MemoryBackend()
