"""Upgrading a namespace written by protocol 1 (docs/protocol.md §13), on the memory transport.

Protocol 1 is a frozen copy (tests/legacy_v1): what it wrote is what a protocol-1 publisher
wrote, and how it decodes the notice is how a protocol-1 subscriber reacts to the upgrade.
"""

from __future__ import annotations

import pytest

from hotreload.errors import ProtocolError
from hotreload.wire import keys_for, legacy_keys_for
from tests.legacy_v1 import protocol as v1
from tests.unit.memory_fixtures import Pods, eventually

OLD = legacy_keys_for("app")


def write_v1(pods: Pods, settings: dict[str, object], version: int = 41) -> None:
    data = v1.encode_settings(settings)
    pods.server.put(OLD.snapshot, {
        b"protocol": b"1", b"version": str(version).encode(), b"settings": data,
        b"checksum": v1.checksum(data).encode(), b"updated_at": b"12.5",
        b"epoch": b"5f0c3a9e1b2d4c67"})


async def test_a_v2_subscriber_starts_from_a_v1_namespace_and_follows_its_migration(
        pods: Pods) -> None:
    write_v1(pods, {"db": {"pool": 5}, "feature": True})
    sub = await pods.subscriber()
    assert sub.as_dict() == {"db": {"pool": 5}, "feature": True}
    assert sub.server_note is not None and "protocol 1" in sub.server_note
    notices = pods.server.listen(OLD.channel)  # a protocol-1 subscriber's channel
    first = await notices.next(1.0)
    assert first is not None and first.kind == "subscribed"
    result = await pods.publisher().publish({"db.pool": 6})
    assert result.recovered == "migrated from protocol 1"
    await eventually(lambda: sub.get("db.pool") == 6, what="the migrated namespace followed")
    assert sub.get("feature") is True and sub.epoch == result.epoch
    assert sub.server_note is None
    # the protocol-1 keys are marked, expire, and protocol-1 subscribers got one notice
    assert pods.server.raw(OLD.snapshot)[b"protocol"] == b"2"
    assert 0 < (pods.server.ttl(OLD.snapshot) or 0) <= 7 * 24 * 3600
    message = await notices.next(1.0)
    assert message is not None and message.kind == "config"
    with pytest.raises(ProtocolError, match="unsupported protocol version 2"):
        v1.decode_envelope(message.data)  # what a protocol-1 subscriber logs, once
    # a protocol-1 subscriber starting now reports the upgrade and does not start
    with pytest.raises(ProtocolError, match="unsupported protocol"):
        v1.decode_snapshot("app", pods.server.raw(OLD.snapshot))


async def test_the_migration_keeps_every_setting_and_starts_at_version_1(pods: Pods) -> None:
    settings = {"a": {"b": [1, 2], "c": None}, "d": "x", "e": {}}
    write_v1(pods, settings, version=400)
    pub = pods.publisher()
    snap = await pub.snapshot()
    assert snap.version == 0  # not migrated by a read
    result = await pub.replace(settings)
    assert result.version == 1 and result.recovered == "migrated from protocol 1"
    assert (await pub.snapshot()).settings == settings
    assert pods.server.raw(keys_for("app").meta)[b"version"] == b"1"
