"""Protocol 1, for the upgrade (protocol §13): reading a protocol-1 snapshot and the notice.

A protocol-1 snapshot is the hash ``<prefix>:{<ns>}:snapshot``: ``protocol`` = ``1``, ``epoch``
(free-form), ``version``, ``settings`` (the whole document as JSON), ``checksum`` =
``"sha256:" + hex SHA-256 of the settings bytes``, ``updated_at``, and ``sig`` when signing was
on (HMAC of ``<ns>\\n<epoch>\\n<version>\\n<checksum>``). A migrated snapshot has ``protocol`` =
``2``: the protocol-2 head is authoritative and the snapshot reads as absent.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from ..errors import ProtocolError, SignatureError
from .digest import hmac_hex
from .heads import DEFAULT_MAX_CHECKPOINT_BYTES, Fields, _get, _get_bytes, _integer
from .names import check_name
from .values import MAX_DEPTH, loads

__all__ = [
    "LEGACY_NOTICE",
    "LEGACY_TTL_SECONDS",
    "LegacySnapshot",
    "decode_legacy_snapshot",
    "legacy_checksum",
    "legacy_notice",
]

#: The text of the notice a migrating publisher sends on the protocol-1 channel (§13).
LEGACY_NOTICE: Final = "migrated to protocol 2; upgrade hotreload"
#: How long the protocol-1 keys live after a migration (§13): 7 days.
LEGACY_TTL_SECONDS: Final = 7 * 24 * 3600


@dataclass(frozen=True, slots=True)
class LegacySnapshot:
    """A protocol-1 snapshot, checked."""

    namespace: str
    epoch: str
    version: int
    checksum: str
    settings: dict[str, Any]


def legacy_checksum(settings_json: bytes) -> str:
    """Protocol 1's checksum: ``sha256:`` + hex SHA-256 of the exact ``settings`` bytes."""
    return "sha256:" + hashlib.sha256(settings_json).hexdigest()


def decode_legacy_snapshot(namespace: str, fields: Mapping[Any, Any], *,
                           key: bytes | None = None) -> LegacySnapshot | None:
    """Check and decode a protocol-1 snapshot hash, for a migration (§13).

    None when the hash is absent or already migrated (``protocol`` = ``2``). Raises
    `ProtocolError` (``protocol``, ``field``, ``range``, ``checksum``, ``size``, ``json``) or
    `SignatureError` (with a ``key``: ``sig`` missing or wrong).
    """
    f: Fields = fields
    if not f:
        return None
    what = f"protocol-1 snapshot of {namespace!r}"
    protocol = _get(f, "protocol")
    if protocol == "2":
        return None
    if protocol is not None and protocol != "1":
        raise ProtocolError(f"{what} uses unknown protocol {protocol[:20]!r}",
                            reason="protocol")
    version = _integer(f"{what}: version", _get(f, "version"), 1)
    epoch = _get(f, "epoch") or ""
    if not epoch:
        raise ProtocolError(f"{what} has no epoch", reason="field")
    settings = _get_bytes(f, "settings")
    if settings is None:
        raise ProtocolError(f"{what} has no settings", reason="field")
    if len(settings) > DEFAULT_MAX_CHECKPOINT_BYTES:
        raise ProtocolError(f"{what}: settings of {len(settings)} bytes are too large",
                            reason="size")
    checksum = _get(f, "checksum") or ""
    if not hmac.compare_digest(checksum.encode(), legacy_checksum(settings).encode()):
        raise ProtocolError(f"{what} fails its checksum", reason="checksum")
    if key is not None:
        sig = _get(f, "sig")
        want = hmac_hex(key, f"{namespace}\n{epoch}\n{version}\n{checksum}".encode())
        if sig is None or not hmac.compare_digest(sig.encode(), want.encode()):
            raise SignatureError(f"{what} has a missing or wrong signature")
    document = loads(settings, max_depth=MAX_DEPTH, what=f"{what}: settings")
    if type(document) is not dict:
        raise ProtocolError(f"{what}: settings are not a JSON object", reason="json")
    return LegacySnapshot(namespace, epoch, version, checksum, document)


def legacy_notice(namespace: str) -> bytes:
    """The notice published on the protocol-1 channel when a namespace migrates (§13).

    ``{"protocol":2,"namespace":<ns>,"notice":"migrated to protocol 2; upgrade hotreload"}``:
    a protocol-1 subscriber rejects it as "unsupported protocol version 2" and keeps its
    settings.
    """
    check_name(namespace, "namespace")
    return json.dumps({"protocol": 2, "namespace": namespace, "notice": LEGACY_NOTICE},
                      separators=(",", ":")).encode()
