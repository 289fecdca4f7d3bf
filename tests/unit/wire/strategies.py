"""Hypothesis strategies and settings shared by the wire tests."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

#: Deterministic (derandomized), no example database on disk, no deadline on a shared machine.
SETTINGS = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])

segments = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters=".",
                                 min_codepoint=0x20), min_size=1, max_size=6)
keys = st.lists(segments, min_size=1, max_size=4).map(".".join)

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**60), 2**60),
                         st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8))


def json_values(max_leaves: int = 8) -> st.SearchStrategy[Any]:
    return st.recursive(json_scalars,
                        lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                st.dictionaries(st.text(max_size=4), inner,
                                                                max_size=3)),
                        max_leaves=max_leaves)


leaf_texts = st.sampled_from(["1", "1.0", "1e0", " 1", '"x"', '"ü"', "[1,2]", "{}", "null",
                              "true", '[{"a":1}]', '"\\u0000"'])
#: Prefix-free keys drawn from a small fixed set (no key is a prefix of another).
SMALL_KEYS = ["a", "b", "c.d", "c.e", "f.g.h", "é"]
small_keys = st.sampled_from(SMALL_KEYS)
leaf_sets = st.dictionaries(small_keys, leaf_texts, max_size=len(SMALL_KEYS))
