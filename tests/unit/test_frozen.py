"""Read-only settings and the incremental tree patch (checked against a full rebuild)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from hotreload.errors import ProtocolError
from hotreload.publisher.state import NamespaceState, plan_update
from hotreload.subscriber.frozen import FrozenSettings, index_tree, patch_tree, to_plain, wrap
from hotreload.wire import Change, diff_values, flatten, flatten_texts, unflatten


def rebuild(flat: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    nested = unflatten(flat)
    return nested, index_tree(nested)[1]


def update(flat: dict[str, Any], sets: dict[str, Any], deletes: list[str] = []  # noqa: B006
           ) -> dict[str, Any]:
    """``flat`` after a publisher's ``publish(sets, deletes)`` (the leaves, key -> value)."""
    doc = unflatten(flat)
    state = NamespaceState.from_texts(flatten_texts(doc), flatten(doc))
    changes, parsed = plan_update(state, sets, deletes)
    state.apply(changes, parsed)
    return dict(state.values)


def random_value(rng: random.Random) -> Any:
    return rng.choice([1, 2.5, "s", True, None, [1, {"a": 2}], {}, {"x": {"y": 1}}, "t", 0])


def random_key(rng: random.Random) -> str:
    return ".".join(rng.choice("abcd") for _ in range(rng.randint(1, 3)))


@pytest.mark.parametrize("seed", range(300))
def test_patch_equals_a_full_rebuild(seed: int) -> None:
    rng = random.Random(seed)
    flat: dict[str, Any] = {}
    for _ in range(rng.randint(0, 12)):
        flat = update(flat, {random_key(rng): random_value(rng)})
    nested, index = rebuild(flat)
    sets = {random_key(rng): random_value(rng) for _ in range(rng.randint(0, 3))}
    deletes = [random_key(rng) for _ in range(rng.randint(0, 2))]
    new_flat = update(flat, sets, [d for d in deletes if d not in sets])
    changes = diff_values(flat, new_flat)
    patched = patch_tree(nested, index, changes)
    want_nested, want_index = rebuild(new_flat)
    if patched is not None:
        got_nested, got_index = patched
        assert got_nested == want_nested
        assert {k: to_plain(v) for k, v in got_index.items()} == {
            k: to_plain(v) for k, v in want_index.items()}
    assert nested == rebuild(flat)[0]  # the old version was not touched


def test_patch_shares_untouched_branches() -> None:
    nested = {"a": {"x": 1}, "b": {"y": 2}}
    _, index = index_tree(nested)
    patched = patch_tree(nested, index, (Change("set", "a.x", 1, 5),))
    assert patched is not None
    new, new_index = patched
    assert new["b"] is nested["b"]
    assert new["a"] == {"x": 5} and nested["a"] == {"x": 1}
    assert new_index["a.x"] == 5 and new_index["a"] == {"x": 5} and index["a.x"] == 1


def test_frozen_settings_cannot_be_changed() -> None:
    s = FrozenSettings({"a": {"b": [1, {"c": 2}]}})
    assert s["a"]["b"] == (1, FrozenSettings({"c": 2}))
    assert s == {"a": {"b": [1, {"c": 2}]}}
    assert s.to_dict() == {"a": {"b": [1, {"c": 2}]}}
    with pytest.raises(TypeError):
        s["a"] = 1  # type: ignore[index]
    assert wrap([{"a": 1}]) == (FrozenSettings({"a": 1}),)


def test_index_tree_matches_flatten_and_rejects_dotted_keys() -> None:
    doc = {"db": {"host": "h", "opts": {}}, "l": [1]}
    flat, index = index_tree(doc)
    assert flat == flatten(doc)
    assert set(index) == {"db", "db.host", "db.opts", "l"}
    with pytest.raises(ProtocolError):
        index_tree({"a.b": 1})
