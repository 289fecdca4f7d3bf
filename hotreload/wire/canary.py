"""Canaries (protocol §10): the canary object, target matching (globs, percent), and the
settings a matching instance sees.

An instance matches a target when its service name matches the ``service`` glob, its instance
id the ``instance`` glob (``*`` any run of characters, ``?`` one character, everything else
literal; an absent member matches everything), and, with ``percent``, when the first two bytes
of ``SHA-256(utf8(id) ‖ 0x00 ‖ utf8(instance id))``, big-endian, modulo 100, are below
``percent``. A target with members this client does not know matches no instance.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from ..errors import ProtocolError
from .leaves import LeafChange, changes_from_json, changes_to_json
from .names import check_name
from .values import MAX_SAFE_INT, canonical_json

__all__ = [
    "Canary",
    "CanaryTarget",
    "canary_bucket",
    "canary_from_json",
    "canary_leaves",
    "canary_to_json",
    "encode_canary",
    "glob_matches",
    "target_matches",
]

_NO_EXTRA: Final[Mapping[str, Any]] = MappingProxyType({})
_TARGET_MEMBERS: Final = frozenset({"service", "instance", "percent"})


@dataclass(frozen=True, slots=True)
class CanaryTarget:
    """Which instances a canary applies to (§10); None: the member is absent."""

    service: str | None = None
    instance: str | None = None
    percent: float | None = None
    extra: Mapping[str, Any] = field(default_factory=lambda: _NO_EXTRA, compare=False)


@dataclass(frozen=True, slots=True)
class Canary:
    """A running canary (§10): ``changes`` on top of the namespace's state at ``base``."""

    id: str
    target: CanaryTarget
    changes: tuple[LeafChange, ...]
    base: int


@functools.lru_cache(maxsize=256)
def _glob_re(pattern: str) -> re.Pattern[str]:
    parts = []
    for ch in pattern:
        parts.append(".*" if ch == "*" else "." if ch == "?" else re.escape(ch))
    return re.compile("".join(parts), re.S)


def glob_matches(pattern: str, value: str) -> bool:
    """Whether ``value`` matches the glob (``*`` any run, ``?`` one character, else literal)."""
    return _glob_re(pattern).fullmatch(value) is not None


def canary_bucket(canary_id: str, instance: str) -> int:
    """0-99: the first two bytes of SHA-256(id ‖ 0x00 ‖ instance), big-endian, modulo 100."""
    digest = hashlib.sha256(canary_id.encode() + b"\x00" + instance.encode()).digest()
    return int.from_bytes(digest[:2], "big") % 100


def target_matches(canary: Canary, *, service: str, instance: str) -> bool:
    """Whether the instance ``instance`` of service ``service`` runs ``canary`` (§10).

    An application that names no service has the service name ``""``.
    """
    target = canary.target
    if target.extra:
        return False
    if target.service is not None and not glob_matches(target.service, service):
        return False
    if target.instance is not None and not glob_matches(target.instance, instance):
        return False
    return target.percent is None or canary_bucket(canary.id, instance) < target.percent


def canary_leaves(leaves: Mapping[str, str], canary: Canary) -> dict[str, str]:
    """The leaves a matching instance sees (§10): the state with the canary's changes applied.

    The canary overrides: a set key replaces whatever the state holds at that key, above it
    (a leaf that is a prefix of it) or below it; a deleted key removes the key and the keys
    below it. ``old`` texts are not checked (the base may have moved on).
    """
    out = dict(leaves)
    for ch in canary.changes:
        below = ch.key + "."
        for k in [k for k in out if k.startswith(below)]:
            del out[k]
        if ch.new is None:
            out.pop(ch.key, None)
            continue
        end = ch.key.find(".")
        while end >= 0:
            out.pop(ch.key[:end], None)
            end = ch.key.find(".", end + 1)
        out[ch.key] = ch.new
    return out


def _bad(message: str, reason: str = "field") -> ProtocolError:
    return ProtocolError(f"invalid canary: {message}", reason=reason)


def canary_from_json(obj: Any) -> Canary:
    """Check and decode a canary object (§10). Raises `ProtocolError`."""
    if type(obj) is not dict:
        raise _bad("not an object")
    cid = obj.get("id")
    if type(cid) is not str:
        raise _bad("'id' must be a string")
    try:
        check_name(cid, "canary id")
    except ProtocolError as exc:
        raise _bad(str(exc)) from None
    raw = obj.get("target")
    if type(raw) is not dict:
        raise _bad("'target' must be an object")
    service = raw.get("service")
    instance = raw.get("instance")
    percent = raw.get("percent")
    if service is not None and type(service) is not str:
        raise _bad("'target.service' must be a string")
    if instance is not None and type(instance) is not str:
        raise _bad("'target.instance' must be a string")
    if ("service" in raw and service is None) or ("instance" in raw and instance is None):
        raise _bad("'target' members must be strings")
    if percent is not None or "percent" in raw:
        if type(percent) is not int and type(percent) is not float:
            raise _bad("'target.percent' must be a number")
        if not (math.isfinite(percent) and 0 <= percent <= 100):
            raise _bad(f"'target.percent' {percent!r} is not within 0-100", "range")
        percent = float(percent)
    extra = {k: v for k, v in raw.items() if k not in _TARGET_MEMBERS} or _NO_EXTRA
    changes, _ = changes_from_json(obj.get("changes"), "canary.changes")
    base = obj.get("base")
    if type(base) is not int:
        raise _bad("'base' must be an integer")
    if not 0 <= base <= MAX_SAFE_INT:
        raise _bad(f"'base' {base} is out of range", "range")
    return Canary(cid, CanaryTarget(service, instance, percent, extra), changes, base)


def canary_to_json(canary: Canary) -> dict[str, Any]:
    """The canary object of §10."""
    target: dict[str, Any] = {}
    if canary.target.service is not None:
        target["service"] = canary.target.service
    if canary.target.instance is not None:
        target["instance"] = canary.target.instance
    if canary.target.percent is not None:
        p = canary.target.percent
        target["percent"] = int(p) if p == int(p) else p
    target.update(canary.target.extra)
    return {"id": canary.id, "target": target, "changes": changes_to_json(canary.changes),
            "base": canary.base}


def encode_canary(canary: Canary) -> str:
    """The canary as the JSON text of the head's ``canary`` field (§4.1)."""
    return canonical_json(canary_to_json(canary))
