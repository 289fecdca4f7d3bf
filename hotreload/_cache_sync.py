"""`TwoLevelCache`: the sync facade of the two-level cache (see `hotreload.cache`)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from ._cache_async import AsyncTwoLevelCache
from ._l2 import Serializer
from .publisher import AsyncPublisher
from .subscriber import AsyncSubscriber, Subscriber


class TwoLevelCache:
    """The sync facade: L1 hits run in the calling thread; misses and writes run the async
    core on the subscriber's loop thread. A sync ``loader`` runs in that loop's default
    executor (a worker thread), once per key however many threads miss it together."""

    def __init__(
        self,
        subscriber: Subscriber[Any],
        *,
        name: str = "default",
        max_entries: int = 10_000,
        ttl: float = 60.0,
        l2_ttl: float = 300.0,
        serializer: Serializer | None = None,
        publisher: AsyncPublisher | None = None,
    ) -> None:
        self._thread = subscriber.loop_thread
        self._core = self._thread.run(_build_core(
            subscriber.core, name=name, max_entries=max_entries, ttl=ttl, l2_ttl=l2_ttl,
            serializer=serializer, publisher=publisher))
        self._l1 = self._core.l1

    @property
    def core(self) -> AsyncTwoLevelCache:
        return self._core

    @property
    def trusted(self) -> bool:
        return self._l1.enabled

    def get(self, key: str, loader: Callable[[str], Any], ttl: float | None = None,
            cache_none: bool = False) -> Any:
        """L1 (in this thread), else L2, else ``loader(key)``; see `AsyncTwoLevelCache.get`."""
        l1 = self._l1
        if l1.enabled:
            entry = l1._data.get(key)
            if entry is not None and entry[1] > l1._clock():
                entry[2] = True
                l1.hits += 1
                return entry[0]
        return self._thread.run(self._core._miss(key, _in_executor(loader), ttl, cache_none))

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        self._thread.run(self._core.set(key, value, ttl))

    def invalidate(self, key: str) -> None:
        self._thread.run(self._core.invalidate(key))

    def invalidate_prefix(self, prefix: str) -> None:
        self._thread.run(self._core.invalidate_prefix(prefix))

    def clear(self) -> None:
        self._thread.run(self._core.clear())

    def stats(self) -> dict[str, Any]:
        return self._core.stats()

    def close(self) -> None:
        if self._thread.running:
            self._thread.run(self._core.aclose())

    def __enter__(self) -> TwoLevelCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _in_executor(loader: Callable[[str], Any]) -> Callable[[str], Awaitable[Any]]:
    async def run(key: str) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, loader, key)

    return run


async def _build_core(subscriber: AsyncSubscriber[Any], **kwargs: Any) -> AsyncTwoLevelCache:
    return AsyncTwoLevelCache(subscriber, **kwargs)
