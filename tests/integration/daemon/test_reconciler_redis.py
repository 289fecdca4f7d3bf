"""The reconciler against real Redis: per-namespace failures, oversized invalidations."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from daemon_helpers import REDIS_URL, async_wait_for

from hotreload.config import build_config
from hotreload.daemon.metrics import Metrics
from hotreload.daemon.reconciler import Reconciler
from hotreload.publisher import AsyncPublisher
from hotreload.transport import open_transport
from hotreload.wire import decode_event, keys_for

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


async def test_a_wrong_typed_head_is_recovered_loudly_without_starving_others(
    client: aioredis.Redis, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The daemon owns its namespaces' documents: a corrupt one is recovered into a new epoch
    from the document (issue 8), and the other namespaces are published meanwhile."""
    config = build_config({"redis": {"url": REDIS_URL}, "prefix": prefix})
    poisoned = keys_for("aaa", prefix).meta
    await client.set(poisoned, "oops")
    transport = open_transport(config)
    publisher = AsyncPublisher(config, source="daemon", transport=transport)
    rec = Reconciler(publisher, Metrics(), ping=transport.ping, backoff_max=0.2)
    task = await running(rec)
    try:
        rec.open_gate()
        await rec.desired("aaa", {"x": 1}, source="t")
        await rec.desired("bbb", {"y": 2}, source="t")
        await async_wait_for(lambda: {"aaa", "bbb"} <= set(rec.versions), 10, "both published")
        assert (await publisher.snapshot("aaa")).settings == {"x": 1}
        assert rec.versions["aaa"] == 1 and rec.status()["publish_errors"] == {}
        assert any(r.levelname == "ERROR" and "recovering aaa" in r.getMessage()
                   for r in caplog.records)
    finally:
        await stop(task)
        await publisher.aclose()
        await transport.purge("aaa")
        await transport.purge("bbb")
        await transport.aclose()


async def test_a_namespace_that_cannot_be_published_is_retried_alone(
    prefix: str
) -> None:
    """An event larger than the limit fails its namespace only (not an outage): retried with
    its own backoff while the other namespaces keep being published."""
    config = build_config({"redis": {"url": REDIS_URL}, "prefix": prefix,
                           "security": {"max_message_bytes": 65536}})
    transport = open_transport(config)
    publisher = AsyncPublisher(config, source="daemon", transport=transport)
    metrics = Metrics()
    reconciles: list[bool] = []
    rec = Reconciler(publisher, metrics, ping=transport.ping, backoff_max=0.2,
                     on_reconnect=lambda: reconciles.append(True))
    task = await running(rec)
    try:
        rec.open_gate()
        await rec.desired("aaa", {"x": "small"}, source="t")
        await async_wait_for(lambda: "aaa" in rec.versions, 10, "aaa published")
        await rec.desired("aaa", {"x": "y" * 70_000}, source="t")  # too large for one event
        await rec.desired("bbb", {"y": 2}, source="t")
        await async_wait_for(lambda: "bbb" in rec.versions, 10, "bbb published")
        await async_wait_for(
            lambda: (metrics.registry.get_sample_value("hotreload_publish_errors_total")
                     or 0) >= 3, 10, "aaa retried")
        assert rec.redis_up is True and reconciles == []
        assert metrics.registry.get_sample_value("hotreload_redis_reconnects_total") == 0
        assert rec.pending() == ["aaa"]
        assert "exceeds security.max_message_bytes" in rec.status()["publish_errors"]["aaa"]
        await rec.desired("aaa", {"x": "fits"}, source="t")  # a new document: tried at once
        await async_wait_for(lambda: not rec.pending(), 10, "aaa published")
        assert (await publisher.snapshot("aaa")).settings == {"x": "fits"}
        assert rec.status()["publish_errors"] == {}
    finally:
        await stop(task)
        await publisher.aclose()
        await transport.purge("aaa")
        await transport.purge("bbb")
        await transport.aclose()


async def test_an_oversized_merged_invalidation_invalidates_everything(
    client: aioredis.Redis, prefix: str
) -> None:
    config = build_config({"redis": {"url": REDIS_URL}, "prefix": prefix,
                           "security": {"max_message_bytes": 65536}})
    transport = open_transport(config)
    publisher = AsyncPublisher(config, source="daemon", transport=transport)
    rec = Reconciler(publisher, Metrics(), ping=transport.ping, backoff_max=0.2)
    task = await running(rec)
    try:
        for i in range(900):  # arrive while standby: merged into one pending invalidation
            await rec.invalidate("users", [f"user:{i:06d}:profile:" + "x" * 60], source="pg")
        rec.open_gate()
        await async_wait_for(lambda: not rec.pending(), 10, "the invalidation published")
        events: list[Any] = [decode_event(raw) for raw in
                             await transport.read_invalidation_log("users", 1, 10)]
        assert [(e.kind, e.all, e.keys) for e in events] == [("invalidate", True, ())]
        assert "pg" not in rec.sources
    finally:
        await stop(task)
        await publisher.aclose()
        await transport.purge("users")
        await transport.aclose()
