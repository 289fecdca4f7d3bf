"""The head (``meta``, §4.1), the checkpoint (§4.3) and the invalidation head (§9): decoding,
checking and encoding the Redis hashes, with their signatures (§6).

Hash fields arrive as bytes or str (keys and values); every decoder accepts both. An empty
mapping is an absent hash: the decoders return None.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

from ..errors import ProtocolError, SignatureError
from .canary import Canary, canary_from_json, encode_canary
from .digest import hmac_hex, is_checksum
from .epochs import is_epoch
from .events import DEFAULT_MAX_MESSAGE_BYTES
from .names import check_name
from .values import MAX_DEPTH, MAX_SAFE_INT, loads

__all__ = [
    "DEFAULT_MAX_CHECKPOINT_BYTES",
    "Checkpoint",
    "Head",
    "InvalidationHead",
    "checkpoint_signature",
    "decode_checkpoint",
    "decode_head",
    "decode_head_triplet",
    "decode_invalidation_head",
    "encode_checkpoint",
    "encode_head",
    "encode_invalidation_head",
    "head_signature",
]

#: §12: the default size limit of a checkpoint's ``settings``.
DEFAULT_MAX_CHECKPOINT_BYTES: Final = 64 * 1024 * 1024

#: A Redis hash as a client returns it: bytes or str keys and values.
Fields: TypeAlias = Mapping[Any, Any]

_DECIMAL_RE: Final = re.compile(r"0|[1-9][0-9]{0,15}")
_TIME_RE: Final = re.compile(r"(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")


def _get(fields: Fields, name: str) -> str | None:
    """A field as text (UTF-8), whether the mapping has bytes or str keys."""
    raw: Any = fields.get(name.encode())
    if raw is None:
        raw = fields.get(name)
        if raw is None:
            return None
    if isinstance(raw, (bytes, bytearray, memoryview)):
        try:
            return bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError(f"field {name!r} is not UTF-8", reason="field") from None
    return str(raw)


def _get_bytes(fields: Fields, name: str) -> bytes | None:
    raw: Any = fields.get(name.encode())
    if raw is None:
        raw = fields.get(name)
        if raw is None:
            return None
    return bytes(raw) if isinstance(raw, (bytes, bytearray, memoryview)) else str(raw).encode()


def _integer(what: str, value: str | None, low: int) -> int:
    if value is None or _DECIMAL_RE.fullmatch(value) is None:
        raise ProtocolError(f"{what} {str(value)[:40]!r} is not a decimal integer",
                            reason="field")
    number = int(value)
    if not low <= number <= MAX_SAFE_INT:
        raise ProtocolError(f"{what} {number} is out of range", reason="range")
    return number


def _time(what: str, value: str | None) -> float:
    if value is None or _TIME_RE.fullmatch(value) is None:
        raise ProtocolError(f"{what} {str(value)[:40]!r} is not a decimal time", reason="field")
    number = float(value)
    if not math.isfinite(number):
        raise ProtocolError(f"{what} {value[:40]!r} is out of range", reason="range")
    return number


def _protocol(what: str, fields: Fields) -> None:
    protocol = _get(fields, "protocol")
    if protocol is None:
        raise ProtocolError(f"{what} has no protocol field", reason="field")
    if protocol != "2":
        raise ProtocolError(f"{what} uses unsupported protocol {protocol[:20]!r}",
                            reason="protocol")


def _epoch(what: str, fields: Fields) -> str:
    epoch = _get(fields, "epoch")
    if not is_epoch(epoch):
        raise ProtocolError(f"{what} has an invalid epoch {str(epoch)[:80]!r}", reason="field")
    return epoch


def _checksum(what: str, fields: Fields) -> str:
    checksum = _get(fields, "checksum")
    if not is_checksum(checksum):
        raise ProtocolError(f"{what} has an invalid checksum", reason="field")
    return checksum


def _check_sig(what: str, fields: Fields, key: bytes, want: str) -> None:
    sig = _get(fields, "sig")
    if sig is None:
        raise SignatureError(f"{what} is not signed")
    if not hmac.compare_digest(sig.encode(), want.encode()):
        raise SignatureError(f"{what} signature does not match")


# --------------------------------------------------------------------------- the head


@dataclass(frozen=True, slots=True)
class Head:
    """The head of a namespace (§4.1), decoded and checked."""

    namespace: str
    epoch: str
    version: int
    checksum: str
    count: int
    updated_at: float
    canary: Canary | None


def head_signature(key: bytes, namespace: str, epoch: str, version: int, checksum: str,
                   canary_field: bytes | None) -> str:
    """The head's ``sig`` (§6) over ns, epoch, version, checksum and the canary field's bytes."""
    canary_digest = hashlib.sha256(canary_field).hexdigest() if canary_field else ""
    text = f"hotreload/2 meta\n{namespace}\n{epoch}\n{version}\n{checksum}\n{canary_digest}"
    return hmac_hex(key, text.encode())


def decode_head(namespace: str, fields: Fields, *, key: bytes | None = None,
                max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> Head | None:
    """Check and decode the head hash; None when it is absent (no fields).

    Raises `ProtocolError` (reasons ``protocol``, ``field``, ``range``, ``json``, ``size``: a
    canary over ``max_bytes``) or `SignatureError` when a ``key`` is given and ``sig`` is
    missing or wrong.
    """
    if not fields:
        return None
    what = f"head of {namespace!r}"
    _protocol(what, fields)
    epoch = _epoch(what, fields)
    version = _integer(f"{what}: version", _get(fields, "version"), 1)
    checksum = _checksum(what, fields)
    count = _integer(f"{what}: count", _get(fields, "count"), 0)
    updated_at = _time(f"{what}: updated_at", _get(fields, "updated_at"))
    canary_field = _get_bytes(fields, "canary") or None
    if canary_field is not None and len(canary_field) > max_bytes:
        raise ProtocolError(f"{what}: canary of {len(canary_field)} bytes exceeds the limit of "
                            f"{max_bytes}", reason="size")
    if key is not None:
        want = head_signature(key, namespace, epoch, version, checksum, canary_field)
        _check_sig(what, fields, key, want)
    canary = None
    if canary_field is not None:
        canary = canary_from_json(loads(canary_field, what=f"{what}: canary"))
    return Head(namespace, epoch, version, checksum, count, updated_at, canary)


def encode_head(head: Head, *, key: bytes | None = None) -> dict[str, str]:
    """The fields to write into the head hash (§4.1): ``canary`` is ``""`` when there is none
    (the transport deletes the field), ``sig`` only with a signing ``key``."""
    check_name(head.namespace, "namespace")
    canary = "" if head.canary is None else encode_canary(head.canary)
    fields = {
        "protocol": "2",
        "epoch": head.epoch,
        "version": str(head.version),
        "checksum": head.checksum,
        "count": str(head.count),
        "updated_at": repr(float(head.updated_at)),
        "canary": canary,
    }
    if key is not None:
        fields["sig"] = head_signature(key, head.namespace, head.epoch, head.version,
                                       head.checksum, canary.encode() or None)
    return fields


def decode_head_triplet(epoch: bytes | str | None, version: bytes | str | None,
                        checksum: bytes | str | None) -> tuple[str | None, int, str]:
    """The head's (epoch, version, checksum) as the backstop reads them (§8 step 7), unsigned.

    All None: no head, ``(None, 0, EMPTY_CHECKSUM)``. Raises `ProtocolError` when they are
    partly absent or malformed.
    """
    if epoch is None and version is None and checksum is None:
        return None, 0, "0" * 64
    fields = {k: v for k, v in (("epoch", epoch), ("version", version), ("checksum", checksum))
              if v is not None}
    what = "head"
    e = _epoch(what, fields)
    v = _integer(f"{what}: version", _get(fields, "version"), 1)
    return e, v, _checksum(what, fields)


# --------------------------------------------------------------------------- the checkpoint


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A checkpoint (§4.3), checked: the nested ``settings`` at ``version``."""

    namespace: str
    epoch: str
    version: int
    checksum: str
    count: int
    settings: dict[str, Any]


