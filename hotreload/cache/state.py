"""Pure bookkeeping of the two-level cache: loads in flight, fences, echoes and counters.

No I/O: the async cache drives these from its event loop (one thread), so nothing here locks.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Final

from .l1 import L1Cache

#: How many versions of our own invalidations we remember while waiting for their echo.
MAX_OWN_VERSIONS: Final = 1024


@dataclass(frozen=True, slots=True)
class Scope:
    """What one invalidation covers: some keys, some prefixes, or everything."""

    keys: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ()
    all: bool = False

    def covers(self, key: str) -> bool:
        return self.all or key in self.keys or any(key.startswith(p) for p in self.prefixes)


@dataclass(slots=True, eq=False)
class Flight:
    """One load in flight. ``stale`` is set when an invalidation covering it lands meanwhile:
    the load's result is still returned to the callers that were waiting, but never cached."""

    key: str
    stale: bool = False
    task: asyncio.Future[Any] | None = None


class Flights:
    """Single-flight table: at most one load per key is joinable at a time."""

    def __init__(self) -> None:
        self._by_key: dict[str, Flight] = {}

    def __len__(self) -> int:
        return len(self._by_key)

    def get(self, key: str) -> Flight | None:
        return self._by_key.get(key)

    def start(self, key: str) -> Flight:
        flight = Flight(key)
        self._by_key[key] = flight
        return flight

    def finish(self, flight: Flight) -> None:
        if self._by_key.get(flight.key) is flight:
            del self._by_key[flight.key]

    def spoil(self, scope: Scope) -> int:
        """Mark the covered loads stale and make them unjoinable; returns how many."""
        if scope.all:
            doomed = list(self._by_key)
        elif not scope.prefixes:
            doomed = [k for k in scope.keys if k in self._by_key]
        else:
            doomed = [k for k in self._by_key if scope.covers(k)]
        for key in doomed:
            self._by_key.pop(key).stale = True
        return len(doomed)


class Fences:
    """Invalidations whose L2 deletion is still in flight: L2 reads they cover are ignored."""

    def __init__(self) -> None:
        self._active: list[Scope] = []

    def __len__(self) -> int:
        return len(self._active)

    def add(self, scope: Scope) -> None:
        self._active.append(scope)

    def remove(self, scope: Scope) -> None:
        self._active.remove(scope)

    def covers(self, key: str) -> bool:
        return any(s.covers(key) for s in self._active)


@dataclass(slots=True)
class _Pending:
    scope: Scope
    consumed: bool = False


class Echoes:
    """Recognises the echo of an invalidation this cache published (and already applied).

    An echo is matched exactly by the version the publish returned; an echo that arrives before
    the publish call returns is matched by its content among our publishes in progress.
    """

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self._pending: list[_Pending] = []
        self._versions: dict[int, None] = {}

    def begin(self, scope: Scope) -> _Pending:
        pending = _Pending(scope)
        self._pending.append(pending)
        return pending

    def end(self, pending: _Pending, version: int | None) -> None:
        self._pending.remove(pending)
        if version is not None and not pending.consumed:
            self._versions[version] = None
            while len(self._versions) > MAX_OWN_VERSIONS:
                del self._versions[next(iter(self._versions))]

    def is_echo(self, origin: str, version: int, scope: Scope) -> bool:
        if origin != self.origin:
            return False
        if version in self._versions:
            del self._versions[version]
            return True
        for pending in self._pending:
            if not pending.consumed and pending.scope == scope:
                pending.consumed = True
                return True
        return False


@dataclass(slots=True)
class CacheCounters:
    """Counters beyond the L1's own (hits/misses of L1 live in `L1Cache`)."""

    l2_hits: int = 0
    l2_misses: int = 0
    l3_hits: int = 0
    l3_misses: int = 0
    loads: int = 0
    load_errors: int = 0
    coalesced: int = 0
    stale_fills_skipped: int = 0
    echoes_skipped: int = 0
    events: int = 0
    remote_invalidations: int = 0
    l2_errors: int = 0

    def as_dict(self, l1: L1Cache) -> dict[str, Any]:
        return {
            "hits": {"l1": l1.hits, "l2": self.l2_hits, "l3": self.l3_hits},
            "misses": {"l1": l1.misses, "l2": self.l2_misses, "l3": self.l3_misses},
            "loads": self.loads, "load_errors": self.load_errors, "evictions": l1.evictions,
            "invalidations": l1.invalidations, "coalesced": self.coalesced,
            "stale_fills_skipped": self.stale_fills_skipped, "events": self.events,
            "echoes_skipped": self.echoes_skipped,
            "remote_invalidations": self.remote_invalidations, "l2_errors": self.l2_errors,
            "size": len(l1), "trusted": l1.enabled,
        }


def retrieve(task: asyncio.Future[Any]) -> None:
    """Mark a load's exception as retrieved: its callers may all have been cancelled."""
    if not task.cancelled():
        task.exception()
