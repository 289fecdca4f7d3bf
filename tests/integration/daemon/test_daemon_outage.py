"""Redis outages (a throwaway server stopped and restarted) and duplicate daemons."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from daemon_helpers import (
    RedisServer,
    SpawnDaemon,
    WriteConfig,
    async_wait_for,
    free_port,
    http_get,
)

from hotreload.daemon.core import read_daemon_status
from hotreload.publisher import AsyncPublisher

pytestmark = pytest.mark.integration


async def test_outage_publishes_only_the_latest_state_once(
    tmp_path: Path, uid: str, redis_server: RedisServer, write_config: WriteConfig,
    spawn: SpawnDaemon, subscriber_factory: Any,
) -> None:
    ns = f"app-{uid}"
    file = tmp_path / "settings.json"
    file.write_text(json.dumps({"n": 0}))
    port = free_port()
    path, config = write_config(redis_url=redis_server.url,
                                daemon={"http": f"127.0.0.1:{port}", "redis_backoff_max": 0.5})
    daemon = spawn(path, file=file, namespace=ns)
    sub = await subscriber_factory(config, ns)
    await async_wait_for(lambda: sub.as_dict() == {"n": 0}, 20, "the first publish")
    await async_wait_for(lambda: http_get(port, "/readyz")[0] == 200, 10, "readiness")

    redis_server.stop()
    _, body = await async_wait_for(
        lambda: (r := http_get(port, "/readyz"))[0] == 503 and r, 10, "not ready")
    assert "redis down" in json.loads(body)["reason"]
    for n in range(1, 5):  # several edits while Redis is down
        file.write_text(json.dumps({"n": n, "edits": list(range(n))}))
        await asyncio.sleep(0.15)  # spacing so the daemon sees each edit (not a sync point)
    began = time.monotonic()
    redis_server.start()

    latest = {"n": 4, "edits": [0, 1, 2, 3]}
    await async_wait_for(lambda: sub.as_dict() == latest, 20, "convergence")
    assert time.monotonic() - began < 20
    async with AsyncPublisher(config) as pub:
        history = await pub.history(ns, limit=100)
        assert [e.version for e in history] == [1, 2]  # exactly one event for the outage
        assert (await pub.snapshot(ns)).settings == latest
    await async_wait_for(lambda: http_get(port, "/readyz")[0] == 200, 10, "ready again")
    metrics = http_get(port, "/metrics")[1].decode()
    assert "hotreload_redis_reconnects_total 1.0" in metrics
    assert daemon.terminate()[0] == 0
    actions = daemon.actions()
    assert actions.count("redis_down") == 1, daemon.text()
    assert actions.count("redis_up") == 1, daemon.text()


async def test_two_daemons_without_postgres_publish_each_change_once(
    tmp_path: Path, uid: str, write_config: WriteConfig, spawn: SpawnDaemon,
    subscriber_factory: Any,
) -> None:
    ns = f"app-{uid}"
    file = tmp_path / "settings.json"
    file.write_text(json.dumps({"n": 0}))
    path, config = write_config()
    daemons = [spawn(path, file=file, namespace=ns) for _ in range(2)]
    sub = await subscriber_factory(config, ns)
    await async_wait_for(lambda: sub.as_dict() == {"n": 0}, 20, "the first publish")
    pids = {d.pid for d in daemons}

    async def settled(version: int) -> None:
        """Both daemons hold ``version`` and have nothing pending."""
        docs: list[dict[str, Any]] = []
        for _ in range(1000):
            docs = [d for d in await read_daemon_status(config) if d["pid"] in pids]
            if len(docs) == 2 and all(d["versions"].get(ns) == version and not d["pending"]
                                      for d in docs):
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"daemons did not settle at v{version}: {docs}")

    changes = 5
    for n in range(1, changes + 1):
        # The next edit once both daemons have read this one: a daemon still one edit behind
        # may briefly republish the previous document (docs/daemon.md, "Without PostgreSQL");
        # what holds is one event per change that both daemons have seen.
        await settled(n)
        file.write_text(json.dumps({"n": n}))
        await async_wait_for(lambda n=n: sub.as_dict() == {"n": n}, 10, f"edit {n}")
    await settled(changes + 1)
    async with AsyncPublisher(config) as pub:
        history = await pub.history(ns, limit=100)
    assert [e.version for e in history] == list(range(1, changes + 2))
    assert [e.kind for e in history] == ["config"] * (changes + 1)
    assert [[(c.key, c.new) for c in e.value_changes()] for e in history[1:]] == [
        [("n", n)] for n in range(1, changes + 1)
    ]
    assert {d.terminate()[0] for d in daemons} == {0}
