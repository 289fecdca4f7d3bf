"""The public API: each `__all__` is exactly the public names, sorted and importable; sync twins
mirror async ones."""

from __future__ import annotations
import __future__

import inspect
import types
from collections.abc import Callable
from typing import Any

import pytest

import hotreload
import hotreload.transport
import hotreload.wire


def test_all_is_sorted_and_importable() -> None:
    names = hotreload.__all__
    assert names == sorted(names, key=lambda n: (not n.isupper(), n))  # as ruff RUF022 sorts
    for name in names:
        assert getattr(hotreload, name) is not None


#: Dunder names a package exports on purpose.
EXPORTED_DUNDERS = {"__version__"}


def _public_names(module: types.ModuleType) -> set[str]:
    """What ``module`` defines or imports at its top level for its users: every name without a
    leading underscore, except submodules (set as attributes when imported) and ``from
    __future__`` directives, plus `EXPORTED_DUNDERS`."""
    return {name for name, value in vars(module).items()
            if (not name.startswith("_") or name in EXPORTED_DUNDERS)
            and not isinstance(value, (types.ModuleType, __future__._Feature))}


@pytest.mark.parametrize("module", [hotreload, hotreload.wire, hotreload.transport],
                         ids=lambda m: m.__name__)
def test_all_is_exactly_the_public_names(module: types.ModuleType) -> None:
    """As httpx's test_exported_members: nothing public is left out of ``__all__`` (a name
    imported for internal use gets an underscore), and ``__all__`` names nothing else."""
    exported = set(module.__all__)
    public = _public_names(module)
    assert len(exported) == len(module.__all__), "__all__ names something twice"
    assert not public - exported, f"public but not in __all__: {sorted(public - exported)}"
    assert not exported - public, f"in __all__ but not defined: {sorted(exported - public)}"


def test_publish_result_fields_are_pinned() -> None:
    """What a publish returns is part of the API (invalidations are numbered apart: their
    ``version`` is the invalidation's seq; ``epoch`` and ``recovered`` came with protocol 2)."""
    import dataclasses

    assert [f.name for f in dataclasses.fields(hotreload.PublishResult)] == [
        "namespace", "version", "changed", "changes", "receivers", "epoch", "recovered"]


def test_every_error_derives_from_the_root() -> None:
    errors = [getattr(hotreload, n) for n in hotreload.__all__ if n.endswith(("Error", "Rejected",
                                                                            "Timeout"))]
    assert errors
    for err in errors:
        assert issubclass(err, hotreload.HotReloadError), err
        assert err.__doc__


# The sync classes are facades of the async ones: same methods, same parameters.
TWINS = [(hotreload.Subscriber, hotreload.AsyncSubscriber),
         (hotreload.Publisher, hotreload.AsyncPublisher),
         (hotreload.TwoLevelCache, hotreload.AsyncTwoLevelCache)]
SYNC_NAME = {"aclose": "close", "__aenter__": "__enter__", "__aexit__": "__exit__"}
#: A transport's connections belong to one event loop: only the async classes accept one.
ASYNC_ONLY_PARAMETERS = {"transport"}


def _parameters(func: Callable[..., Any]) -> list[tuple[str, Any, Any]]:
    return [(x.name, x.kind, x.default) for x in inspect.signature(func).parameters.values()
            if x.name not in ASYNC_ONLY_PARAMETERS]


def _public(cls: type) -> dict[str, Any]:
    return {name: obj for name, obj in vars(cls).items()
            if not name.startswith("_") or name in (*SYNC_NAME, "__init__")}


@pytest.mark.parametrize(("sync", "async_"), TWINS, ids=[s.__name__ for s, _ in TWINS])
def test_sync_twins_have_every_async_method_with_the_same_signature(
    sync: type, async_: type
) -> None:
    for name, obj in _public(async_).items():
        sync_name = SYNC_NAME.get(name, name)
        assert hasattr(sync, sync_name), f"{sync.__name__}.{sync_name} is missing"
        mine = inspect.getattr_static(sync, sync_name)
        if isinstance(obj, property):
            assert isinstance(mine, property), f"{sync.__name__}.{sync_name} is no property"
            continue
        assert callable(obj) and callable(mine)
        assert _parameters(mine) == _parameters(obj), (
            f"{sync.__name__}.{sync_name}{inspect.signature(mine)} != "
            f"{async_.__name__}.{name}{inspect.signature(obj)}")
        assert not inspect.iscoroutinefunction(mine), f"{sync.__name__}.{sync_name} is async"


def test_sync_facades_pass_no_hidden_keyword_arguments() -> None:
    for sync, _ in TWINS:
        for name, obj in _public(sync).items():
            if callable(obj):
                kinds = {x.kind for x in inspect.signature(obj).parameters.values()}
                assert inspect.Parameter.VAR_KEYWORD not in kinds, f"{sync.__name__}.{name}"


def test_the_error_tree_in_the_docstring_is_the_real_one() -> None:
    import re

    from hotreload import errors

    drawn: dict[str, str] = {}  # class -> parent, as drawn
    parents: list[str] = []
    for line in (errors.__doc__ or "").splitlines():
        found = re.match(r"^((?:[│ ]   )*)(?:[├└]── )?([A-Z]\w+)(?:\s|$)", line)
        if found is None:
            continue
        level = len(found[1]) // 4 + (1 if "── " in line else 0)
        del parents[level:]
        if parents:
            drawn[found[2]] = parents[-1]
        parents.append(found[2])
    real = {name: cls.__base__.__name__ for name, cls in vars(errors).items()
            if isinstance(cls, type) and issubclass(cls, errors.HotReloadError)
            and cls is not errors.HotReloadError}
    assert drawn == real
    assert set(real) <= set(hotreload.__all__)
