"""Read-only settings and the flat index behind ``Subscriber.get``.

A subscriber owns the nested dicts it decoded; `FrozenSettings` wraps them without copying and
never mutates them, and a new version shares every untouched branch with the previous one
(`patch_tree` copies only the paths that changed). So an event costs work proportional to what
changed, not to the size of the namespace.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from ..errors import ProtocolError
from ..wire import MISSING, Change

#: Above this many changes in one event, rebuilding is as cheap as patching.
PATCH_LIMIT = 512


class FrozenSettings(Mapping[str, Any]):
    """An immutable view of nested settings; objects read as `FrozenSettings`, arrays as tuples."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = data if type(data) is dict else dict(data)

    def __getitem__(self, key: str) -> Any:
        return wrap(self._data[key])

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __repr__(self) -> str:
        return f"FrozenSettings({self._data!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FrozenSettings):
            return bool(self._data == other._data)
        if isinstance(other, Mapping):
            return bool(to_plain(self) == to_plain(other))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def to_dict(self) -> dict[str, Any]:
        """A mutable deep copy (dicts and lists), e.g. for JSON."""
        result: dict[str, Any] = to_plain(self._data)
        return result


def wrap(value: Any) -> Any:
    """The read-only form of a JSON value."""
    t = type(value)
    if t is dict:
        return FrozenSettings(value)
    if t is list:
        return tuple([wrap(v) for v in value])
    return value


def to_plain(value: Any) -> Any:
    if isinstance(value, FrozenSettings):
        value = value._data
    if isinstance(value, Mapping):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    return value


def index_tree(nested: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """One pass over decoded settings: the flat leaves and the index of every path.

    The flat dict is what `protocol.flatten` returns; the index also holds objects (as
    `FrozenSettings`) so that ``get("db")`` works, and arrays as tuples. (The index is a copy
    of the flat dict with those added: its order is not the document's.)
    """
    paths: list[str] = []
    values: list[Any] = []
    special: dict[str, Any] = {}
    _walk(nested, "", paths, values, special)
    flat = dict(zip(paths, values, strict=True))
    index = flat.copy()
    index.update(special)
    return flat, index


def _walk(node: dict[str, Any], prefix: str, paths: list[str], values: list[Any],
          special: dict[str, Any]) -> None:
    """Append ``node``'s leaves (paths and values, in document order), and put in ``special``
    what the index holds differently (objects as `FrozenSettings`, arrays as tuples)."""
    try:
        joined = "".join(node)  # TypeError: a key that is not a string
    except TypeError:
        joined = "."
    if "." in joined or "" in node:
        for k in node:  # name the bad key
            if type(k) is not str or not k or "." in k:
                raise ProtocolError(f"invalid settings key {prefix + str(k)!r}")
    types = set(map(type, node.values()))
    if dict not in types and list not in types:
        # Only scalars (the usual innermost object): no per-leaf type checks.
        paths += [prefix + k for k in node] if prefix else node
        values += node.values()
        return
    for k, v in node.items():
        path = prefix + k
        t = type(v)
        if t is dict:
            special[path] = FrozenSettings(v)
            if v:
                _walk(v, path + ".", paths, values, special)
                continue
        elif t is list:
            special[path] = wrap(v)
        paths.append(path)
        values.append(v)


def _depth(path: str) -> int:
    return path.count(".")


def _node_at(copies: dict[str, dict[str, Any]], path: str) -> dict[str, Any] | None:
    """The (copied) object at ``path``, creating missing ones; None if a leaf is in the way."""
    got = copies.get(path)
    if got is not None:
        return got
    parent_path, _, name = path.rpartition(".")
    parent = _node_at(copies, parent_path)
    if parent is None:
        return None
    current = parent.get(name, MISSING)
    if current is MISSING:
        fresh: dict[str, Any] = {}
    elif type(current) is dict:
        fresh = dict(current)
    else:
        return None  # a leaf stands where an object is needed
    parent[name] = copies[path] = fresh
    return fresh


def patch_tree(
    nested: dict[str, Any], index: dict[str, Any], changes: Sequence[Change]
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """Apply leaf changes by copying only the changed paths; None when a rebuild is needed
    (a change replaces an object by a leaf or the reverse, or changes nest in each other)."""
    if len(changes) > PATCH_LIMIT:
        return None
    if len(changes) > 1:
        keys = {c.key for c in changes}
        for key in keys:
            ancestor = key.rpartition(".")[0]
            while ancestor:
                if ancestor in keys:
                    return None
                ancestor = ancestor.rpartition(".")[0]
    root = dict(nested)
    copies: dict[str, dict[str, Any]] = {"": root}
    new_index = dict(index)
    for ch in changes:
        parent_path, _, leaf = ch.key.rpartition(".")
        target = root if not parent_path else _node_at(copies, parent_path)
        if target is None:
            return None
        existing = target.get(leaf, MISSING)
        if type(existing) is dict and existing:
            return None  # an object would be replaced: leave it to a rebuild
        if ch.op == "set":
            if type(ch.new) is dict and ch.new:
                return None
            target[leaf] = ch.new
            new_index[ch.key] = wrap(ch.new)
        elif existing is not MISSING:
            del target[leaf]
            new_index.pop(ch.key, None)
    if len(copies) > 1:
        for path in sorted(copies, key=_depth, reverse=True):
            if not path:
                continue
            node = copies[path]
            parent_path, _, name = path.rpartition(".")
            if node:
                new_index[path] = FrozenSettings(node)
            else:  # emptied by deletes: it disappears, as unflatten would have it
                del copies[parent_path][name]
                new_index.pop(path, None)
    return root, new_index
