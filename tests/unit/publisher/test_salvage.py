"""`AsyncPublisher.salvage` (what is still readable) and `rebuild` (a repair into a new epoch),
on the memory transport. The real-Redis cases of every corruption are in
tests/integration/test_repair.py."""

from __future__ import annotations

import time

from hotreload.wire import compare_epochs, keys_for
from tests.unit.memory_fixtures import Pods, config, eventually

KEYS = keys_for("app")


async def test_a_healthy_namespace_reads_whole(pods: Pods) -> None:
    pub = pods.publisher()
    await pub.publish({"db": {"host": "a", "pool": 5}, "x": [1]})
    found = await pub.salvage()
    assert found.healthy and found.taken_from == "leaves" and not found.dropped
    assert found.document == {"db": {"host": "a", "pool": 5}, "x": [1]} and found.kept == 3
    assert found.found[0].startswith("head: v1 of epoch ")


async def test_bad_leaves_are_dropped_and_listed(pods: Pods) -> None:
    pub = pods.publisher()
    await pub.publish({"db": {"host": "a", "pool": 5}, "ok": True})
    leaves = dict(pods.server.raw(KEYS.leaves))
    leaves[b"db.pool"] = b"{nope"          # not JSON
    leaves[b"bad..key"] = b"1"             # not a key
    leaves[b"\xff"] = b"1"                 # not UTF-8
    leaves[b"db"] = b"2"                   # a value where keys below it are set
    leaves[b"ok"] = b"\xfe"                # a value that is not UTF-8
    pods.server.put(KEYS.leaves, leaves)
    found = await pub.salvage()
    assert not found.healthy
    assert found.document == {"db": {"host": "a"}}
    assert [key for key, _ in found.dropped] == sorted(["db.pool", "bad..key", "\ufffd", "db",
                                                        "ok"])
    assert "leaves: do not match the head's count and checksum" in found.found


async def test_unreadable_leaves_fall_back_to_the_checkpoint(pods: Pods) -> None:
    pub = pods.publisher()
    await pub.publish({"a": 1, "b": {"c": "x"}})
    pods.server.put(KEYS.leaves, b"a string now")
    found = await pub.salvage()
    assert found.taken_from == "checkpoint" and found.document == {"a": 1, "b": {"c": "x"}}
    assert "leaves: a string, not a hash (unreadable)" in found.found
    pods.server.put(KEYS.checkpoint, b"also a string")
    nothing = await pub.salvage()
    assert nothing.taken_from == "nothing" and nothing.document == {}


async def test_rebuild_starts_a_newer_epoch_than_the_one_it_replaces(pods: Pods) -> None:
    """Even when the server's epoch is dated in the future (a clock ahead), the rebuilt epoch
    is newer, so subscribers take it instead of holding the old one."""
    pub = pods.publisher()
    await pub.publish({"a": 1})
    sub = await pods.subscriber()
    future = f"{int(time.time() * 1000) + 3_600_000}-0123456789abcdef"
    meta = dict(pods.server.raw(KEYS.meta))
    meta[b"epoch"] = future.encode()
    pods.server.put(KEYS.meta, meta)
    fresh = pods.publisher(config())
    result = await fresh.rebuild({"a": 2})
    assert result.version == 1 and result.recovered
    assert result.epoch is not None and compare_epochs(result.epoch, future) > 0
    await eventually(lambda: sub.as_dict() == {"a": 2}, what="the rebuild followed")


async def test_rebuild_of_a_healthy_namespace_is_a_new_epoch_too(pods: Pods) -> None:
    pub = pods.publisher()
    first = await pub.publish({"a": 1})
    again = await pub.rebuild({"a": 1})
    assert again.changed and again.version == 1 and again.epoch != first.epoch
    assert (await pub.snapshot()).settings == {"a": 1}
