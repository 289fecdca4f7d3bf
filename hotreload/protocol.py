"""The wire protocol, version 1. No I/O: this module is the reference beside docs/protocol.md.

Per namespace ``ns`` (with the ``prefix``, default ``hotreload``) Redis holds:

* ``{prefix}:{ns}:snapshot`` with braces around ns -- a hash: ``protocol``, ``version``,
  ``checksum``, ``settings`` (JSON text), ``updated_at``, and ``sig`` when signing is on;
* ``{prefix}:{ns}:log`` -- a stream of envelopes, entry id ``<version>-0``, field ``e``;
* ``{prefix}:{ns}:events`` -- the Pub/Sub channel every envelope is published on.

An envelope is one JSON object (see `Envelope`). Versions are contiguous per namespace.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeAlias

from .errors import ProtocolError, SignatureError

PROTOCOL_VERSION: Final = 1
DEFAULT_PREFIX: Final = "hotreload"
DEFAULT_MAX_MESSAGE_BYTES: Final = 1024 * 1024
SIG_MEMBER: Final = b',"sig":"'

Kind: TypeAlias = Literal["config", "invalidate"]
Op: TypeAlias = Literal["set", "delete"]
JSONValue: TypeAlias = Any

_NAME_RE: Final = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")


class _Missing:
    """The value of `Change.old` when the key did not exist before."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Final = _Missing()


def check_name(value: str, what: str) -> str:
    """Validate a namespace or prefix: 1-128 of ``A-Z a-z 0-9 _ . -``."""
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise ProtocolError(f"invalid {what} {value!r}: use 1-128 characters of A-Z a-z 0-9 _ . -")
    return value


@dataclass(frozen=True, slots=True)
class Keys:
    """The Redis key and channel names of one namespace."""

    namespace: str
    snapshot: str
    log: str
    channel: str


def keys_for(namespace: str, prefix: str = DEFAULT_PREFIX) -> Keys:
    """Key names for ``namespace``; the braces keep them in one Redis Cluster slot."""
    check_name(namespace, "namespace")
    check_name(prefix, "prefix")
    base = f"{prefix}:{{{namespace}}}"
    return Keys(namespace, f"{base}:snapshot", f"{base}:log", f"{base}:events")


# --------------------------------------------------------------------------- JSON helpers


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads(data: bytes | str) -> Any:
    """Strict JSON: NaN and Infinity are rejected."""
    return json.loads(data, parse_constant=_reject_constant)


