"""Events (protocol §5, §9, §10) and their signatures (§6): `encode_event`, `decode_event`.

`decode_event` is the hot path of every subscriber: one strict decoder instance, plain type
checks inline, the nesting measured (C-speed byte operations) only when a message holds more than
64 brackets, the signature checked on the bytes before anything is parsed.
"""

from __future__ import annotations

import enum
import hmac
import itertools
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Literal, TypeAlias

from ..errors import ProtocolError, SignatureError
from .canary import Canary, CanaryTarget, canary_from_json, canary_to_json
from .digest import hmac_hex, is_checksum
from .epochs import _ms as _epoch_ms
from .epochs import is_epoch
from .leaves import Change, LeafChange, changes_from_json, changes_to_json, value_change
from .names import _valid_name, check_name
from .values import (
    DECODER,
    MAX_DEPTH,
    MAX_SAFE_INT,
    SCAN,
    nesting_exceeds,
)

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "PROTOCOL_VERSION",
    "UNSET",
    "Canary",
    "CanaryTarget",
    "Envelope",
    "Kind",
    "Unset",
    "decode_event",
    "encode_event",
    "sign_event",
    "split_signature",
]

PROTOCOL_VERSION: Final = 2
#: §5, §12: the default size limit of one event.
DEFAULT_MAX_MESSAGE_BYTES: Final = 1024 * 1024

Kind: TypeAlias = Literal["config", "canary", "invalidate"]

_SIG_MEMBER: Final = b',"sig":"'
_SIG_TAIL: Final = len(_SIG_MEMBER) + 64 + 2
_HEX64_RE: Final = re.compile(rb"[0-9a-f]{64}")
_NO_EXTRA: Final[Mapping[str, Any]] = MappingProxyType({})
_CHECKSUM_MATCH: Final = re.compile(r"[0-9a-f]{64}").fullmatch


class Unset(enum.Enum):
    """The type of `UNSET`: "the member is absent" (``Envelope.canary``)."""

    UNSET = "UNSET"

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = Unset.UNSET

_COMMON: Final = frozenset({"protocol", "namespace", "kind", "epoch", "source", "origin", "ts",
                            "sig"})
_KNOWN: Final[Mapping[str, frozenset[str]]] = {
    "config": _COMMON | {"version", "checksum", "changes", "reset", "canary", "ack"},
    "canary": _COMMON | {"version", "checksum", "canary", "ack"},
    "invalidate": _COMMON | {"seq", "keys", "prefixes", "all"},
}


def _no_extra() -> Mapping[str, Any]:
    return _NO_EXTRA


@dataclass(frozen=True, slots=True)
class Envelope:
    """One event of any kind (§5).

    ``config`` and ``canary`` events use ``version``, ``checksum`` (and ``changes``, ``reset``,
    ``canary``, ``ack``); ``invalidate`` events ``seq``, ``keys``, ``prefixes``, ``all``.
    ``canary`` is `UNSET` when the member is absent, None for ``"canary": null`` (the canary
    ends), else the new canary. ``extra`` holds unknown members (forward compatibility).
    """

    namespace: str
    kind: Kind
    epoch: str
    version: int = 0
    seq: int = 0
    checksum: str = ""
    changes: tuple[LeafChange, ...] = ()
    reset: bool = False
    canary: Canary | Unset | None = UNSET
    ack: bool = False
    keys: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ()
    all: bool = False
    source: str = ""
    origin: str = ""
    ts: float = 0.0
    extra: Mapping[str, Any] = field(default_factory=_no_extra)
    _values: tuple[tuple[Any, Any], ...] | None = field(default=None, init=False, repr=False,
                                                         compare=False)

    def value_changes(self) -> tuple[Change, ...]:
        """The changes as values: texts parsed, an absent ``old`` as `MISSING` (§5.1).

        Decoded events parsed their texts already; the values are shared, do not mutate them.
        """
        values = self._values
        if values is None:
            return tuple([value_change(ch) for ch in self.changes])
        return tuple([
            Change("delete", ch.key, old) if ch.new is None else Change("set", ch.key, old, new)
            for ch, (old, new) in zip(self.changes, values, strict=True)
        ])


# --------------------------------------------------------------------------- signatures


def split_signature(data: bytes) -> tuple[bytes, str] | None:
    """``(signed bytes, sig)`` of a signed event, or None when it is unsigned (§6).

    Signed means: the message ends with ``,"sig":"`` + 64 characters of ``0-9 a-f`` + ``"}``;
    the signed bytes are the message up to that final ``,"sig":"``, followed by ``}``. Anything
    else (no such tail, upper-case hex, spaces) is unsigned.
    """
    if len(data) < _SIG_TAIL or not data.endswith(b'"}'):
        return None
    start = len(data) - _SIG_TAIL
    if data[start:start + len(_SIG_MEMBER)] != _SIG_MEMBER:
        return None
    sig = data[start + len(_SIG_MEMBER):-2]
    if _HEX64_RE.fullmatch(sig) is None:
        return None
    return data[:start] + b"}", sig.decode("ascii")


