"""legacy.py: protocol-1 snapshots and the migration notice (protocol §13).

Cross-checked against the protocol-1 implementation itself (a frozen copy in tests/legacy_v1).
"""

from __future__ import annotations

import pytest

from hotreload.errors import ProtocolError, SignatureError
from hotreload.wire import decode_legacy_snapshot, legacy_keys_for, legacy_notice
from hotreload.wire.legacy import LEGACY_TTL_SECONDS, legacy_checksum
from tests.legacy_v1 import protocol as v1


def v1_snapshot(settings: dict[str, object], key: bytes | None = None) -> dict[bytes, bytes]:
    data = v1.encode_settings(settings)
    cs = v1.checksum(data)
    fields = {b"protocol": b"1", b"version": b"41", b"settings": data, b"checksum": cs.encode(),
              b"updated_at": b"12.5", b"epoch": b"5f0c3a9e1b2d4c67"}
    if key:
        fields[b"sig"] = v1.snapshot_signature(key, "app", "5f0c3a9e1b2d4c67", 41, cs).encode()
    return fields


@pytest.mark.parametrize("key", [None, b"k"])
def test_reads_what_protocol_1_wrote(key: bytes | None) -> None:
    snap = decode_legacy_snapshot("app", v1_snapshot({"db": {"pool": 5}}, key), key=key)
    assert snap is not None
    assert (snap.epoch, snap.version, snap.settings) == ("5f0c3a9e1b2d4c67", 41,
                                                         {"db": {"pool": 5}})
    assert snap.checksum == legacy_checksum(v1.encode_settings({"db": {"pool": 5}}))


def test_absent_and_migrated_snapshots_read_as_none() -> None:
    assert decode_legacy_snapshot("app", {}) is None
    assert decode_legacy_snapshot("app", v1_snapshot({"a": 1}) | {b"protocol": b"2"}) is None


@pytest.mark.parametrize(("change", "reason"), [
    ({b"settings": b'{"a":2}'}, "checksum"), ({b"protocol": b"3"}, "protocol"),
    ({b"version": b"0"}, "range"), ({b"epoch": b""}, "field"),
])
def test_bad_snapshots(change: dict[bytes, bytes], reason: str) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_legacy_snapshot("app", v1_snapshot({"a": 1}) | change)
    assert info.value.reason == reason


def test_signatures() -> None:
    with pytest.raises(SignatureError):
        decode_legacy_snapshot("app", v1_snapshot({"a": 1}), key=b"k")
    with pytest.raises(SignatureError):
        decode_legacy_snapshot("app", v1_snapshot({"a": 1}, b"other"), key=b"k")


def test_settings_must_be_an_object() -> None:
    data = b"[1]"
    fields = v1_snapshot({}) | {b"settings": data, b"checksum": v1.checksum(data).encode()}
    with pytest.raises(ProtocolError) as info:
        decode_legacy_snapshot("app", fields)
    assert info.value.reason == "json"


def test_the_notice_is_rejected_by_protocol_1_subscribers() -> None:
    notice = legacy_notice("app")
    assert notice == (b'{"protocol":2,"namespace":"app",'
                      b'"notice":"migrated to protocol 2; upgrade hotreload"}')
    with pytest.raises(ProtocolError, match="unsupported protocol version 2"):
        v1.decode_envelope(notice)
    # and lives where protocol 1 listens
    assert legacy_keys_for("app").channel == v1.keys_for("app").channel
    assert legacy_keys_for("app").snapshot == v1.keys_for("app").snapshot
    assert LEGACY_TTL_SECONDS == 7 * 86400
    with pytest.raises(ProtocolError):
        legacy_notice("a b")
