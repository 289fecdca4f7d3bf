"""A throwaway PostgreSQL server stopped and restarted under the source and the leader lock."""

from __future__ import annotations

import asyncio
import logging

import pytest
from _pg_helpers import Cluster, RecordingSink, make_settings, psql, wait_until

from hotreload.daemon import db
from hotreload.daemon.leader import LeaderLock
from hotreload.daemon.sources.postgres import PostgresSource

pytestmark = pytest.mark.integration


async def test_server_restart(cluster: Cluster, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, "hotreload")
    s = make_settings(cluster.url, channels=["cache_inv"], reconnect_backoff_max=0.3)
    await db.install(s)
    source = PostgresSource(s, default_namespace="app")
    sink = RecordingSink()
    lock = LeaderLock(s)
    task = asyncio.create_task(source.run(sink))
    try:
        await lock.acquire()
        lost = asyncio.create_task(lock.wait_lost())
        await wait_until(lambda: source.connected)
        await psql(cluster.url, f"INSERT INTO {s.settings_table} VALUES ('app', 'x', '1')")
        await sink.wait_desired("app", {"x": 1})

        await asyncio.to_thread(cluster.stop)
        await asyncio.wait_for(lost, 10)
        await wait_until(lambda: not source.connected, what="source noticed the stop")
        sink.invalidations.clear()
        await asyncio.to_thread(cluster.start)
        # Written before the source is back (it is backing off): only the reconcile sees it.
        await psql(cluster.url, f"UPDATE {s.settings_table} SET value = '2'")
        await sink.wait_desired("app", {"x": 2}, limit=20)
        await wait_until(lambda: ("app", (), (), True) in sink.invalidations)
        await asyncio.wait_for(lock.acquire(), 10)
        assert lock.is_leader
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await lock.release()
    actions = [getattr(r, "action", None) for r in caplog.records
               if r.name == "hotreload.daemon.sources.postgres" and r.levelno >= logging.INFO]
    assert actions.count("disconnected") == 1, actions  # once per outage, not per retry
    assert actions.count("reconnected") == 1, actions
