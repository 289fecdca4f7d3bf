"""heads.py: the head, the checkpoint and the invalidation head (protocol §4, §6, §9)."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest

from hotreload.errors import ProtocolError, SignatureError
from hotreload.wire import (
    Canary,
    CanaryTarget,
    Head,
    InvalidationHead,
    LeafChange,
    decode_checkpoint,
    decode_head,
    decode_head_triplet,
    decode_invalidation_head,
    encode_canary,
    encode_checkpoint,
    encode_head,
    encode_invalidation_head,
)

E1 = "1764086400000-5f0c3a9e1b2d4c67"
CS = "ab" * 32
CANARY = Canary("c-1", CanaryTarget(service="api", percent=50.0),
                (LeafChange("db.pool_size", "10", "40"),), 6)


def as_bytes(fields: dict[str, Any]) -> dict[bytes, bytes]:
    return {k.encode(): v if isinstance(v, bytes) else v.encode() for k, v in fields.items()}


@pytest.mark.parametrize("canary", [None, CANARY])
@pytest.mark.parametrize("key", [None, b"k"])
def test_head_round_trips_as_str_or_bytes(canary: Canary | None, key: bytes | None) -> None:
    head = Head("app", E1, 7, CS, 3, 1764086400.125, canary)
    fields = encode_head(head, key=key)
    assert fields["canary"] == ("" if canary is None else encode_canary(canary))
    assert ("sig" in fields) == (key is not None)
    assert decode_head("app", fields, key=key) == head
    assert decode_head("app", as_bytes(fields), key=key) == head
    stored = {k: v for k, v in fields.items() if v != ""}  # HSET "" deletes the field
    assert decode_head("app", stored, key=key) == head


def test_head_signature_covers_the_canary_bytes() -> None:
    fields = encode_head(Head("app", E1, 7, CS, 3, 1.0, CANARY), key=b"k")
    digest = hashlib.sha256(fields["canary"].encode()).hexdigest()
    text = f"hotreload/2 meta\napp\n{E1}\n7\n{CS}\n{digest}"
    assert fields["sig"] == hmac.new(b"k", text.encode(), hashlib.sha256).hexdigest()
    tampered = fields | {"canary": fields["canary"].replace("40", "41")}
    with pytest.raises(SignatureError):
        decode_head("app", tampered, key=b"k")
    with pytest.raises(SignatureError, match="not signed"):
        decode_head("app", {k: v for k, v in fields.items() if k != "sig"}, key=b"k")
    with pytest.raises(SignatureError):
        decode_head("other", fields, key=b"k")


def test_head_canary_size_is_checked_before_parsing() -> None:
    fields = encode_head(Head("app", E1, 7, CS, 3, 1.0, CANARY))
    assert decode_head("app", fields, max_bytes=len(fields["canary"])) is not None
    with pytest.raises(ProtocolError) as info:
        decode_head("app", fields, max_bytes=len(fields["canary"]) - 1)
    assert info.value.reason == "size"


def test_absent_head() -> None:
    assert decode_head("app", {}) is None
    assert decode_head_triplet(None, None, None) == (None, 0, "0" * 64)


GOOD = {"protocol": "2", "epoch": E1, "version": "7", "checksum": CS, "count": "3",
        "updated_at": "1764086400.125"}


@pytest.mark.parametrize(("change", "reason"), [
    ({"protocol": "1"}, "protocol"), ({"protocol": None}, "field"), ({"epoch": "e"}, "field"),
    ({"version": "0"}, "range"), ({"version": "07"}, "field"), ({"version": "-7"}, "field"),
    ({"version": "9007199254740992"}, "range"), ({"version": "1e3"}, "field"),
    ({"version": None}, "field"), ({"checksum": CS.upper()}, "field"),
    ({"count": "x"}, "field"), ({"updated_at": "nan"}, "field"),
    ({"updated_at": "1e999"}, "range"), ({"updated_at": "1_0"}, "field"),
    ({"canary": "{"}, "json"), ({"canary": '{"id":"c"}'}, "field"),
    ({"version": b"\xff"}, "field"),
])
def test_unreadable_heads(change: dict[str, Any], reason: str) -> None:
    fields = {k: v for k, v in (GOOD | change).items() if v is not None}
    with pytest.raises(ProtocolError) as info:
        decode_head("app", fields)
    assert info.value.reason == reason


def test_head_triplet() -> None:
    assert decode_head_triplet(E1.encode(), b"7", CS.encode()) == (E1, 7, CS)
    for bad in ((E1, None, CS), (E1, "0", CS), ("x", "7", CS), (E1, "7", "x")):
        with pytest.raises(ProtocolError):
            decode_head_triplet(*bad)


SETTINGS = json.dumps({"db": {"pool_size": 10}}).encode()


@pytest.mark.parametrize("key", [None, b"k"])
def test_checkpoint_round_trip(key: bytes | None) -> None:
    fields = encode_checkpoint("app", E1, 7, CS, 1, SETTINGS, key=key)
    assert fields["digest"] == hashlib.sha256(SETTINGS).hexdigest()
    cp = decode_checkpoint("app", as_bytes(fields), key=key)
    assert cp is not None
    assert (cp.epoch, cp.version, cp.checksum, cp.count, cp.settings) == (
        E1, 7, CS, 1, {"db": {"pool_size": 10}})
    assert decode_checkpoint("app", {}) is None


def test_checkpoint_rejects() -> None:
    fields = encode_checkpoint("app", E1, 7, CS, 1, SETTINGS, key=b"k")
    cases: list[tuple[dict[str, Any], bytes | None, str, int | None]] = [
        (fields | {"settings": SETTINGS + b" "}, None, "digest", None),
        ({k: v for k, v in fields.items() if k != "digest"}, None, "digest", None),
        ({k: v for k, v in fields.items() if k != "settings"}, None, "field", None),
        (fields | {"checksum": "1" * 64}, b"k", "signature", None),
        (fields, b"other", "signature", None),
        (fields, None, "size", len(SETTINGS) - 1),
        (encode_checkpoint("app", E1, 7, CS, 1, b"[1]"), None, "json", None),
        (encode_checkpoint("app", E1, 7, CS, 1, b"{" + b'"a":{' * 64 + b"}" * 65), None,
         "json", None),
        (fields | {"version": "0"}, None, "range", None),
    ]
    for bad, key, reason, limit in cases:
        with pytest.raises(ProtocolError) as info:
            decode_checkpoint("app", bad, key=key, max_bytes=limit or 1 << 26)
        assert info.value.reason == reason, (bad, reason)


def test_invalidation_head() -> None:
    head = InvalidationHead(E1, 8)
    assert decode_invalidation_head(encode_invalidation_head(head)) == head
    assert decode_invalidation_head(as_bytes(encode_invalidation_head(head))) == head
    assert decode_invalidation_head({}) is None
    for bad, reason in (({"epoch": E1, "seq": "0"}, "range"), ({"epoch": E1}, "field"),
                        ({"epoch": "x", "seq": "1"}, "field")):
        with pytest.raises(ProtocolError) as info:
            decode_invalidation_head(bad)
        assert info.value.reason == reason
