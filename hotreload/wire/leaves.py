"""Settings as leaves (protocol §2) and leaf changes (§5.1). No I/O.

A namespace's settings are a set of leaves, *key -> text*: `flatten` turns a nested document
into key -> value, `leaf_text` (values.py) a value into its text; `diff_texts` compares two
sets of leaves, `apply_leaf_changes` / `LeafSet.apply` apply an event's changes (checking the
``old`` texts and that the result stays prefix-free), `unflatten` builds the nested document.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, Literal, TypeAlias

from ..errors import ProtocolError
from .values import (
    DECODER,
    MAX_KEY_SEGMENTS,
    MAX_LEAF_DEPTH,
    MISSING,
    SCAN,
    check_key,
    key_problem,
    leaf_text,
    parse_leaf_text,
    same_value,
)

__all__ = [
    "Change",
    "LeafChange",
    "LeafSet",
    "Op",
    "apply_leaf_changes",
    "changes_from_json",
    "changes_to_json",
    "check_prefix_free",
    "diff_texts",
    "diff_values",
    "document_of",
    "flatten",
    "flatten_texts",
    "parse_leaves",
    "unflatten",
    "value_change",
]

Op: TypeAlias = Literal["set", "delete"]


@dataclass(frozen=True, slots=True)
class LeafChange:
    """One change on the wire (§5.1): texts. ``old`` None: the key did not exist; ``new`` None:
    the event deletes it. Never both None."""

    key: str
    old: str | None
    new: str | None


@dataclass(frozen=True, slots=True)
class Change:
    """One change as listeners and publish results see it: parsed values.

    ``op`` is ``set`` (``old`` is `MISSING` when the key is new) or ``delete`` (``new`` None).
    """

    op: Op
    key: str
    old: Any = MISSING
    new: Any = None


def value_change(change: LeafChange) -> Change:
    """The `Change` (values) of a `LeafChange` (texts): texts parsed, absence as `MISSING`."""
    old = MISSING if change.old is None else DECODER.decode(change.old)
    if change.new is None:
        return Change("delete", change.key, old)
    return Change("set", change.key, old, DECODER.decode(change.new))


# --------------------------------------------------------------------------- documents


def flatten(document: Mapping[str, Any]) -> dict[str, Any]:
    """A nested document to its leaves, key -> value (§2).

    Non-empty objects spread over the keys below them; arrays and ``{}`` are leaves. Every key
    is checked (§2: segments without ``.`` or control characters, 32 segments, 512 bytes).
    Raises `ProtocolError` (reason ``key``).
    """
    out: dict[str, Any] = {}
    _flatten_into(out, document, "", 0)
    return out


def _flatten_into(out: dict[str, Any], node: Mapping[str, Any], prefix: str, depth: int) -> None:
    # Recursion is bounded: a document deeper than MAX_KEY_SEGMENTS objects fails check_key.
    for name, value in node.items():
        if type(name) is not str or not name or "." in name:
            where = prefix + name if type(name) is str else repr(name)
            raise ProtocolError(
                f"invalid settings key {where!r}: names must be non-empty strings without '.'",
                reason="key",
            )
        path = prefix + name
        if isinstance(value, Mapping) and value:
            if depth + 1 >= MAX_KEY_SEGMENTS:
                check_key(f"{path}.x")  # raises: too many segments
            _flatten_into(out, value, path + ".", depth + 1)
        else:
            check_key(path)
            out[path] = {} if isinstance(value, Mapping) else value


def flatten_texts(document: Mapping[str, Any]) -> dict[str, str]:
    """A nested document to its leaves, key -> canonical text (§2)."""
    return {key: leaf_text(value, key) for key, value in flatten(document).items()}


def parse_leaves(leaves: Mapping[str, str]) -> dict[str, Any]:
    """Leaves key -> text to key -> value, checking each key and text (§2)."""
    out: dict[str, Any] = {}
    for key, text in leaves.items():
        check_key(key)
        out[key] = parse_leaf_text(text, f"text of {key[:80]!r}")
    return out


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Leaves key -> value back to the nested document (§2: the inverse of `flatten`).

    Raises `ProtocolError` (reason ``prefix``) when one key is a dotted prefix of another.
    """
    check_prefix_free(flat)
    root: dict[str, Any] = {}
    for key, value in flat.items():
        parts = key.split(".")
        node = root
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            node = child
        node[parts[-1]] = {} if isinstance(value, Mapping) else value
    return root