def canonical_json(value: Any) -> str:
    """The canonical text of a JSON value: sorted keys, no spaces, UTF-8, no NaN."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def checksum(settings_json: bytes) -> str:
    """Checksum of the exact ``settings`` bytes stored in the snapshot."""
    return "sha256:" + hashlib.sha256(settings_json).hexdigest()


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
        if isinstance(value, Mapping) and value:
            new.update(flatten(value, key + "."))
        else:
            new[key] = {} if isinstance(value, Mapping) else _plain(value)
    return new


def _plain(value: Any) -> Any:
    """Tuples to lists, so values compare and serialise as JSON does."""
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, list):
        return [_plain(v) for v in value]
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


# --------------------------------------------------------------------------- envelopes


@dataclass(frozen=True, slots=True)
class Envelope:
    """One event as it goes over the channel and into the log."""

    namespace: str
    version: int
    kind: Kind
    changes: tuple[Change, ...] = ()
    keys: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ()
    all: bool = False
    checksum: str = ""
    source: str = ""
    origin: str = ""
    ts: float = 0.0
    protocol: int = PROTOCOL_VERSION
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "protocol": self.protocol,
            "namespace": self.namespace,
            "version": self.version,
            "kind": self.kind,
        }
        if self.kind == "config":
            out["changes"] = [c.to_json() for c in self.changes]
            out["checksum"] = self.checksum
        else:
            out["keys"] = list(self.keys)
            out["prefixes"] = list(self.prefixes)
            out["all"] = self.all
        out["source"] = self.source
        out["origin"] = self.origin
        out["ts"] = self.ts
        return out


def sign(key: bytes, data: bytes) -> str:
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def encode_envelope(env: Envelope, hmac_key: bytes | None = None) -> bytes:
    """Serialise an envelope; with a key, append the ``sig`` member (always last)."""
    body = json.dumps(env.to_json(), separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode()
    if hmac_key is None:
        return body
    return body[:-1] + SIG_MEMBER + sign(hmac_key, body).encode() + b'"}'


def _split_signature(data: bytes) -> tuple[bytes, str | None]:
    """``(signed bytes, sig)``: the signed bytes are the message without its last member."""
    idx = data.rfind(SIG_MEMBER)
    if idx < 0 or not data.endswith(b'"}'):
        return data, None
    sig = data[idx + len(SIG_MEMBER):-2]
    if len(sig) != 64:
        return data, None
    return data[:idx] + b"}", sig.decode("ascii", "replace")


def decode_envelope(
    data: bytes | str,
    *,
    hmac_key: bytes | None = None,
    max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> Envelope:
    """Parse and check one envelope. Raises `ProtocolError` (or `SignatureError`)."""
    raw = data.encode() if isinstance(data, str) else bytes(data)
    if len(raw) > max_bytes:
        raise ProtocolError(f"message of {len(raw)} bytes exceeds the limit of {max_bytes}")
    if hmac_key is not None:
        signed, sig = _split_signature(raw)
        if sig is None:
            raise SignatureError("message is not signed")
        if not hmac.compare_digest(sign(hmac_key, signed), sig):
            raise SignatureError("message signature does not match")
    try:
        obj = loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"message is not valid JSON: {exc}") from exc
    return envelope_from_json(obj)


def _field(obj: Mapping[str, Any], name: str, types: type | tuple[type, ...]) -> Any:
    value = obj.get(name)
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in _tuple(types)):
        raise ProtocolError(f"field {name!r} is missing or has the wrong type")
    return value


def _tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)


def _str_list(obj: Mapping[str, Any], name: str) -> tuple[str, ...]:
    value = obj.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ProtocolError(f"field {name!r} must be a list of strings")
    return tuple(value)


def decode_log(
    namespace: str,
    entries: Iterable[Any],
    *,
    hmac_key: bytes | None = None,
    max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> list[Envelope]:
    """Decode ``XRANGE`` entries of a namespace's log (field ``e`` holds the envelope)."""
    out = []
    for _id, fields in entries:
        data = (fields or {}).get(b"e") or (fields or {}).get("e") or b""
        env = decode_envelope(data, hmac_key=hmac_key, max_bytes=max_bytes)
        if env.namespace != namespace:
            raise ProtocolError(f"log of {namespace!r} holds an event of {env.namespace!r}")
        out.append(env)
    return out


def envelope_from_json(obj: Any) -> Envelope:
    """Build an `Envelope` from decoded JSON, checking every field."""
    if not isinstance(obj, dict):
        raise ProtocolError("message is not a JSON object")
    protocol = obj.get("protocol")
    if protocol != PROTOCOL_VERSION:
        raise ProtocolError(f"unsupported protocol version {protocol!r}")
    namespace = check_name(_field(obj, "namespace", str), "namespace")
    version = _field(obj, "version", int)
    if version < 1:
        raise ProtocolError(f"invalid version {version}")
    kind = obj.get("kind")
    source = _field(obj, "source", str)
    origin = _field(obj, "origin", str)
    ts = float(_field(obj, "ts", (int, float)))
    known = {"protocol", "namespace", "version", "kind", "source", "origin", "ts", "sig"}
    if kind == "config":
        raw_changes = obj.get("changes")
        if not isinstance(raw_changes, list):
            raise ProtocolError("field 'changes' must be a list")
        changes = tuple(_change_from_json(c) for c in raw_changes)
        cs = _field(obj, "checksum", str)
        known |= {"changes", "checksum"}
        extra = {k: v for k, v in obj.items() if k not in known}
        return Envelope(namespace, version, "config", changes=changes, checksum=cs,
                        source=source, origin=origin, ts=ts, extra=extra)
    if kind == "invalidate":
        keys = _str_list(obj, "keys")
        prefixes = _str_list(obj, "prefixes")
        everything = obj.get("all", False)
        if not isinstance(everything, bool):
            raise ProtocolError("field 'all' must be a boolean")
        known |= {"keys", "prefixes", "all"}
        extra = {k: v for k, v in obj.items() if k not in known}
        return Envelope(namespace, version, "invalidate", keys=keys, prefixes=prefixes,
                        all=everything, source=source, origin=origin, ts=ts, extra=extra)
    raise ProtocolError(f"unknown event kind {kind!r}")


