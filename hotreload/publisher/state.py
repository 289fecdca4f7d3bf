"""What a publisher knows of one namespace, and the pure planning of a publish (protocol §7).

A publisher holds the leaves' texts exactly as stored (so ``old`` texts and checksum updates are
exact, whoever wrote them) and their parsed values (to compare documents cheaply). Planning a
publish costs O(keys changed), whatever the namespace's size: the keys are also kept sorted, so
the keys below a key (``db.`` … ``db/``) are one contiguous range.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ProtocolError
from ..wire import (
    EMPTY_CHECKSUM,
    MISSING,
    Canary,
    Change,
    LeafChange,
    check_json_value,
    check_key,
    flatten,
    leaf_text,
    loads,
    same_value,
)


@dataclass(slots=True)
class NamespaceState:
    """The state of one namespace at ``version`` of ``epoch`` (None: never published)."""

    epoch: str | None = None
    version: int = 0
    checksum: str = EMPTY_CHECKSUM
    texts: dict[str, str] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)
    keys: list[str] = field(default_factory=list)  # sorted
    canary: Canary | None = None
    checkpoint_version: int = 0
    checkpoint_at: float = 0.0
    updated_at: float = 0.0

    @classmethod
    def from_texts(cls, texts: Mapping[str, str], values: Mapping[str, Any], **head: Any
                   ) -> NamespaceState:
        return cls(texts=dict(texts), values=dict(values), keys=sorted(texts), **head)

    def copy(self) -> NamespaceState:
        return NamespaceState(self.epoch, self.version, self.checksum, dict(self.texts),
                              dict(self.values), list(self.keys), self.canary,
                              self.checkpoint_version, self.checkpoint_at, self.updated_at)

    @property
    def count(self) -> int:
        return len(self.texts)

    def below(self, key: str) -> list[str]:
        """The leaf keys strictly below ``key`` (``key.x``, ``key.x.y`` …)."""
        lo = bisect.bisect_left(self.keys, key + ".")
        hi = bisect.bisect_left(self.keys, key + "/")  # "/" follows "." in code point order
        return self.keys[lo:hi]

    def leaf_ancestors(self, key: str) -> list[str]:
        """The leaves standing where ``key`` needs objects (``db`` for ``db.host``)."""
        out = []
        i = key.find(".")
        while i > 0:
            if key[:i] in self.texts:
                out.append(key[:i])
            i = key.find(".", i + 1)
        return out

    def apply(self, changes: Iterable[LeafChange], parsed: Mapping[str, Any] | None = None
              ) -> None:
        """Apply committed changes (``parsed``: the new values when the caller has them)."""
        texts, values, keys = self.texts, self.values, self.keys
        for ch in changes:
            if ch.new is None:
                if texts.pop(ch.key, None) is not None:
                    values.pop(ch.key, None)
                    del keys[bisect.bisect_left(keys, ch.key)]
            else:
                if ch.key not in texts:
                    bisect.insort(keys, ch.key)
                texts[ch.key] = ch.new
                values[ch.key] = (parsed[ch.key] if parsed is not None and ch.key in parsed
                                  else loads(ch.new))


def plan_update(state: NamespaceState, sets: Mapping[str, Any], deletes: Iterable[str]
                ) -> tuple[list[LeafChange], dict[str, Any]]:
    """The leaf changes of ``publish(sets, deletes)`` and the new values by key.

    Deletes first, then sets in order: setting a key to an object replaces that subtree,
    setting a key below a leaf replaces the leaf, deleting a key deletes its subtree.
    """
    plan: dict[str, Any] = {}  # key -> new value, or MISSING (deleted)

    def current(key: str) -> Any:
        return plan[key] if key in plan else state.values.get(key, MISSING)

    def below(key: str) -> list[str]:
        dotted = key + "."
        found = {k for k in state.below(key) if plan.get(k) is not MISSING}
        found.update(k for k, v in plan.items() if k.startswith(dotted) and v is not MISSING)
        return sorted(found)

    for key in deletes:
        check_key(key)
        if current(key) is not MISSING:
            plan[key] = MISSING
        for k in below(key):
            plan[k] = MISSING
    for key, value in sets.items():
        check_key(key)
        check_json_value(value, key)
        for k in below(key):
            plan[k] = MISSING
        i = key.find(".")
        while i > 0:
            if current(key[:i]) is not MISSING:
                plan[key[:i]] = MISSING  # a leaf where objects are needed
            i = key.find(".", i + 1)
        if isinstance(value, Mapping) and value:
            if current(key) is not MISSING:
                plan[key] = MISSING  # a leaf where the object goes
            try:
                leaves = flatten(value)
            except ProtocolError as exc:  # say where the bad name is
                raise ProtocolError(f"{key}: {exc}", reason=exc.reason) from None
            for sub, leaf in leaves.items():
                full = check_key(f"{key}.{sub}")
                plan[full] = _plain(leaf)
        else:
            plan[key] = {} if isinstance(value, Mapping) else _plain(value)
    return _changes(state, plan)


def plan_replace(state: NamespaceState, document: Mapping[str, Any]
                 ) -> tuple[list[LeafChange], dict[str, Any]]:
    """The leaf changes that make the namespace exactly ``document``."""
    if not isinstance(document, Mapping):
        raise ProtocolError(f"the settings must be a JSON object, not {type(document).__name__}")
    check_json_value(document, "document")
    target = flatten(document)
    plan: dict[str, Any] = {k: MISSING for k in state.texts if k not in target}
    for key, value in target.items():
        old = state.values.get(key, MISSING)
        if old is MISSING or not same_value(old, value):
            plan[key] = _plain(value)
    return _changes(state, plan)


def _changes(state: NamespaceState, plan: Mapping[str, Any]
             ) -> tuple[list[LeafChange], dict[str, Any]]:
    changes: list[LeafChange] = []
    parsed: dict[str, Any] = {}
    for key in sorted(plan):
        value = plan[key]
        old = state.texts.get(key)
        if value is MISSING:
            if old is not None:
                changes.append(LeafChange(key, old, None))
            continue
        text = leaf_text(value, key)
        if text != old:
            changes.append(LeafChange(key, old, text))
            parsed[key] = value
    return changes, parsed


def value_changes(state: NamespaceState, changes: Iterable[LeafChange],
                  parsed: Mapping[str, Any]) -> tuple[Change, ...]:
    """The public form of ``changes`` (values), before they are applied to ``state``."""
    out = []
    for ch in changes:
        old = state.values.get(ch.key, MISSING)
        if ch.new is None:
            out.append(Change("delete", ch.key, old))
        else:
            out.append(Change("set", ch.key, old, parsed[ch.key]))
    return tuple(out)


def settings_json(texts: Mapping[str, str]) -> str:
    """The nested document of ``texts`` as JSON text, built from the texts themselves (no
    value is parsed or re-serialised), keys sorted."""
    root: dict[str, Any] = {}
    for key, text in texts.items():
        node = root
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = text
    return _emit(root)


def _emit(node: dict[str, Any]) -> str:
    dumps = json.dumps
    return "{" + ",".join(
        dumps(name, ensure_ascii=False) + ":" + (_emit(v) if type(v) is dict else v)
        for name, v in sorted(node.items())) + "}"


def _plain(value: Any) -> Any:
    """A private deep copy, tuples as lists: the caller may mutate what it passed in later."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value
