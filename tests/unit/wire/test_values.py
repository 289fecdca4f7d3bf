"""values.py: strict JSON, nesting, leaf texts, keys (protocol §2, §12)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given

from hotreload.errors import ProtocolError
from hotreload.wire import values as v

from .strategies import SETTINGS, json_values


@pytest.fixture
def high_recursion_limit() -> Iterator[None]:
    """A process that raised the recursion limit: the C decoder could then overflow its stack."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(200_000)
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((depth(x) for x in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth(x) for x in value.values()), default=0)
    return 0


def test_loads_is_strict_json() -> None:
    assert v.loads(b'{"a": [1, 2.5, "\\u00e9"]}') == {"a": [1, 2.5, "é"]}
    for bad, what in [(b"NaN", "not valid JSON"), (b"[Infinity]", "not valid JSON"),
                      (b"{'a': 1}", "not valid JSON"), (b"\xff", "not UTF-8"),
                      (b"1 2", "not valid JSON"), (b"", "not valid JSON")]:
        with pytest.raises(ProtocolError, match=what) as info:
            v.loads(bad)
        assert info.value.reason == "json"


@pytest.mark.parametrize("levels", [65, 10_000, 100_000])
def test_deep_documents_are_protocol_errors(levels: int) -> None:
    with pytest.raises(ProtocolError, match="nests more than 64") as info:
        v.loads("[" * levels + "]" * levels)
    assert info.value.reason == "json"
    assert v.loads("[" * 64 + "]" * 64) is not None


def test_deep_documents_are_measured_before_parsing(high_recursion_limit: None) -> None:
    # Without the measurement the C decoder would recurse 100,000 levels and crash the process.
    with pytest.raises(ProtocolError, match="nests more than"):
        v.loads("[" * 100_000 + "]" * 100_000, max_depth=1000)


@pytest.mark.parametrize(("text", "expected"), [
    ("1", 0), ("[]", 1), ("{}", 1), ('{"a":[1]}', 2), ('["[[[[", "]"]', 1),
    ('["\\"[[[", "\\\\"]', 1), ('[[], [[]], {"a": {"b": {}}}]', 4), ('"[[[["', 0),
    # brackets inside strings next to real ones (the even-quote-run shortcut must not apply)
    ('["]", [[]]]', 3), ('{"a":"[[","b":[[1]]}', 3), ('["[", "]", "[[", [[[0]]]]', 4),
    ('[{"k]": "v["}, "", "", [""]]', 2), ('["\\"[", "\\\\", "]\\"", [1]]', 2),
])
def test_nesting_is_exact_and_ignores_strings(text: str, expected: int) -> None:
    # a limit of 0 forces the exact path for every text with a bracket
    assert not v.nesting_exceeds(text, expected)
    assert v.nesting_exceeds(text, expected - 1) == (expected > 0)


@SETTINGS
@given(json_values(20))
def test_nesting_matches_a_recursive_count(value: Any) -> None:
    text = json.dumps(value)
    d = depth(value)
    assert not v.nesting_exceeds(text, d)
    if d:
        assert v.nesting_exceeds(text, d - 1)
        assert v.nesting_exceeds(text.encode(), d - 1)


def test_unbalanced_brackets_count_as_too_deep() -> None:
    assert v.nesting_exceeds("[[[[", 2)
    assert v.nesting_exceeds("[[[]", 2)
    assert not v.nesting_exceeds("]]]]", 2)  # nothing opens: the decoder cannot recurse


def test_canonical_json_and_leaf_text() -> None:
    assert v.canonical_json({"b": 1, "a": [True, None, "é"]}) == '{"a":[true,null,"é"],"b":1}'
    assert v.leaf_text((1, 2)) == "[1,2]"
    assert v.leaf_text({}) == "{}"
    assert v.leaf_text("20") == '"20"'
    assert v.leaf_text(1.0) == "1.0"
    with pytest.raises(ProtocolError, match="non-empty object") as info:
        v.leaf_text({"a": 1})
    assert info.value.reason == "text"
    for bad in [float("nan"), float("inf"), object(), [{1: 2}], "\ud800", deep(33)]:
        with pytest.raises(ProtocolError):
            v.leaf_text(bad)
    assert v.leaf_text(deep(32)).count("[") == 32


def deep(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


def test_check_json_value_is_iterative() -> None:
    v.check_json_value(deep(64), "x")
    with pytest.raises(ProtocolError, match="nests more than 64"):
        v.check_json_value(deep(100_000), "x")
    with pytest.raises(ProtocolError, match="keys must be strings"):
        v.check_json_value({"a": {1: 2}}, "x")
    v.check_json_value({"s": _Str("x"), "i": _Int(2), "t": (1, 2)}, "x")


class _Str(str):
    pass


class _Int(int):
    pass


def test_parse_leaf_text() -> None:
    assert v.parse_leaf_text(" [1, 2] ") == [1, 2]
    assert v.parse_leaf_text("{}") == {}
    assert v.parse_leaf_text('"é"') == "é"
    for bad in ["", "nope", "NaN", '{"a":1}', "1 2", "[" * 33 + "]" * 33, '"\ud800"']:
        with pytest.raises(ProtocolError) as info:
            v.parse_leaf_text(bad)
        assert info.value.reason == "text"
    with pytest.raises(ProtocolError, match="must be a string"):
        v.parse_leaf_text(1)  # type: ignore[arg-type]


@pytest.mark.parametrize(("key", "problem"), [
    ("", "is empty"), ("a..b", "empty segment"), (".a", "empty segment"),
    ("a.", "empty segment"), (".".join(["s"] * 33), "33 segments"), ("x" * 513, "513 bytes"),
    ("é" * 257, "514 bytes"), ("a\x00b", "control character"), ("a\x1fb", "control character"),
    ("a\nb", "control character"), ("\ud800", "not valid Unicode"),
])
def test_invalid_keys(key: str, problem: str) -> None:
    with pytest.raises(ProtocolError, match=problem) as info:
        v.check_key(key)
    assert info.value.reason == "key"


def test_valid_keys() -> None:
    for key in ["a", "db.pool_size", ".".join(["s"] * 32), "x" * 512, "é" * 256, "a b.\x7f",
                "emoji.🙂"]:
        assert v.check_key(key) == key
    with pytest.raises(ProtocolError, match="not a string"):
        v.check_key(5)  # type: ignore[arg-type]


def test_texts_equal_compares_exactly() -> None:
    assert v.texts_equal("1", "1")
    assert v.texts_equal(b'"\xc3\xa9"', '"é"')
    assert not v.texts_equal("1", "1.0")
    assert not v.texts_equal("1", None)
    assert v.texts_equal(None, None)


def test_missing_is_falsy_and_named() -> None:
    assert not v.MISSING
    assert repr(v.MISSING) == "MISSING"
