"""Planning a publish never yields a state that is not prefix-free (protocol §2), whatever the
sequence of sets and deletes (found by the soak: setting an object over a leaf kept the leaf,
and every subscriber then failed to load the namespace)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from hotreload.publisher.state import NamespaceState, plan_replace, plan_update
from hotreload.wire import check_prefix_free, flatten, unflatten

KEYS = ["a", "a.b", "a.b.c", "a.d", "e", "e.f"]


def _value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if roll < 0.3 and depth < 2:
        return {rng.choice(["b", "c", "d", "f"]): _value(rng, depth + 1)
                for _ in range(rng.randint(1, 2))}
    if roll < 0.35:
        return {}
    return rng.choice([1, "x", [1, 2], None, True])


def _model(doc: dict[str, Any], sets: dict[str, Any], deletes: list[str]) -> dict[str, Any]:
    """The documented meaning: deletes first (with everything below), then each set replaces
    whatever is at its key and above it (a leaf where objects are needed)."""
    flat = flatten(doc)
    for key in deletes:
        flat = {k: v for k, v in flat.items() if k != key and not k.startswith(key + ".")}
    for key, value in sets.items():
        parts = key.split(".")
        above = {".".join(parts[:i]) for i in range(1, len(parts))}
        flat = {k: v for k, v in flat.items()
                if k != key and not k.startswith(key + ".") and k not in above}
        if isinstance(value, dict) and value:
            flat.update({f"{key}.{k}": v for k, v in flatten(value).items()})
        else:
            flat[key] = value
    return unflatten(flat)


@pytest.mark.parametrize("seed", range(200))
def test_random_publishes_stay_prefix_free_and_mean_what_they_say(seed: int) -> None:
    rng = random.Random(seed)
    state = NamespaceState()
    doc: dict[str, Any] = {}
    for _ in range(12):
        keys = rng.sample(KEYS, rng.randint(1, 3))
        sets = {k: _value(rng) for k in keys[:1] or []}
        for k in keys[1:]:
            if not any(k == s or k.startswith(s + ".") or s.startswith(k + ".") for s in sets):
                sets[k] = _value(rng)
        deletes = [k for k in rng.sample(KEYS, rng.randint(0, 1))
                   if not any(k == s or k.startswith(s + ".") or s.startswith(k + ".")
                              for s in sets)]
        changes, parsed = plan_update(state, sets, deletes)
        state.apply(changes, parsed)
        check_prefix_free(state.texts)
        doc = _model(doc, sets, deletes)
        assert unflatten(state.values) == doc, (sets, deletes)


def test_an_object_over_a_leaf_replaces_the_leaf() -> None:
    state = NamespaceState()
    for sets in ({"d": 5}, {"d": {"x": 1, "y": [2]}}, {"d": 6}, {"d.x": {"z": 1}}):
        changes, parsed = plan_update(state, sets, [])
        state.apply(changes, parsed)
        check_prefix_free(state.texts)
    assert unflatten(state.values) == {"d": {"x": {"z": 1}}}
    changes, parsed = plan_replace(state, {"d": 1})
    state.apply(changes, parsed)
    assert unflatten(state.values) == {"d": 1}
