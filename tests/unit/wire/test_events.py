"""events.py: encoding, decoding and signing events (protocol §5, §6, §9, §10)."""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
from typing import Any

import pytest

from hotreload.errors import ProtocolError, SignatureError
from hotreload.wire import (
    MISSING,
    UNSET,
    Canary,
    CanaryTarget,
    Change,
    Digester,
    Envelope,
    LeafChange,
    decode_event,
    encode_event,
    sign_event,
    split_signature,
)

E1 = "1764086400000-5f0c3a9e1b2d4c67"
CS = "30a2a27897626f52a99c6b8f917463f665e5e0f1cc23f851dfb376fda4953306"
CHANGES = (LeafChange("db.pool_size", "10", "20"), LeafChange("feature.search", None, "true"),
           LeafChange("legacy.mode", '"compat"', None))


def config(**kw: Any) -> Envelope:
    base: dict[str, Any] = {"namespace": "app", "kind": "config", "epoch": E1, "version": 7,
                            "checksum": CS, "changes": CHANGES, "source": "cli",
                            "origin": "h:1", "ts": 1764086400.125}
    base.update(kw)
    return Envelope(**base)


def good_obj() -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(encode_event(config()))
    return obj


def reject(obj: Any, reason: str, **kw: Any) -> ProtocolError:
    data = obj if isinstance(obj, (bytes, str)) else json.dumps(obj).encode()
    with pytest.raises(ProtocolError) as info:
        decode_event(data, **kw)
    assert info.value.reason == reason, info.value
    return info.value


# ------------------------------------------------------------------ round trips


def test_config_events_round_trip_in_spec_order() -> None:
    data = encode_event(config())
    assert list(json.loads(data)) == ["protocol", "namespace", "kind", "epoch", "version",
                                      "checksum", "changes", "source", "origin", "ts"]
    env = decode_event(data)
    assert env == config()
    assert env.canary is UNSET and not env.reset and not env.ack
    assert env.value_changes() == (Change("set", "db.pool_size", 10, 20),
                                   Change("set", "feature.search", MISSING, True),
                                   Change("delete", "legacy.mode", "compat"))
    assert config().value_changes() == env.value_changes()  # parsed lazily when not decoded


def test_optional_members_round_trip() -> None:
    for env in (config(version=1, changes=(), reset=True), config(canary=None, ack=True),
                config(extra={"trace": {"id": [1]}})):
        assert decode_event(encode_event(env)) == env
    assert decode_event(encode_event(config(canary=None))).canary is None


def test_canary_and_invalidate_events_round_trip() -> None:
    canary = Canary("c-1", CanaryTarget("api*", None, 12.5), (LeafChange("a", "1", "2"),), 6)
    for env in (
        Envelope("app", "canary", E1, version=8, checksum=CS, canary=canary),
        Envelope("app", "canary", E1, version=9, checksum=CS, canary=None),
        Envelope("app", "invalidate", E1, seq=3, keys=("user:1",), prefixes=("o:",), all=True,
                 source="postgres", origin="h:1", ts=2.0),
    ):
        assert decode_event(encode_event(env)) == env


def test_decode_accepts_bytes_like_and_text() -> None:
    data = encode_event(config())
    for form in (data, bytearray(data), memoryview(data), data.decode(), data + b" \n"):
        assert decode_event(form) == config()


def test_integer_ts_reads_as_float() -> None:
    obj = good_obj() | {"ts": 5}
    env = decode_event(json.dumps(obj))
    assert env.ts == 5.0 and type(env.ts) is float


def test_unknown_members_are_kept_aside() -> None:
    obj = good_obj() | {"trace_id": "abc", "sig": "ignored without a key"}
    env = decode_event(json.dumps(obj))
    assert dict(env.extra) == {"trace_id": "abc"}
    assert env == config(extra={"trace_id": "abc"})


# ------------------------------------------------------------------ rejects


@pytest.mark.parametrize(("mutate", "reason"), [
    (lambda o: o.update(protocol=1), "protocol"),
    (lambda o: o.update(protocol=3), "protocol"),
    (lambda o: o.pop("protocol"), "field"),
    (lambda o: o.update(protocol="2"), "field"),
    (lambda o: o.update(protocol=2.0), "field"),
    (lambda o: o.update(protocol=True), "field"),
    (lambda o: o.update(kind="settings"), "kind"),
    (lambda o: o.update(kind=None), "field"),
    (lambda o: o.update(namespace="a b"), "field"),
    (lambda o: o.update(epoch="e1"), "field"),
    (lambda o: o.update(source=None), "field"),
    (lambda o: o.update(origin=1), "field"),
    (lambda o: o.update(ts="now"), "field"),
    (lambda o: o.update(ts=False), "field"),
    (lambda o: o.update(ts=-1), "range"),
    (lambda o: o.update(ts=2**53), "range"),
    (lambda o: o.update(ts=1e300), "range"),
    (lambda o: o.update(version=0), "range"),
    (lambda o: o.update(version=2**53), "range"),
    (lambda o: o.update(version="7"), "field"),
    (lambda o: o.update(version=True), "field"),
    (lambda o: o.update(checksum=CS.upper()), "field"),
    (lambda o: o.pop("checksum"), "field"),
    (lambda o: o.pop("changes"), "field"),
    (lambda o: o.update(reset=1), "field"),
    (lambda o: o.update(reset=True), "field"),
    (lambda o: o.update(ack="yes"), "field"),
    (lambda o: o.update(canary={"id": "c"}), "field"),
    (lambda o: o.update(changes=[{"key": "a..b", "new": "1"}]), "key"),
    (lambda o: o.update(changes=[{"key": "a", "new": "nope"}]), "text"),
])
def test_each_rule_rejects_with_its_reason(mutate: Any, reason: str) -> None:
    obj = good_obj()
    mutate(obj)
    reject(obj, reason)


