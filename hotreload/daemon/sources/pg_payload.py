"""NOTIFY payloads the PostgreSQL source understands (pure; no I/O).

Invalidation channels carry ``{"namespace"?: str, "keys"?: [str], "prefixes"?: [str],
"all"?: bool}``; an empty payload means "invalidate everything in the channel's namespace".
The settings channel carries ``{"namespace"?: str, "key"?: str, "op"?: str}`` from the trigger;
anything without a usable namespace means "re-read the whole table".
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

from ...errors import HotReloadError, ProtocolError
from ...wire import check_key, check_name, loads

_INVALIDATION_FIELDS: Final = frozenset({"namespace", "keys", "prefixes", "all"})


@dataclass(frozen=True, slots=True)
class InvalidationRequest:
    """What one invalidation NOTIFY asks for."""

    namespace: str
    keys: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ()
    everything: bool = False


def parse_invalidation(payload: str, default_namespace: str) -> InvalidationRequest:
    """Parse an invalidation payload; `ProtocolError` (safe to log) if it is malformed."""
    if not payload.strip():
        return InvalidationRequest(default_namespace, everything=True)
    obj: Any = loads(payload, what="payload")  # ProtocolError: not JSON, or nested too deeply
    if not isinstance(obj, dict):
        raise ProtocolError("payload must be a JSON object")
    unknown = sorted(set(obj) - _INVALIDATION_FIELDS)
    if unknown:
        raise ProtocolError(f"unknown payload field(s) {', '.join(map(repr, unknown))}")
    namespace = obj.get("namespace", default_namespace)
    if not isinstance(namespace, str):
        raise ProtocolError("'namespace' must be a string")
    try:
        check_name(namespace, "namespace")
        keys = tuple(check_key(k) for k in _strings(obj, "keys"))
    except HotReloadError as exc:
        raise ProtocolError(str(exc)) from None
    prefixes = _strings(obj, "prefixes")
    if any(not p for p in prefixes):
        raise ProtocolError("'prefixes' must not hold empty strings")
    everything = obj.get("all", False)
    if not isinstance(everything, bool):
        raise ProtocolError("'all' must be true or false")
    if not (keys or prefixes or everything):
        raise ProtocolError("nothing to invalidate: give 'keys', 'prefixes' or \"all\": true")
    return InvalidationRequest(namespace, keys, prefixes, everything)


def _strings(obj: dict[str, Any], name: str) -> tuple[str, ...]:
    value = obj.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ProtocolError(f"{name!r} must be a list of strings")
    return tuple(value)


def settings_namespace(payload: str) -> str | None:
    """The namespace a settings-trigger payload names, or None for "re-read everything"."""
    try:
        obj = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    namespace = obj.get("namespace") if isinstance(obj, dict) else None
    if not isinstance(namespace, str):
        return None
    try:
        return check_name(namespace, "namespace")
    except ProtocolError:
        return None
