"""Publishing never makes a broken namespace the truth: corrupt, lost, rolled back (protocol §7.3).

A partial publish refuses with `RecoveryNeeded`; a replace (the whole truth) recovers into a new,
newer epoch, and subscribers follow it; subscribers never move backwards meanwhile.
"""

from __future__ import annotations

from typing import Any

import pytest

from hotreload.errors import RecoveryNeeded
from hotreload.wire import compare_epochs, keys_for
from tests.unit.memory_fixtures import Pods, config, eventually

KEYS = keys_for("app")
STATE_KEYS = (KEYS.meta, KEYS.leaves, KEYS.checkpoint, KEYS.log)


def capture(pods: Pods) -> dict[str, Any]:
    return {key: pods.server.raw(key) for key in STATE_KEYS}


def restore(pods: Pods, saved: dict[str, Any]) -> None:
    for key, value in saved.items():
        if key == KEYS.log:
            pods.server.delete(key)
            for entry_id, fields in value or []:
                pods.server.xadd(key, int(entry_id.split(b"-")[0]), fields)
        elif value is None:
            pods.server.delete(key)
        else:
            pods.server.put(key, value)


@pytest.mark.parametrize("corrupt", [
    {b"protocol": b"2", b"epoch": b"1-0000000000000000", b"version": b"garbage"},
    {b"protocol": b"2", b"epoch": b"1-0000000000000000", b"version": b"-5"},
    {b"protocol": b"2", b"epoch": b"1-0000000000000000", b"version": str(2**64 + 1).encode()},
    b"a string where the head hash should be",
], ids=["garbage", "negative", "huge", "wrong-type"])
async def test_a_corrupt_head_refuses_partial_publishes_and_replace_recovers(
        pods: Pods, corrupt: Any, caplog: pytest.LogCaptureFixture) -> None:
    pub = pods.publisher()
    first = await pub.publish({"db": {"host": "a"}, "feature": True})
    sub = await pods.subscriber()
    pods.server.put(KEYS.meta, corrupt)
    with pytest.raises(RecoveryNeeded, match="hotreload repair") as info:
        await pods.publisher().publish({"feature": False})
    assert info.value.reason == "corrupt"
    assert sub.version == 1 and sub.get("db.host") == "a"
    result = await pods.publisher().replace({"db": {"host": "b"}, "feature": False})
    assert result.changed and result.recovered and result.version == 1
    assert first.epoch is not None and result.epoch is not None
    assert compare_epochs(result.epoch, first.epoch) >= 0 and result.epoch != first.epoch
    assert any(r.levelname == "ERROR" and "recovering" in r.getMessage() for r in caplog.records)
    await eventually(lambda: sub.get("db.host") == "b", what="the subscriber follows")
    assert sub.version == 1 and sub.epoch == result.epoch


async def test_after_data_loss_a_partial_publish_is_refused(pods: Pods) -> None:
    """The publisher knew the namespace: its few keys must not become the whole truth."""
    pub = pods.publisher()
    await pub.publish({"db": {"host": "a", "pool": 10}, "feature": True})
    pods.server.lose_data()
    with pytest.raises(RecoveryNeeded, match="replace") as info:
        await pub.publish({"feature": False})
    assert info.value.reason == "lost"
    assert pods.server.raw(KEYS.meta) is None  # nothing was written
    result = await pub.replace({"db": {"host": "a", "pool": 10}, "feature": False})
    assert result.recovered and result.version == 1


async def test_a_replayed_older_state_never_moves_subscribers_or_publishers_back(
        pods: Pods) -> None:
    cfg = config(security={"hmac_key": "a-signing-key-for-tests"})
    pub = pods.publisher(cfg)
    await pub.publish({"n": 1})
    await pub.publish({"n": 2})
    old = capture(pods)  # a validly signed state at v2
    for i in range(3, 6):
        await pub.publish({"n": i})
    sub = await pods.subscriber(cfg)
    assert sub.version == 5
    restore(pods, old)  # an attacker (or a restored backup) puts v2 back
    await eventually(lambda: sub.server_note is not None, what="the rollback noticed")
    assert sub.version == 5 and sub.get("n") == 5  # never backwards
    assert "older version" in sub.server_note
    with pytest.raises(RecoveryNeeded) as info:
        await pub.publish({"n": 6})  # never rebase on state older than seen
    assert info.value.reason == "stale"
    result = await pub.replace({"n": 6})
    assert result.recovered
    await eventually(lambda: sub.get("n") == 6, what="the recovered history followed")
    assert sub.server_note is None


async def test_a_replayed_older_epoch_is_held_too(pods: Pods) -> None:
    cfg = config(security={"hmac_key": "a-signing-key-for-tests"})
    pub = pods.publisher(cfg)
    await pub.publish({"n": 1})
    old_epoch = capture(pods)
    pods.server.lose_data()
    await pub.replace({"n": 2})  # a new (newer) epoch
    sub = await pods.subscriber(cfg)
    restore(pods, old_epoch)
    pods.server.cut()  # the reconnect's catch-up sees the old epoch
    await eventually(lambda: sub.server_note is not None, what="the old epoch noticed")
    assert sub.get("n") == 2
    assert "older history" in sub.server_note


async def test_a_fork_at_the_same_version_converges_on_the_server(pods: Pods) -> None:
    """A publisher with no memory of the namespace cannot know it was restored: it continues
    the restored history, and its v2 differs from the v2 a subscriber holds. The subscriber
    sees the same version with another checksum and loads: every pod converges on the server
    (a daemon or a publisher that saw v2 would have recovered into a new epoch instead)."""
    pub = pods.publisher()
    await pub.publish({"n": 1})
    saved = capture(pods)
    await pub.publish({"n": 2})
    sub = await pods.subscriber()
    restore(pods, saved)
    result = await pods.publisher().publish({"other": True})  # v2 of the restored history
    assert result.version == 2
    await eventually(lambda: sub.get("other") is True, what="convergence on the server")
    assert sub.as_dict() == {"n": 1, "other": True} and sub.version == 2
