"""The reconciler against real Redis: per-namespace failures, oversized invalidations."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from daemon_helpers import REDIS_URL, async_wait_for

from hotreload import protocol as p
from hotreload.config import build_config
from hotreload.daemon.metrics import Metrics
from hotreload.daemon.reconciler import Reconciler
from hotreload.publisher import AsyncPublisher

pytestmark = pytest.mark.integration


@pytest.fixture
async def client() -> AsyncIterator[aioredis.Redis]:
    redis = aioredis.Redis.from_url(REDIS_URL)
    try:
        yield redis
    finally:
        await redis.aclose()


async def running(rec: Reconciler) -> asyncio.Task[None]:
    task = asyncio.create_task(rec.run())
    await async_wait_for(lambda: rec.redis_up, 10, "the first probe")
    return task


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_a_wrong_typed_snapshot_key_does_not_starve_other_namespaces(
    client: aioredis.Redis, prefix: str
) -> None:
    config = build_config({"redis": {"url": REDIS_URL}, "prefix": prefix})
    poisoned = p.keys_for("aaa", prefix).snapshot
    await client.set(poisoned, "oops")
    publisher = AsyncPublisher(config, source="daemon", client=client)
    metrics = Metrics()
    reconciles: list[bool] = []
    rec = Reconciler(publisher, metrics, ping=client.ping, backoff_max=0.2,
                     on_reconnect=lambda: reconciles.append(True))
    task = await running(rec)
    try:
        rec.open_gate()
        await rec.desired("aaa", {"x": 1}, source="t")
        await rec.desired("bbb", {"y": 2}, source="t")
        await async_wait_for(lambda: "bbb" in rec.versions, 10, "bbb published")
        assert await publisher.version("bbb") == 1
        await async_wait_for(
            lambda: (metrics.registry.get_sample_value("hotreload_publish_errors_total")
                     or 0) >= 3, 10, "aaa retried")
        assert rec.redis_up is True
        assert reconciles == []
        assert metrics.registry.get_sample_value("hotreload_redis_reconnects_total") == 0
        assert rec.pending() == ["aaa"]
        assert "WRONGTYPE" in rec.status()["publish_errors"]["aaa"]
        assert rec.sources["t"].rejections == {"publish": 1}
        await client.delete(poisoned)  # repaired: the next retry publishes it
        await async_wait_for(lambda: not rec.pending(), 10, "aaa published")
        assert (await publisher.snapshot("aaa")).settings == {"x": 1}
        assert rec.status()["publish_errors"] == {}
        assert reconciles == []
    finally:
        await stop(task)
        await client.delete(poisoned)


async def test_an_oversized_merged_invalidation_invalidates_everything(
    client: aioredis.Redis, prefix: str
) -> None:
    config = build_config({"redis": {"url": REDIS_URL}, "prefix": prefix,
                           "security": {"max_message_bytes": 65536}})
    publisher = AsyncPublisher(config, source="daemon", client=client)
    rec = Reconciler(publisher, Metrics(), ping=client.ping, backoff_max=0.2)
    task = await running(rec)
    try:
        for i in range(900):  # arrive while standby: merged into one pending invalidation
            await rec.invalidate("users", [f"user:{i:06d}:profile:" + "x" * 60], source="pg")
        rec.open_gate()
        await async_wait_for(lambda: not rec.pending(), 10, "the invalidation published")
        events: list[Any] = await publisher.history("users", limit=10)
        assert [(e.kind, e.all, e.keys) for e in events] == [("invalidate", True, ())]
        assert "pg" not in rec.sources
    finally:
        await stop(task)
