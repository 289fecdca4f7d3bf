"""Single-flight, the stale-fill race, echoes of our own invalidations, remote invalidations."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis

import hotreload.transport._redis_cache as l2mod
from hotreload import AsyncPublisher, HotReloadConfig
from hotreload.cache import TwoLevelCache
from hotreload.transport.redis import RedisTransport

from .conftest import REDIS_URL, CacheFactory, Store, await_until, wait_until

pytestmark = pytest.mark.integration


def l2_key(namespace: str, key: str, name: str = "c") -> str:
    return f"hotreload:{{{namespace}}}:cache:{name}:{key}"


# ---------------------------------------------------------------------- single-flight


async def test_single_flight_tasks(make_cache: CacheFactory) -> None:
    store = Store(k="v")
    store.gate = asyncio.Event()
    cache = await make_cache()
    tasks = [asyncio.create_task(cache.get("k", store.load)) for _ in range(50)]
    await await_until(store.started.is_set, what="the load to start")
    await asyncio.sleep(0)  # let every task reach the flight
    store.gate.set()
    assert await asyncio.gather(*tasks) == ["v"] * 50
    assert store.count("k") == 1
    assert cache.stats()["coalesced"] == 49


async def test_single_flight_survives_a_cancelled_caller(make_cache: CacheFactory) -> None:
    store = Store(k="v")
    store.gate = asyncio.Event()
    cache = await make_cache()
    first = asyncio.create_task(cache.get("k", store.load))
    await await_until(store.started.is_set, what="the load to start")
    second = asyncio.create_task(cache.get("k", store.load))
    await asyncio.sleep(0)
    first.cancel()
    store.gate.set()
    assert await second == "v"
    assert store.count("k") == 1
    with pytest.raises(asyncio.CancelledError):
        await first


def test_single_flight_threads(sync_pair: Callable[..., TwoLevelCache]) -> None:
    store = Store(k="v")
    store.thread_gate = threading.Event()
    cache = sync_pair()
    with ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(cache.get, "k", store.load_sync) for _ in range(16)]
        wait_until(store.started.is_set, what="the load to start")
        wait_until(lambda: cache.stats()["misses"]["l1"] == 16, what="every thread to miss")
        store.thread_gate.set()
        assert [f.result(10) for f in futures] == ["v"] * 16
    assert store.count("k") == 1
    assert cache.get("k", store.load_sync) == "v"  # now an L1 hit, in this thread
    assert cache.stats()["hits"]["l1"] == 1


def test_sync_loader_runs_in_the_calling_thread(sync_pair: Callable[..., TwoLevelCache]) -> None:
    """The thread whose miss starts the load runs the loader; other threads and the async core
    wait for its result (and the loop's default executor is never used)."""
    gate, started = threading.Event(), threading.Event()
    ran_in: list[int] = []

    def loader(key: str) -> str:
        ran_in.append(threading.get_ident())
        started.set()
        if not gate.wait(30):
            raise TimeoutError("gate never opened")
        return "v"

    cache = sync_pair()
    owner_ident: list[int] = []

    def owner() -> object:
        owner_ident.append(threading.get_ident())
        return cache.get("k", loader)

    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(owner)
        wait_until(started.is_set, what="the load to start")
        others = [pool.submit(cache.get, "k", loader) for _ in range(3)]
        from_loop = cache._thread.submit(cache.core.get("k", lambda key: "not me"))
        wait_until(lambda: cache.stats()["coalesced"] == 4, what="every reader to join")
        gate.set()
        assert [f.result(10) for f in [first, *others, from_loop]] == ["v"] * 5
    assert ran_in == owner_ident


def test_nested_sync_reads_do_not_deadlock(sync_pair: Callable[..., TwoLevelCache]) -> None:
    """More concurrent misses than the loop's default executor has workers, each loader reading
    another key through the cache: every loader must run at once (the barrier) and finish."""
    n = min(32, (os.cpu_count() or 1) + 4) + 2  # asyncio's default executor size, plus 2
    cache = sync_pair()
    barrier = threading.Barrier(n, timeout=15)

    def inner(key: str) -> dict[str, str]:
        return {"id": key}

    def outer(key: str) -> dict[str, Any]:
        barrier.wait()  # all the outer loads run at the same time
        return {"order": key, "user": cache.get("user:" + key, inner)}

    with ThreadPoolExecutor(n) as pool:
        futures = [pool.submit(cache.get, f"order:{i}", outer) for i in range(n)]
        results = [f.result(30) for f in futures]
    assert results == [{"order": f"order:{i}", "user": {"id": f"user:order:{i}"}}
                       for i in range(n)]
    assert cache.stats()["loads"] == 2 * n


def test_sync_loader_error_reaches_every_waiting_thread(
        sync_pair: Callable[..., TwoLevelCache]) -> None:
    gate, started = threading.Event(), threading.Event()

    def boom(key: str) -> Any:
        started.set()
        if not gate.wait(30):
            raise TimeoutError("gate never opened")
        raise LookupError(key)

    cache = sync_pair()
    with ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(cache.get, "k", boom)]
        wait_until(started.is_set, what="the load to start")
        futures += [pool.submit(cache.get, "k", boom) for _ in range(2)]
        wait_until(lambda: cache.stats()["coalesced"] == 2, what="the others to join")
        gate.set()
        for future in futures:
            with pytest.raises(LookupError):
                future.result(10)
    assert cache.stats()["load_errors"] == 1
    assert cache.get("k", lambda key: 7) == 7
    assert cache.get("k", boom) == 7  # cached


