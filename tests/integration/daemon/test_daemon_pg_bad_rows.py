"""A real daemon fed by PostgreSQL keeps publishing around a 2,000-level jsonb row (issue 8)."""

from __future__ import annotations

import asyncio
import os
import uuid
from typing import Any

import pytest
from daemon_helpers import WriteConfig, async_wait_for

from hotreload import AsyncPublisher
from hotreload.daemon import db
from hotreload.daemon.core import Daemon

pytestmark = pytest.mark.integration

DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
DEEP = "[" * 2000 + "]" * 2000


async def psql(command: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        "psql", DATABASE_URL, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", command,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()


async def test_a_deep_row_is_a_rejection_and_the_daemon_publishes_the_rest(
    write_config: WriteConfig, running: Any
) -> None:
    table = f"hr_bad_{uuid.uuid4().hex[:8]}"
    _, config = write_config(postgres={
        "dsn": DATABASE_URL, "settings_table": table, "notify_channel": table,
        "heartbeat_channel": f"{table}_hb", "leader_lock_key": uuid.uuid4().int % 2**62,
        "reconnect_backoff_max": 0.5})
    await db.install(config.postgres)
    try:
        await psql(f"INSERT INTO {table} VALUES ('app', 'db.pool', '10'), ('app', 'deep', "
                   f"'{DEEP}'), ('other', 'x', '1')")
        daemon = running(Daemon(config))
        async with AsyncPublisher(config) as reader:
            async def settings(ns: str) -> dict[str, Any]:
                return (await reader.snapshot(ns)).settings

            async def published(ns: str, want: dict[str, Any]) -> None:
                deadline = asyncio.get_running_loop().time() + 15
                while (got := await settings(ns)) != want:
                    assert asyncio.get_running_loop().time() < deadline, (ns, got, want)
                    await asyncio.sleep(0.02)

            await published("app", {"db": {"pool": 10}})
            await published("other", {"x": 1})
            state = await async_wait_for(
                lambda: daemon.status()["sources"].get("postgres", {}).get("last_error"), 10,
                "the rejection in status")
            assert state["reason"] == "row"
            assert "('app', 'deep')" in state["detail"]
            assert "the value nests more than 64 levels" in state["detail"]
            assert daemon.status()["sources"]["postgres"]["rejections"] == {"row": 1}
            metrics = daemon.metrics.render().decode()
            assert 'hotreload_rejections_total{reason="row",source="postgres"} 1.0' in metrics

            await psql(f"UPDATE {table} SET value = '20' WHERE key = 'db.pool'")
            await psql(f"UPDATE {table} SET value = '2' WHERE namespace = 'other'")
            await published("app", {"db": {"pool": 20}})
            await published("other", {"x": 2})
            assert daemon.status()["sources"]["postgres"]["running"] is True
    finally:
        await db.uninstall(config.postgres)
