"""The public API is exactly what `hotreload.__all__` lists, sorted, and every name exists."""

from __future__ import annotations

import hotreload


def test_all_is_sorted_and_importable() -> None:
    names = hotreload.__all__
    assert names == sorted(names, key=lambda n: (not n.isupper(), n))  # as ruff RUF022 sorts
    for name in names:
        assert getattr(hotreload, name) is not None


def test_every_error_derives_from_the_root() -> None:
    errors = [getattr(hotreload, n) for n in hotreload.__all__ if n.endswith(("Error", "Rejected",
                                                                            "Timeout"))]
    assert errors
    for err in errors:
        assert issubclass(err, hotreload.HotReloadError), err
        assert err.__doc__
