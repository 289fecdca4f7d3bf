"""The two-level read-through cache: L1 in-process → L2 Redis → L3 the application's loader.

`AsyncTwoLevelCache` is the core; `TwoLevelCache` is its sync facade (its L1 hits never leave
the calling thread). Both attach to a subscriber, which tells them about invalidation events
and about link health (`CacheHook`). The guarantees and their limits are in docs/cache.md.
"""

from .core import AsyncTwoLevelCache, Loader
from .l1 import L1Cache
from .serializers import JsonSerializer, Serializer
from .sync import TwoLevelCache

__all__ = ["AsyncTwoLevelCache", "JsonSerializer", "L1Cache", "Loader", "Serializer",
           "TwoLevelCache"]