def checkpoint_signature(key: bytes, namespace: str, epoch: str, version: int, checksum: str,
                         digest: str) -> str:
    """The checkpoint's ``sig`` (§6)."""
    text = f"hotreload/2 checkpoint\n{namespace}\n{epoch}\n{version}\n{checksum}\n{digest}"
    return hmac_hex(key, text.encode())


def decode_checkpoint(namespace: str, fields: Fields, *, key: bytes | None = None,
                      max_bytes: int = DEFAULT_MAX_CHECKPOINT_BYTES) -> Checkpoint | None:
    """Check and decode a checkpoint hash; None when it is absent.

    Checks the size of ``settings`` before reading it (``size``), its ``digest`` (``digest``),
    the ``sig`` with a ``key``, then parses it (``json``: nesting at most 64 levels, an object).
    """
    if not fields:
        return None
    what = f"checkpoint of {namespace!r}"
    _protocol(what, fields)
    epoch = _epoch(what, fields)
    version = _integer(f"{what}: version", _get(fields, "version"), 1)
    checksum = _checksum(what, fields)
    count = _integer(f"{what}: count", _get(fields, "count"), 0)
    settings = _get_bytes(fields, "settings")
    if settings is None:
        raise ProtocolError(f"{what} has no settings", reason="field")
    if len(settings) > max_bytes:
        raise ProtocolError(f"{what}: settings of {len(settings)} bytes exceed the limit of "
                            f"{max_bytes}", reason="size")
    digest = _get(fields, "digest")
    if digest is None or not hmac.compare_digest(digest.encode(),
                                                 hashlib.sha256(settings).hexdigest().encode()):
        raise ProtocolError(f"{what}: settings do not match their digest", reason="digest")
    if key is not None:
        _check_sig(what, fields, key,
                   checkpoint_signature(key, namespace, epoch, version, checksum, digest))
    document = loads(settings, max_depth=MAX_DEPTH, what=f"{what}: settings")
    if type(document) is not dict:
        raise ProtocolError(f"{what}: settings are not a JSON object", reason="json")
    return Checkpoint(namespace, epoch, version, checksum, count, document)


