"""Checkpoints (docs/protocol.md §4.3, §7.4): written off the hot path, used by cold starts."""

from __future__ import annotations

from hotreload.wire import decode_checkpoint, keys_for
from tests.unit.memory_fixtures import Pods, config, eventually

KEYS = keys_for("app")


def checkpoint_version(pods: Pods) -> int:
    ckpt = decode_checkpoint("app", pods.server.raw(KEYS.checkpoint) or {})
    return 0 if ckpt is None else ckpt.version


async def test_a_checkpoint_follows_the_head_after_a_burst(pods: Pods) -> None:
    pub = pods.publisher(config(publisher={"checkpoint_every": 10, "checkpoint_interval": 0.2}))
    for i in range(25):
        await pub.publish({"n": i, f"k{i % 3}": i})
    await eventually(lambda: checkpoint_version(pods) == 25, what="the checkpoint caught up")


async def test_a_publisher_closing_writes_its_checkpoint(pods: Pods) -> None:
    pub = pods.publisher(config(publisher={"checkpoint_every": 1000,
                                           "checkpoint_interval": 3600}))
    for i in range(5):
        await pub.publish({"n": i})
    assert checkpoint_version(pods) == 1  # the epoch's first state only
    await pub.aclose()
    assert checkpoint_version(pods) == 5


async def test_a_cold_start_applies_the_log_tail_on_top_of_the_checkpoint(pods: Pods) -> None:
    pub = pods.publisher(config(publisher={"checkpoint_every": 1000,
                                           "checkpoint_interval": 3600}))
    await pub.publish({"db": {"host": "a", "pool": 1}, "x": [1]})
    for i in range(2, 9):
        await pub.publish({"db.pool": i}, ["x"] if i == 5 else ())
    assert checkpoint_version(pods) == 1
    sub = await pods.subscriber()
    assert sub.version == 8 and sub.as_dict() == {"db": {"host": "a", "pool": 8}}
    assert sub.stats.reloads == 1


async def test_a_damaged_checkpoint_falls_back_to_the_leaves(pods: Pods) -> None:
    pub = pods.publisher()
    await pub.publish({"a": 1, "b": {"c": "x"}})
    fields = dict(pods.server.raw(KEYS.checkpoint))
    fields[b"settings"] = b'{"a": 666}'  # no longer matches its digest
    pods.server.put(KEYS.checkpoint, fields)
    sub = await pods.subscriber()
    assert sub.as_dict() == {"a": 1, "b": {"c": "x"}}
