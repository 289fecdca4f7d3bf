"""Two sources feeding one namespace: the first owns it, the other is a `conflict` (real Redis)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from daemon_helpers import WriteConfig, async_wait_for

from hotreload.daemon.core import Daemon, describe_daemon
from hotreload.daemon.sources.base import Sink
from hotreload.publisher import AsyncPublisher

pytestmark = pytest.mark.integration


class StaticSource:
    """Reports one fixed document on start and on every reconcile."""

    def __init__(self, name: str, namespace: str, document: dict[str, Any],
                 started: asyncio.Event | None = None) -> None:
        self.name = name
        self.namespace = namespace
        self.document = document
        self.started = started
        self.reconciles = 0

    async def run(self, sink: Sink) -> None:
        if self.started is not None:
            await self.started.wait()  # report only after the other source did
        await sink.desired(self.namespace, dict(self.document), source=self.name)
        sink.accepted(self.name)
        await asyncio.Event().wait()

    async def reconcile(self, sink: Sink) -> None:
        self.reconciles += 1
        await sink.desired(self.namespace, dict(self.document), source=self.name)
        sink.accepted(self.name)


async def test_a_namespace_fed_by_two_sources_does_not_flap(
    uid: str, write_config: WriteConfig
) -> None:
    ns = f"app-{uid}"
    _, config = write_config(daemon={"http": None, "reconcile_interval": 0.05})
    first = StaticSource("file:app.yaml", ns, {"from_file": 1})
    second = StaticSource("postgres", ns, {"from_db": 1}, started=asyncio.Event())
    daemon = Daemon(config, sources=[first, second], leader=None)
    task = asyncio.create_task(daemon.run())
    try:
        async with AsyncPublisher(config) as pub:
            await async_wait_for(lambda: ns in daemon.reconciler.versions, 10, "the first publish")
            assert second.started is not None
            second.started.set()
            start = second.reconciles
            await async_wait_for(lambda: second.reconciles >= start + 5, 10, "reconciles")
            await async_wait_for(lambda: not daemon.reconciler.pending(), 10, "the publish")
            assert await pub.version(ns) == 1
            assert (await pub.snapshot(ns)).settings == {"from_file": 1}
        status = daemon.status()
        assert status["sources"]["postgres"]["rejections"] == {"conflict": 1}
        [detail] = status["conflicts"]
        assert f"conflict: {detail}" in "\n".join(describe_daemon(status))
    finally:
        daemon.stop()
        await asyncio.wait_for(task, 5)
