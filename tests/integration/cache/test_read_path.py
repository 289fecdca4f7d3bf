"""The read path L1 → L2 → L3, TTLs, negative caching, serializers and explicit writes."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis

from hotreload.cache import AsyncTwoLevelCache

from .conftest import CacheFactory, Store, await_until

pytestmark = pytest.mark.integration


async def test_levels_in_order(make_cache: CacheFactory, raw_redis: redis.Redis,
                               namespace: str) -> None:
    store = Store(a={"id": 1})
    one = await make_cache()
    two = await make_cache()  # another pod: its own subscriber, same cache name

    assert await one.get("a", store.load) == {"id": 1}  # L3
    assert store.count("a") == 1
    assert json.loads(raw_redis.get(f"hotreload:{{{namespace}}}:cache:c:a") or b"") == {"id": 1}
    assert await one.get("a", store.load) == {"id": 1}  # L1
    assert await two.get("a", store.load) == {"id": 1}  # L2
    assert await two.get("a", store.load) == {"id": 1}  # L1
    assert store.count("a") == 1
    s1, s2 = one.stats(), two.stats()
    assert (s1["hits"]["l1"], s1["hits"]["l3"], s1["loads"]) == (1, 1, 1)
    assert (s2["hits"]["l1"], s2["hits"]["l2"], s2["loads"]) == (1, 1, 0)
    assert s2["misses"]["l1"] == 1


async def test_sync_loader_is_accepted(make_cache: CacheFactory) -> None:
    cache = await make_cache()
    assert await cache.get("k", lambda key: key.upper()) == "K"
    assert await cache.get("k", lambda key: "other") == "K"


async def test_l1_ttl_and_per_call_ttl(make_cache: CacheFactory) -> None:
    store = Store(a=1, b=2)
    cache = await make_cache(ttl=60.0)
    await cache.get("a", store.load, ttl=0.05)
    await cache.get("b", store.load)
    await await_until(lambda: "a" not in cache.l1, what="L1 entry expiry")
    assert "b" in cache.l1
    assert await cache.get("a", store.load) == 1  # from L2 (l2_ttl is longer)
    assert store.count("a") == 1
    assert cache.stats()["hits"]["l2"] == 1


async def test_l2_ttl(make_cache: CacheFactory, raw_redis: redis.Redis, namespace: str) -> None:
    cache = await make_cache(l2_ttl=30.0)
    await cache.get("a", Store(a=1).load)
    ttl_ms = raw_redis.pttl(f"hotreload:{{{namespace}}}:cache:c:a")
    assert 0 < ttl_ms <= 30_000


async def test_none_is_not_cached_unless_asked(make_cache: CacheFactory,
                                               raw_redis: redis.Redis, namespace: str) -> None:
    store = Store()
    cache = await make_cache()
    assert await cache.get("missing", store.load) is None
    assert await cache.get("missing", store.load) is None
    assert store.count("missing") == 2

    assert await cache.get("gone", store.load, cache_none=True) is None
    assert await cache.get("gone", store.load, cache_none=True) is None
    assert store.count("gone") == 1
    assert raw_redis.get(f"hotreload:{{{namespace}}}:cache:c:gone") == b"null"
    other = await make_cache()
    assert await other.get("gone", store.load) is None  # negative entry served from L2
    assert store.count("gone") == 1
    assert cache.stats()["misses"]["l3"] == 3


class _Upper:
    """A toy serializer: values are strings stored upper-cased, read back lower-cased."""

    def dumps(self, value: Any) -> bytes:
        return str(value).upper().encode()

    def loads(self, data: bytes) -> Any:
        return data.decode().lower()


async def test_custom_serializer(make_cache: CacheFactory, raw_redis: redis.Redis,
                                 namespace: str) -> None:
    cache = await make_cache(serializer=_Upper())
    await cache.get("k", lambda key: "value")
    assert raw_redis.get(f"hotreload:{{{namespace}}}:cache:c:k") == b"VALUE"
    other = await make_cache(serializer=_Upper())
    assert await other.get("k", lambda key: "never") == "value"


async def test_unreadable_l2_entry_is_a_miss(make_cache: CacheFactory, raw_redis: redis.Redis,
                                             namespace: str) -> None:
    raw_redis.set(f"hotreload:{{{namespace}}}:cache:c:k", b"{not json")
    cache = await make_cache()
    assert await cache.get("k", lambda key: "fresh") == "fresh"
    assert json.loads(raw_redis.get(f"hotreload:{{{namespace}}}:cache:c:k") or b"") == "fresh"


async def test_unserialisable_value_raises(make_cache: CacheFactory) -> None:
    cache = await make_cache()
    with pytest.raises(TypeError):
        await cache.get("k", lambda key: object())
    assert "k" not in cache.l1


async def test_loader_error_propagates_and_caches_nothing(make_cache: CacheFactory) -> None:
    cache = await make_cache()

    def boom(key: str) -> Any:
        raise LookupError(key)

    with pytest.raises(LookupError):
        await cache.get("k", boom)
    assert cache.stats()["load_errors"] == 1
    assert await cache.get("k", lambda key: 7) == 7


async def test_set_writes_through_and_other_pods_drop(make_cache: CacheFactory) -> None:
    store = Store(k="old")
    one = await make_cache()
    two = await make_cache()
    assert await two.get("k", store.load) == "old"
    await one.set("k", "new")
    assert await one.get("k", store.load) == "new"  # L1 of the writer
    await await_until(lambda: "k" not in two.l1, what="the other pod dropping k")
    assert await two.get("k", store.load) == "new"  # L2
    assert store.count("k") == 1


async def test_invalidate_prefix_and_clear(make_cache: CacheFactory, raw_redis: redis.Redis,
                                           namespace: str) -> None:
    store = Store(**{"user:1": 1, "user:2": 2, "order:1": 3, "us[er]*": 4})
    cache = await make_cache()
    for key in store.rows:
        await cache.get(key, store.load)
    await cache.invalidate_prefix("user:")
    assert "user:1" not in cache.l1
    assert "user:2" not in cache.l1
    assert "order:1" in cache.l1
    assert "us[er]*" in cache.l1
    base = f"hotreload:{{{namespace}}}:cache:c:"
    assert raw_redis.exists(base + "user:1", base + "user:2") == 0
    assert raw_redis.exists(base + "order:1", base + "us[er]*") == 2
    await cache.clear()
    assert len(cache.l1) == 0
    assert raw_redis.exists(base + "order:1", base + "us[er]*") == 0


async def test_l1_bound(make_cache: CacheFactory) -> None:
    cache: AsyncTwoLevelCache = await make_cache(max_entries=64)
    for i in range(200):
        await cache.get(f"k{i}", lambda key: key)
    assert len(cache.l1) <= 64
    assert cache.stats()["evictions"] >= 136
