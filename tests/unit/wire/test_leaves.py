"""leaves.py: documents as leaves, diffs and applying changes (protocol §2, §5.1)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hotreload.errors import ProtocolError
from hotreload.wire import (
    MISSING,
    Change,
    LeafChange,
    LeafSet,
    apply_leaf_changes,
    changes_from_json,
    changes_to_json,
    check_prefix_free,
    diff_texts,
    document_of,
    flatten,
    flatten_texts,
    parse_leaves,
    unflatten,
    value_change,
)

from .strategies import SETTINGS, keys, leaf_sets, leaf_texts, small_keys


def test_flatten_round_trips_nested_documents() -> None:
    doc = {"db": {"host": "x", "pool": {"min": 1, "max": 5}}, "flags": [1, {"a": 2}],
           "empty": {}, "none": None}
    flat = flatten(doc)
    assert flat == {"db.host": "x", "db.pool.min": 1, "db.pool.max": 5,
                    "flags": [1, {"a": 2}], "empty": {}, "none": None}
    assert unflatten(flat) == doc
    assert flatten_texts(doc)["flags"] == '[1,{"a":2}]'
    assert document_of(flatten_texts(doc)) == doc


@pytest.mark.parametrize("doc", [{"a.b": 1}, {"": 1}, {"a": {"": 1}}, {1: 2}, {"a\x01": 1}])
def test_flatten_rejects_names_it_cannot_round_trip(doc: Any) -> None:
    with pytest.raises(ProtocolError, match="invalid settings key") as info:
        flatten(doc)
    assert info.value.reason == "key"


def nested(levels: int) -> dict[str, Any]:
    doc: dict[str, Any] = {"leaf": 1}
    for _ in range(levels - 1):
        doc = {"k": doc}
    return doc


def test_flatten_limits_keys_to_32_segments() -> None:
    assert len(next(iter(flatten(nested(32)))).split(".")) == 32
    for levels in (33, 10_000):
        with pytest.raises(ProtocolError, match="segments"):
            flatten(nested(levels))


def test_unflatten_refuses_prefix_conflicts() -> None:
    with pytest.raises(ProtocolError, match="conflict") as info:
        unflatten({"db": 1, "db.host": "x"})
    assert info.value.reason == "prefix"


def test_check_prefix_free_sorts_dots_first() -> None:
    check_prefix_free(["a", "a-b", "a_b.c", "ab"])
    for bad in (["a", "a-x", "a.b"], ["x.y.z", "x.y"], ["é.b", "é"]):
        with pytest.raises(ProtocolError, match="conflict"):
            check_prefix_free(bad)


@SETTINGS
@given(st.dictionaries(keys, st.sampled_from([1, "x", None, [1], {}]), max_size=8))
def test_check_prefix_free_agrees_with_brute_force(flat: dict[str, Any]) -> None:
    conflict = any(a != b and b.startswith(a + ".") for a in flat for b in flat)
    if conflict:
        with pytest.raises(ProtocolError):
            check_prefix_free(flat)
    else:
        check_prefix_free(flat)
        assert flatten(unflatten(flat)) == {k: ({} if v == {} else v) for k, v in flat.items()}


def test_parse_leaves_checks_keys_and_texts() -> None:
    assert parse_leaves({"a": "[1]", "b": "{}"}) == {"a": [1], "b": {}}
    with pytest.raises(ProtocolError) as info:
        parse_leaves({"a": "nope"})
    assert info.value.reason == "text"
    with pytest.raises(ProtocolError) as info:
        parse_leaves({"a..b": "1"})
    assert info.value.reason == "key"


def test_diff_texts_compares_texts_exactly() -> None:
    old = {"a": "1", "b": "2", "c": "true", "d": "[1]"}
    new = {"a": "1", "b": "2.0", "c": "true", "e": "null"}
    assert diff_texts(old, new) == (
        LeafChange("b", "2", "2.0"),
        LeafChange("d", "[1]", None),
        LeafChange("e", None, "null"),
    )
    assert diff_texts(new, new) == ()


def test_apply_leaf_changes_checks_old_texts() -> None:
    leaves = {"a": "1", "b": "2"}
    assert apply_leaf_changes(leaves, [LeafChange("a", "1", "5"), LeafChange("b", "2", None),
                                       LeafChange("c", None, "3")]) == {"a": "5", "c": "3"}
    assert leaves == {"a": "1", "b": "2"}
    for bad in ([LeafChange("a", "2", "5")], [LeafChange("c", "1", "5")],
                [LeafChange("a", None, "5")]):
        with pytest.raises(ProtocolError) as info:
            apply_leaf_changes(leaves, bad)
        assert info.value.reason == "old"
    assert apply_leaf_changes(leaves, [LeafChange("a", "9", "5")], check_old=False)["a"] == "5"


@pytest.mark.parametrize(("changes", "reason"), [
    ([LeafChange("db", None, "1")], "prefix"),
    ([LeafChange("db.host.x", None, "1")], "prefix"),
    ([LeafChange("x", None, "1"), LeafChange("x.y", None, "1")], "prefix"),
    ([LeafChange("a", None, None)], "field"),
    ([LeafChange("x", None, "1"), LeafChange("x", None, "2")], "field"),
    ([LeafChange("a..b", None, "1")], "key"),
])
def test_applying_bad_changes_changes_nothing(changes: list[LeafChange], reason: str) -> None:
    leaves = {"db.host": '"h"', "db.port": "5432"}
    with pytest.raises(ProtocolError) as info:
        apply_leaf_changes(leaves, changes)
    assert info.value.reason == reason
    ls = LeafSet(leaves)
    with pytest.raises(ProtocolError) as info:
        ls.apply(changes)
    assert info.value.reason == reason
    assert dict(ls) == leaves


def test_leaf_set_restructures_subtrees() -> None:
    ls = LeafSet({"db.host": '"h"', "db.port": "5432", "x": "1"})
    ls.apply([LeafChange("db", None, '"url"'), LeafChange("db.host", '"h"', None),
              LeafChange("db.port", "5432", None)])
    assert dict(ls) == {"db": '"url"', "x": "1"}
    ls.apply([LeafChange("db", '"url"', None), LeafChange("db.a.b", None, "1")])
    assert dict(ls) == {"db.a.b": "1", "x": "1"}
    with pytest.raises(ProtocolError, match="conflict"):
        ls.apply([LeafChange("db.a", None, "2")])
    assert len(ls) == 2 and "x" in ls and ls["x"] == "1"
    assert dict(ls.texts) == dict(ls)
    clone = ls.copy()
    clone.apply([LeafChange("x", "1", None)])
    assert "x" in ls and "x" not in clone
    assert repr(ls).startswith("LeafSet(")
    with pytest.raises(ProtocolError):
        LeafSet({"a": "1", "a.b": "2"})


changes_on_small_keys = st.lists(
    st.tuples(small_keys, st.one_of(st.none(), leaf_texts)), max_size=6)


@SETTINGS
@given(leaf_sets, st.lists(changes_on_small_keys, max_size=6),
       st.lists(st.tuples(st.sampled_from(["c", "f.g", "f.g.h.i", "a.b"]), leaf_texts),
                max_size=2))
def test_leaf_set_agrees_with_apply_leaf_changes(
        start: dict[str, str], events: list[list[tuple[str, str | None]]],
        conflicting: list[tuple[str, str]]) -> None:
    """LeafSet (O(changes)) and apply_leaf_changes (from scratch) accept and reject alike."""
    ls = LeafSet(start)
    plain = dict(start)
    for sets in [*events, conflicting]:
        wanted = dict(plain)
        for key, text in sets:
            if text is None:
                wanted.pop(key, None)
            else:
                wanted[key] = text
        changes = diff_texts(plain, wanted)
        try:
            expected: dict[str, str] | str = apply_leaf_changes(plain, changes)
        except ProtocolError as exc:
            expected = exc.reason
        try:
            ls.apply(changes)
            got: dict[str, str] | str = dict(ls)
        except ProtocolError as exc:
            got = exc.reason
        assert got == expected
        if isinstance(expected, dict):
            plain = expected
        assert dict(ls) == plain


def test_changes_json_round_trip_and_values() -> None:
    changes = (LeafChange("a", None, "[1]"), LeafChange("b", '"x"', None),
               LeafChange("é", "1", "2"))
    raw = changes_to_json(changes)
    assert raw[0] == {"key": "a", "new": "[1]"} and raw[1] == {"key": "b", "old": '"x"'}
    decoded, values = changes_from_json(raw)
    assert decoded == changes
    assert values == ((MISSING, [1]), ("x", None), (1, 2))
    assert value_change(changes[0]) == Change("set", "a", MISSING, [1])
    assert value_change(changes[1]) == Change("delete", "b", "x")


@pytest.mark.parametrize(("raw", "reason"), [
    ({"a": 1}, "field"), ([1], "field"), ([{"new": "1"}], "field"), ([{"key": "a"}], "field"),
    ([{"key": "a", "old": None, "new": "1"}], "field"), ([{"key": "a", "new": None}], "field"),
    ([{"key": "a", "new": 1}], "field"), ([{"key": "a", "old": 1, "new": "1"}], "field"),
    ([{"key": "b", "new": "1"}, {"key": "a", "new": "1"}], "field"),
    ([{"key": "a", "new": "1"}, {"key": "a", "new": "2"}], "field"),
    ([{"key": "a.", "new": "1"}], "key"), ([{"key": "a", "new": "{\"b\":1}"}], "text"),
    ([{"key": "a", "old": "{\"b\":1}", "new": "1"}], "text"),
    ([{"key": "a", "new": "[" * 40 + "]" * 40}], "text"),
    ([{"key": "a", "new": "\"\ud800\""}], "text"), ([{"key": "a", "new": "x"}], "text"),
])
def test_changes_from_json_rejects(raw: Any, reason: str) -> None:
    with pytest.raises(ProtocolError) as info:
        changes_from_json(raw)
    assert info.value.reason == reason


def test_changes_sort_by_code_point_which_is_utf8_order() -> None:
    raw = [{"key": k, "new": "1"} for k in sorted(["z", "é", "\U0001f642", "ÿ"],
                                                   key=lambda k: k.encode())]
    changes_from_json(raw)
