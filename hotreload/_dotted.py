"""Dotted keys and JSON values: flatten, diff and apply settings changes. No I/O.

Settings are one JSON object; changes address leaves by dotted path (``db.pool_size``). This is
the pure half of the protocol (`hotreload.protocol` re-exports it).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias

from .errors import ProtocolError

Op: TypeAlias = Literal["set", "delete"]


class _Missing:
    """The value of `Change.old` when the key did not exist before."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Final = _Missing()


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_DECODER: Final = json.JSONDecoder(parse_constant=_reject_constant)


def loads(data: bytes | str) -> Any:
    """Strict JSON, UTF-8: NaN and Infinity are rejected. Raises ValueError."""
    text = data if isinstance(data, str) else data.decode("utf-8")
    return _DECODER.decode(text)


def canonical_json(value: Any) -> str:
    """The canonical text of a JSON value: sorted keys, no spaces, UTF-8, no NaN."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def check_json_value(value: Any, where: str) -> None:
    """Raise `ProtocolError` unless ``value`` is plain JSON (no NaN, str keys)."""
    if value is None or isinstance(value, (str, bool, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ProtocolError(f"{where}: {value!r} is not valid JSON")
        return
    if isinstance(value, (list, tuple)):
        for item in value:
            check_json_value(item, where)
        return
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                raise ProtocolError(f"{where}: object keys must be strings, not {k!r}")
            check_json_value(v, where)
        return
    raise ProtocolError(f"{where}: {type(value).__name__} is not a JSON value")


# --------------------------------------------------------------------------- dotted keys


def check_key(key: str) -> str:
    """A settings key is a dotted path of non-empty segments."""
    if not isinstance(key, str) or not key or any(not part for part in key.split(".")):
        raise ProtocolError(f"invalid settings key {key!r}: use dotted names like 'db.pool_size'")
    return key


def flatten(document: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings to dotted keys. Lists are leaves; an empty mapping is a leaf ``{}``."""
    out: dict[str, Any] = {}
    _flatten_into(out, document, prefix)
    return out


def _flatten_into(out: dict[str, Any], node: Mapping[str, Any], prefix: str) -> None:
    for k, v in node.items():
        if not isinstance(k, str) or not k or "." in k:
            where = f"{prefix}{k}" if isinstance(k, str) else repr(k)
            raise ProtocolError(
                f"invalid settings key {where!r}: names must be non-empty strings without '.'"
            )
        path = prefix + k
        t = type(v)
        if t is str or t is int or t is float or t is bool or t is list or v is None:
            out[path] = v  # the common leaves, before the slower ABC check
        elif isinstance(v, Mapping) and v:
            _flatten_into(out, v, path + ".")
        else:
            out[path] = {} if isinstance(v, Mapping) else v


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Dotted keys back to nested dicts (the inverse of `flatten`)."""
    root: dict[str, Any] = {}
    for key in sorted(flat):
        parts = key.split(".")
        node = root
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        value = flat[key]
        if isinstance(value, dict) and parts[-1] in node:
            continue  # an empty-object leaf shadowed by real children
        node[parts[-1]] = dict(value) if isinstance(value, dict) else value
    return root


def _subtree(flat: Mapping[str, Any], key: str) -> list[str]:
    dotted = key + "."
    return [k for k in flat if k == key or k.startswith(dotted)]


def _ancestors(key: str) -> Iterable[str]:
    parts = key.split(".")
    for i in range(1, len(parts)):
        yield ".".join(parts[:i])


# --------------------------------------------------------------------------- changes


@dataclass(frozen=True, slots=True)
class Change:
    """One leaf change: ``set`` (``old`` is `MISSING` if the key is new) or ``delete``."""

    op: Op
    key: str
    old: Any = MISSING
    new: Any = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"op": self.op, "key": self.key}
        if self.old is not MISSING:
            out["old"] = self.old
        if self.op == "set":
            out["new"] = self.new
        return out


def update(
    flat: Mapping[str, Any], sets: Mapping[str, Any], deletes: Iterable[str] = ()
) -> dict[str, Any]:
    """The flat settings after setting and deleting keys.

    Setting a key to a mapping replaces that whole subtree; setting a key below a leaf replaces
    the leaf; deleting a key deletes its subtree.
    """
    new = dict(flat)
    for key in deletes:
        check_key(key)
        for k in _subtree(new, key):
            del new[k]
    for key, value in sets.items():
        check_key(key)
        check_json_value(value, key)
        if key in new:
            del new[key]  # a leaf has no subtree: skip the scan
        else:
            for k in _subtree(new, key):
                del new[k]
        for anc in _ancestors(key):
            new.pop(anc, None)
        value = _plain(value)
        if isinstance(value, dict) and value:
            new.update(flatten(value, key + "."))
        else:
            new[key] = value
    return new


def _plain(value: Any) -> Any:
    """A private deep copy, tuples as lists: the caller may mutate what it passed in later."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _same(a: Any, b: Any) -> bool:
    """JSON equality: ``true`` is not ``1`` and ``1.0`` is not ``1`` in JSON text."""
    if a is b:
        return True
    t = type(a)
    if t is type(b):
        if t is str or t is int or t is bool:
            return bool(a == b)
        if t is float:  # equal floats print alike, except 0.0 and -0.0
            return bool(a == b) and math.copysign(1.0, a) == math.copysign(1.0, b)
        if t is not list and t is not dict:
            return False
    return canonical_json(a) == canonical_json(b)


def _change_key(change: Change) -> str:
    return change.key


def diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[Change, ...]:
    """Leaf-level changes from ``old`` to ``new``, sorted by key."""
    changes: list[Change] = []
    common = 0
    for key, value in new.items():
        if key in old:
            common += 1
            before = old[key]
            if not _same(before, value):
                changes.append(Change("set", key, before, value))
        else:
            changes.append(Change("set", key, MISSING, value))
    if common < len(old):
        changes.extend(Change("delete", key, old[key]) for key in old if key not in new)
    changes.sort(key=_change_key)
    return tuple(changes)


def apply_changes(flat: Mapping[str, Any], changes: Iterable[Change]) -> dict[str, Any]:
    """Apply leaf changes to a copy of ``flat`` (what a subscriber does per event)."""
    new = dict(flat)
    for ch in changes:
        if ch.op == "set":
            new[ch.key] = ch.new
        else:
            new.pop(ch.key, None)
    return new


def revert_changes(flat: Mapping[str, Any], changes: Iterable[Change]) -> dict[str, Any]:
    """Undo leaf changes on a copy of ``flat`` (used by rollback)."""
    new = dict(flat)
    for ch in reversed(list(changes)):
        if ch.old is MISSING:
            new.pop(ch.key, None)
        else:
            new[ch.key] = ch.old
    return new


def key_matches(key: str, keys: Iterable[str], prefixes: Iterable[str]) -> bool:
    """Whether a settings key is one of ``keys`` (or below one) or starts with a prefix."""
    for k in keys:
        if key == k or key.startswith(k + "."):
            return True
    return any(key.startswith(p) for p in prefixes)