def document_of(leaves: Mapping[str, str]) -> dict[str, Any]:
    """The nested document (§2) of leaves key -> text."""
    return unflatten(parse_leaves(leaves))


def _ordered(key: str) -> str:
    return key.replace(".", "\x00")  # a key sorts right before every key below it


def check_prefix_free(keys: Iterable[str]) -> None:
    """Raise `ProtocolError` (reason ``prefix``) if one key is a dotted prefix of another (§2).

    From scratch, O(n log n). `LeafSet.apply` checks one event's changes in O(changes).
    """
    previous = None
    for key in sorted(map(_ordered, keys)):
        if previous is not None and key.startswith(previous + "\x00"):
            raise _conflict(previous.replace("\x00", "."), key.replace("\x00", "."))
        previous = key


def _conflict(upper: str, lower: str) -> ProtocolError:
    return ProtocolError(f"settings keys {upper[:80]!r} and {lower[:80]!r} conflict: one is a "
                         "prefix of the other (a key holds either a value or keys below it)",
                         reason="prefix")


# --------------------------------------------------------------------------- changes


def _by_key(change: LeafChange) -> str:
    return change.key


def diff_texts(old: Mapping[str, str], new: Mapping[str, str]) -> tuple[LeafChange, ...]:
    """The changes from leaves ``old`` to leaves ``new``, sorted by key (§5.1).

    Texts compare exactly (§2). O(len(old) + len(new)).
    """
    changes: list[LeafChange] = []
    common = 0
    for key, text in new.items():
        before = old.get(key)
        if before is None:
            changes.append(LeafChange(key, None, text))
        else:
            common += 1
            if before != text:
                changes.append(LeafChange(key, before, text))
    if common < len(old):
        changes.extend(LeafChange(key, text, None) for key, text in old.items() if key not in new)
    changes.sort(key=_by_key)
    return tuple(changes)


def _check_changes(current: Mapping[str, str], changes: Iterable[LeafChange],
                   check_old: bool) -> tuple[list[LeafChange], list[str], list[str]]:
    """Validate an event's changes against ``current``: (changes, added keys, removed keys)."""
    listed = list(changes)
    seen: set[str] = set()
    added: list[str] = []
    removed: list[str] = []
    for ch in listed:
        key = ch.key
        if key in seen:
            raise ProtocolError(f"two changes of key {key[:80]!r} in one event", reason="field")
        seen.add(key)
        if ch.old is None and ch.new is None:
            raise ProtocolError(f"change of {key[:80]!r} has neither old nor new", reason="field")
        cur = current.get(key)
        if check_old and cur != ch.old:
            raise ProtocolError(
                f"change of {key[:80]!r} expects "
                + ("no such key" if ch.old is None else "another old text")
                + " than the state holds", reason="old")
        if ch.new is None:
            if cur is not None:
                removed.append(key)
        elif cur is None:
            check_key(key)
            added.append(key)
    return listed, added, removed


def apply_leaf_changes(leaves: Mapping[str, str], changes: Iterable[LeafChange], *,
                       check_old: bool = True) -> dict[str, str]:
    """The leaves after an event's changes (§5.1), as a new dict; ``leaves`` is not touched.

    With ``check_old``, each change's ``old`` must be the text the leaves hold (reason ``old``).
    The result must be prefix-free (reason ``prefix``). O(n): keep a `LeafSet` to apply events
    in O(changes).
    """
    listed, added, _ = _check_changes(leaves, changes, check_old)
    new = dict(leaves)
    for ch in listed:
        if ch.new is None:
            new.pop(ch.key, None)
        else:
            new[ch.key] = ch.new
    if added:
        check_prefix_free(new)
    return new


