"""The wire protocol, version 1 (hotreload.protocol): pure functions, no services.

The checks of docs/protocol.md (now version 2) live in tests/unit/wire/test_doc.py.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from hotreload import protocol as p
from hotreload.errors import ProtocolError, SignatureError


def env(**kw: Any) -> p.Envelope:
    base: dict[str, Any] = {"namespace": "app", "version": 3, "kind": "config", "epoch": "e1",
                            "changes": (p.Change("set", "db.pool_size", 10, 20),),
                            "checksum": "sha256:" + "0" * 64, "source": "cli",
                            "origin": "host:1", "ts": 1.5}
    base.update(kw)
    return p.Envelope(**base)


# ------------------------------------------------------------------ names


def test_keys_share_one_cluster_slot() -> None:
    k = p.keys_for("app", "hr")
    assert (k.snapshot, k.log, k.channel) == ("hr:{app}:snapshot", "hr:{app}:log",
                                              "hr:{app}:events")


@pytest.mark.parametrize("bad", ["", "a b", "a:b", "{x}", "x" * 129, "é"])
def test_bad_namespace_is_rejected(bad: str) -> None:
    with pytest.raises(ProtocolError, match="invalid namespace"):
        p.keys_for(bad)


# ------------------------------------------------------------------ flatten / diff / update


def test_flatten_round_trips_nested_documents() -> None:
    doc = {"db": {"host": "x", "pool": {"min": 1, "max": 5}}, "flags": [1, {"a": 2}],
           "empty": {}, "none": None}
    flat = p.flatten(doc)
    assert flat == {"db.host": "x", "db.pool.min": 1, "db.pool.max": 5,
                    "flags": [1, {"a": 2}], "empty": {}, "none": None}
    assert p.unflatten(flat) == doc


@pytest.mark.parametrize("doc", [{"a.b": 1}, {"": 1}, {"a": {"": 1}}, {1: 2}])
def test_flatten_rejects_keys_it_cannot_round_trip(doc: Any) -> None:
    with pytest.raises(ProtocolError, match="invalid settings key"):
        p.flatten(doc)


def test_diff_reports_sets_and_deletes_with_old_values() -> None:
    old = {"a": 1, "b": 2, "c": True}
    new = {"a": 1, "b": 3, "d": None, "c": 1}
    assert p.diff(old, new) == (
        p.Change("set", "b", 2, 3),
        p.Change("set", "c", True, 1),  # JSON-wise true != 1
        p.Change("set", "d", p.MISSING, None),
    )
    assert p.diff({"x": 1}, {}) == (p.Change("delete", "x", 1),)
    assert p.diff({"x": [1, 2]}, {"x": [1, 2]}) == ()


def test_update_replaces_subtrees_and_leaves() -> None:
    flat = {"db.host": "x", "db.port": 5432, "name": "a"}
    assert p.update(flat, {"db": {"host": "y"}}) == {"db.host": "y", "name": "a"}
    assert p.update(flat, {"name.first": "b"}) == {"db.host": "x", "db.port": 5432,
                                                   "name.first": "b"}
    assert p.update(flat, {}, ["db"]) == {"name": "a"}
    assert p.update(flat, {"t": (1, 2)}) == {**flat, "t": [1, 2]}


@pytest.mark.parametrize("value", [float("nan"), float("inf"), object(), {1: 2}])
def test_update_rejects_values_json_cannot_hold(value: Any) -> None:
    with pytest.raises(ProtocolError):
        p.update({}, {"k": value})


def test_apply_and_revert_are_inverse() -> None:
    old = {"a": 1, "b": 2}
    new = {"a": 5, "c": 3}
    changes = p.diff(old, new)
    assert p.apply_changes(old, changes) == new
    assert p.revert_changes(new, changes) == old


def test_key_matches_keys_subtrees_and_prefixes() -> None:
    assert p.key_matches("db.pool_size", ["db"], [])
    assert not p.key_matches("dbx", ["db"], [])
    assert p.key_matches("feature.x", [], ["feat"])


# ------------------------------------------------------------------ envelopes


def test_envelope_round_trip() -> None:
    e = env(changes=(p.Change("set", "a", p.MISSING, [{"x": [1]}]), p.Change("delete", "b", 2)))
    assert p.decode_envelope(p.encode_envelope(e)) == e


def test_invalidate_envelope_round_trip() -> None:
    e = p.Envelope("app", 9, "invalidate", "e1", keys=("user:1",), prefixes=("user:",),
                   all=False,
                   source="cli", origin="h:1", ts=2.0)
    assert p.decode_envelope(p.encode_envelope(e)) == e


def test_old_value_absent_differs_from_old_null() -> None:
    wire = json.loads(p.encode_envelope(env(changes=(p.Change("set", "a", p.MISSING, 1),
                                                     p.Change("set", "b", None, 1)))))
    assert "old" not in wire["changes"][0]
    assert wire["changes"][1]["old"] is None


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not json", "not valid JSON"),
        (b"[1]", "not a JSON object"),
        (b'{"protocol": 2}', "unsupported protocol"),
        (b'{"protocol": 1, "namespace": "app", "version": 0, "kind": "config"}',
         "invalid version"),
        (b'{"protocol": 1, "namespace": "app", "version": true, "kind": "config"}',
         "'version'"),
        (b'{"protocol":1,"namespace":"app","version":1,"epoch":"e1","kind":"x","source":"","origin":"",'
         b'"ts":0}', "unknown event kind"),
        (b'{"protocol":1,"namespace":"app","version":1,"epoch":"e1","kind":"config","source":"",'
         b'"origin":"","ts":0,"changes":[{"op":"set","key":"a"}],"checksum":""}',
         "without 'new'"),
        (b'{"protocol":1,"namespace":"app","version":1,"epoch":"e1","kind":"config","source":"",'
         b'"origin":"","ts":0,"changes":[{"op":"set","key":"a..b","new":1}],"checksum":""}',
         "invalid settings key"),
        (b'{"protocol":1,"namespace":"app","version":1,"epoch":"e1","kind":"invalidate","source":"",'
         b'"origin":"","ts":0,"keys":[1]}', "list of strings"),
        (b'{"protocol":1,"namespace":"app","version":1,"epoch":"e1","kind":"config","source":"",'
         b'"origin":"","ts":NaN,"changes":[],"checksum":""}', "not valid JSON"),
    ],
)
def test_malformed_envelopes_are_rejected_with_a_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError, match=re.escape(reason)):
        p.decode_envelope(payload)


def test_missing_epoch_and_deep_nesting_are_rejected() -> None:
    obj = env().to_json()
    del obj["epoch"]
    with pytest.raises(ProtocolError, match="'epoch'"):
        p.envelope_from_json(obj)
    with pytest.raises(ProtocolError, match="nested too deeply"):
        p.decode_envelope(b"[" * 100_000)


def test_a_change_must_set_a_leaf() -> None:
    obj = env().to_json()
    obj["changes"] = [{"op": "set", "key": "x", "new": {"b": 1}}]
    with pytest.raises(ProtocolError, match="must be a leaf"):
        p.envelope_from_json(obj)
    obj["changes"] = [{"op": "set", "key": "x", "new": {}}]
    assert p.envelope_from_json(obj).changes[0].new == {}


def test_oversized_message_is_rejected_before_parsing() -> None:
    with pytest.raises(ProtocolError, match="exceeds the limit"):
        p.decode_envelope(b" " * 2000, max_bytes=1024)


def test_signed_envelopes_verify_and_forgeries_do_not() -> None:
    key = b"k3y"
    data = p.encode_envelope(env(), key)
    assert data.endswith(b'"}') and b',"sig":"' in data
    assert p.decode_envelope(data, hmac_key=key) == env()
    with pytest.raises(SignatureError, match="not signed"):
        p.decode_envelope(p.encode_envelope(env()), hmac_key=key)
    with pytest.raises(SignatureError, match="does not match"):
        p.decode_envelope(data.replace(b'"version":3', b'"version":4'), hmac_key=key)
    with pytest.raises(SignatureError, match="does not match"):
        p.decode_envelope(p.encode_envelope(env(), b"other"), hmac_key=key)


def test_unknown_fields_are_kept_for_forward_compatibility() -> None:
    obj = env().to_json() | {"trace_id": "abc"}
    assert p.envelope_from_json(obj).extra == {"trace_id": "abc"}


# ------------------------------------------------------------------ snapshots


def snapshot_fields(settings: dict[str, Any], version: int = 4,
                    key: bytes | None = None) -> dict[bytes, bytes]:
    data = p.encode_settings(settings)
    cs = p.checksum(data)
    fields = {b"protocol": b"1", b"version": str(version).encode(), b"settings": data,
              b"checksum": cs.encode(), b"updated_at": b"12.5", b"epoch": b"e1"}
    if key:
        fields[b"sig"] = p.snapshot_signature(key, "app", "e1", version, cs).encode()
    return fields


def test_snapshot_decodes_and_checks_its_checksum() -> None:
    snap = p.decode_snapshot("app", snapshot_fields({"a": {"b": 1}}))
    assert (snap.version, snap.settings, snap.flat) == (4, {"a": {"b": 1}}, {"a.b": 1})
    broken = snapshot_fields({"a": 1}) | {b"settings": b'{"a":2}'}
    with pytest.raises(ProtocolError, match="checksum"):
        p.decode_snapshot("app", broken)


def test_absent_snapshot_is_version_zero() -> None:
    snap = p.decode_snapshot("app", {})
    assert (snap.version, snap.settings) == (0, {})


def test_snapshot_signature_is_checked() -> None:
    assert p.decode_snapshot("app", snapshot_fields({"a": 1}, key=b"k"), hmac_key=b"k").version
    with pytest.raises(SignatureError):
        p.decode_snapshot("app", snapshot_fields({"a": 1}), hmac_key=b"k")


def test_checksum_is_sha256_of_the_stored_bytes() -> None:
    assert p.checksum(b"{}") == (
        "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a")


# ------------------------------------------------------------------ check_json_value (issue 8)


def test_check_json_value_is_iterative_and_bounded() -> None:
    deep: Any = 1
    for _ in range(100_000):  # far past the recursion limit: no RecursionError
        deep = [deep]
    with pytest.raises(ProtocolError, match=f"^x: nested more than {p.MAX_DEPTH} levels deep$"):
        p.check_json_value(deep, "x")
    limit: Any = 1
    for _ in range(p.MAX_DEPTH):
        limit = {"a": limit}
    p.check_json_value(limit, "doc")  # exactly MAX_DEPTH levels
    with pytest.raises(ProtocolError, match="nested more than"):
        p.check_json_value(limit, "doc", depth=1)  # one object already encloses it
    p.check_json_value(limit["a"], "doc", depth=1)


@pytest.mark.parametrize(("value", "message"), [
    ({"a": {"b": [1, 2, float("nan")]}}, "v.a.b[2]: nan is not valid JSON"),
    ({"a": [{"k": "\ud83d"}]}, "v.a[0].k: '\\ud83d' holds a lone surrogate (not valid UTF-8)"),
    ({"a": {"\udc00x": 1}}, "v.a.'\\udc00x': the key holds a lone surrogate (not valid UTF-8)"),
    ({"a": {2: 1}}, "v.a: object keys must be strings, not 2"),
    ({"a": {None: 1}}, "v.a: object keys must be strings, not None"),
    ({"a": frozenset()}, "v.a: frozenset is not a JSON value"),
    ([b"x"], "v[0]: bytes is not a JSON value"),
    (10 ** 5000, "v: an integer of 16610 bits is too long for JSON text"),
    (float("inf"), "v: inf is not valid JSON"),
], ids=["nan", "surrogate", "surrogate-key", "int-key", "none-key", "frozenset", "bytes",
        "huge-int", "inf"])
def test_check_json_value_names_the_path_and_why(value: Any, message: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        p.check_json_value(value, "v")
    assert str(caught.value) == message
    str(caught.value).encode("utf-8")  # the message itself is valid UTF-8


def test_check_json_value_accepts_every_plain_json_shape() -> None:
    from types import MappingProxyType

    p.check_json_value({"s": "é€😀", "i": 2 ** 64, "f": -0.0, "b": False, "n": None,
                        "l": [], "t": (1, 2), "m": MappingProxyType({"x": 1}), "e": {}}, "v")
    p.check_json_value(10 ** 1000, "v")  # long, but prints


@pytest.mark.parametrize(("key", "message"), [
    ("a\ud800", "holds a lone surrogate"),
    (".".join(["k"] * (p.MAX_DEPTH + 1)), f"more than {p.MAX_DEPTH} levels deep"),
    ("x" * 1000 + "..", "use dotted names"),
])
def test_check_key_rejects_what_cannot_be_published(key: str, message: str) -> None:
    with pytest.raises(ProtocolError, match=message) as caught:
        p.check_key(key)
    assert len(str(caught.value)) < 200  # a long key is cut in the message
    p.check_key(".".join(["k"] * p.MAX_DEPTH))


def test_update_counts_the_levels_of_the_key() -> None:
    value: Any = 1
    for _ in range(p.MAX_DEPTH - 2):
        value = [value]
    assert p.update({}, {"a.b": value})["a.b"] == value
    with pytest.raises(ProtocolError, match=r"^a\.b\.c: nested more than"):
        p.update({}, {"a.b.c": value})


@pytest.mark.parametrize("value", [
    {"a": [1, 2.5, None, True, "é"], "b": {"c": {}}}, [[[]]], (1, "x"), {"k": 2 ** 100},
    {"a": float("nan")}, {"a": "\ud800"}, {"\ud800": 1}, {1: 2}, {"a": {b"k": 1}}, [{1, 2}],
    [10 ** 5000], {"a": object()}, [1] * 3,
])
def test_the_fast_and_the_explaining_checks_agree(value: Any) -> None:
    from hotreload._dotted import _first_problem, _surely_plain

    assert _surely_plain(value, 0) is (_first_problem(value, 0) is None)
    cycle: list[Any] = []
    cycle.append(cycle)
    assert not _surely_plain(cycle, 0)
    assert _first_problem(cycle, 0) == ([], f"nested more than {p.MAX_DEPTH} levels deep")
    with pytest.raises(ProtocolError, match="object keys must be strings, not a very long int"):
        p.check_json_value({10 ** 5000: 1}, "v")
