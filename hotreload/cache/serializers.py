"""How a cache stores values in L2: the `Serializer` protocol and `JsonSerializer`."""

from __future__ import annotations

import json
from typing import Any, Protocol, runtime_checkable

__all__ = ["JsonSerializer", "Serializer"]


@runtime_checkable
class Serializer(Protocol):
    """How values are stored in L2: ``dumps(value) -> bytes`` and ``loads(bytes) -> value``.

    ``loads(dumps(v))`` must give back an equal value; ``None`` must round-trip (it is how a
    negative-cached "not found" is stored). Errors of ``dumps`` propagate to the caller of
    ``get``/``set``; a value that ``loads`` cannot read is treated as an L2 miss.
    """

    def dumps(self, value: Any) -> bytes: ...

    def loads(self, data: bytes) -> Any: ...


class JsonSerializer:
    """Compact UTF-8 JSON; NaN and Infinity are rejected. Tuples come back as lists."""

    def dumps(self, value: Any) -> bytes:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False).encode()

    def loads(self, data: bytes) -> Any:
        return json.loads(data)
