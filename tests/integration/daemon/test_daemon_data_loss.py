"""Redis restarted without persistence (its data gone): the daemon republishes what it owns.

Without `appendonly yes` a restart loses every namespace. Subscribers keep their last settings
(and say so); the daemon, which owns its namespaces' documents, recovers them into a new epoch:
at once when it saw Redis go down, else at its next reconcile (``daemon.reconcile_interval``)
(docs/guarantees.md).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from daemon_helpers import RedisServer, SpawnDaemon, WriteConfig, async_wait_for

from hotreload.subscriber import AsyncSubscriber

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("reconcile_interval", [1.0])
async def test_a_restart_that_lost_everything_is_republished(
    tmp_path: Path, uid: str, redis_server: RedisServer, write_config: WriteConfig,
    spawn: SpawnDaemon, subscriber_factory: Any, reconcile_interval: float,
) -> None:
    ns = f"app-{uid}"
    file = tmp_path / "settings.json"
    file.write_text(json.dumps({"db": {"pool": 5}, "feature": True}))
    path, config = write_config(redis_url=redis_server.url, daemon={
        "http": None, "redis_backoff_max": 0.5, "reconcile_interval": reconcile_interval})
    spawn(path, file=file, namespace=ns)
    sub = await subscriber_factory(config, ns)
    want = {"db": {"pool": 5}, "feature": True}
    await async_wait_for(lambda: sub.as_dict() == want, 20, "the first publish")
    epoch = sub.epoch

    redis_server.kill()  # no SHUTDOWN SAVE: everything is gone
    redis_server.start()
    began = time.monotonic()
    await async_wait_for(lambda: sub.epoch != epoch, 20, "the republished epoch")
    took = time.monotonic() - began
    assert sub.as_dict() == want  # never lost meanwhile: the last settings were kept
    assert took <= reconcile_interval + 5.0, took
    late: AsyncSubscriber[Any] = await subscriber_factory(config, ns)  # a pod starting now
    assert late.as_dict() == want
