"""canary.py: canary objects, target matching and settings (protocol §10)."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from hotreload.errors import ProtocolError
from hotreload.wire import (
    Canary,
    CanaryTarget,
    LeafChange,
    canary_bucket,
    canary_from_json,
    canary_leaves,
    canary_to_json,
    encode_canary,
    glob_matches,
    target_matches,
)


@pytest.mark.parametrize(("pattern", "value", "expected"), [
    ("api", "api", True), ("api", "api-1", False), ("api*", "api-1", True), ("*", "", True),
    ("a?i", "api", True), ("a?i", "ai", False), ("*-1", "web-1", True), ("*-1", "web-10", False),
    ("a[1]", "a[1]", True), ("a[1]", "a1", False), ("a.b", "axb", False), ("*a*", "bab", True),
    ("?", "é", True), ("a\\*", "a\\x", True),
])
def test_globs(pattern: str, value: str, expected: bool) -> None:
    assert glob_matches(pattern, value) is expected


def test_bucket_is_the_documented_hash() -> None:
    digest = hashlib.sha256(b"c-42\x00api-1").digest()
    assert canary_bucket("c-42", "api-1") == int.from_bytes(digest[:2], "big") % 100 == 10


def canary(**target: Any) -> Canary:
    return canary_from_json({"id": "c-42", "target": target, "changes": [], "base": 6})


def test_targets() -> None:
    assert target_matches(canary(), service="", instance="x")
    assert target_matches(canary(service="api"), service="api", instance="x")
    assert not target_matches(canary(service="api"), service="", instance="x")
    assert target_matches(canary(service="*"), service="", instance="x")
    assert target_matches(canary(percent=12.5), service="", instance="api-1")
    assert not target_matches(canary(percent=10), service="", instance="api-1")
    assert not target_matches(canary(percent=0), service="", instance="api-1")
    assert target_matches(canary(percent=100), service="", instance="api-1")
    assert not target_matches(canary(service="*", zone="eu"), service="api", instance="x")


def test_percent_splits_instances_roughly() -> None:
    c = canary(percent=30)
    hits = sum(target_matches(c, service="", instance=f"host-{i}") for i in range(2000))
    assert 500 < hits < 700


def test_canary_json_round_trip() -> None:
    raw = {"id": "c-1", "target": {"service": "api", "instance": "api-?", "percent": 12.5},
           "changes": [{"key": "a", "old": "1", "new": "2"}], "base": 6, "future": True}
    c = canary_from_json(raw)
    assert c == Canary("c-1", CanaryTarget("api", "api-?", 12.5), (LeafChange("a", "1", "2"),),
                       6)
    assert canary_to_json(c) == {k: v for k, v in raw.items() if k != "future"}
    assert canary_from_json(canary_to_json(canary(percent=50))).target.percent == 50.0
    assert canary_to_json(canary(percent=50))["target"] == {"percent": 50}
    assert encode_canary(c).startswith('{"base":6,')


@pytest.mark.parametrize(("raw", "reason"), [
    ([], "field"), ({"target": {}, "changes": [], "base": 1}, "field"),
    ({"id": "a b", "target": {}, "changes": [], "base": 1}, "field"),
    ({"id": "c", "changes": [], "base": 1}, "field"),
    ({"id": "c", "target": {"service": None}, "changes": [], "base": 1}, "field"),
    ({"id": "c", "target": {"instance": 3}, "changes": [], "base": 1}, "field"),
    ({"id": "c", "target": {"percent": True}, "changes": [], "base": 1}, "field"),
    ({"id": "c", "target": {"percent": 100.5}, "changes": [], "base": 1}, "range"),
    ({"id": "c", "target": {"percent": None}, "changes": [], "base": 1}, "field"),
    ({"id": "c", "target": {}, "base": 1}, "field"),
    ({"id": "c", "target": {}, "changes": [], "base": "1"}, "field"),
    ({"id": "c", "target": {}, "changes": [], "base": 2**53}, "range"),
])
def test_invalid_canaries(raw: Any, reason: str) -> None:
    with pytest.raises(ProtocolError) as info:
        canary_from_json(raw)
    assert info.value.reason == reason


def test_canary_settings_override_the_state() -> None:
    c = Canary("c", CanaryTarget(), (LeafChange("db", None, '"url"'),
                                     LeafChange("feature", "true", None),
                                     LeafChange("x.y.z", None, "1")), 3)
    leaves = {"db.host": '"h"', "db.port": "1", "feature": "false", "x": "0", "keep": "1"}
    assert canary_leaves(leaves, c) == {"db": '"url"', "x.y.z": "1", "keep": "1"}
    assert leaves["feature"] == "false"
