"""The wire protocol, version 1. No I/O: this module is the reference beside docs/protocol.md.

Per namespace ``ns`` (with the ``prefix``, default ``hotreload``) Redis holds:

* ``{prefix}:{ns}:snapshot`` with braces around ns -- a hash: ``protocol``, ``version``,
  ``checksum``, ``settings`` (JSON text), ``updated_at``, and ``sig`` when signing is on;
* ``{prefix}:{ns}:log`` -- a stream of envelopes, entry id ``<version>-0``, field ``e``;
* ``{prefix}:{ns}:events`` -- the Pub/Sub channel every envelope is published on.

An envelope is one JSON object (see `Envelope`). Versions are contiguous per namespace.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Literal, TypeAlias

from hotreload.errors import ProtocolError, SignatureError

from ._dotted import (
    MAX_DEPTH,
    MISSING,
    Change,
    Op,
    apply_changes,
    canonical_json,
    check_json_value,
    check_key,
    diff,
    flatten,
    key_matches,
    loads,
    revert_changes,
    unflatten,
    update,
)

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "DEFAULT_PREFIX",
    "EMPTY_SETTINGS_JSON",
    "MAX_DEPTH",
    "MISSING",
    "PROTOCOL_VERSION",
    "Change",
    "Envelope",
    "Keys",
    "Kind",
    "Op",
    "ProtocolError",
    "SignatureError",
    "Snapshot",
    "apply_changes",
    "canonical_json",
    "check_json_value",
    "check_key",
    "check_name",
    "checksum",
    "decode_envelope",
    "decode_log",
    "decode_snapshot",
    "diff",
    "encode_envelope",
    "encode_settings",
    "envelope_from_json",
    "flatten",
    "key_matches",
    "keys_for",
    "loads",
    "revert_changes",
    "sign",
    "snapshot_signature",
    "unflatten",
    "update",
]

PROTOCOL_VERSION: Final = 1
DEFAULT_PREFIX: Final = "hotreload"
DEFAULT_MAX_MESSAGE_BYTES: Final = 1024 * 1024
SIG_MEMBER: Final = b',"sig":"'

Kind: TypeAlias = Literal["config", "invalidate"]

_NAME_RE: Final = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")


@functools.lru_cache(maxsize=4096)
def _valid_name(value: str) -> bool:
    return _NAME_RE.match(value) is not None


def check_name(value: str, what: str) -> str:
    """Validate a namespace or prefix: 1-128 of ``A-Z a-z 0-9 _ . -``."""
    if type(value) is not str or not _valid_name(value):
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


# --------------------------------------------------------------------------- checksums


def checksum(settings_json: bytes) -> str:
    """Checksum of the exact ``settings`` bytes stored in the snapshot."""
    return "sha256:" + hashlib.sha256(settings_json).hexdigest()


# --------------------------------------------------------------------------- envelopes


@dataclass(frozen=True, slots=True)
class Envelope:
    """One event as it goes over the channel and into the log."""

    namespace: str
    version: int
    kind: Kind
    epoch: str = ""
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
            "epoch": self.epoch,
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
    except RecursionError:
        raise ProtocolError("message is nested too deeply") from None
    return envelope_from_json(obj)


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


_COMMON: Final = frozenset({"protocol", "namespace", "version", "epoch", "kind", "source",
                            "origin", "ts", "sig"})
_CONFIG_FIELDS: Final = _COMMON | {"changes", "checksum"}
_INVALIDATE_FIELDS: Final = _COMMON | {"keys", "prefixes", "all"}


def _wrong(name: str) -> ProtocolError:
    return ProtocolError(f"field {name!r} is missing or has the wrong type")


def envelope_from_json(obj: Any) -> Envelope:
    """Build an `Envelope` from decoded JSON, checking every field (this is the hot path of
    every subscriber: plain type checks, no helpers per field)."""
    if type(obj) is not dict:
        raise ProtocolError("message is not a JSON object")
    get = obj.get
    protocol = get("protocol")
    if protocol != PROTOCOL_VERSION or type(protocol) is not int:
        raise ProtocolError(f"unsupported protocol version {protocol!r}")
    namespace = get("namespace")
    if type(namespace) is not str:
        raise _wrong("namespace")
    check_name(namespace, "namespace")
    version = get("version")
    if type(version) is not int:
        raise _wrong("version")
    if version < 1:
        raise ProtocolError(f"invalid version {version}")
    epoch = get("epoch")
    if type(epoch) is not str or not epoch:
        raise _wrong("epoch")
    source = get("source")
    if type(source) is not str:
        raise _wrong("source")
    origin = get("origin")
    if type(origin) is not str:
        raise _wrong("origin")
    ts = get("ts")
    if type(ts) is not float and type(ts) is not int:
        raise _wrong("ts")
    kind = get("kind")
    if kind == "config":
        raw_changes = get("changes")
        if type(raw_changes) is not list:
            raise ProtocolError("field 'changes' must be a list")
        changes = tuple([_change_from_json(c) for c in raw_changes])
        cs = get("checksum")
        if type(cs) is not str:
            raise _wrong("checksum")
        extra = _extra(obj, _CONFIG_FIELDS)
        return Envelope(namespace, version, "config", epoch, changes=changes, checksum=cs,
                        source=source, origin=origin, ts=float(ts), extra=extra)
    if kind == "invalidate":
        keys = _str_list(obj, "keys")
        prefixes = _str_list(obj, "prefixes")
        everything = get("all", False)
        if type(everything) is not bool:
            raise ProtocolError("field 'all' must be a boolean")
        extra = _extra(obj, _INVALIDATE_FIELDS)
        return Envelope(namespace, version, "invalidate", epoch, keys=keys, prefixes=prefixes,
                        all=everything, source=source, origin=origin, ts=float(ts), extra=extra)
    raise ProtocolError(f"unknown event kind {kind!r}")


_NO_EXTRA: Final[Mapping[str, Any]] = MappingProxyType({})


def _extra(obj: dict[str, Any], known: frozenset[str]) -> Mapping[str, Any]:
    if obj.keys() <= known:
        return _NO_EXTRA
    return {k: v for k, v in obj.items() if k not in known}


def _change_from_json(obj: Any) -> Change:
    if type(obj) is not dict:
        raise ProtocolError("each change must be a JSON object")
    op = obj.get("op")
    key = obj.get("key")
    if type(key) is not str:
        raise ProtocolError("change without a string 'key'")
    if not key or key[0] == "." or key[-1] == "." or ".." in key:
        raise ProtocolError(f"change has invalid settings key {key!r}")
    old = obj.get("old", MISSING)
    if op == "set":
        if "new" not in obj:
            raise ProtocolError(f"set of {key!r} without 'new'")
        new = obj["new"]
        if type(new) is dict and new:
            raise ProtocolError(f"set of {key!r}: 'new' must be a leaf, not a non-empty object")
        return Change("set", key, old, new)
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
    epoch: str = ""

    @property
    def flat(self) -> dict[str, Any]:
        return flatten(self.settings)


def snapshot_signature(key: bytes, namespace: str, epoch: str, version: int,
                       checksum_: str) -> str:
    return sign(key, f"{namespace}\n{epoch}\n{version}\n{checksum_}".encode())


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
    cs = (get("checksum") or b"").decode("ascii", "replace")
    if cs != checksum(settings_json):
        raise ProtocolError(f"snapshot of {namespace!r} fails its checksum")
    epoch = (get("epoch") or b"").decode("utf-8", "replace")
    if not epoch:
        raise ProtocolError(f"snapshot of {namespace!r} has no epoch")
    if hmac_key is not None:
        sig = (get("sig") or b"").decode("ascii", "replace")
        want = snapshot_signature(hmac_key, namespace, epoch, version, cs)
        if not hmac.compare_digest(sig, want):
            raise SignatureError(f"snapshot of {namespace!r} has a missing or wrong signature")
    try:
        settings = loads(settings_json)
        updated = float(get("updated_at") or 0)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(f"snapshot of {namespace!r} is not valid: {exc}") from None
    if not isinstance(settings, dict):
        raise ProtocolError(f"snapshot of {namespace!r} is not a JSON object")
    return Snapshot(namespace, version, cs, settings, updated, epoch)


