"""Publisher → Redis → Subscriber against the real server, on RESP2 and RESP3."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis
from pydantic import BaseModel, Field

from hotreload import (
    MISSING,
    AsyncPublisher,
    AsyncSubscriber,
    ConflictError,
    HotReloadConfig,
    Invalidation,
    Publisher,
    SettingsChange,
    StartTimeout,
    Subscriber,
)
from hotreload.wire import EMPTY_CHECKSUM, Envelope, LeafChange, encode_event, new_epoch
from tests.conftest import REDIS_URL, await_until, wait_until
from tests.integration.conftest import RecordingHook, make_config

pytestmark = pytest.mark.integration


class DB(BaseModel):
    host: str = "localhost"
    pool_size: int = Field(10, ge=1, le=100)


class AppSettings(BaseModel):
    db: DB = DB()
    name: str = "app"


@pytest.fixture
async def sub(config: HotReloadConfig, namespace: str) -> AsyncIterator[AsyncSubscriber[Any]]:
    s: AsyncSubscriber[Any] = AsyncSubscriber(config, namespace=namespace)
    await s.start(timeout=10)
    yield s
    await s.aclose()


async def test_subscriber_starts_from_the_snapshot_then_follows_events(
    apub: AsyncPublisher, config: HotReloadConfig, namespace: str
) -> None:
    await apub.publish({"db": {"host": "x", "pool_size": 5}, "name": "a"})
    seen: list[SettingsChange] = []
    async with AsyncSubscriber(config, namespace=namespace, model=AppSettings) as sub:
        sub.on_change(seen.append)
        assert sub.version == 1
        assert sub.settings == AppSettings(db=DB(host="x", pool_size=5), name="a")
        assert sub.get("db.pool_size") == 5
        r = await apub.publish({"db.pool_size": 7, "name": "b"})
        await sub.wait_for_version(r.version)
        assert sub.settings.db.pool_size == 7 and sub.settings.name == "b"
        assert len(seen) == 1 and seen[0].keys == ("db.pool_size", "name")
        assert seen[0].old_settings.db.pool_size == 5
        assert seen[0].new_settings.db.pool_size == 7


async def test_publishing_the_same_values_sends_nothing(
    apub: AsyncPublisher, sub: AsyncSubscriber[Any]
) -> None:
    first = await apub.publish({"a": 1, "b": [1, 2]})
    again = await apub.publish({"a": 1, "b": [1, 2]})
    assert first.version == 1 and first.changed
    assert again.version == 1 and not again.changed and again.changes == ()
    assert await apub.version() == 1
    await sub.wait_for_version(1)


async def test_several_keys_change_as_one_event_and_readers_never_see_half(
    config: HotReloadConfig, namespace: str, apub: AsyncPublisher
) -> None:
    await apub.publish({"a": 0, "b": 0})
    with Subscriber(config, namespace=namespace) as sub:
        torn: list[tuple[Any, Any]] = []
        stop = threading.Event()

        def reader() -> None:
            while not stop.is_set():
                s = sub.settings
                if s["a"] != s["b"]:
                    torn.append((s["a"], s["b"]))

        t = threading.Thread(target=reader)
        t.start()
        for i in range(1, 101):
            await apub.publish({"a": i, "b": i})
        await asyncio.to_thread(sub.wait_for_version, 101)
        stop.set()
        t.join()
        assert torn == []
        assert sub.get("a") == sub.get("b") == 100


async def test_two_publishers_racing_produce_contiguous_versions(
    config: HotReloadConfig, namespace: str, sub: AsyncSubscriber[Any]
) -> None:
    versions: list[int] = []
    sub.on_change(lambda ch: versions.append(ch.version))
    pubs = [AsyncPublisher(config, namespace=namespace) for _ in range(2)]

    async def run(pub: AsyncPublisher, tag: str) -> None:
        for i in range(40):
            await pub.publish({f"{tag}.n": i, "last": f"{tag}{i}"})

    await asyncio.gather(run(pubs[0], "x"), run(pubs[1], "y"))
    snap = await pubs[0].snapshot()
    assert snap.version == 80
    history = await pubs[0].history(limit=100)
    assert [e.version for e in history] == list(range(1, 81))
    await sub.wait_for_version(80)
    assert versions == list(range(1, 81))
    assert sub.as_dict() == snap.settings
    assert snap.settings["x"] == {"n": 39} and snap.settings["y"] == {"n": 39}
    for pub in pubs:
        await pub.aclose()


async def test_invalid_settings_keep_the_last_good_and_the_next_valid_applies(
    apub: AsyncPublisher, config: HotReloadConfig, namespace: str
) -> None:
    await apub.publish({"db": {"pool_size": 10}})
    async with AsyncSubscriber(config, namespace=namespace, model=AppSettings) as sub:
        bad = await apub.publish({"db.pool_size": "lots"})
        await await_until(lambda: sub.received_version == bad.version, what="bad event")
        assert sub.settings.db.pool_size == 10 and sub.version == 1
        assert sub.last_error is not None and "db.pool_size" in sub.last_error
        good = await apub.publish({"db.pool_size": 20})
        await sub.wait_for_version(good.version)
        assert sub.settings.db.pool_size == 20 and sub.last_error is None


async def test_malformed_and_foreign_messages_are_ignored(
    apub: AsyncPublisher, sub: AsyncSubscriber[Any], raw_redis: redis.Redis
) -> None:
    channel = apub.keys().config_channel
    foreign = Envelope("other", "config", new_epoch(), version=1, checksum=EMPTY_CHECKSUM,
                       source="x", origin="y")
    invalidation = Envelope(apub.namespace, "invalidate", new_epoch(), seq=1, all=True,
                            source="x", origin="y")
    for junk in [b"garbage", b'{"protocol": 99}', b"[]", b"{" + b" " * 2_000_000 + b"}",
                 encode_event(foreign), encode_event(invalidation)]:  # the wrong channel
        raw_redis.publish(channel, junk)
    r = await apub.publish({"still": "works"})
    await sub.wait_for_version(r.version)
    assert sub.get("still") == "works"
    assert sub.stats.rejected_messages == 6 and sub.stats.invalidations == 0


async def test_listener_errors_do_not_stop_other_listeners(
    apub: AsyncPublisher, sub: AsyncSubscriber[Any]
) -> None:
    got: list[int] = []

    @sub.on_change
    def broken(ch: SettingsChange) -> None:
        raise RuntimeError("boom")

    @sub.on_change(keys=["db"])
    async def db_only(ch: SettingsChange) -> None:
        got.append(ch.version)

    await apub.publish({"name": "x"})
    r = await apub.publish({"db.host": "y"})
    await sub.wait_for_version(r.version)
    await await_until(lambda: got == [2], what="db listener")
    assert sub.status()["listener_errors"] == 2


async def test_invalidations_reach_cache_hooks_and_listeners(
    apub: AsyncPublisher, sub: AsyncSubscriber[Any]
) -> None:
    hook = RecordingHook()
    sub.register_cache(hook)
    heard: list[Invalidation] = []
    sub.on_invalidate(prefixes=["user:"])(heard.append)
    await apub.publish({"a": 1})
    first = await apub.invalidate(["user:1"], ["orders:"])
    second = await apub.invalidate(["product:9"])
    # invalidations are numbered apart from settings versions (protocol §9)
    assert (first.version, second.version) == (1, 2) and await apub.version() == 1
    await await_until(lambda: len(hook.events) == 2, what="invalidations")
    assert hook.events[0].keys == ("user:1",) and hook.events[0].prefixes == ("orders:",)
    assert [e.version for e in hook.events] == [1, 2] and sub.version == 1
    assert [e.keys for e in heard] == [("user:1",)]
    # start() returns once the settings are loaded; the invalidation head may still be read
    # then: a hook registered at once may first be told "not yet", never flapping after
    assert hook.trusted in ([True], [False, True])


async def test_start_times_out_clearly_when_redis_is_unreachable(namespace: str) -> None:
    config = make_config(url="redis://127.0.0.1:1/0")
    sub: AsyncSubscriber[Any] = AsyncSubscriber(config, namespace=namespace)
    with pytest.raises(StartTimeout, match="not ready after 1"):
        await sub.start(timeout=1)


def test_sync_facade(config: HotReloadConfig, namespace: str) -> None:
    with Publisher(config, namespace=namespace) as pub, \
            Subscriber(config, namespace=namespace) as sub:
        seen: list[int] = []
        sub.on_change(lambda ch: seen.append(ch.version))
        r = pub.publish({"feature": {"x": True}})
        sub.wait_for_version(r.version)
        assert sub.get("feature.x") is True and sub.get("missing", 3) == 3
        assert dict(sub.settings["feature"]) == {"x": True}
        wait_until(lambda: seen == [1], what="listener")
        assert pub.subscribers() >= 1


def test_sync_listeners_passed_directly_keep_their_key_filters(
    config: HotReloadConfig, namespace: str
) -> None:
    with Publisher(config, namespace=namespace) as pub, \
            Subscriber(config, namespace=namespace) as sub:
        db_changes: list[int] = []
        user_invalidations: list[int] = []
        heard: list[int] = []
        sub.on_change(lambda ch: db_changes.append(ch.version), keys=["db"])
        sub.on_invalidate(lambda inv: user_invalidations.append(inv.version),
                          prefixes=["user:"])
        sub.on_change(lambda ch: heard.append(ch.version))
        sub.on_invalidate(lambda inv: heard.append(inv.version))
        pub.publish({"name": "x"})
        pub.publish({"db.host": "y"})
        pub.invalidate(["order:1"])
        pub.invalidate(["user:1"])
        # Listeners run in order on one thread: once the unfiltered ones heard the last, the
        # filtered ones have had their chance at every event (settings v1, v2; invalidations
        # seq 1, 2: numbered apart).
        wait_until(lambda: heard == [1, 2, 1, 2], what="every event")
        assert db_changes == [2]
        assert user_invalidations == [2]


def test_signed_messages_only(namespace: str) -> None:
    config = make_config(security={"hmac_key": "s3cret-key"})
    with Publisher(config, namespace=namespace) as pub, \
            Subscriber(config, namespace=namespace) as sub:
        pub.publish({"a": 1})
        sub.wait_for_version(1)
        assert sub.epoch is not None
        event = Envelope(namespace, "config", sub.epoch, version=2, checksum=EMPTY_CHECKSUM,
                         changes=(LeafChange("a", "1", "666"),), source="x", origin="evil:1")
        channel = pub.core.keys().config_channel
        with redis.Redis.from_url(REDIS_URL) as raw:
            raw.publish(channel, encode_event(event))  # unsigned
            raw.publish(channel, encode_event(event, key=b"guess"))  # signed with another key
        wait_until(lambda: sub.core.stats.rejected_messages == 2, what="rejections")
        assert sub.get("a") == 1
        r = pub.publish({"a": 2})
        sub.wait_for_version(r.version)
        assert sub.get("a") == 2
        assert "s3cret" not in repr(config) and "s3cret" not in str(sub.status())


async def test_a_log_ahead_of_the_snapshot_does_not_break_publishing(
    apub: AsyncPublisher, raw_redis: redis.Redis
) -> None:
    await apub.publish({"a": 1})
    await apub.publish({"a": 2})
    raw_redis.xadd(apub.keys().log, {"e": b"{}"}, id="3-0")  # e.g. a restored older snapshot
    result = await apub.publish({"a": 3})
    assert result.version == 3
    assert [e.version for e in await apub.history()] == [3]
    assert (await apub.snapshot()).settings == {"a": 3}


async def test_caller_values_are_copied_not_shared(apub: AsyncPublisher) -> None:
    hosts = ["a"]
    doc = {"hosts": hosts}
    assert (await apub.replace(doc)).version == 1
    hosts.append("b")  # the caller reuses its list
    assert (await apub.replace(doc)).version == 2
    assert (await apub.snapshot()).settings == {"hosts": ["a", "b"]}


async def test_rollback_plan_shows_the_diff_and_an_expected_version_guards_the_publish(
    apub: AsyncPublisher, config: HotReloadConfig, namespace: str
) -> None:
    await apub.publish({"a": 1, "b": 1})
    await apub.publish({"a": 2, "c": 3}, delete=["b"])
    plan = await apub.plan_rollback(1)
    assert (plan.namespace, plan.from_version, plan.to_version) == (namespace, 2, 1)
    assert plan.settings == {"a": 1, "b": 1}
    assert {(c.op, c.key, c.old, c.new) for c in plan.changes} == {
        ("set", "a", 2, 1), ("set", "b", MISSING, 1), ("delete", "c", 3, None)}
    assert await apub.version() == 2  # a plan publishes nothing
    async with AsyncPublisher(config, namespace=namespace) as other:
        await other.publish({"d": 4})  # someone publishes after the plan was shown
    with pytest.raises(ConflictError, match="is at v3, not v2: it changed meanwhile"):
        await apub.rollback(1, expected_version=plan.from_version)  # apub's state is stale
    assert await apub.version() == 3
    result = await apub.rollback(1, expected_version=3)
    assert result.version == 4
    assert (await apub.snapshot()).settings == {"a": 1, "b": 1}
