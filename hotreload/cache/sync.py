"""`TwoLevelCache`: the sync facade of the two-level cache (see `hotreload.cache`)."""

from __future__ import annotations

import asyncio
import queue
from collections.abc import Callable
from typing import Any

from ..publisher import AsyncPublisher
from ..subscriber import AsyncSubscriber, Subscriber
from .core import AsyncTwoLevelCache
from .l1 import L1Cache
from .serializers import Serializer


class TwoLevelCache:
    """The sync facade: L1 hits run in the calling thread; misses and writes run the async
    core on the subscriber's loop thread. A sync ``loader`` runs in the calling thread of the
    miss that started the load, once per key however many threads miss it together (the others
    wait for its result)."""

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
    def l1(self) -> L1Cache:
        return self._l1

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
        return self._miss(key, loader, ttl, cache_none)

    def _miss(self, key: str, loader: Callable[[str], Any], ttl: float | None,
              cache_none: bool) -> Any:
        """Run the core's miss on the loop; if it starts a load, run ``loader`` here.

        The core calls a stand-in loader on the loop; it hands a future to this thread through
        ``handoff`` and waits for it. This thread runs ``loader`` and settles the future. When
        the miss is over (L2 hit, joined load, or own load done), ``None`` ends the wait.
        """
        thread = self._thread
        if thread.in_loop_thread():
            raise RuntimeError("cannot block on the hotreload loop from its own thread")
        loop = thread.loop
        handoff: queue.SimpleQueue[asyncio.Future[Any] | None] = queue.SimpleQueue()

        async def in_caller(_: str) -> Any:
            result: asyncio.Future[Any] = loop.create_future()
            handoff.put(result)
            return await result

        future = thread.submit(self._core._miss(key, in_caller, ttl, cache_none))
        future.add_done_callback(lambda _: handoff.put(None))
        while (result := handoff.get()) is not None:
            _load_here(loop, loader, key, result)
        return future.result()

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


def _load_here(loop: asyncio.AbstractEventLoop, loader: Callable[[str], Any], key: str,
               result: asyncio.Future[Any]) -> None:
    """Run ``loader(key)`` in this thread and settle ``result`` (a future of ``loop``) with it.

    An interrupt (KeyboardInterrupt, SystemExit) is re-raised here, in the thread it belongs
    to; the other waiters of the load get a RuntimeError (an interrupt must not stop the loop,
    and a CancelledError would look to async waiters as if they had been cancelled).
    """
    try:
        value = loader(key)
    except Exception as exc:
        _settle(loop, result, exc)
        return
    except BaseException as exc:
        error = RuntimeError(f"the loader was interrupted ({type(exc).__name__})")
        error.__cause__ = exc
        _settle(loop, result, error)
        raise
    _settle(loop, result, value, ok=True)


def _settle(loop: asyncio.AbstractEventLoop, result: asyncio.Future[Any], value: Any,
            ok: bool = False) -> None:
    def settle() -> None:
        if result.done():  # the load was cancelled meanwhile (the loop is shutting down)
            return
        if ok:
            result.set_result(value)
        else:
            result.set_exception(value)

    try:
        loop.call_soon_threadsafe(settle)
    except RuntimeError:  # the loop is closed: the waiting side is gone with it
        pass


async def _build_core(subscriber: AsyncSubscriber[Any], **kwargs: Any) -> AsyncTwoLevelCache:
    return AsyncTwoLevelCache(subscriber, **kwargs)