def sign_event(body: bytes, key: bytes) -> bytes:
    """Append the ``sig`` member to a serialised event (§6): ``B[:-1] + ,"sig":"<hex>"}``."""
    if not body.endswith(b"}"):
        raise ProtocolError("an event to sign must be a serialised JSON object", reason="json")
    return body[:-1] + _SIG_MEMBER + hmac_hex(key, body).encode() + b'"}'


# --------------------------------------------------------------------------- encoding


def _ranged(value: int, what: str) -> int:
    if type(value) is not int or not 1 <= value <= MAX_SAFE_INT:
        raise ProtocolError(f"{what} {value!r} is not within 1..2^53-1", reason="range")
    return value


def encode_event(env: Envelope, *, key: bytes | None = None) -> bytes:
    """Serialise an event (§5): members in the order of the spec's tables, ``sig`` last when a
    signing ``key`` is given (§6). Raises `ProtocolError` for an envelope that is not valid."""
    if not is_epoch(env.epoch):
        raise ProtocolError(f"invalid epoch {env.epoch!r}", reason="field")
    check_name(env.namespace, "namespace")
    obj: dict[str, Any] = {"protocol": PROTOCOL_VERSION, "namespace": env.namespace,
                           "kind": env.kind, "epoch": env.epoch}
    if env.kind == "config" or env.kind == "canary":
        obj["version"] = _ranged(env.version, "version")
        if not is_checksum(env.checksum):
            raise ProtocolError(f"invalid checksum {env.checksum!r}", reason="field")
        obj["checksum"] = env.checksum
        if env.kind == "config":
            keys = [ch.key for ch in env.changes]
            if any(a >= b for a, b in itertools.pairwise(keys)):
                raise ProtocolError("changes must be sorted by key, one per key", reason="field")
            if env.reset and (env.version != 1 or env.changes):
                raise ProtocolError("a reset event has version 1 and no changes",
                                    reason="field")
            obj["changes"] = changes_to_json(env.changes)
            if env.reset:
                obj["reset"] = True
            if isinstance(env.canary, Canary):
                raise ProtocolError("a config event can only end a canary (canary None)",
                                    reason="field")
            if env.canary is None:
                obj["canary"] = None
        else:
            if env.canary is UNSET:
                raise ProtocolError("a canary event needs its canary (or None)", reason="field")
            obj["canary"] = None if env.canary is None else canary_to_json(env.canary)
        if env.ack:
            obj["ack"] = True
    elif env.kind == "invalidate":
        obj["seq"] = _ranged(env.seq, "seq")
        obj["keys"] = list(env.keys)
        obj["prefixes"] = list(env.prefixes)
        obj["all"] = env.all
    else:
        raise ProtocolError(f"unknown event kind {env.kind!r}", reason="field")
    if not math.isfinite(env.ts) or env.ts < 0:
        raise ProtocolError(f"ts {env.ts!r} is not a finite time", reason="range")
    obj["source"] = env.source
    obj["origin"] = env.origin
    obj["ts"] = env.ts
    for name, value in env.extra.items():
        if name not in obj and name != "sig":
            obj[name] = value
    body = json.dumps(obj, ensure_ascii=False, allow_nan=False,
                      separators=(",", ":")).encode()
    return body if key is None else sign_event(body, key)


# --------------------------------------------------------------------------- decoding


def _field(name: str, want: str) -> ProtocolError:
    return ProtocolError(f"member {name!r} is missing or not {want}", reason="field")


def _range(name: str, value: object) -> ProtocolError:
    return ProtocolError(f"member {name!r} = {value!r} is out of range", reason="range")


