"""What subscribers tell the application: event types, the cache seam, and their dispatch."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

from ..wire import Change

log = logging.getLogger("hotreload.subscriber")

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class SettingsChange:
    """What a change listener receives: the changes of one version, old and new settings.

    Versions count within an ``epoch`` (docs/protocol.md §4.5): when the namespace was lost or
    recovered on the server, a new epoch starts again at version 1, so ``version`` can be
    smaller than the one before; ``epoch_changed`` is then True (and ``old_epoch`` says which
    history the old settings came from).
    """

    namespace: str
    version: int
    changes: tuple[Change, ...]
    old_settings: Any
    new_settings: Any
    source: str = ""
    origin: str = ""
    ts: float = 0.0
    resync: bool = False
    epoch: str | None = None
    old_epoch: str | None = None

    @property
    def epoch_changed(self) -> bool:
        return self.epoch != self.old_epoch

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(c.key for c in self.changes)

    def matches(self, keys: Sequence[str], prefixes: Sequence[str]) -> bool:
        if not keys and not prefixes:
            return True
        return any(key_matches(c.key, keys, prefixes) for c in self.changes)


@dataclass(frozen=True, slots=True)
class Invalidation:
    """What caches and invalidation listeners receive. ``all`` means: drop everything."""

    namespace: str
    version: int
    keys: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ()
    all: bool = False
    origin: str = ""
    source: str = ""
    reason: Literal["event", "resync"] = "event"

    def matches(self, keys: Sequence[str], prefixes: Sequence[str]) -> bool:
        """Whether a listener filtered on ``keys``/``prefixes`` should hear of this event."""
        if self.all or not (keys or prefixes):
            return True
        if any(key_matches(k, keys, prefixes) for k in self.keys):
            return True
        return any(x.startswith(q) or q.startswith(x)
                   for x in self.prefixes for q in (*keys, *prefixes))


@dataclass(frozen=True, slots=True)
class Resync:
    """What resync listeners receive."""

    namespace: str
    reason: str
    from_version: int
    to_version: int
    replayed: bool


class CacheHook(Protocol):
    """What a subscriber tells a local cache (`TwoLevelCache` registers one)."""

    def invalidate(self, event: Invalidation) -> None:
        """Drop the entries the event names (or all of them)."""

    def set_trusted(self, trusted: bool) -> None:
        """False while the link is down or resyncing: do not serve from L1."""


@dataclass(slots=True)
class _Listener:
    func: Callable[[Any], Any]
    keys: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ()


class Dispatcher:
    """Registered listeners and cache hooks of one subscriber, and their (isolated) calls.

    A listener or hook that raises is logged and counted in `errors`; the others still run.
    """

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.errors = 0
        self._change: list[_Listener] = []
        self._invalidate: list[_Listener] = []
        self._resync: list[Callable[[Resync], Any]] = []
        self._caches: list[CacheHook] = []

    @property
    def wants_changes(self) -> bool:
        return bool(self._change)

    def on_change(self, func: F | None = None, /, *, keys: Sequence[str] = (),
                  prefixes: Sequence[str] = ()) -> Any:
        def register(f: F) -> F:
            self._change.append(_Listener(f, tuple(keys), tuple(prefixes)))
            return f

        return register(func) if func is not None else register

    def on_invalidate(self, func: F | None = None, /, *, keys: Sequence[str] = (),
                      prefixes: Sequence[str] = ()) -> Any:
        def register(f: F) -> F:
            self._invalidate.append(_Listener(f, tuple(keys), tuple(prefixes)))
            return f

        return register(func) if func is not None else register

    def on_resync(self, func: F) -> F:
        self._resync.append(func)
        return func

    def add_cache(self, cache: CacheHook) -> None:
        self._caches.append(cache)

    def remove_cache(self, cache: CacheHook) -> None:
        if cache in self._caches:
            self._caches.remove(cache)

    def set_trusted(self, trusted: bool) -> None:
        for cache in self._caches:
            try:
                cache.set_trusted(trusted)
            except Exception:
                self.errors += 1
                log.exception("cache hook failed on set_trusted(%s)", trusted)

    async def invalidation(self, event: Invalidation) -> None:
        for cache in self._caches:
            try:
                cache.invalidate(event)
            except Exception:
                self.errors += 1
                log.exception("cache hook failed on an invalidation")
        for lst in self._invalidate:
            if event.matches(lst.keys, lst.prefixes):
                await self._call(lst.func, event)

    async def change(self, event: SettingsChange) -> None:
        for lst in self._change:
            if event.matches(lst.keys, lst.prefixes):
                await self._call(lst.func, event)

    async def resync(self, event: Resync) -> None:
        for func in self._resync:
            await self._call(func, event)

    async def _call(self, func: Callable[[Any], Any], arg: Any) -> None:
        try:
            result = func(arg)
            if result is not None and inspect.isawaitable(result):
                await result
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # the subscriber itself is being stopped
            # The listener's own cancelled await: its failure, not a request to stop.
            self.errors += 1
            log.exception("listener %s was cancelled", _name(func),
                          extra={"action": "listener_error", "namespace": self.namespace})
        except Exception:
            self.errors += 1
            log.exception("listener %s failed", _name(func),
                          extra={"action": "listener_error", "namespace": self.namespace})


def _name(func: Callable[[Any], Any]) -> str:
    return str(getattr(func, "__qualname__", func))


def key_matches(key: str, keys: Sequence[str], prefixes: Sequence[str]) -> bool:
    """Whether a settings key is one of ``keys`` (or below one) or starts with a prefix."""
    for k in keys:
        if key == k or key.startswith(k + "."):
            return True
    return any(key.startswith(p) for p in prefixes)
