"""Readiness with PostgreSQL: a daemon that cannot reach the leader lock is not ready."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from typing import Any

import pytest
from daemon_helpers import WriteConfig, async_wait_for, free_port, http_get

from hotreload.daemon import db
from hotreload.daemon.core import Daemon

pytestmark = pytest.mark.integration

DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


def pg_config(write_config: WriteConfig, dsn: str) -> Any:
    key = uuid.uuid4().int % 2**62
    _, config = write_config(
        daemon={"http": "127.0.0.1:0", "redis_backoff_max": 0.5},
        postgres={"dsn": dsn, "leader_lock_key": key, "reconnect_backoff_max": 0.5,
                  "settings_table": f"hr_absent_{uuid.uuid4().hex[:8]}"},
    )
    return config


async def test_not_ready_while_postgres_is_unreachable(write_config: WriteConfig,
                                                       running: Any) -> None:
    config = pg_config(write_config, f"postgresql://postgres@127.0.0.1:{free_port()}/test")
    daemon = running(Daemon(config))
    await async_wait_for(lambda: daemon.http is not None and daemon.http.port, 10, "http")
    assert daemon.http is not None
    port = daemon.http.port

    deadline = asyncio.get_running_loop().time() + 15
    while True:  # the probe blocks: run it off the daemon's loop
        status, body = await asyncio.to_thread(http_get, port, "/readyz")
        doc = json.loads(body) if status else {}
        if status == 503 and doc["role"] is None and "not connected" in (doc["reason"] or ""):
            break
        assert asyncio.get_running_loop().time() < deadline, (status, doc)
        await asyncio.sleep(0.05)
    assert doc["ready"] is False
    assert "role unknown" in doc["reason"]
    assert daemon.election.error is not None
    assert daemon.status()["leader_error"] == daemon.election.error
    assert daemon.status()["role"] is None


async def test_ready_when_postgres_answers(write_config: WriteConfig, running: Any) -> None:
    config = pg_config(write_config, DATABASE_URL)
    await db.install(config.postgres)
    try:
        daemon = running(Daemon(config))
        # Ready as a standby while the lock is being acquired (a warm standby is ready too),
        # then as the leader: the lock's key is this test's own, so nobody else holds it.
        await async_wait_for(lambda: daemon.readiness()[0], 15, "readiness")
        assert daemon.readiness()[1]["role"] in ("standby", "leader")
        await async_wait_for(lambda: daemon.readiness()[1]["role"] == "leader", 15, "leadership")
        assert daemon.readiness()[0]
        assert daemon.election.error is None
        daemon.stop()
    finally:
        await db.uninstall(config.postgres)