def _ancestors(key: str) -> Iterator[str]:
    end = key.find(".")
    while end >= 0:
        yield key[:end]
        end = key.find(".", end + 1)


class LeafSet(Mapping[str, str]):
    """A prefix-free set of leaves, key -> text, that applies events in O(changes) (§2, §5.1).

    Besides the texts it counts the leaves below every interior key, so the prefix-free check
    of an event looks only at the keys the event adds.
    """

    __slots__ = ("_below", "_texts")

    def __init__(self, leaves: Mapping[str, str] | None = None) -> None:
        texts = dict(leaves or {})
        for key in texts:
            check_key(key)
        check_prefix_free(texts)
        below: dict[str, int] = {}
        for key in texts:
            for anc in _ancestors(key):
                below[anc] = below.get(anc, 0) + 1
        self._texts = texts
        self._below = below

    def __getitem__(self, key: str) -> str:
        return self._texts[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._texts)

    def __len__(self) -> int:
        return len(self._texts)

    def __contains__(self, key: object) -> bool:
        return key in self._texts

    def __repr__(self) -> str:
        return f"LeafSet({self._texts!r})"

    @property
    def texts(self) -> Mapping[str, str]:
        """A read-only view of the leaves."""
        return MappingProxyType(self._texts)

    def copy(self) -> LeafSet:
        clone = LeafSet.__new__(LeafSet)
        clone._texts = dict(self._texts)
        clone._below = dict(self._below)
        return clone

    def apply(self, changes: Iterable[LeafChange], *, check_old: bool = True) -> None:
        """Apply one event's changes, all or nothing (§5.1).

        Raises `ProtocolError` (reason ``old``, ``prefix``, ``field`` or ``key``) and then
        changes nothing.
        """
        texts, below = self._texts, self._below
        listed, added, removed = _check_changes(texts, changes, check_old)
        if added:
            delta: dict[str, int] = {}
            for key in removed:
                for anc in _ancestors(key):
                    delta[anc] = delta.get(anc, 0) - 1
            for key in added:
                for anc in _ancestors(key):
                    delta[anc] = delta.get(anc, 0) + 1
            gone = set(removed)
            new_keys = set(added)
            for key in added:
                if below.get(key, 0) + delta.get(key, 0) > 0:
                    lower = next((k for k in added if k.startswith(key + ".")), None)
                    if lower is None:
                        lower = next(k for k in texts if k.startswith(key + ".") and k not in gone)
                    raise _conflict(key, lower)
                for anc in _ancestors(key):
                    if anc in new_keys or (anc in texts and anc not in gone):
                        raise _conflict(anc, key)
        for key in removed:
            for anc in _ancestors(key):
                left = below[anc] - 1
                if left:
                    below[anc] = left
                else:
                    del below[anc]
        for key in added:
            for anc in _ancestors(key):
                below[anc] = below.get(anc, 0) + 1
        for ch in listed:
            if ch.new is None:
                texts.pop(ch.key, None)
            else:
                texts[ch.key] = ch.new


# --------------------------------------------------------------------------- on the wire


_GOOD_KEYS_MAX: Final = 65536
_good_keys: set[str] = set()  # keys seen valid (bounded): keys repeat from event to event


