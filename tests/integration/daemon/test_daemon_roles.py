"""Orchestration in-process against real Redis: leader gate, reconcile-before-publish, crashes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from daemon_helpers import WriteConfig, async_wait_for

from hotreload.daemon.core import Daemon
from hotreload.daemon.sources.base import Sink
from hotreload.publisher import AsyncPublisher

pytestmark = pytest.mark.integration


class FakeLeader:
    """A leader lock the test grants and revokes by hand."""

    def __init__(self) -> None:
        self.granted = asyncio.Event()
        self.lost = asyncio.Event()
        self.is_leader = False
        self.released = False

    async def acquire(self) -> None:
        await self.granted.wait()
        self.granted.clear()
        self.lost.clear()
        self.is_leader = True

    async def wait_lost(self) -> None:
        await self.lost.wait()
        self.is_leader = False

    async def release(self) -> None:
        self.released = True
        self.is_leader = False


class MemorySource:
    """Holds a document in memory; `notify` reports it, a silent edit needs a reconcile."""

    def __init__(self, namespace: str, document: dict[str, Any], *, crashes: int = 0) -> None:
        self.name = "memory"
        self.namespace = namespace
        self.document = document
        self.crashes = crashes
        self.runs = 0
        self.reconciles = 0
        self._changed = asyncio.Event()

    def notify(self) -> None:
        self._changed.set()

    async def run(self, sink: Sink) -> None:
        self.runs += 1
        if self.crashes:
            self.crashes -= 1
            raise RuntimeError("boom")
        while True:
            await sink.desired(self.namespace, dict(self.document), source=self.name)
            await self._changed.wait()
            self._changed.clear()

    async def reconcile(self, sink: Sink) -> None:
        self.reconciles += 1
        await sink.desired(self.namespace, dict(self.document), source=self.name)


async def test_standby_publishes_nothing_and_reconciles_before_leading(
    uid: str, write_config: WriteConfig, running: Any,
) -> None:
    ns = f"app-{uid}"
    _, config = write_config()
    leader = FakeLeader()
    source = MemorySource(ns, {"v": 1})
    daemon = running(Daemon(config, sources=[source], leader=leader))
    async with AsyncPublisher(config) as pub:
        await async_wait_for(lambda: daemon.role == "standby" and daemon.readiness()[0], 10,
                             "a ready standby")
        await async_wait_for(lambda: daemon.reconciler.pending() == [ns], 10, "the report")
        assert await pub.version(ns) == 0
        assert daemon.metrics.registry.get_sample_value("hotreload_leader") == 0

        source.document = {"v": 2}  # an edit whose notification is lost
        leader.granted.set()
        await async_wait_for(lambda: daemon.role == "leader", 10, "leadership")
        await async_wait_for(lambda: not daemon.reconciler.pending(), 10, "the publish")
        history = await pub.history(ns)
        assert [(e.version, e.value_changes()[0].new) for e in history] == [(1, 2)]
        assert source.reconciles >= 1

        leader.lost.set()
        await async_wait_for(lambda: daemon.role == "standby", 10, "back to standby")
        source.document = {"v": 3}
        source.notify()
        await async_wait_for(lambda: daemon.reconciler.pending() == [ns], 10, "the report")
        assert await pub.version(ns) == 1
        assert daemon.readiness() == (True, {"role": "standby", "reason": None})

        leader.granted.set()
        await async_wait_for(lambda: not daemon.reconciler.pending(), 10, "the publish")
        assert (await pub.snapshot(ns)).settings == {"v": 3}
        assert await pub.version(ns) == 2
    daemon.stop()
    await async_wait_for(lambda: leader.released, 5, "the lock release")


async def test_a_crashing_source_is_restarted_and_shown(
    uid: str, write_config: WriteConfig, running: Any,
) -> None:
    ns = f"app-{uid}"
    _, config = write_config(daemon={"http": None, "redis_backoff_max": 0.3})
    source = MemorySource(ns, {"v": 1}, crashes=1)
    daemon = running(Daemon(config, sources=[source], leader=None))
    await async_wait_for(lambda: source.runs >= 2, 10, "a restart")
    await async_wait_for(lambda: daemon.status()["sources"]["memory"]["running"], 10, "running")
    state = daemon.status()["sources"]["memory"]
    assert state["last_error"]["reason"] == "failed"
    assert state["last_error"]["detail"] == "boom"
    async with AsyncPublisher(config) as pub:
        await async_wait_for(lambda: not daemon.reconciler.pending(), 10, "the publish")
        assert (await pub.snapshot(ns)).settings == {"v": 1}
    await async_wait_for(lambda: daemon.readiness()[0], 10, "readiness")


async def test_not_ready_until_redis_answers(write_config: WriteConfig, running: Any) -> None:
    from daemon_helpers import free_port

    _, config = write_config(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    daemon = running(Daemon(config, sources=[], leader=None))
    await async_wait_for(lambda: daemon.reconciler.redis_up is False, 10, "Redis marked down")
    ready, details = daemon.readiness()
    assert not ready
    assert details["reason"].startswith("redis down")
    assert details["role"] == "leader"


async def test_secrets_never_reach_logs_or_status(
    write_config: WriteConfig, running: Any, caplog: pytest.LogCaptureFixture,
) -> None:
    import json
    import logging

    from daemon_helpers import free_port

    caplog.set_level(logging.DEBUG, logger="hotreload")
    url = f"redis://user:s3cret-pw@127.0.0.1:{free_port()}/0"
    _, config = write_config(redis_url=url)
    daemon = running(Daemon(config, sources=[], leader=None))
    await async_wait_for(lambda: daemon.reconciler.redis_up is False, 10, "Redis marked down")
    daemon.stop()
    text = "\n".join(r.getMessage() + json.dumps(vars(r), default=str) for r in caplog.records)
    assert "redis://user:***@127.0.0.1" in text
    assert "s3cret-pw" not in text
    assert "s3cret-pw" not in json.dumps(daemon.status()) + json.dumps(daemon.readiness())


async def test_periodic_reconcile_repairs_a_lost_notification(
    uid: str, write_config: WriteConfig, running: Any,
) -> None:
    ns = f"app-{uid}"
    _, config = write_config(daemon={"http": None, "reconcile_interval": 0.2})
    source = MemorySource(ns, {"v": 1})
    daemon = running(Daemon(config, sources=[source], leader=None))
    async with AsyncPublisher(config) as pub:
        await async_wait_for(lambda: daemon.reconciler.versions.get(ns) == 1, 10, "v1")
        source.document = {"v": 2}  # no notify(): only the periodic reconcile can see it
        await async_wait_for(lambda: daemon.reconciler.versions.get(ns) == 2, 10, "v2")
        assert (await pub.snapshot(ns)).settings == {"v": 2}
        await async_wait_for(lambda: source.reconciles >= 4, 10, "more reconciles")
        assert await pub.version(ns) == 2  # unchanged state: nothing more published


async def test_sources_reconcile_after_redis_comes_back(
    uid: str, redis_server: Any, write_config: WriteConfig, running: Any,
) -> None:
    ns = f"app-{uid}"
    _, config = write_config(redis_url=redis_server.url,
                             daemon={"http": None, "redis_backoff_max": 0.3})
    source = MemorySource(ns, {"v": 1})
    daemon = running(Daemon(config, sources=[source], leader=None))
    await async_wait_for(lambda: daemon.reconciler.versions.get(ns) == 1, 10, "v1")
    before = source.reconciles
    redis_server.stop()
    await async_wait_for(lambda: daemon.reconciler.redis_up is False, 10, "Redis down")
    redis_server.start()
    await async_wait_for(lambda: daemon.reconciler.redis_up is True, 10, "Redis up")
    await async_wait_for(lambda: source.reconciles > before, 10, "a reconcile")
    assert daemon.metrics.registry.get_sample_value("hotreload_redis_reconnects_total") == 1
