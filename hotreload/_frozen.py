"""Read-only settings: `FrozenSettings` and the flat index behind ``Subscriber.get``."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any


class FrozenSettings(Mapping[str, Any]):
    """An immutable nested mapping; nested objects are `FrozenSettings`, lists are tuples."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = dict(data)

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"FrozenSettings({self._data!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FrozenSettings):
            return self._data == other._data
        if isinstance(other, Mapping):
            return bool(to_plain(self) == dict(other))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def to_dict(self) -> dict[str, Any]:
        """A mutable deep copy with lists, for JSON."""
        result: dict[str, Any] = to_plain(self)
        return result


def to_plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    return value


def freeze(nested: Mapping[str, Any], index: dict[str, Any], prefix: str = "") -> FrozenSettings:
    """Freeze ``nested`` and record every path (leaves and objects) in ``index``."""
    out: dict[str, Any] = {}
    for k, v in nested.items():
        path = prefix + k
        if isinstance(v, Mapping):
            fv: Any = freeze(v, index, path + ".")
        elif isinstance(v, list):
            fv = _freeze_list(v)
        else:
            fv = v
        out[k] = fv
        index[path] = fv
    return FrozenSettings(out)


def _freeze_list(values: list[Any]) -> tuple[Any, ...]:
    out: list[Any] = []
    for v in values:
        if isinstance(v, Mapping):
            out.append(freeze(v, {}))
        elif isinstance(v, list):
            out.append(_freeze_list(v))
        else:
            out.append(v)
    return tuple(out)
