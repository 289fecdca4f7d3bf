"""The synchronous `Subscriber`: the `AsyncSubscriber` core run on one background thread."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, Literal, TypeVar, cast

from .._loop import LoopThread
from ..config import HotReloadConfig
from ..errors import HotReloadError
from .core import AsyncSubscriber, ModelT
from .events import CacheHook
from .state import Current

F = TypeVar("F", bound=Callable[..., Any])


class Subscriber(Generic[ModelT]):
    """The synchronous facade: runs an `AsyncSubscriber` on one background thread.

    Listeners registered here are called on that thread; keep them short.
    """

    get: Callable[..., Any]

    def __init__(
        self,
        config: HotReloadConfig | str | None = None,
        *,
        namespace: str | None = None,
        model: type[ModelT] | None = None,
        service: str | None = None,
        instance: str | None = None,
        cache_file: str | os.PathLike[str] | None = None,
    ) -> None:
        self._thread = LoopThread(name="hotreload-subscriber")
        try:
            self._core: AsyncSubscriber[ModelT] = self._thread.run(
                _build_subscriber(config, namespace, model, service, instance, cache_file))
        except BaseException:
            self._thread.stop()
            raise
        self.get = self._core.get
        self._core._swap_hooks.append(self._on_swap)

    def _on_swap(self, new: Current) -> None:
        self.get = new.index.get

    @property
    def core(self) -> AsyncSubscriber[ModelT]:
        return self._core

    @property
    def namespace(self) -> str:
        return self._core.namespace

    @property
    def settings(self) -> Any:
        return self._core.settings

    @property
    def version(self) -> int:
        return self._core.version

    @property
    def epoch(self) -> str | None:
        return self._core.epoch

    @property
    def received_version(self) -> int:
        return self._core.received_version

    @property
    def link_state(self) -> Literal["up", "down", "stale"]:
        return self._core.link_state

    @property
    def service(self) -> str:
        return self._core.service

    @property
    def instance(self) -> str:
        return self._core.instance

    @property
    def cache_file(self) -> str | os.PathLike[str] | None:
        return self._core.cache_file

    @property
    def server_note(self) -> str | None:
        return self._core.server_note

    @property
    def last_error(self) -> str | None:
        return self._core.last_error

    @property
    def connected(self) -> bool:
        return self._core.connected

    def as_dict(self) -> dict[str, Any]:
        return self._core.as_dict()

    def status(self) -> dict[str, Any]:
        return self._core.status()

    def __enter__(self) -> Subscriber[ModelT]:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self, timeout: float | None = 10.0) -> None:
        if not self._thread.running:
            raise HotReloadError("this Subscriber was closed (or failed to start); "
                                 "create a new one")
        try:
            self._thread.run(self._core.start(timeout))
        except BaseException:
            self._thread.stop()
            raise

    def wait_for_version(self, version: int, timeout: float = 10.0, *,
                         applied: bool = True) -> None:
        self._thread.run(self._core.wait_for_version(version, timeout, applied=applied))

    def close(self) -> None:
        """Stop following and release the connections (idempotent).

        From a listener (on the subscriber's own thread) the close is scheduled and happens
        right after the listener returns.
        """
        if not self._thread.running:
            return
        if self._thread.in_loop_thread():
            self._thread.loop.create_task(self._close_from_inside())
            return
        try:
            self._thread.run(self._core.aclose(), timeout=10)
        finally:
            self._thread.stop()

    async def _close_from_inside(self) -> None:
        try:
            await self._core.aclose()
        finally:
            self._thread.loop.stop()

    def on_change(self, func: F | None = None, /, *, keys: Sequence[str] = (),
                  prefixes: Sequence[str] = ()) -> Any:
        """Register a change listener; see `AsyncSubscriber.on_change`."""
        return self._core.on_change(func, keys=keys, prefixes=prefixes)

    def on_invalidate(self, func: F | None = None, /, *, keys: Sequence[str] = (),
                      prefixes: Sequence[str] = ()) -> Any:
        """Register an invalidation listener; see `AsyncSubscriber.on_invalidate`."""
        return self._core.on_invalidate(func, keys=keys, prefixes=prefixes)

    def on_resync(self, func: F) -> F:
        return self._core.on_resync(func)

    def register_cache(self, cache: CacheHook) -> None:
        self._thread.loop.call_soon_threadsafe(self._core.register_cache, cache)

    def unregister_cache(self, cache: CacheHook) -> None:
        self._thread.loop.call_soon_threadsafe(self._core.unregister_cache, cache)

    def run_coroutine(self, coro: Awaitable[Any]) -> Any:
        """Run a coroutine on the subscriber's loop (for integrations such as the cache)."""
        return self._thread.run(cast(Any, coro))

    @property
    def loop_thread(self) -> LoopThread:
        return self._thread


async def _build_subscriber(config: HotReloadConfig | str | None, namespace: str | None,
                            model: type[ModelT] | None, service: str | None,
                            instance: str | None,
                            cache_file: str | os.PathLike[str] | None
                            ) -> AsyncSubscriber[ModelT]:
    return AsyncSubscriber(config, namespace=namespace, model=model, service=service,
                           instance=instance, cache_file=cache_file)