def decode_event(
    data: bytes | bytearray | memoryview | str,
    *,
    key: bytes | None = None,
    max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    namespace: str | None = None,
) -> Envelope:
    """Check and decode one event (§5, §6, §9, §10).

    Checks, in order: the size (reason ``size``), the signature when a ``key`` is given
    (`SignatureError`, reason ``signature``), the JSON (``json``), ``protocol`` (``protocol``),
    then every member (``field``, ``range``, ``key``, ``text``, ``kind``) and, when
    ``namespace`` is given, that the event belongs to it (``namespace``). Raises
    `ProtocolError`. The caller checks the kind suits the channel (reason ``kind``).
    """
    if type(data) is bytes:
        raw = data
    elif isinstance(data, str):
        raw = data.encode()
    else:
        raw = bytes(data)
    if len(raw) > max_bytes:
        raise ProtocolError(f"event of {len(raw)} bytes exceeds the limit of {max_bytes}",
                            reason="size")
    if key is not None:
        split = split_signature(raw)
        if split is None:
            raise SignatureError("event is not signed")
        if not hmac.compare_digest(hmac_hex(key, split[0]), split[1]):
            raise SignatureError("event signature does not match")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"event is not UTF-8: {exc}", reason="json") from None
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and nesting_exceeds(raw, MAX_DEPTH):
        raise ProtocolError(f"event nests more than {MAX_DEPTH} levels (or is not valid JSON)",
                            reason="json")
    try:  # the C decoder recurses: measured above, so RecursionError is only a second fence
        obj, end = SCAN(text, 0)
        if end != len(text):
            obj = DECODER.decode(text)  # trailing whitespace, or the error message
    except StopIteration:
        raise ProtocolError("event is not valid JSON", reason="json") from None
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(f"event is not valid JSON: {exc}", reason="json") from None
    if type(obj) is not dict:
        raise ProtocolError("event is not a JSON object", reason="json")
    get = obj.get
    protocol = get("protocol")
    if type(protocol) is not int:
        raise _field("protocol", "an integer")
    if protocol != PROTOCOL_VERSION:
        raise ProtocolError(f"unsupported protocol version {protocol}", reason="protocol")
    ns = get("namespace")
    if type(ns) is not str or not _valid_name(ns):
        raise _field("namespace", "a namespace name")
    if namespace is not None and ns != namespace:
        raise ProtocolError(f"event of namespace {ns!r} on the channel of {namespace!r}",
                            reason="namespace")
    kind = get("kind")
    if type(kind) is not str:
        raise _field("kind", "a string")
    known = _KNOWN.get(kind)
    if known is None:
        raise ProtocolError(f"unknown event kind {kind[:40]!r}", reason="kind")
    epoch = get("epoch")
    if type(epoch) is not str or _epoch_ms(epoch) < 0:
        raise _field("epoch", "<ms>-<16 hex digits>")
    source = get("source")
    if type(source) is not str:
        raise _field("source", "a string")
    origin = get("origin")
    if type(origin) is not str:
        raise _field("origin", "a string")
    ts = get("ts")
    if type(ts) is float:
        if not (ts >= 0 and ts <= MAX_SAFE_INT):  # also false for NaN
            raise _range("ts", ts)
    elif type(ts) is int:
        if not 0 <= ts <= MAX_SAFE_INT:
            raise _range("ts", ts)
        ts = float(ts)
    else:
        raise _field("ts", "a number")
    extra = _NO_EXTRA if obj.keys() <= known else {k: v for k, v in obj.items()
                                                     if k not in known}

    if kind == "invalidate":
        seq = get("seq")
        if type(seq) is not int:
            raise _field("seq", "an integer")
        if not 1 <= seq <= MAX_SAFE_INT:
            raise _range("seq", seq)
        keys = get("keys")
        if type(keys) is not list or not all(type(k) is str for k in keys):
            raise _field("keys", "an array of strings")
        prefixes = get("prefixes")
        if type(prefixes) is not list or not all(type(p) is str for p in prefixes):
            raise _field("prefixes", "an array of strings")
        everything = get("all")
        if type(everything) is not bool:
            raise _field("all", "a boolean")
        return Envelope(ns, "invalidate", epoch, seq=seq, keys=tuple(keys),
                        prefixes=tuple(prefixes), all=everything, source=source, origin=origin,
                        ts=ts, extra=extra)

    version = get("version")
    if type(version) is not int:
        raise _field("version", "an integer")
    if not 1 <= version <= MAX_SAFE_INT:
        raise _range("version", version)
    checksum = get("checksum")
    if type(checksum) is not str or _CHECKSUM_MATCH(checksum) is None:
        raise _field("checksum", "64 lowercase hex digits")
    ack = get("ack", False)
    if type(ack) is not bool:
        raise _field("ack", "a boolean")
    raw_canary = get("canary", UNSET)
    if kind == "canary":
        if raw_canary is UNSET:
            raise _field("canary", "a canary object or null")
        canary: Canary | Unset | None = (None if raw_canary is None
                                         else canary_from_json(raw_canary))
        env = Envelope(ns, "canary", epoch, version=version, checksum=checksum, canary=canary,
                       ack=ack, source=source, origin=origin, ts=ts, extra=extra)
        return env
    if raw_canary is not UNSET and raw_canary is not None:
        raise _field("canary", "null (a config event only ends a canary)")
    reset = get("reset", False)
    if type(reset) is not bool:
        raise _field("reset", "a boolean")
    changes, values = changes_from_json(get("changes"))
    if reset and (version != 1 or changes):
        raise ProtocolError("a reset event has version 1 and no changes", reason="field")
    env = Envelope(ns, "config", epoch, version=version, checksum=checksum, changes=changes,
                   reset=reset, canary=raw_canary, ack=ack, source=source, origin=origin, ts=ts,
                   extra=extra)
    object.__setattr__(env, "_values", values)
    return env
