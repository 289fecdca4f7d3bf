"""Following a namespace on the memory transport: loads, events, gaps, reconnects, data loss."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import BaseModel

from hotreload.subscriber import Invalidation, SettingsChange
from tests.unit.memory_fixtures import Pods, Recorder, config, eventually


class Strict(BaseModel):
    n: int = 0


async def test_starts_from_the_server_and_applies_each_event(pods: Pods) -> None:
    pub = pods.publisher()
    await pub.publish({"db": {"host": "a", "pool": 10}, "feature": True})
    sub = await pods.subscriber()
    seen: list[SettingsChange] = []
    sub.on_change(seen.append)
    assert sub.version == 1 and sub.as_dict() == {"db": {"host": "a", "pool": 10},
                                                  "feature": True}
    result = await pub.publish({"db.pool": 20}, ["feature"])
    await sub.wait_for_version(result.version, 3)
    assert sub.get("db.pool") == 20 and sub.get("feature") is None
    assert [(c.version, c.keys) for c in seen] == [(2, ("db.pool", "feature"))]
    assert sub.stats.reloads == 1 and sub.stats.events == 1


async def test_a_namespace_created_after_start_is_followed_without_a_load(pods: Pods) -> None:
    sub = await pods.subscriber()
    hook = Recorder()
    sub.register_cache(hook)
    assert sub.version == 0 and sub.epoch is None
    seen: list[int] = []
    sub.on_change(lambda ch: seen.append(ch.version))
    result = await pods.publisher().publish({"n": 1})
    await sub.wait_for_version(result.version, 3)
    assert seen == [1] and sub.get("n") == 1
    assert sub.stats.reloads == 1  # the start-up load only
    assert all(not e.all for e in hook.events)  # no "invalidate everything"


async def test_events_missed_while_cut_off_are_replayed_in_order(pods: Pods) -> None:
    pub = pods.publisher()
    await pub.publish({"n": 0})
    sub = await pods.subscriber()
    seen: list[int] = []
    sub.on_change(lambda ch: seen.append(ch.version))
    pods.server.cut()
    for i in range(1, 6):
        last = await pub.publish({"n": i})
    await sub.wait_for_version(last.version, 5)
    assert seen == [2, 3, 4, 5, 6] and sub.get("n") == 5
    assert sub.stats.replays >= 1 and sub.stats.reloads == 1


async def test_a_gap_longer_than_the_log_is_a_load(pods: Pods) -> None:
    pub = pods.publisher(config(log_maxlen=3))
    await pub.publish({"n": 0})
    sub = await pods.subscriber()
    pods.server.cut()
    for i in range(1, 30):
        last = await pub.publish({"n": i})
    await sub.wait_for_version(last.version, 5)
    assert sub.get("n") == 29 and sub.stats.reloads == 2


async def test_a_gap_larger_than_the_replay_limit_is_a_load_not_a_replay(pods: Pods) -> None:
    pub = pods.publisher()
    await pub.publish({"n": 0})
    sub = await pods.subscriber(config(subscriber={"replay_limit": 5}))
    pods.server.cut()
    for i in range(1, 12):
        last = await pub.publish({"n": i})
    await sub.wait_for_version(last.version, 5)
    assert sub.stats.replays == 0 and sub.stats.reloads == 2


async def test_redis_losing_its_data_keeps_the_last_settings_then_follows_the_new_history(
        pods: Pods) -> None:
    pub = pods.publisher()
    await pub.publish({"db": {"host": "a"}, "n": 1})
    sub = await pods.subscriber()
    hook = Recorder()
    sub.register_cache(hook)
    changes: list[SettingsChange] = []
    sub.on_change(changes.append)
    pods.server.lose_data()
    await eventually(lambda: sub.server_note is not None, what="the loss noticed")
    assert "no state on the server" in sub.server_note
    assert sub.get("db.host") == "a" and sub.version == 1  # the last known settings stay
    assert sub.link_state == "stale"
    result = await pods.publisher().replace({"db": {"host": "b"}, "n": 2})
    await eventually(lambda: sub.get("db.host") == "b", what="the new history")
    assert sub.epoch == result.epoch and sub.server_note is None
    (change,) = changes  # version 1 of a new epoch: listeners are told the history changed
    assert change.version == 1 and change.epoch_changed and change.epoch == result.epoch


async def test_rejected_settings_keep_the_last_good_ones(pods: Pods) -> None:
    pub = pods.publisher()
    await pub.publish({"n": 1})
    sub = await pods.subscriber(model=Strict)
    bad = await pub.publish({"n": "not a number"})
    await sub.wait_for_version(bad.version, 3, applied=False)
    assert sub.settings.n == 1 and sub.version == 1 and sub.last_error is not None
    good = await pub.publish({"n": 3})
    await sub.wait_for_version(good.version, 3)
    assert sub.settings.n == 3 and sub.last_error is None


async def test_an_event_whose_checksum_does_not_fit_is_never_applied(pods: Pods) -> None:
    """A forged next event (unsigned deployment) that does not match the state held."""
    from hotreload.wire import Envelope, LeafChange, encode_event

    pub = pods.publisher()
    first = await pub.publish({"n": 1})
    sub = await pods.subscriber()
    seen: list[object] = []
    sub.on_change(lambda ch: seen.append(ch.new_settings))
    assert first.epoch is not None
    forged = Envelope("app", "config", first.epoch, version=2, checksum="0" * 64,
                      changes=(LeafChange("n", "1", "666"),), source="evil", origin="x:1")
    pods.server._publish(sub.keys.config_channel, encode_event(forged))
    await eventually(lambda: sub.stats.mismatches == 1, what="the mismatch")
    assert sub.get("n") == 1 and seen == []
    result = await pub.publish({"n": 2})
    await sub.wait_for_version(result.version, 3)
    assert sub.get("n") == 2


async def test_invalidations_reach_caches_and_listeners(pods: Pods) -> None:
    pub = pods.publisher()
    await pub.publish({"n": 1})
    sub = await pods.subscriber()
    hook = Recorder()
    sub.register_cache(hook)
    heard: list[Invalidation] = []
    sub.on_invalidate(heard.append, prefixes=["user:"])
    await pub.invalidate(["user:1"])
    await pub.invalidate(["order:1"])
    await eventually(lambda: len(hook.events) == 2, what="two invalidations")
    assert [e.keys for e in hook.events] == [("user:1",), ("order:1",)]
    assert [e.keys for e in heard] == [("user:1",)]


async def test_invalidations_missed_while_cut_off_are_replayed(pods: Pods) -> None:
    pub = pods.publisher()
    await pub.publish({"n": 1})
    await pub.invalidate(["k0"])
    sub = await pods.subscriber()
    hook = Recorder()
    sub.register_cache(hook)
    pods.server.cut()
    await pub.invalidate(["k1"])
    await pub.invalidate(["k2"])
    await eventually(lambda: [e.keys for e in hook.events if e.reason == "event"]
                     == [("k1",), ("k2",)], what="the replayed invalidations")
    assert not any(e.all for e in hook.events)


async def test_caches_are_not_trusted_while_the_link_is_down(pods: Pods) -> None:
    pub = pods.publisher()
    await pub.publish({"n": 1})
    sub = await pods.subscriber()
    hook = Recorder()
    sub.register_cache(hook)
    assert hook.trusted == [True]
    pods.server.freeze()
    await eventually(lambda: hook.trusted[-1] is False, what="distrust")
    pods.server.thaw()
    await eventually(lambda: hook.trusted[-1] is True, what="trust again")


@pytest.mark.parametrize("signed", [False, True])
async def test_a_signed_or_unsigned_namespace_round_trips(pods: Pods, signed: bool) -> None:
    cfg = config(security={"hmac_key": "k" * 32}) if signed else config()
    pub = pods.publisher(cfg)
    await pub.publish({"a": [1, 2], "b": {"c": None}})
    sub = await pods.subscriber(cfg)
    result = await pub.publish({"b.c": "x"})
    await sub.wait_for_version(result.version, 3)
    assert sub.as_dict() == {"a": [1, 2], "b": {"c": "x"}}


@pytest.mark.parametrize("before", [0, 3], ids=["no-history", "history"])
async def test_an_invalidation_sent_once_started_reaches_the_caches(pods: Pods,
                                                                    before: int) -> None:
    # A subscriber is ready once its first snapshot is loaded; its syncer then reads the
    # invalidation head. An invalidation sent in between (the server answering that read
    # late) is one the caches must see: the start-up must not adopt it as already applied.
    pub = pods.publisher()
    await pub.publish({"a": 1})
    for n in range(before):
        await pub.invalidate([f"old:{n}"])
    sub = await pods.subscriber(start=False)
    gate = asyncio.Event()
    head = sub.transport.head

    async def slow_head(ns: str, *, primary: bool = False) -> Any:
        await gate.wait()
        return await head(ns, primary=primary)

    sub.transport.head = slow_head  # type: ignore[method-assign]
    await sub.start(timeout=5)
    hook = Recorder()
    sub.register_cache(hook)
    await pub.invalidate(["user:0"])
    gate.set()
    await eventually(lambda: hook.events, what="the invalidation")
    assert [(e.keys, e.all) for e in hook.events] == [(("user:0",), False)]
    assert sub.stats.invalidations == 1
