"""The checks of the protocol-1 tests that still hold for protocol 2 and are not covered by
tests/unit/wire/ (names, flattening, events, signatures, checksums and heads are tested there;
docs/protocol.md by tests/unit/wire/test_doc.py). Pure functions, no services.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import pytest

from hotreload.errors import ProtocolError
from hotreload.publisher.state import NamespaceState, plan_update
from hotreload.subscriber.events import key_matches
from hotreload.wire import (
    MAX_DEPTH,
    MISSING,
    Change,
    LeafChange,
    check_json_value,
    check_key,
    check_prefix_free,
    diff_values,
    leaf_text,
)
from hotreload.wire.values import _first_problem, _surely_plain

# ------------------------------------------------------------------ check_json_value (issue 8)


def test_check_json_value_is_iterative_and_bounded() -> None:
    deep: Any = 1
    for _ in range(100_000):  # far past the recursion limit: no RecursionError
        deep = [deep]
    with pytest.raises(ProtocolError, match=f"^x: nests more than {MAX_DEPTH} levels$"):
        check_json_value(deep, "x")
    limit: Any = 1
    for _ in range(MAX_DEPTH):
        limit = {"a": limit}
    check_json_value(limit, "doc")  # exactly MAX_DEPTH levels
    with pytest.raises(ProtocolError, match="nests more than"):
        check_json_value(limit, "doc", max_depth=MAX_DEPTH - 1)
    check_json_value(limit["a"], "doc", max_depth=MAX_DEPTH - 1)


@pytest.mark.parametrize(("value", "message"), [
    ({"a": {"b": [1, 2, float("nan")]}}, "v.a.b[2]: nan is not valid JSON"),
    ({"a": [{"k": "\ud83d"}]}, "v.a[0].k: a string is not valid Unicode (lone surrogate)"),
    ({"a": {"\udc00x": 1}}, "v.a.'\\udc00x': a key is not valid Unicode (lone surrogate)"),
    ([{"k\ud800": 1}], "v[0].'k\\ud800': a key is not valid Unicode (lone surrogate)"),
    ({"a": {2: 1}}, "v.a: object keys must be strings, not 2"),
    ({"a": {None: 1}}, "v.a: object keys must be strings, not None"),
    ({"a": {("t",): 1}}, "v.a: object keys must be strings, not a tuple"),
    ({"a": frozenset()}, "v.a: frozenset is not a JSON value"),
    ([b"x"], "v[0]: bytes is not a JSON value"),
    (10 ** 5000, "v: an integer of 16610 bits is too long for JSON text"),
    ({"x": [10 ** 5000]}, "v.x[0]: an integer of 16610 bits is too long for JSON text"),
    (float("inf"), "v: inf is not valid JSON"),
    ({"a.b": {"c": float("nan")}}, "v.'a.b'.c: nan is not valid JSON"),
], ids=["nan", "surrogate", "surrogate-key", "surrogate-key-in-list", "int-key", "none-key",
        "tuple-key", "frozenset", "bytes", "huge-int", "huge-int-nested", "inf", "dotted-name"])
def test_check_json_value_names_the_path_and_why(value: Any, message: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        check_json_value(value, "v")
    assert str(caught.value) == message
    assert caught.value.reason == "text"
    str(caught.value).encode("utf-8", "backslashreplace")  # one printable line
    assert "\n" not in str(caught.value)


def test_check_json_value_accepts_every_plain_json_shape() -> None:
    check_json_value({"s": "é€😀", "i": 2 ** 64, "f": -0.0, "b": False, "n": None,
                      "l": [], "t": (1, 2), "m": MappingProxyType({"x": 1}), "e": {}}, "v")
    check_json_value(10 ** 1000, "v")  # long, but prints


@pytest.mark.parametrize("value", [
    {"a": [1, 2.5, None, True, "é"], "b": {"c": {}}}, [[[]]], (1, "x"), {"k": 2 ** 100},
    {"a": float("nan")}, {"a": "\ud800"}, {"\ud800": 1}, {1: 2}, {"a": {b"k": 1}}, [{1, 2}],
    [10 ** 5000], {"a": object()}, [1] * 3, [[{"é\udc80": 1}]],
])
def test_the_fast_and_the_explaining_checks_agree(value: Any) -> None:
    assert _surely_plain(value, MAX_DEPTH) is (_first_problem(value, MAX_DEPTH) is None)
    # other mappings are left to the explaining walk, which accepts them
    assert not _surely_plain(MappingProxyType({"a": 1}), MAX_DEPTH)
    assert _first_problem(MappingProxyType({"a": 1}), MAX_DEPTH) is None
    cycle: list[Any] = []
    cycle.append(cycle)
    assert not _surely_plain(cycle, MAX_DEPTH)
    assert _first_problem(cycle, MAX_DEPTH) == ("", f"nests more than {MAX_DEPTH} levels")


@pytest.mark.parametrize(("key", "message"), [
    ("a\ud800", "not valid Unicode"),
    (".".join(["k"] * 33), "33 segments"),
    ("x" * 1000 + "..", "1002 bytes"),
])
def test_check_key_messages_are_short(key: str, message: str) -> None:
    with pytest.raises(ProtocolError, match=message) as caught:
        check_key(key)
    assert len(str(caught.value)) < 200  # a long key is cut in the message


# ------------------------------------------------------------------ a publish's changes


def update(flat: dict[str, Any], sets: dict[str, Any], deletes: tuple[str, ...] = ()
           ) -> dict[str, Any]:
    """The leaves (key -> value) after ``publish(sets, deletes)`` on leaves ``flat``."""
    state = NamespaceState.from_texts({k: leaf_text(v) for k, v in flat.items()}, flat)
    changes, parsed = plan_update(state, sets, deletes)
    state.apply(changes, parsed)
    check_prefix_free(state.values)
    return dict(state.values)


def test_update_replaces_subtrees_and_leaves() -> None:
    flat = {"db.host": "x", "db.port": 5432, "name": "a"}
    assert update(flat, {"db": {"host": "y"}}) == {"db.host": "y", "name": "a"}
    assert update(flat, {"name.first": "b"}) == {"db.host": "x", "db.port": 5432,
                                                 "name.first": "b"}
    assert update(flat, {}, ("db",)) == {"name": "a"}
    assert update(flat, {"t": (1, 2)}) == {**flat, "t": [1, 2]}
    assert update(flat, {"db": 1}) == {"db": 1, "name": "a"}
    assert update(flat, {"db": {}}) == {"db": {}, "name": "a"}


def test_setting_a_leaf_to_an_object_replaces_the_leaf() -> None:
    """``name`` holds a value; setting it to an object must delete that leaf, or the state
    holds both ``name`` and ``name.first`` (not prefix-free: every reader fails on it)."""
    flat = {"name": "a", "other": 1}
    assert update(flat, {"name": {"first": "b"}}) == {"name.first": "b", "other": 1}
    assert update(flat, {"name": {"first": {"x": 1}, "last": "c"}}) == {
        "name.first.x": 1, "name.last": "c", "other": 1}
    state = NamespaceState.from_texts({"name": '"a"'}, {"name": "a"})
    changes, _ = plan_update(state, {"name": {"first": "b"}}, ())
    assert changes == [LeafChange("name", '"a"', None), LeafChange("name.first", None, '"b"')]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), object(), {1: 2}])
def test_update_rejects_values_json_cannot_hold(value: Any) -> None:
    with pytest.raises(ProtocolError):
        update({}, {"k": value})


# ------------------------------------------------------------------ what listeners are told


def test_diff_reports_sets_and_deletes_with_old_values() -> None:
    old = {"a": 1, "b": 2, "c": True}
    new = {"a": 1, "b": 3, "d": None, "c": 1}
    assert diff_values(old, new) == (
        Change("set", "b", 2, 3),
        Change("set", "c", True, 1),  # JSON-wise true != 1
        Change("set", "d", MISSING, None),
    )
    assert diff_values({"x": 1}, {}) == (Change("delete", "x", 1),)
    assert diff_values({"x": [1, 2]}, {"x": [1, 2]}) == ()
    assert diff_values({"x": 1}, {"x": 1.0}) == (Change("set", "x", 1, 1.0),)  # other texts


def test_key_matches_keys_subtrees_and_prefixes() -> None:
    assert key_matches("db.pool_size", ["db"], [])
    assert not key_matches("dbx", ["db"], [])
    assert key_matches("feature.x", [], ["feat"])