def test_interrupted_sync_loader(sync_pair: Callable[..., TwoLevelCache]) -> None:
    """An interrupt stays in the loader's thread; the threads waiting on it get an error."""
    gate, started = threading.Event(), threading.Event()

    def interrupted(key: str) -> Any:
        started.set()
        if not gate.wait(30):
            raise TimeoutError("gate never opened")
        raise SystemExit(3)

    cache = sync_pair()
    with ThreadPoolExecutor(2) as pool:
        owner = pool.submit(cache.get, "k", interrupted)
        wait_until(started.is_set, what="the load to start")
        joiner = pool.submit(cache.get, "k", interrupted)
        wait_until(lambda: cache.stats()["coalesced"] == 1, what="the other to join")
        gate.set()
        with pytest.raises(SystemExit):
            owner.result(10)
        with pytest.raises(RuntimeError, match="interrupted"):
            joiner.result(10)
    assert cache.get("k", lambda key: 7) == 7  # the loop and the cache carry on


# ---------------------------------------------------------------------- no stale fill


async def test_local_invalidation_during_a_load(make_cache: CacheFactory, raw_redis: redis.Redis,
                                                namespace: str) -> None:
    store = Store(k="old")
    store.gate = asyncio.Event()
    cache = await make_cache()
    slow = asyncio.create_task(cache.get("k", store.load))
    await await_until(store.started.is_set, what="the load to read 'old'")
    store.rows["k"] = "new"
    await cache.invalidate("k")
    store.gate.set()
    assert await slow == "old"  # it started before the invalidation: that answer is fair
    assert "k" not in cache.l1
    assert raw_redis.get(l2_key(namespace, "k")) is None
    assert cache.stats()["stale_fills_skipped"] >= 1
    store.gate = None
    assert await cache.get("k", store.load) == "new"


async def test_a_new_reader_does_not_join_a_stale_load(make_cache: CacheFactory) -> None:
    store = Store(k="old")
    gate = store.gate = asyncio.Event()
    cache = await make_cache()
    slow = asyncio.create_task(cache.get("k", store.load))
    await await_until(store.started.is_set, what="the load to read 'old'")
    store.rows["k"] = "new"
    await cache.invalidate("k")
    store.gate = None  # the next load is not held
    assert await cache.get("k", store.load) == "new"
    assert store.count("k") == 2
    assert not slow.done()
    gate.set()
    assert await slow == "old"
    assert await cache.get("k", store.load) == "new"  # the stale load did not overwrite L1
    assert store.count("k") == 2