def test_canary_events_need_their_canary() -> None:
    obj = good_obj() | {"kind": "canary"}
    reject(obj, "field")
    obj["canary"] = {"id": "c", "target": {"percent": 101}, "changes": [], "base": 1}
    reject(obj, "range")


@pytest.mark.parametrize(("mutate", "reason"), [
    (lambda o: o.update(seq=0), "range"),
    (lambda o: o.pop("seq"), "field"),
    (lambda o: o.update(keys="k"), "field"),
    (lambda o: o.update(prefixes=[1]), "field"),
    (lambda o: o.pop("all"), "field"),
    (lambda o: o.update(all=0), "field"),
])
def test_invalidate_rules(mutate: Any, reason: str) -> None:
    obj = json.loads(encode_event(Envelope("app", "invalidate", E1, seq=3)))
    mutate(obj)
    reject(obj, reason)


def test_wrong_namespace_size_and_json() -> None:
    data = encode_event(config())
    reject(data, "namespace", namespace="billing")
    assert decode_event(data, namespace="app") == config()
    reject(data, "size", max_bytes=len(data) - 1)
    assert decode_event(data, max_bytes=len(data)) == config()
    for bad in (b"nope", b"[1]", b"\xff", data + b"x", b"", b'{"a":NaN}'):
        reject(bad, "json")


@pytest.mark.parametrize("levels", [65, 1000, 10_000, 200_000])
def test_deep_events_are_protocol_errors(levels: int) -> None:
    reject(b'{"x":' + b"[" * levels + b"]" * levels + b"}", "json")


def test_deep_events_never_reach_the_c_decoder_with_a_raised_recursion_limit() -> None:
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(1_000_000)
    try:
        reject(b"[" * 200_000 + b"]" * 200_000, "json")
    finally:
        sys.setrecursionlimit(old)


def test_many_changes_are_not_mistaken_for_depth() -> None:
    changes = tuple(LeafChange(f"k{i:04d}", "[[1]]", "[[2]]") for i in range(300))
    env = config(changes=changes)
    assert decode_event(encode_event(env)) == env


# ------------------------------------------------------------------ signing


def test_signing_appends_the_exact_tail() -> None:
    body = encode_event(config())
    signed = encode_event(config(), key=b"k")
    sig = hmac.new(b"k", body, hashlib.sha256).hexdigest()
    assert signed == body[:-1] + b',"sig":"' + sig.encode() + b'"}'
    assert sign_event(body, b"k") == signed
    assert split_signature(signed) == (body, sig)
    assert decode_event(signed, key=b"k") == config()
    assert decode_event(signed) == config()  # without a key, sig is ignored
    with pytest.raises(ProtocolError):
        sign_event(b"[1]", b"k")


def tail_variants(signed: bytes) -> dict[str, bytes]:
    body, sig = signed[:-74] + b"}", signed[-66:-2]
    return {
        "unsigned": body,
        "upper-case hex": body[:-1] + b',"sig":"' + sig.upper() + b'"}',
        "space before sig": body[:-1] + b', "sig":"' + sig + b'"}',
        "space after colon": body[:-1] + b',"sig": "' + sig + b'"}',
        "space at the end": signed + b" ",
        "newline at the end": signed + b"\n",
        "63 digits": body[:-1] + b',"sig":"' + sig[:63] + b'"}',
        "65 digits": body[:-1] + b',"sig":"' + sig + b'0"}',
        "sig not last": body[:-1].replace(b'"protocol":2,', b'"protocol":2,"sig":"' + sig
                                          + b'",') + b"}",
    }


@pytest.mark.parametrize("variant", list(tail_variants(b"x" * 100)))
def test_anything_but_the_exact_tail_is_unsigned(variant: str) -> None:
    signed = encode_event(config(), key=b"k")
    data = tail_variants(signed)[variant]
    assert split_signature(data) is None
    with pytest.raises(SignatureError, match="not signed") as info:
        decode_event(data, key=b"k")
    assert info.value.reason == "signature"


def test_wrong_signatures() -> None:
    signed = encode_event(config(), key=b"k")
    with pytest.raises(SignatureError, match="does not match"):
        decode_event(signed, key=b"other")
    with pytest.raises(SignatureError, match="does not match"):
        decode_event(signed.replace(b'"version":7', b'"version":8'), key=b"k")


def test_signature_is_checked_before_parsing() -> None:
    with pytest.raises(SignatureError):
        decode_event(b"not json at all", key=b"k")


# ------------------------------------------------------------------ encoding checks


@pytest.mark.parametrize("env", [
    config(epoch="e1"), config(namespace="a b"), config(version=0), config(checksum="x"),
    config(changes=(LeafChange("b", None, "1"), LeafChange("a", None, "1"))),
    config(reset=True), config(canary=Canary("c", CanaryTarget(), (), 1)),
    Envelope("app", "canary", E1, version=1, checksum=CS),
    Envelope("app", "invalidate", E1, seq=0), config(ts=float("nan")),
    Envelope("app", "other", E1),  # type: ignore[arg-type]
])
def test_encode_refuses_invalid_envelopes(env: Envelope) -> None:
    with pytest.raises(ProtocolError):
        encode_event(env)


def test_decoded_checksums_verify_with_digester() -> None:
    leaves = {"db.pool_size": "10", "db.host": '"db1"', "legacy.mode": '"compat"'}
    d = Digester()
    env = decode_event(encode_event(config()))
    assert d.advance(d.checksum_of(leaves), env.changes) == env.checksum
