"""The L1 cache: a bounded, in-process map with per-entry TTL and CLOCK (second-chance) eviction.

No I/O and no event loop: this is the pure bookkeeping under `TwoLevelCache`. The hit path is a
dict lookup, a clock read and a flag store (see docs/cache.md for the measurements):

* an entry is a 3-item list ``[value, expires_at, referenced]`` so a hit allocates nothing but
  the hits counter's int, and marks the entry with a flag store instead of moving it;
* the dict's insertion order is the clock's dial: eviction walks from the oldest insertion,
  gives referenced entries a second chance (clears the flag, re-inserts them at the end) and
  drops the others, in batches of ``max_entries // 64`` so its cost is amortised;
* reads never mutate the dict (an expired entry is only skipped), so any thread may call `get`
  while one thread at a time mutates under the lock.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, Final

#: Entries evicted per eviction pass, as a fraction of ``max_entries``.
EVICT_FRACTION: Final = 64

_VALUE: Final = 0
_EXPIRES: Final = 1
_REF: Final = 2


class L1Cache:
    """A bounded LRU-ish map with per-entry TTL; thread-safe, hits lock-free.

    ``enabled`` switches serving off (``get`` then misses) without dropping entries; the
    two-level cache uses it while its invalidation link is not trusted.
    """

    __slots__ = ("_clock", "_data", "_lock", "enabled", "evictions", "hits", "invalidations",
                 "max_entries", "misses", "ttl")

    def __init__(self, max_entries: int = 10_000, *, ttl: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        self.max_entries = max_entries
        self.ttl = ttl
        self.enabled = True
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self.invalidations = 0
        self._clock = clock
        self._data: dict[Hashable, list[Any]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: Hashable) -> bool:
        entry = self._data.get(key)
        return entry is not None and entry[_EXPIRES] > self._clock()

    # ------------------------------------------------------------------ the hit path

    def get(self, key: Hashable, default: Any = None) -> Any:
        """The value of a live entry, else ``default`` (pass a sentinel to tell a cached None)."""
        if self.enabled:
            entry = self._data.get(key)
            if entry is not None and entry[1] > self._clock():
                entry[2] = True
                self.hits += 1
                return entry[0]
        self.misses += 1
        return default

    # ------------------------------------------------------------------ mutations

    def set(self, key: Hashable, value: Any, ttl: float | None = None) -> None:
        """Insert or replace an entry living ``ttl`` seconds (the cache's default if None)."""
        expires = self._clock() + (self.ttl if ttl is None else ttl)
        with self._lock:
            data = self._data
            if key not in data and len(data) >= self.max_entries:
                self._evict()
            data[key] = [value, expires, False]

    def invalidate(self, key: Hashable) -> bool:
        """Drop one entry; True if it was present."""
        with self._lock:
            found = self._data.pop(key, None) is not None
        if found:
            self.invalidations += 1
        return found

    def invalidate_prefix(self, prefix: str) -> int:
        """Drop every entry whose (string) key starts with ``prefix``; returns how many."""
        with self._lock:
            data = self._data
            doomed = [k for k in data if isinstance(k, str) and k.startswith(prefix)]
            for k in doomed:
                del data[k]
        self.invalidations += len(doomed)
        return len(doomed)

    def clear(self) -> int:
        """Drop every entry; returns how many there were."""
        with self._lock:
            n = len(self._data)
            self._data = {}
        self.invalidations += n
        return n

    def stats(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "evictions": self.evictions,
                "invalidations": self.invalidations, "size": len(self._data),
                "max_entries": self.max_entries}

    # ------------------------------------------------------------------ eviction

    def _evict(self) -> None:
        """One CLOCK pass from the oldest insertion; caller holds the lock."""
        data = self._data
        want = max(1, self.max_entries // EVICT_FRACTION)
        now = self._clock()
        victims: list[Hashable] = []
        second_chance: list[Hashable] = []
        for key, entry in data.items():
            if entry[_REF] and entry[_EXPIRES] > now:
                second_chance.append(key)
            else:
                victims.append(key)
                if len(victims) >= want:
                    break
        for key in victims:
            del data[key]
        for key in second_chance:
            entry = data.pop(key)
            entry[_REF] = False
            data[key] = entry
        if not victims:
            # Every entry was referenced: their flags are clear now, so evict the oldest.
            for key in list(itertools.islice(data, want)):
                del data[key]
                victims.append(key)
        self.evictions += len(victims)