async def test_remote_invalidation_during_a_load(make_cache: CacheFactory,
                                                 raw_redis: redis.Redis, namespace: str) -> None:
    """The invalidation comes from another pod, over the channel, while our load is held."""
    store = Store(k="old")
    gate = store.gate = asyncio.Event()
    reader = await make_cache()
    writer = await make_cache()
    slow = asyncio.create_task(reader.get("k", store.load))
    await await_until(store.started.is_set, what="the load to read 'old'")
    store.rows["k"] = "new"
    await writer.invalidate("k")
    await await_until(lambda: reader.stats()["events"] == 1, what="the reader to get the event")
    assert not slow.done()
    gate.set()
    assert await slow == "old"
    assert "k" not in reader.l1
    assert raw_redis.get(l2_key(namespace, "k")) is None
    store.gate = None
    assert await reader.get("k", store.load) == "new"


async def test_l2_fill_is_fenced_by_another_pods_invalidation(
        make_cache: CacheFactory, raw_redis: redis.Redis, namespace: str) -> None:
    """Even before the event reaches the slow pod, Redis refuses its old value."""
    store = Store(k="old")
    gate = store.gate = asyncio.Event()
    reader = await make_cache()
    writer = await make_cache()
    slow = asyncio.create_task(reader.get("k", store.load))
    await await_until(store.started.is_set, what="the load to read 'old'")
    # Hide the event from the reader: it is the L2 generation alone that must refuse the fill.
    reader.subscriber.unregister_cache(reader.hook)
    store.rows["k"] = "new"
    await writer.invalidate("k")
    gate.set()
    assert await slow == "old"
    assert raw_redis.get(l2_key(namespace, "k")) is None
    store.gate = None
    assert await writer.get("k", store.load) == "new"


def gen_key(namespace: str, key: str, name: str = "c") -> str:
    return f"hotreload:{{{namespace}}}:cachegen:{name}:{key}"


async def test_expired_generation_cannot_be_recreated_equal(
        make_cache: CacheFactory, raw_redis: redis.Redis, namespace: str) -> None:
    """ABA: the generation the load read expires, and the next invalidation must not recreate
    the same value (an INCR from nothing would give 1 again and let the old value through)."""
    store = Store(k="old")
    reader = await make_cache()
    writer = await make_cache()
    await writer.invalidate("k")  # an old invalidation: the key has a generation
    gate = store.gate = asyncio.Event()
    slow = asyncio.create_task(reader.get("k", store.load))
    await await_until(store.started.is_set, what="the load to read 'old'")
    reader.subscriber.unregister_cache(reader.hook)  # only the L2 fence may refuse the fill
    assert raw_redis.delete(gen_key(namespace, "k")) == 1  # the generation expires meanwhile
    store.rows["k"] = "new"
    await writer.invalidate("k")
    gate.set()
    assert await slow == "old"
    assert raw_redis.get(l2_key(namespace, "k")) is None
    store.gate = None
    assert await writer.get("k", store.load) == "new"


async def test_generation_ttl_expiry_does_not_reopen_the_fence(
        monkeypatch: pytest.MonkeyPatch, raw_redis: redis.Redis, namespace: str) -> None:
    """The reviewer's case at the L2 level, with the generation TTL really expiring."""
    monkeypatch.setattr(l2mod, "GENERATION_TTL_MS", 200)
    transport = RedisTransport(HotReloadConfig.from_url(REDIS_URL).redis)
    try:
        store = transport.cache_store(namespace, "c")
        await store.invalidate(["k"])
        _, gens = await store.read("k")
        await await_until(lambda: not raw_redis.exists(gen_key(namespace, "k")),
                          what="the generation to expire")
        await store.invalidate(["k"])
        assert not await store.fill("k", b'"old"', gens, 60)
        assert raw_redis.get(l2_key(namespace, "k")) is None
        await store.put("k", b'"new"', 60)  # a write also draws a fresh generation
        assert not await store.fill("k", b'"old"', gens, 60)
        _, gens = await store.read("k")
        assert await store.fill("k", b'"fresh"', gens, 60)  # an unchanged generation fills
    finally:
        await transport.aclose()


# ---------------------------------------------------------------------- echoes


async def test_own_invalidation_echo_does_not_reload(make_cache: CacheFactory) -> None:
    store = Store(k=1)
    cache = await make_cache()
    await cache.get("k", store.load)
    store.rows["k"] = 2
    await cache.invalidate("k")
    assert await cache.get("k", store.load) == 2  # reloaded once, right after invalidate
    await await_until(lambda: cache.stats()["echoes_skipped"] == 1, what="the echo")
    assert await cache.get("k", store.load) == 2
    assert store.count("k") == 2
    assert cache.stats()["hits"]["l1"] == 1