def encode_checkpoint(namespace: str, epoch: str, version: int, checksum: str, count: int,
                      settings_json: bytes, *, key: bytes | None = None
                      ) -> dict[str, str | bytes]:
    """The fields of a checkpoint hash (§4.3); ``settings_json`` is the nested document."""
    check_name(namespace, "namespace")
    digest = hashlib.sha256(settings_json).hexdigest()
    fields: dict[str, str | bytes] = {
        "protocol": "2",
        "epoch": epoch,
        "version": str(version),
        "checksum": checksum,
        "count": str(count),
        "settings": settings_json,
        "digest": digest,
    }
    if key is not None:
        fields["sig"] = checkpoint_signature(key, namespace, epoch, version, checksum, digest)
    return fields


# --------------------------------------------------------------------------- invalidations


@dataclass(frozen=True, slots=True)
class InvalidationHead:
    """The invalidation head (§9): the invalidation epoch and the last ``seq`` used."""

    epoch: str
    seq: int


def decode_invalidation_head(fields: Fields) -> InvalidationHead | None:
    """Check and decode the invalidation head; None when it is absent. Not signed (§6)."""
    if not fields:
        return None
    epoch = _epoch("invalidation head", fields)
    seq = _integer("invalidation head: seq", _get(fields, "seq"), 1)
    return InvalidationHead(epoch, seq)


def encode_invalidation_head(head: InvalidationHead) -> dict[str, str]:
    """The fields of the invalidation head hash (§9)."""
    return {"epoch": head.epoch, "seq": str(head.seq)}