def _change_from_json(obj: Any) -> Change:
    if not isinstance(obj, dict):
        raise ProtocolError("each change must be a JSON object")
    op = obj.get("op")
    key = obj.get("key")
    if not isinstance(key, str):
        raise ProtocolError("change without a string 'key'")
    try:
        check_key(key)
    except ProtocolError as exc:
        raise ProtocolError(f"change has {exc}") from None
    old = obj.get("old", MISSING)
    if op == "set":
        if "new" not in obj:
            raise ProtocolError(f"set of {key!r} without 'new'")
        return Change("set", key, old, obj["new"])
    if op == "delete":
        return Change("delete", key, old)
    raise ProtocolError(f"unknown change op {op!r}")


# --------------------------------------------------------------------------- snapshots


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The full settings of a namespace at one version."""

    namespace: str
    version: int
    checksum: str
    settings: dict[str, Any]
    updated_at: float = 0.0

    @property
    def flat(self) -> dict[str, Any]:
        return flatten(self.settings)


def snapshot_signature(key: bytes, namespace: str, version: int, checksum_: str) -> str:
    return sign(key, f"{namespace}\n{version}\n{checksum_}".encode())


EMPTY_SETTINGS_JSON: Final = b"{}"


def encode_settings(settings: Mapping[str, Any]) -> bytes:
    return canonical_json(settings).encode()


def decode_snapshot(
    namespace: str,
    fields: Mapping[bytes | str, bytes | str | None],
    *,
    hmac_key: bytes | None = None,
) -> Snapshot:
    """Check and decode the snapshot hash. An absent snapshot is version 0 with ``{}``."""

    def get(name: str) -> bytes | None:
        value = fields.get(name)
        if value is None:
            value = fields.get(name.encode())
        if value is None:
            return None
        return value.encode() if isinstance(value, str) else value

    raw_version = get("version")
    if raw_version is None:
        return Snapshot(namespace, 0, checksum(EMPTY_SETTINGS_JSON), {}, 0.0)
    try:
        version = int(raw_version)
    except ValueError:
        raise ProtocolError(f"snapshot of {namespace!r} has a bad version") from None
    protocol = get("protocol")
    if protocol is not None and protocol != str(PROTOCOL_VERSION).encode():
        raise ProtocolError(f"snapshot of {namespace!r} uses unsupported protocol {protocol!r}")
    settings_json = get("settings") or EMPTY_SETTINGS_JSON
    cs = (get("checksum") or b"").decode()
    if cs != checksum(settings_json):
        raise ProtocolError(f"snapshot of {namespace!r} fails its checksum")
    if hmac_key is not None:
        sig = (get("sig") or b"").decode()
        if not hmac.compare_digest(sig, snapshot_signature(hmac_key, namespace, version, cs)):
            raise SignatureError(f"snapshot of {namespace!r} has a missing or wrong signature")
    try:
        settings = loads(settings_json)
    except ValueError as exc:
        raise ProtocolError(f"snapshot of {namespace!r} is not valid JSON: {exc}") from exc
    if not isinstance(settings, dict):
        raise ProtocolError(f"snapshot of {namespace!r} is not a JSON object")
    updated = get("updated_at")
    return Snapshot(namespace, version, cs, settings, float(updated) if updated else 0.0)


def key_matches(key: str, keys: Iterable[str], prefixes: Iterable[str]) -> bool:
    """Whether a settings key is one of ``keys`` (or below one) or starts with a prefix."""
    for k in keys:
        if key == k or key.startswith(k + "."):
            return True
    return any(key.startswith(p) for p in prefixes)