async def test_echo_of_set_keeps_the_written_value(make_cache: CacheFactory) -> None:
    cache = await make_cache()
    await cache.set("k", "written")
    await await_until(lambda: cache.stats()["echoes_skipped"] == 1, what="the echo")
    assert "k" in cache.l1
    assert await cache.get("k", lambda key: "loaded") == "written"


async def test_foreign_invalidation_drops_l2_too(make_cache: CacheFactory,
                                                  config: HotReloadConfig,
                                                  raw_redis: redis.Redis, namespace: str) -> None:
    """An invalidation published without touching L2 (CLI, daemon): each pod deletes L2."""
    store = Store(k="old")
    cache = await make_cache()
    await cache.get("k", store.load)
    assert raw_redis.exists(l2_key(namespace, "k"))
    store.rows["k"] = "new"
    async with AsyncPublisher(config, source="cli") as pub:
        await pub.invalidate(keys=["k"])
    await await_until(lambda: cache.stats()["remote_invalidations"] == 1, what="the event")
    await await_until(lambda: not raw_redis.exists(l2_key(namespace, "k")), what="L2 deletion")
    assert await cache.get("k", store.load) == "new"
    assert store.count("k") == 2


async def test_foreign_prefix_and_everything(make_cache: CacheFactory, config: HotReloadConfig,
                                             raw_redis: redis.Redis, namespace: str) -> None:
    cache = await make_cache()
    for key in ("a:1", "a:2", "b:1"):
        await cache.get(key, lambda k: k)
    async with AsyncPublisher(config, source="daemon") as pub:
        await pub.invalidate(prefixes=["a:"])
        await await_until(lambda: not raw_redis.exists(l2_key(namespace, "a:1"),
                                                       l2_key(namespace, "a:2")),
                          what="prefix deletion")
        assert "b:1" in cache.l1
        assert "a:1" not in cache.l1
        await pub.invalidate(everything=True)
        await await_until(lambda: not raw_redis.exists(l2_key(namespace, "b:1")),
                          what="full deletion")
    assert len(cache.l1) == 0


def test_sync_invalidation_during_a_threaded_load(sync_pair: Callable[..., TwoLevelCache],
                                                  raw_redis: redis.Redis,
                                                  namespace: str) -> None:
    store = Store(k="old")
    store.thread_gate = threading.Event()
    cache = sync_pair()
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(cache.get, "k", store.load_sync)
        wait_until(store.started.is_set, what="the load to read 'old'")
        store.rows["k"] = "new"
        cache.invalidate("k")
        store.thread_gate.set()
        assert slow.result(10) == "old"
    assert raw_redis.get(l2_key(namespace, "k")) is None
    assert cache.get("k", store.load_sync) == "new"
    assert cache.get("k", store.load_sync) == "new"
    assert store.count("k") == 2


async def test_set_during_a_load_wins(make_cache: CacheFactory, raw_redis: redis.Redis,
                                      namespace: str) -> None:
    store = Store(k="loaded")
    gate = store.gate = asyncio.Event()
    cache = await make_cache()
    slow = asyncio.create_task(cache.get("k", store.load))
    await await_until(store.started.is_set, what="the load to start")
    await cache.set("k", "written")
    gate.set()
    assert await slow == "loaded"
    assert await cache.get("k", store.load) == "written"
    assert raw_redis.get(l2_key(namespace, "k")) == b'"written"'


async def test_invalidation_keys_are_shared_by_cache_names(
        make_cache: CacheFactory, raw_redis: redis.Redis, namespace: str) -> None:
    """A cache named "a" invalidating k also drops k from cache "b" (L1 and L2)."""
    a = await make_cache(name="a")
    b = await make_cache(name="b")
    await a.get("k", lambda key: "a-value")
    await b.get("k", lambda key: "b-value")
    await a.invalidate("k")
    await await_until(lambda: "k" not in b.l1, what="cache b to drop k")
    await await_until(lambda: not raw_redis.exists(l2_key(namespace, "k", "b")),
                      what="cache b's L2 copy to go")
    assert b.stats()["remote_invalidations"] == 1
    assert a.stats()["remote_invalidations"] == 0
