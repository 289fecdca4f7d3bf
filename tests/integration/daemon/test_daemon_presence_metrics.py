"""A running daemon keeps the subscriber gauges from the presence records in the real Redis."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pydantic
import pytest
from daemon_helpers import WriteConfig, async_wait_for

from hotreload.daemon.core import Daemon
from hotreload.subscriber import AsyncSubscriber

pytestmark = pytest.mark.integration


class Limits(pydantic.BaseModel):
    limit: int = 0


async def test_the_daemon_counts_instances_behind_and_rejecting(
    tmp_path: Path, uid: str, write_config: WriteConfig, running: Any,
) -> None:
    settings = tmp_path / "settings.yaml"
    settings.write_text("limit: 1\n")
    ns = f"gauges-{uid}"
    _, config = write_config(sources={"files": [{"path": str(settings), "namespace": ns}]},
                             subscriber={"version_check_interval": 0.2,
                                         "heartbeat_interval": 0.5})
    daemon = Daemon(config, leader=None)
    daemon.presence_interval = 0.1
    running(daemon)
    await async_wait_for(lambda: daemon.reconciler.versions.get(ns) == 1, 10, "v1 published")
    assert ns in daemon.namespaces()

    def sample(name: str) -> float | None:
        return daemon.metrics.registry.get_sample_value(name, {"namespace": ns})

    subs: list[AsyncSubscriber[Any]] = []
    try:
        for model in (None, None, Limits):
            sub: AsyncSubscriber[Any] = AsyncSubscriber(config, namespace=ns, model=model)
            subs.append(sub)
            await sub.start(timeout=10)
        await async_wait_for(lambda: sample("hotreload_instances") == 3, 10, "3 instances")
        assert sample("hotreload_instances_behind") == 0
        assert sample("hotreload_instances_rejected") == 0

        settings.write_text("limit: many\n")  # valid YAML; the Limits model rejects it
        await async_wait_for(lambda: daemon.reconciler.versions.get(ns) == 2, 10, "v2")
        await async_wait_for(lambda: (sample("hotreload_instances_rejected"),
                                      sample("hotreload_instances_behind")) == (1, 1), 10,
                             "the rejecting instance counted, and behind")
        assert sample("hotreload_instances_max_lag") == 1
        assert sample("hotreload_instances_link_down") == 0

        settings.write_text("limit: 2\n")
        await async_wait_for(lambda: (sample("hotreload_instances_rejected"),
                                      sample("hotreload_instances_behind")) == (0, 0), 10,
                             "all caught up")
        await subs.pop().aclose()
        await async_wait_for(lambda: sample("hotreload_instances") == 2, 10, "one gone")
        text = daemon.metrics.render().decode()  # what /metrics serves
        assert f'hotreload_instances{{namespace="{ns}"}} 2.0' in text
    finally:
        for sub in subs:
            await sub.aclose()