def changes_from_json(raw: Any, where: str = "changes"
                      ) -> tuple[tuple[LeafChange, ...], tuple[tuple[Any, Any], ...]]:
    """Decode and check a ``changes`` array (§5.1): the changes and their parsed values.

    Each change is ``{"key": K, "old": T0, "new": T1}`` with ``old`` and/or ``new``; keys are
    valid (§2) and strictly ascending (UTF-8 byte order, which is code point order); texts are
    leaf texts. The values are ``(old value or MISSING, new value or None)`` per change.
    Raises `ProtocolError` (reason ``field``, ``key`` or ``text``).
    """
    if type(raw) is not list:
        raise ProtocolError(f"member {where!r} must be an array", reason="field")
    out: list[LeafChange] = []
    values: list[tuple[Any, Any]] = []
    previous = ""
    scan = SCAN
    for item in raw:
        if type(item) is not dict:
            raise ProtocolError(f"each of {where!r} must be an object", reason="field")
        key = item.get("key")
        if type(key) is not str:
            raise ProtocolError(f"a change of {where!r} has no string 'key'", reason="field")
        if key not in _good_keys:
            problem = key_problem(key)
            if problem is not None:
                raise ProtocolError(f"invalid settings key {key[:80]!r}: it {problem}",
                                    reason="key")
            if len(_good_keys) >= _GOOD_KEYS_MAX:
                _good_keys.clear()
            _good_keys.add(key)
        if key <= previous:
            raise ProtocolError(f"{where!r} are not sorted by key or repeat {key[:80]!r}",
                                reason="field")
        previous = key
        old = item.get("old")
        new = item.get("new")
        if old is None:
            if "old" in item or new is None:
                raise ProtocolError(f"change of {key[:80]!r}: 'old' and 'new' must be strings "
                                    "and at least one present", reason="field")
            old_value: Any = MISSING
        elif type(old) is not str:
            raise ProtocolError(f"change of {key[:80]!r}: 'old' must be a string",
                                reason="field")
        else:
            end = -1
            if old.isascii() and old.count("[") + old.count("{") <= MAX_LEAF_DEPTH:
                try:
                    old_value, end = scan(old, 0)
                except (StopIteration, ValueError):
                    pass
            if end != len(old):
                old_value = parse_leaf_text(old, f"'old' of {key[:80]!r}")
            elif type(old_value) is dict and old_value:
                raise ProtocolError(f"change of {key[:80]!r}: 'old' is a non-empty object",
                                    reason="text")
        if new is None:
            if "new" in item:
                raise ProtocolError(f"change of {key[:80]!r}: 'new' must be a string",
                                    reason="field")
            new_value: Any = None
        elif type(new) is not str:
            raise ProtocolError(f"change of {key[:80]!r}: 'new' must be a string",
                                reason="field")
        else:
            end = -1
            if new.isascii() and new.count("[") + new.count("{") <= MAX_LEAF_DEPTH:
                try:
                    new_value, end = scan(new, 0)
                except (StopIteration, ValueError):
                    pass
            if end != len(new):
                new_value = parse_leaf_text(new, f"'new' of {key[:80]!r}")
            elif type(new_value) is dict and new_value:
                raise ProtocolError(f"change of {key[:80]!r}: 'new' is a non-empty object",
                                    reason="text")
        out.append(LeafChange(key, old, new))
        values.append((old_value, new_value))
    return tuple(out), tuple(values)


def changes_to_json(changes: Iterable[LeafChange]) -> list[dict[str, str]]:
    """The ``changes`` array of §5.1 (``old`` / ``new`` omitted when absent)."""
    out: list[dict[str, str]] = []
    for ch in changes:
        item = {"key": ch.key}
        if ch.old is not None:
            item["old"] = ch.old
        if ch.new is not None:
            item["new"] = ch.new
        out.append(item)
    return out


def diff_values(old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[Change, ...]:
    """The changes (values) from leaves ``old`` to leaves ``new`` (key -> value), by key.

    What a listener is told after a load or a canary switch, where no event lists them."""
    changes: list[Change] = []
    for key, value in new.items():
        before = old.get(key, MISSING)
        if before is MISSING:
            changes.append(Change("set", key, MISSING, value))
        elif not same_value(before, value):
            changes.append(Change("set", key, before, value))
    changes.extend(Change("delete", key, value) for key, value in old.items() if key not in new)
    changes.sort(key=_change_key)
    return tuple(changes)


def _change_key(change: Change) -> str:
    return change.key
