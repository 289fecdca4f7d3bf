"""Dotted keys and JSON values: flatten, diff and apply settings changes. No I/O.

Settings are one JSON object; changes address leaves by dotted path (``db.pool_size``). This is
the pure half of the protocol (`hotreload.protocol` re-exports it).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias

from hotreload.errors import ProtocolError

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


MAX_DEPTH: Final = 100
"""How deeply settings may nest: objects and arrays inside one another, the top-level object
included, and counting the levels a dotted key implies (a value set at ``a.b`` already sits in
two objects). Every way in rejects deeper settings: the publisher API, the daemon, documents and
PostgreSQL rows; so no decoder or recursive walk ever gets near Python's recursion limit."""

PathPart: TypeAlias = str | int

_SURROGATE: Final = re.compile("[\ud800-\udfff]")
_BIG_INT_BITS: Final = 4096  # below this, any int prints (sys.get_int_max_str_digits >= 640)


def check_json_value(value: Any, where: str, *, depth: int = 0) -> None:
    """Raise `ProtocolError` unless ``value`` is plain JSON that UTF-8 JSON text can hold.

    Plain JSON: str keys, no NaN/Infinity, no lone surrogates, no ints too long to print, only
    dicts/mappings, lists/tuples, str, int, float, bool and None, nested at most `MAX_DEPTH`
    levels, ``depth`` of which already enclose ``value``. Iterative: any input is safe. The
    message names ``where`` and the path below it (``db.hosts[2]``).
    """
    t = type(value)
    if t is bool or value is None or (t is str and value.isascii()) or (
            t is int and value.bit_length() <= _BIG_INT_BITS) or _surely_plain(value, depth):
        return
    found = _first_problem(value, depth)
    if found is not None:
        path, why = found
        raise ProtocolError(f"{where}{_render(path)}: {why}")


def _surely_plain(root: Any, depth: int) -> bool:
    """True if ``root`` is surely plain JSON: the fast check, level by level, of the common
    types (False for anything unusual; `_first_problem` then decides and explains)."""
    level = [root]
    while level:
        below: list[Any] = []
        for node in level:
            t = type(node)
            if t is str:
                if not node.isascii() and _SURROGATE.search(node):
                    return False
            elif t is dict:
                if depth >= MAX_DEPTH:
                    return False
                try:
                    keys = "".join(node)  # every key a str, checked in C
                except TypeError:
                    return False
                if not keys.isascii() and _SURROGATE.search(keys):
                    return False
                below.extend(node.values())
            elif t is list or t is tuple:
                if depth >= MAX_DEPTH:
                    return False
                below.extend(node)
            elif t is int:
                if node.bit_length() > _BIG_INT_BITS:
                    return False
            elif t is float:
                if not math.isfinite(node):
                    return False
            elif t is not bool and node is not None:
                return False
        level = below
        depth += 1
    return True


def _first_problem(root: Any, depth: int) -> tuple[list[PathPart], str] | None:
    """The path to the first bad part of ``root`` and why it is bad (depth-first)."""
    path: list[PathPart] = []  # to the node at hand; one part per open container
    stack: list[Iterator[tuple[PathPart, Any]]] = []
    node = root
    while True:
        t = type(node)
        if t is dict or t is list or t is tuple or (
                t is not bool and node is not None
                and isinstance(node, (Mapping, list, tuple))):
            if depth + len(stack) >= MAX_DEPTH:
                return [], f"nested more than {MAX_DEPTH} levels deep"
            if isinstance(node, (list, tuple)):
                stack.append(enumerate(node))
            else:
                for key in node:
                    if not isinstance(key, str):
                        return path, f"object keys must be strings, not {short_repr(key)}"
                    if not key.isascii() and _SURROGATE.search(key):
                        return [*path, key], "the key holds a lone surrogate (not valid UTF-8)"
                stack.append(iter(node.items()))
            path.append("")
        else:
            why = _scalar_problem(node)
            if why is not None:
                return path, why
        while stack:
            nxt = next(stack[-1], None)
            if nxt is not None:
                path[-1], node = nxt
                break
            stack.pop()
            path.pop()
        else:
            return None


def _scalar_problem(value: Any) -> str | None:
    if value is None or value is True or value is False:
        return None
    if isinstance(value, str):  # fast: isascii() is O(1) in CPython
        if not value.isascii() and _SURROGATE.search(value):
            return f"{short_repr(value)} holds a lone surrogate (not valid UTF-8)"
        return None
    if isinstance(value, int):
        if value.bit_length() > _BIG_INT_BITS:
            try:
                str(value)
            except ValueError:
                return f"an integer of {value.bit_length()} bits is too long for JSON text"
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{value!r} is not valid JSON"
    return f"{type(value).__name__} is not a JSON value"


def _render(path: Sequence[PathPart]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{short_repr(part, quote=False)}"
    return out


def short_repr(text: Any, *, quote: bool = True) -> str:
    """``text`` for a one-line message: repr'd if it needs escaping, cut if long."""
    if not isinstance(text, str):
        if type(text) is int and text.bit_length() > 64:
            return "a very long int"
        plain = text is None or type(text) in (int, float, bool)
        return repr(text) if plain else f"a {type(text).__name__}"
    cut = text if len(text) <= 60 else text[:60] + "…"
    if quote or not cut.isprintable() or _SURROGATE.search(cut):
        return repr(cut)
    return cut


def check_text(value: Any, what: str) -> str:
    """``value`` if it is a str that UTF-8 can encode (no lone surrogate), else `ProtocolError`."""
    if not isinstance(value, str):
        raise ProtocolError(f"{what} must be a string, not {short_repr(value)}")
    if not value.isascii() and _SURROGATE.search(value):
        raise ProtocolError(f"{what} {short_repr(value)} holds a lone surrogate (not valid UTF-8)")
    return value


# --------------------------------------------------------------------------- dotted keys


def check_key(key: str) -> str:
    """A settings key is a dotted path of at most `MAX_DEPTH` non-empty segments (valid UTF-8)."""
    if not isinstance(key, str) or not key or any(not part for part in key.split(".")):
        raise ProtocolError(
            f"invalid settings key {short_repr(key)}: use dotted names like 'db.pool_size'")
    if not key.isascii() and _SURROGATE.search(key):
        raise ProtocolError(
            f"invalid settings key {short_repr(key)}: holds a lone surrogate (not valid UTF-8)")
    if key.count(".") >= MAX_DEPTH:
        raise ProtocolError(
            f"invalid settings key {short_repr(key)}: more than {MAX_DEPTH} levels deep")
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
        check_json_value(value, key, depth=key.count(".") + 1)
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
