"""What a subscriber serves is one consistent state: `epoch`, `version` and the settings always
belong together, even while a load runs its listeners (the soak's checker relies on it)."""

from __future__ import annotations

import asyncio

from hotreload.subscriber import Invalidation
from tests.unit.memory_fixtures import Pods, eventually


async def test_epoch_version_and_settings_change_together(pods: Pods) -> None:
    pub = pods.publisher()
    await pub.publish({"a": 1})
    sub = await pods.subscriber()
    first = (sub.epoch, sub.version, sub.as_dict())
    held = asyncio.Event()
    release = asyncio.Event()

    @sub.on_invalidate
    async def slow(event: Invalidation) -> None:
        if event.reason == "resync":
            held.set()
            await release.wait()  # a listener that takes its time

    other = pods.publisher()
    await other.rebuild({"a": 2})  # a new epoch: the subscriber loads it, flushing caches
    await eventually(held.is_set, what="the load's cache flush")
    assert (sub.epoch, sub.version, sub.as_dict()) == first  # nothing half-switched
    release.set()
    await eventually(lambda: sub.as_dict() == {"a": 2}, what="the load applied")
    assert sub.version == 1 and sub.epoch != first[0]
