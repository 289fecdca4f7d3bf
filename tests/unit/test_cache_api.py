"""The public surface of `hotreload.cache` is deliberate: pinned here."""

from __future__ import annotations

import inspect

import hotreload.cache as cache_module
from hotreload.cache import AsyncTwoLevelCache, TwoLevelCache


def test_all_is_sorted_and_importable() -> None:
    assert cache_module.__all__ == sorted(cache_module.__all__)
    assert cache_module.__all__ == ["AsyncTwoLevelCache", "JsonSerializer", "L1Cache", "Loader",
                                    "Serializer", "TwoLevelCache"]
    for name in cache_module.__all__:
        assert getattr(cache_module, name) is not None


def test_sync_and_async_twins_match() -> None:
    """Same constructor options, same methods (``close``/``aclose`` aside)."""
    a = inspect.signature(AsyncTwoLevelCache.__init__).parameters
    s = inspect.signature(TwoLevelCache.__init__).parameters
    assert list(a)[2:] == list(s)[2:]
    for name in ("get", "set", "invalidate", "invalidate_prefix", "clear", "stats"):
        a_params = list(inspect.signature(getattr(AsyncTwoLevelCache, name)).parameters)
        s_params = list(inspect.signature(getattr(TwoLevelCache, name)).parameters)
        assert a_params == s_params, name
        assert inspect.iscoroutinefunction(getattr(AsyncTwoLevelCache, name)) == (
            name != "stats")
