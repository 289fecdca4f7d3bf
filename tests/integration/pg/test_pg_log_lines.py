"""One log line per fact: a real daemon's leadership changes and rejections, counted by action."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable

import pytest
from _pg_helpers import PG_URL, make_settings, psql, terminate, wait_until

from hotreload.config import HotReloadConfig, PostgresSettings, build_config
from hotreload.daemon.core import Daemon
from tests.conftest import REDIS_URL, delete_keys, unique

pytestmark = pytest.mark.integration


@pytest.fixture
async def daemon_config() -> AsyncIterator[Callable[[PostgresSettings], HotReloadConfig]]:
    prefix = unique("t")
    yield lambda pg: build_config({"redis": {"url": REDIS_URL}, "prefix": prefix,
                                   "daemon": {"http": None, "redis_backoff_max": 0.2}},
                                  postgres=pg)
    delete_keys(f"{prefix}:*")


def actions(caplog: pytest.LogCaptureFixture) -> Counter[str]:
    return Counter(str(r.action) for r in caplog.records if hasattr(r, "action"))


async def run(daemon: Daemon) -> asyncio.Task[None]:
    return asyncio.create_task(daemon.run())


async def stop(daemon: Daemon, task: asyncio.Task[None]) -> None:
    daemon.stop()
    await asyncio.wait_for(task, 10)


async def test_each_leadership_change_is_one_line(
    daemon_config: Callable[[PostgresSettings], HotReloadConfig],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="hotreload")
    settings = make_settings()
    daemon = Daemon(daemon_config(settings), sources=[])  # the real advisory lock
    task = await run(daemon)
    try:
        await wait_until(lambda: daemon.role == "leader", what="leadership")
        assert await terminate(settings) == 1  # the lock's session dies
        await wait_until(lambda: actions(caplog)["leader_acquired"] >= 2, what="leading again")
    finally:
        await stop(daemon, task)
    counts = actions(caplog)
    assert counts["leader_acquired"] == 2
    assert counts["leader_lost"] == 1
    assert counts["standby"] == 2
    assert counts["leader_released"] == 1
    (lost,) = [r for r in caplog.records if getattr(r, "action", None) == "leader_lost"]
    assert lost.getMessage() != "leadership lost: lock lost"  # the lock's reason is in it


async def test_each_rejection_is_one_line(
    settings: PostgresSettings, daemon_config: Callable[[PostgresSettings], HotReloadConfig],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="hotreload")
    daemon = Daemon(daemon_config(settings), leader=None)
    task = await run(daemon)
    try:
        (source,) = daemon.sources
        await wait_until(lambda: getattr(source, "connected", False), what="LISTEN")
        channel = settings.invalidation_channels("app")[0].channel
        await psql(PG_URL, f"SELECT pg_notify('{channel}', 'not json')")
        await psql(PG_URL, f"INSERT INTO {settings.settings_table} VALUES ('ns', 'a..b', '1')")
        await wait_until(lambda: daemon.status()["sources"]["postgres"]["rejections"] == {
            "payload": 1, "row": 1}, what="both rejections")
    finally:
        await stop(daemon, task)
    assert actions(caplog)["rejected"] == 2

