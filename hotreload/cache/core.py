"""`AsyncTwoLevelCache`: the core of the two-level cache (see `hotreload.cache`)."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any, Final, TypeAlias

from ..errors import BackendError
from ..publisher import AsyncPublisher, default_origin
from ..subscriber import AsyncSubscriber, Invalidation
from ..wire import check_name
from .l1 import L1Cache
from .serializers import JsonSerializer, Serializer
from .state import CacheCounters, Echoes, Fences, Flight, Flights, Scope, retrieve

log = logging.getLogger("hotreload.cache")

#: After an L2 error, reads skip Redis (straight to the loader) for this many seconds.
L2_RETRY_AFTER: Final = 1.0
#: The deadline of an L2 read or fill: past it the read is a miss (a dead link to Redis must
#: not hold up `get`; the loader serves it).
L2_TIMEOUT: Final = 0.5

Loader: TypeAlias = Callable[[str], Any]
"""``loader(key)`` returns the value (or None for "not found"), or an awaitable of it."""


class _Hook:
    """What the subscriber calls (`CacheHook`); forwards to the cache."""

    __slots__ = ("_cache",)

    def __init__(self, cache: AsyncTwoLevelCache) -> None:
        self._cache = cache

    def invalidate(self, event: Invalidation) -> None:
        self._cache._apply_invalidation(event)

    def set_trusted(self, trusted: bool) -> None:
        self._cache._set_trusted(trusted)


class AsyncTwoLevelCache:
    """A read-through cache kept consistent across pods by the subscriber's invalidations.

    Use it on the subscriber's event loop. ``ttl`` is the L1 lifetime, ``l2_ttl`` the Redis one.
    """

    def __init__(
        self,
        subscriber: AsyncSubscriber[Any],
        *,
        name: str = "default",
        max_entries: int = 10_000,
        ttl: float = 60.0,
        l2_ttl: float = 300.0,
        serializer: Serializer | None = None,
        publisher: AsyncPublisher | None = None,
    ) -> None:
        if l2_ttl <= 0:
            raise ValueError("l2_ttl must be positive")
        self.name = check_name(name, "cache name")
        self.subscriber = subscriber
        self.namespace = subscriber.namespace
        self.l2_ttl = l2_ttl
        self.serializer: Serializer = serializer or JsonSerializer()
        self.source = f"cache:{name}"
        self._l1 = L1Cache(max_entries, ttl=ttl)
        self._l1.enabled = False  # until the subscriber says the link is trusted
        self._l2 = subscriber.transport.cache_store(self.namespace, name)
        self._own_publisher = publisher is None
        self._publisher = publisher or AsyncPublisher(
            subscriber.config, namespace=self.namespace, source=self.source,
            origin=f"{default_origin()}/{self.source}/{uuid.uuid4().hex[:8]}",
            transport=subscriber.transport)
        self._flights = Flights()
        self._fences = Fences()
        self._echoes = Echoes(self._publisher.origin)
        self._tasks: set[asyncio.Task[None]] = set()
        self._l2_retry_at = 0.0
        self.counters = CacheCounters()
        self.hook = _Hook(self)
        subscriber.register_cache(self.hook)

    @property
    def l1(self) -> L1Cache:
        return self._l1

    @property
    def trusted(self) -> bool:
        """Whether L1 is served (the invalidation link is up and caught up)."""
        return self._l1.enabled

    # ------------------------------------------------------------------ reads

    async def get(self, key: str, loader: Loader, ttl: float | None = None,
                  cache_none: bool = False) -> Any:
        """L1, else L2, else ``await loader(key)``; None results are cached if ``cache_none``."""
        l1 = self._l1
        if l1.enabled:
            entry = l1._data.get(key)
            if entry is not None and entry[1] > l1._clock():
                entry[2] = True
                l1.hits += 1
                return entry[0]
        return await self._miss(key, loader, ttl, cache_none)

    async def _miss(self, key: str, loader: Loader, ttl: float | None,
                    cache_none: bool) -> Any:
        self._l1.misses += 1
        flight = self._flights.get(key)
        if flight is None:
            flight = self._flights.start(key)
            task = asyncio.ensure_future(self._fly(flight, loader, ttl, cache_none))
            task.add_done_callback(retrieve)
            flight.task = task
        else:
            self.counters.coalesced += 1
        if flight.task is None:  # pragma: no cover - set right above
            raise RuntimeError("flight without a task")
        return await asyncio.shield(flight.task)

    async def _fly(self, flight: Flight, loader: Loader, ttl: float | None,
                   cache_none: bool) -> Any:
        try:
            return await self._load_through(flight, loader, ttl, cache_none)
        finally:
            self._flights.finish(flight)

    async def _load_through(self, flight: Flight, loader: Loader, ttl: float | None,
                            cache_none: bool) -> Any:
        key, c = flight.key, self.counters
        payload: bytes | None = None
        gens: tuple[bytes, bytes] | None = None
        if self._l2_usable():
            try:
                async with asyncio.timeout(L2_TIMEOUT):
                    payload, gens = await self._l2.read(key)
            except (BackendError, TimeoutError) as exc:
                self._l2_failed("read", exc)
        if payload is not None and not flight.stale and not self._fences.covers(key):
            try:
                value = self.serializer.loads(payload)
            except Exception as exc:  # a bad entry is a miss, not an error
                log.warning("cache %s: unreadable L2 entry for %r (%s); reloading", self.name,
                            key, type(exc).__name__, extra={"action": "l2_bad_entry"})
            else:
                c.l2_hits += 1
                self._fill_l1(flight, value, ttl)
                return value
        c.l2_misses += 1
        c.loads += 1
        try:
            value = loader(key)
            if inspect.isawaitable(value):
                value = await value
        except Exception:
            c.load_errors += 1
            raise
        if value is None:
            c.l3_misses += 1
            if not cache_none:
                return None
        else:
            c.l3_hits += 1
        if gens is not None and not flight.stale:
            data = self.serializer.dumps(value)
            try:
                async with asyncio.timeout(L2_TIMEOUT):
                    filled = await self._l2.fill(key, data, gens, self.l2_ttl)
                if not filled:
                    c.stale_fills_skipped += 1
            except (BackendError, TimeoutError) as exc:
                self._l2_failed("fill", exc)
        self._fill_l1(flight, value, ttl)
        return value

    def _l2_usable(self) -> bool:
        return self._l2_retry_at <= time.monotonic()

    def _l2_failed(self, what: str, exc: BackendError | TimeoutError) -> None:
        """Reads fall through to L3 and skip L2 for a while: Redis is down or slow."""
        self.counters.l2_errors += 1
        self._l2_retry_at = time.monotonic() + L2_RETRY_AFTER
        log.warning("cache %s: L2 %s failed (%s); using L3 only for %.0fs", self.name, what,
                    exc or "timed out", L2_RETRY_AFTER, extra={"action": "l2_unavailable"})

    def _fill_l1(self, flight: Flight, value: Any, ttl: float | None) -> None:
        if flight.stale:
            self.counters.stale_fills_skipped += 1
        elif self._l1.enabled:
            self._l1.set(flight.key, value, ttl)

    # ------------------------------------------------------------------ writes

    async def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        """Write ``value`` through L1 and L2, and tell every other pod to drop its copy."""
        data = self.serializer.dumps(value)
        scope = Scope((key,))
        self._drop_local(scope)
        self._fences.add(scope)
        try:
            await self._l2.put(key, data, self.l2_ttl)
        finally:
            self._fences.remove(scope)
        self._flights.spoil(scope)  # loads that began during the write read the old value
        if self._l1.enabled:
            self._l1.set(key, value, ttl)
        await self._publish(scope)

    async def invalidate(self, key: str) -> None:
        """Drop ``key`` here, in L2 and (through the channel) in every pod's L1."""
        await self._invalidate(Scope((key,)))

    async def invalidate_prefix(self, prefix: str) -> None:
        """Drop every key starting with ``prefix`` (L2: SCAN + UNLINK, see docs/cache.md)."""
        await self._invalidate(Scope(prefixes=(prefix,)))

    async def clear(self) -> None:
        """Drop everything: this cache's L2 and every cache's L1 in the namespace."""
        await self._invalidate(Scope(all=True))

    async def _invalidate(self, scope: Scope) -> None:
        self._drop_local(scope)
        self._fences.add(scope)
        try:
            await self._drop_l2(scope)
        finally:
            self._fences.remove(scope)
        await self._publish(scope)

    async def _publish(self, scope: Scope) -> None:
        pending = self._echoes.begin(scope)
        version: int | None = None
        try:
            result = await self._publisher.invalidate(
                scope.keys, scope.prefixes, everything=scope.all, namespace=self.namespace,
                source=self.source)
            version = result.version
        finally:
            self._echoes.end(pending, version)

    async def _drop_l2(self, scope: Scope) -> None:
        if scope.all:
            await self._l2.invalidate_prefix("")
            return
        for prefix in scope.prefixes:
            await self._l2.invalidate_prefix(prefix)
        await self._l2.invalidate(scope.keys)

    def _drop_local(self, scope: Scope) -> None:
        self._flights.spoil(scope)
        if scope.all:
            self._l1.clear()
            return
        for key in scope.keys:
            self._l1.invalidate(key)
        for prefix in scope.prefixes:
            self._l1.invalidate_prefix(prefix)

    # ------------------------------------------------------------------ the CacheHook side

    def _apply_invalidation(self, event: Invalidation) -> None:
        """An invalidation from the channel (or a resync): drop L1, and L2 if nobody did."""
        scope = Scope(event.keys, event.prefixes, event.all)
        if event.reason == "event" and self._echoes.is_echo(event.origin, event.version, scope):
            self.counters.echoes_skipped += 1
            return
        self.counters.events += 1
        self._drop_local(scope)
        if event.reason != "event" or event.source == self.source:
            return  # a resync only clears L1; a cache of our name already handled L2
        # Published by someone who did not touch our L2 (CLI, daemon, another cache name):
        # delete it ourselves, ignoring L2 reads of those keys until that is done.
        self.counters.remote_invalidations += 1
        self._fences.add(scope)
        task = asyncio.get_running_loop().create_task(self._drop_l2_remote(scope))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _drop_l2_remote(self, scope: Scope) -> None:
        try:
            await self._drop_l2(scope)
        except BackendError as exc:
            self.counters.l2_errors += 1
            log.warning("cache %s: could not drop L2 entries of an invalidation: %s",
                        self.name, exc, extra={"action": "l2_invalidate_failed"})
        finally:
            self._fences.remove(scope)

    def _set_trusted(self, trusted: bool) -> None:
        """While not trusted, L1 is neither served nor filled, and loads in flight are spoilt."""
        if not trusted:
            self._flights.spoil(Scope(all=True))
        self._l1.enabled = trusted

    # ------------------------------------------------------------------ the rest

    def stats(self) -> dict[str, Any]:
        """Counters by level and of the consistency machinery (see docs/cache.md)."""
        return self.counters.as_dict(self._l1)

    async def aclose(self) -> None:
        self.subscriber.unregister_cache(self.hook)
        self._l1.enabled = False
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._own_publisher:
            await self._publisher.aclose()

    async def __aenter__(self) -> AsyncTwoLevelCache:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
