"""Leader election over PostgreSQL and the real file source, with real daemon processes."""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from pathlib import Path
from typing import Any

import pytest
from daemon_helpers import SpawnDaemon, WriteConfig, async_wait_for

from hotreload.daemon.core import read_daemon_status
from hotreload.publisher import AsyncPublisher

pytestmark = pytest.mark.integration

DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


async def role_of(config: Any, pid: int) -> str | None:
    for doc in await read_daemon_status(config):
        if doc["pid"] == pid:
            return str(doc["role"])
    return None


async def wait_role(config: Any, pid: int, role: str, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while await role_of(config, pid) != role:
        if time.monotonic() > deadline:
            raise AssertionError(f"daemon {pid} is not {role} after {within}s")
        await asyncio.sleep(0.05)


async def test_standby_takes_over_after_sigkill_without_losing_a_change(
    tmp_path: Path, uid: str, write_config: WriteConfig, spawn: SpawnDaemon,
    subscriber_factory: Any,
) -> None:
    ns = f"app-{uid}"
    file = tmp_path / "settings.json"
    file.write_text(json.dumps({"n": 0}))
    lock_key = random.randint(1, 2**31 - 1)  # this test's own advisory lock
    path, config = write_config(postgres={"dsn": DATABASE_URL, "leader_lock_key": lock_key})
    first = spawn(path, file=file, namespace=ns)
    await wait_role(config, first.pid, "leader")
    second = spawn(path, file=file, namespace=ns)
    await wait_role(config, second.pid, "standby")
    sub = await subscriber_factory(config, ns)
    await async_wait_for(lambda: sub.as_dict() == {"n": 0}, 10, "the first publish")

    first.proc.kill()
    first.proc.wait(10)
    began = time.monotonic()
    file.write_text(json.dumps({"n": 1}))  # changed while nobody leads
    await async_wait_for(lambda: sub.as_dict() == {"n": 1}, 10, "the takeover")
    assert time.monotonic() - began < 5.0
    await wait_role(config, second.pid, "leader", within=5)
    async with AsyncPublisher(config) as pub:
        assert [e.version for e in await pub.history(ns, limit=100)] == [1, 2]
    assert second.terminate()[0] == 0
    actions = second.actions()
    assert actions.index("standby") < actions.index("leader_acquired")


async def test_cli_daemon_with_the_real_file_source(
    tmp_path: Path, uid: str, write_config: WriteConfig, spawn: SpawnDaemon,
    subscriber_factory: Any,
) -> None:
    ns = f"app-{uid}"
    settings = tmp_path / "conf" / "settings.yaml"
    settings.parent.mkdir()
    settings.write_text("db:\n  pool: 5\n")
    path, config = write_config(sources={"files": [{"path": str(settings), "namespace": ns}]})
    sub = await subscriber_factory(config, ns)
    daemon = spawn(path, cli=True)
    await async_wait_for(lambda: sub.as_dict() == {"db": {"pool": 5}}, 20, "the first publish")
    tmp = settings.with_suffix(".tmp")
    tmp.write_text("db:\n  pool: 7\n")
    tmp.replace(settings)  # an editor's atomic save
    await async_wait_for(lambda: sub.as_dict() == {"db": {"pool": 7}}, 10, "the save")
    assert daemon.terminate()[0] == 0
