"""A namespace lost on the server (Redis restarted without persistence) or damaged under a
running subscriber: it keeps serving its last settings, whatever it reads meanwhile, and then
serves exactly what is published, never a mix (found by the soak, benchmarks/soak.py)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from hotreload.subscriber import AsyncSubscriber
from hotreload.transport import MemoryTransport, RawLoad
from hotreload.wire import keys_for
from tests.unit.memory_fixtures import Pods, config, eventually

KEYS = keys_for("app")
BEFORE = {"a": 1, "b": 2}
SMALL = config(security={"max_message_bytes": 1024})


def corrupt_head(pods: Pods) -> None:
    meta = dict(pods.server.raw(KEYS.meta) or {b"protocol": b"2"})
    meta[b"version"] = b"-5"
    pods.server.put(KEYS.meta, meta)


class LosingTransport(MemoryTransport):
    """The memory transport, where Redis can lose everything right as a load starts."""

    armed = False

    async def load(self, ns: str, *, max_tail: int, primary: bool = False) -> RawLoad:
        if self.armed:
            self.armed = False
            self.server.lose_data()
        return await super().load(ns, max_tail=max_tail, primary=primary)


async def start(pods: Pods) -> tuple[AsyncSubscriber[Any], LosingTransport]:
    transport = LosingTransport(pods.server)
    sub: AsyncSubscriber[Any] = AsyncSubscriber(SMALL, transport=transport)
    pods.opened.append(sub)
    await sub.start(timeout=5)
    return sub, transport


async def lose_during_a_load(pods: Pods, sub: AsyncSubscriber[Any],
                             transport: LosingTransport) -> None:
    """A new epoch makes the subscriber load; Redis loses everything as that load starts:
    it finds nothing (the path of a load that meets a Redis restart)."""
    transport.armed = True
    # too big for one event: version 1 is a "reset" that every subscriber loads
    await pods.publisher(SMALL).rebuild({"x": "y" * 2000})
    await eventually(lambda: not transport.armed, what="the load")
    await eventually(lambda: "no state on the server" in (sub.server_note or "")
                     or sub.as_dict() != BEFORE, what="the loss noticed")
    assert sub.as_dict() == BEFORE, "the last known settings were dropped"
    assert sub.last_error is None


async def test_the_namespace_recreated_after_a_loss_is_served_exactly(pods: Pods) -> None:
    pub = pods.publisher()
    await pub.publish(BEFORE)
    sub, transport = await start(pods)
    await lose_during_a_load(pods, sub, transport)
    assert sub.as_dict() == BEFORE  # the last known settings, kept
    other = pods.publisher(SMALL)
    created = await other.replace({"c": 3})  # a new history, with other keys
    await eventually(lambda: sub.epoch == created.epoch, what="the new epoch")
    assert sub.as_dict() == {"c": 3}  # not {"a": 1, "b": 2, "c": 3}
    await other.publish({"d": 4})
    await eventually(lambda: sub.version == 2, what="the next version")
    assert sub.as_dict() == {"c": 3, "d": 4}


async def test_a_second_load_that_finds_nothing_keeps_the_last_settings(pods: Pods) -> None:
    pub = pods.publisher()
    await pub.publish(BEFORE)
    sub, transport = await start(pods)
    await lose_during_a_load(pods, sub, transport)
    reloads = sub.stats.reloads
    await lose_during_a_load(pods, sub, transport)  # again: still nothing on the server
    assert sub.as_dict() == BEFORE and sub.version == 1
    assert sub.stats.reloads == reloads


async def test_the_backstop_survives_a_damaged_head(pods: Pods) -> None:
    """The backstop reads the head every version_check_interval; a head it cannot decode is
    reported, and it keeps running (presence records keep being refreshed)."""
    pub = pods.publisher()
    await pub.publish(BEFORE)
    sub = await pods.subscriber(config(subscriber={"version_check_interval": 0.2}))
    corrupt_head(pods)
    reader = pods.transport()

    async def refreshed() -> float:
        records = await reader.read_presence("app")
        return max((json.loads(r)["refreshed_at"] for r in records), default=0.0)

    await eventually(lambda: "unreadable" in (sub.server_note or ""), what="reported")
    first = await refreshed()
    for _ in range(100):
        if await refreshed() > first:
            break
        await asyncio.sleep(0.05)
    assert await refreshed() > first, "the backstop stopped"
    assert sub.as_dict() == BEFORE


async def test_a_pod_starting_while_the_namespace_is_lost(pods: Pods) -> None:
    """Without a model it starts with no settings (version 0); with a model that requires
    fields it does not start (`StartTimeout`) until the namespace is rebuilt."""
    import pydantic
    import pytest

    from hotreload.errors import StartTimeout

    class Needs(pydantic.BaseModel):
        a: int

    pub = pods.publisher()
    await pub.publish(BEFORE)
    pods.server.lose_data()
    bare = await pods.subscriber()
    assert bare.version == 0 and bare.as_dict() == {}
    strict: AsyncSubscriber[Needs] = AsyncSubscriber(config(), model=Needs,
                                                     transport=pods.transport())
    with pytest.raises(StartTimeout):
        await strict.start(timeout=1.0)
    await pub.replace(BEFORE)
    await eventually(lambda: bare.as_dict() == BEFORE, what="the rebuilt namespace")
