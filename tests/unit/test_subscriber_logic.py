"""Gap detection, replay, reload and last-known-good, on fakeredis (no services)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import fakeredis
import pytest
from pydantic import BaseModel

from hotreload import AsyncPublisher, AsyncSubscriber, FrozenSettings, Invalidation
from hotreload import protocol as p
from hotreload.config import HotReloadConfig
from tests.conftest import await_until

CONFIG = HotReloadConfig.from_url("redis://fake/0")


class Strict(BaseModel):
    n: int = 0


class Hook:
    def __init__(self) -> None:
        self.events: list[Invalidation] = []

    def invalidate(self, event: Invalidation) -> None:
        self.events.append(event)

    def set_trusted(self, trusted: bool) -> None:
        pass


@pytest.fixture
def server() -> fakeredis.FakeServer:
    return fakeredis.FakeServer()


@pytest.fixture
async def pub(server: fakeredis.FakeServer) -> AsyncIterator[AsyncPublisher]:
    async with AsyncPublisher(CONFIG, namespace="ns",
                              client=fakeredis.FakeAsyncRedis(server=server)) as pub:
        yield pub


async def paused_subscriber(server: fakeredis.FakeServer, **kw: Any) -> AsyncSubscriber[Any]:
    """A started subscriber whose reader is stopped, so tests feed it messages by hand."""
    sub: AsyncSubscriber[Any] = AsyncSubscriber(
        CONFIG, namespace="ns", client=fakeredis.FakeAsyncRedis(server=server), **kw)
    await sub.start(timeout=5)
    task, sub._task = sub._task, None
    assert task is not None
    sub._closing = True  # stop the reader loop (some clients swallow cancellation)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return sub


async def last_message(pub: AsyncPublisher) -> bytes:
    (entry,) = await pub.redis.xrevrange(pub.keys().log, count=1)
    data: bytes = entry[1][b"e"]
    return data


async def test_a_gap_is_filled_from_the_log_in_order(server: fakeredis.FakeServer,
                                                     pub: AsyncPublisher) -> None:
    await pub.publish({"n": 1})
    sub = await paused_subscriber(server)
    seen: list[int] = []
    sub.on_change(lambda ch: seen.append(ch.version))
    for i in range(2, 6):
        await pub.publish({"n": i})
    await sub._on_message(await last_message(pub))
    assert seen == [2, 3, 4, 5]
    assert sub.stats.replays == 1 and sub.get("n") == 5


async def test_old_and_duplicate_events_are_ignored(server: fakeredis.FakeServer,
                                                    pub: AsyncPublisher) -> None:
    await pub.publish({"n": 1})
    first = await last_message(pub)
    await pub.publish({"n": 2})
    sub = await paused_subscriber(server)
    await sub._on_message(first)
    await sub._on_message(await last_message(pub))
    assert sub.version == 2 and sub.get("n") == 2 and sub.stats.events == 0


async def test_a_gap_older_than_the_log_reloads_and_clears_caches(
    server: fakeredis.FakeServer, pub: AsyncPublisher
) -> None:
    await pub.publish({"n": 1, "old": True})
    sub = await paused_subscriber(server)
    hook = Hook()
    sub.register_cache(hook)
    await pub.publish({"n": 2}, ["old"])
    await pub.publish({"n": 3})
    last = await last_message(pub)
    await pub.redis.delete(pub.keys().log)
    await sub._on_message(last)
    assert sub.as_dict() == {"n": 3} and sub.stats.reloads == 2
    assert hook.events[-1].all


async def test_invalid_settings_keep_last_good_and_recover(server: fakeredis.FakeServer,
                                                           pub: AsyncPublisher) -> None:
    await pub.publish({"n": 1})
    sub = await paused_subscriber(server, model=Strict)
    changes: list[Any] = []
    sub.on_change(changes.append)
    await pub.publish({"n": "x"})
    await sub._on_message(await last_message(pub))
    assert sub.settings == Strict(n=1) and sub.version == 1 and sub.received_version == 2
    assert "n: Input should be a valid integer" in (sub.last_error or "")
    await pub.publish({"extra": 1})  # still invalid? no: extra keys are fine, n is still "x"
    await sub._on_message(await last_message(pub))
    assert sub.settings == Strict(n=1) and sub.last_error
    await pub.publish({"n": 7})
    await sub._on_message(await last_message(pub))
    assert sub.settings == Strict(n=7) and sub.last_error is None and sub.version == 4
    # the listener sees the net change against what it last saw
    assert [c.key for c in changes[-1].changes] == ["extra", "n"]


async def test_settings_mapping_is_read_only(server: fakeredis.FakeServer,
                                             pub: AsyncPublisher) -> None:
    await pub.publish({"a": {"b": [1, {"c": 2}]}})
    sub = await paused_subscriber(server)
    s = sub.settings
    assert isinstance(s, FrozenSettings) and s == {"a": {"b": [1, {"c": 2}]}}
    assert s["a"]["b"] == (1, FrozenSettings({"c": 2}))
    with pytest.raises(TypeError):
        s["a"] = 1  # type: ignore[index]
    assert sub.get("a.b")[1]["c"] == 2 and sub.get("a")["b"][0] == 1


async def test_a_forged_event_is_healed_when_the_real_one_arrives(
    server: fakeredis.FakeServer, pub: AsyncPublisher
) -> None:
    await pub.publish({"n": 1})
    sub = await paused_subscriber(server)
    forged = p.Envelope("ns", 2, "config", sub._epoch or "", changes=(
        p.Change("set", "n", 1, 666),), checksum="sha256:forged", source="x", origin="evil")
    await sub._on_message(p.encode_envelope(forged))
    assert sub.get("n") == 666  # unsigned channels cannot tell...
    await pub.publish({"n": 2})
    await sub._on_message(await last_message(pub))  # ...but the real v2 has another checksum
    assert sub.get("n") == 2 and sub.received_version == 2


async def test_a_new_history_is_reloaded_not_replayed(server: fakeredis.FakeServer,
                                                      pub: AsyncPublisher) -> None:
    await pub.publish({"a": 1, "old": True})
    await pub.publish({"a": 2})
    sub = await paused_subscriber(server)
    await pub.redis.delete(pub.keys().snapshot, pub.keys().log)  # Redis lost the namespace
    other = AsyncPublisher(CONFIG, namespace="ns", client=fakeredis.FakeAsyncRedis(server=server))
    await other.replace({"a": 100, "b": 1})
    for i in range(2, 5):
        await other.publish({"b": i})
    await sub._on_message(await last_message(other))  # v4 of the new epoch
    assert sub.as_dict() == {"a": 100, "b": 4}
    # and the first publisher's stale cache cannot overwrite the new history
    result = await pub.publish({"y": 1})
    assert result.version == 5
    assert (await pub.snapshot()).settings == {"a": 100, "b": 4, "y": 1}
    await other.aclose()


async def test_listeners_cannot_mutate_the_live_settings(server: fakeredis.FakeServer,
                                                         pub: AsyncPublisher) -> None:
    await pub.publish({"hosts": ["a"]})
    sub = await paused_subscriber(server)
    seen: list[Any] = []
    sub.on_change(lambda ch: seen.append(ch.changes[0].new))
    await pub.publish({"hosts": ["a", "b"]})
    await sub._on_message(await last_message(pub))
    assert seen == [("a", "b")]  # a tuple: there is nothing to append to
    assert sub.get("hosts") == ("a", "b")
    assert sub.as_dict() == {"hosts": ["a", "b"]}


async def test_ready_when_the_first_valid_settings_come_by_event(
    server: fakeredis.FakeServer, pub: AsyncPublisher
) -> None:
    sub: AsyncSubscriber[Any] = AsyncSubscriber(
        CONFIG, namespace="ns", client=fakeredis.FakeAsyncRedis(server=server), model=Strict2)
    starting = asyncio.create_task(sub.start(timeout=5))
    await await_until(lambda: sub.stats.reloads >= 1, what="the first (invalid) snapshot")
    assert not starting.done()  # the app started before its settings were published
    await pub.publish({"port": 8080})
    await starting
    assert sub.settings == Strict2(port=8080)
    await sub.aclose()


class Strict2(BaseModel):
    port: int


async def test_a_namespace_created_after_start_is_followed_without_a_reload(
        server: fakeredis.FakeServer, pub: AsyncPublisher) -> None:
    """The first version check of a subscriber that loaded a never-published namespace sees the
    namespace's new epoch before its first event arrives: that is the history it follows, not
    another one (no reload, no "invalidate everything", and v1 is applied, not dropped)."""
    sub = await paused_subscriber(server)
    hook = Hook()
    sub.register_cache(hook)
    seen: list[int] = []
    sub.on_change(lambda ch: seen.append(ch.version))
    reloads = sub.stats.reloads
    await pub.publish({"n": 1})
    assert sub._pubsub is not None
    now = asyncio.get_running_loop().time()
    sub._link.connected = True
    sub._link.last_rx = now
    sub._link.next_version_check = 0.0  # the check is due before v1's message arrives
    await sub._tick(sub._pubsub, now)
    await sub._on_message(await last_message(pub))
    await sub._tick(sub._pubsub, now + 1.0)  # the re-check after the in-flight grace period
    assert seen == [1] and sub.get("n") == 1
    assert sub.stats.reloads == reloads and hook.events == []
