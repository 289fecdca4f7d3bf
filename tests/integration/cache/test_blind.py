"""Safe when blind: no L1 while the link is down or resyncing, and a real dropped link."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis

from hotreload import Invalidation
from hotreload.cache import TwoLevelCache

from .conftest import CacheFactory, Store, SubFactory, await_until

pytestmark = pytest.mark.integration


async def test_untrusted_l1_is_neither_served_nor_filled(make_cache: CacheFactory) -> None:
    store = Store(k="v")
    cache = await make_cache()
    await cache.get("k", store.load)
    cache.hook.set_trusted(False)
    assert await cache.get("k", store.load) == "v"  # from L2, not L1
    assert await cache.get("j", store.load) is None
    assert "j" not in cache.l1  # nothing filled while blind
    s = cache.stats()
    assert s["hits"]["l1"] == 0
    assert s["hits"]["l2"] == 1
    assert s["trusted"] is False
    cache.hook.set_trusted(True)
    assert await cache.get("k", store.load) == "v"
    assert cache.stats()["hits"]["l1"] == 1
    assert store.count("k") == 1


async def test_going_blind_spoils_loads_in_flight(make_cache: CacheFactory) -> None:
    import asyncio

    store = Store(k="v")
    gate = store.gate = asyncio.Event()
    cache = await make_cache()
    slow = asyncio.create_task(cache.get("k", store.load))
    await await_until(store.started.is_set, what="the load to start")
    cache.hook.set_trusted(False)
    cache.hook.set_trusted(True)
    gate.set()
    assert await slow == "v"
    assert "k" not in cache.l1


async def test_resync_invalidation_clears_l1_only(make_cache: CacheFactory,
                                                  raw_redis: redis.Redis,
                                                  namespace: str) -> None:
    cache = await make_cache()
    for key in ("a", "b"):
        await cache.get(key, lambda k: k)
    cache.hook.invalidate(Invalidation(namespace, 7, all=True, source="resync", reason="resync"))
    assert len(cache.l1) == 0
    assert raw_redis.exists(f"hotreload:{{{namespace}}}:cache:c:a") == 1  # L2 is kept
    assert cache.stats()["remote_invalidations"] == 0


class _WriteWhileDown:
    """A cache hook that, the first time the link goes down after `arm`, runs ``write`` while
    the subscriber's loop is blocked: the write is certain to happen while the link is down."""

    def __init__(self, write: Callable[[], Any]) -> None:
        self.write = write
        self.armed = False
        self.fired = threading.Event()
        self.events: list[Invalidation] = []

    def invalidate(self, event: Invalidation) -> None:
        if self.armed:
            self.events.append(event)

    def set_trusted(self, trusted: bool) -> None:
        if self.armed and not trusted and not self.fired.is_set():
            self.write()
            self.fired.set()


def _pubsub_client_ids(raw: redis.Redis, name: str) -> list[int]:
    return [int(c["id"]) for c in raw.client_list()
            if c.get("name") == name and (c.get("sub") not in (None, "0") or "P" in c["flags"])]


@pytest.mark.parametrize("trim_log", [False, True], ids=["replayed", "log-trimmed"])
async def test_dropped_link_never_serves_a_write_missed_meanwhile(
        make_subscriber: SubFactory, make_cache: CacheFactory,
        sync_pair: Callable[..., TwoLevelCache], raw_redis: redis.Redis, namespace: str,
        trim_log: bool) -> None:
    store = Store(k="old", other="x")
    client_name = f"hr-cache-test-{uuid.uuid4().hex[:8]}"
    reader_sub = await make_subscriber(client_name=client_name)
    reader = await make_cache(reader_sub)
    writer = sync_pair()  # another "pod", on its own loop thread and connections
    # the reader follows an invalidation history (protocol §9): a gap in it can be replayed
    writer.invalidate("warm-up")
    await await_until(lambda: reader.stats()["events"] == 1, what="the first invalidation")
    assert await reader.get("k", store.load) == "old"
    assert await reader.get("other", store.load) == "x"
    assert "k" in reader.l1

    def write() -> None:
        store.rows["k"] = "new"
        writer.invalidate("k")  # runs on the writer's thread; the reader cannot hear it
        if trim_log:  # the invalidation log lost what the reader missed: it cannot replay
            raw_redis.delete(f"hotreload:{{{namespace}}}:invlog")

    probe = _WriteWhileDown(write)
    reader_sub.register_cache(probe)
    ids = _pubsub_client_ids(raw_redis, client_name)
    assert len(ids) == 1, raw_redis.client_list()
    reconnects = reader_sub.stats.reconnects
    probe.armed = True
    raw_redis.client_kill_filter(_id=str(ids[0]))

    await await_until(probe.fired.is_set, what="the link to drop")
    seen = []
    while not reader.trusted:  # blind: every read must already see the new row
        seen.append(await reader.get("k", store.load))
    await await_until(lambda: reader.trusted, what="the reader to resync")
    for _ in range(3):
        seen.append(await reader.get("k", store.load))
    assert seen
    assert set(seen) == {"new"}, seen
    assert reader_sub.stats.reconnects >= reconnects + 1
    if trim_log:
        assert "other" not in reader.l1  # what cannot be replayed clears all of L1
        assert [(e.all, e.reason) for e in probe.events] == [(True, "resync")]
    else:
        assert "other" in reader.l1  # a replay only drops what the missed events name
        assert [(e.keys, e.reason) for e in probe.events] == [(("k",), "event")]
