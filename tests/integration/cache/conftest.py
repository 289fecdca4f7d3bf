"""Fixtures of the cache tests: real Redis at REDIS_URL, one unique namespace per test."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from hotreload import AsyncSubscriber, HotReloadConfig, Subscriber
from hotreload.cache import AsyncTwoLevelCache, TwoLevelCache
from hotreload.transport.redis import RedisTransport
from tests.conftest import REDIS_URL, await_until, delete_keys, wait_until

__all__ = ["REDIS_URL", "CacheFactory", "Store", "SubFactory", "await_until", "wait_until"]


class Store:
    """The "database" (L3) of a test: a dict, with a count of loads per key.

    ``gate`` (when set) makes async loads wait for it after reading the value, which is how the
    tests hold a load open across an invalidation.
    """

    def __init__(self, **rows: Any) -> None:
        self.rows: dict[str, Any] = dict(rows)
        self.loads: dict[str, int] = {}
        self.gate: asyncio.Event | None = None
        self.thread_gate: threading.Event | None = None
        self.started = threading.Event()
        self._lock = threading.Lock()

    def count(self, key: str) -> int:
        return self.loads.get(key, 0)

    def _read(self, key: str) -> Any:
        with self._lock:
            self.loads[key] = self.loads.get(key, 0) + 1
        return self.rows.get(key)

    async def load(self, key: str) -> Any:
        value = self._read(key)
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        return value

    def load_sync(self, key: str) -> Any:
        value = self._read(key)
        self.started.set()
        if self.thread_gate is not None and not self.thread_gate.wait(30):
            raise TimeoutError("gate never opened")
        return value


@pytest.fixture
def namespace() -> Iterator[str]:
    """A namespace no other test uses; its Redis keys are deleted afterwards."""
    ns = f"tc-{uuid.uuid4().hex[:12]}"
    yield ns
    delete_keys(f"hotreload:{{{ns}}}:*")


@pytest.fixture
def config(namespace: str) -> HotReloadConfig:
    return HotReloadConfig.from_url(REDIS_URL, namespace=namespace)


@pytest.fixture
def raw_redis() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    yield client
    client.close()


SubFactory = Callable[..., Awaitable[AsyncSubscriber[Any]]]


@pytest.fixture
async def make_subscriber(config: HotReloadConfig) -> AsyncIterator[SubFactory]:
    made: list[AsyncSubscriber[Any]] = []
    clients: list[aioredis.Redis] = []

    async def make(client_name: str | None = None) -> AsyncSubscriber[Any]:
        """A started subscriber; with ``client_name``, its connections carry that name."""
        transport = None
        if client_name is not None:
            client = aioredis.Redis.from_url(REDIS_URL, client_name=client_name)
            clients.append(client)
            transport = RedisTransport(config.redis, prefix=config.prefix, client=client)
        sub: AsyncSubscriber[Any] = AsyncSubscriber(config, transport=transport)
        made.append(sub)
        await sub.start()
        return sub

    yield make
    for sub in made:
        await sub.aclose()
    for client in clients:
        await client.aclose()


CacheFactory = Callable[..., Awaitable[AsyncTwoLevelCache]]


@pytest.fixture
async def make_cache(make_subscriber: SubFactory) -> AsyncIterator[CacheFactory]:
    made: list[AsyncTwoLevelCache] = []

    async def make(sub: AsyncSubscriber[Any] | None = None, **kwargs: Any
                   ) -> AsyncTwoLevelCache:
        sub = sub or await make_subscriber()
        cache = AsyncTwoLevelCache(sub, name=kwargs.pop("name", "c"), **kwargs)
        made.append(cache)
        await await_until(lambda: cache.trusted, what="cache trusted")
        return cache

    yield make
    for cache in made:
        await cache.aclose()


@pytest.fixture
def sync_pair(config: HotReloadConfig) -> Iterator[Callable[..., TwoLevelCache]]:
    """Factory of sync caches, each on its own started `Subscriber`."""
    subs: list[Subscriber[Any]] = []
    caches: list[TwoLevelCache] = []

    def make(**kwargs: Any) -> TwoLevelCache:
        sub: Subscriber[Any] = Subscriber(config)
        subs.append(sub)
        sub.start()
        cache = TwoLevelCache(sub, name=kwargs.pop("name", "c"), **kwargs)
        caches.append(cache)
        wait_until(lambda: cache.trusted, what="cache trusted")
        return cache

    yield make
    for cache in caches:
        cache.close()
    for sub in subs:
        sub.close()
