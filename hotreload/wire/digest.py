"""Checksums of states (protocol §3): the XOR of one SHA-256 (or HMAC-SHA256) digest per leaf.

``digest = SHA-256(utf8(key) ‖ 0x00 ‖ utf8(text))``, or HMAC-SHA256 under the signing key in
signed deployments; the checksum is the XOR of every leaf's digest as 64 lowercase hex digits.
It is incremental: `Digester.advance` costs two digests per change, whatever the state's size.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from typing import Final, TypeGuard

from ..errors import ProtocolError
from .leaves import LeafChange

__all__ = ["EMPTY_CHECKSUM", "Digester", "checksum_int", "fold", "hmac_hex", "is_checksum"]

#: The checksum of the empty state.
EMPTY_CHECKSUM: Final = "0" * 64

_CHECKSUM_RE: Final = re.compile(r"[0-9a-f]{64}")
_sha256 = hashlib.sha256
_hmac_digest = hmac.digest
_from_bytes = int.from_bytes


def is_checksum(value: object) -> TypeGuard[str]:
    """Whether ``value`` has the form of a checksum: 64 lowercase hex digits."""
    return type(value) is str and _CHECKSUM_RE.fullmatch(value) is not None


def checksum_int(checksum: str) -> int:
    """A checksum as a 256-bit integer. Raises `ProtocolError` (reason ``field``)."""
    if not is_checksum(checksum):
        raise ProtocolError(f"invalid checksum {str(checksum)[:80]!r}: want 64 lowercase hex "
                            "digits", reason="field")
    return int(checksum, 16)


def fold(digests: Iterable[int]) -> str:
    """The checksum (§3) of leaf digests: their XOR as 64 lowercase hex digits."""
    acc = 0
    for d in digests:
        acc ^= d
    return f"{acc:064x}"


def hmac_hex(key: bytes, data: bytes) -> str:
    """Lowercase hex HMAC-SHA256 of ``data`` (the ``sig`` of §6)."""
    return _hmac_digest(key, data, "sha256").hex()


class Digester:
    """Leaf digests and checksums (§3) for one deployment: unsigned, or signed with ``key``."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key

    @property
    def signed(self) -> bool:
        return self._key is not None

    def leaf(self, key: str, text: str) -> int:
        """The digest of one leaf as a 256-bit integer."""
        data = b"%s\x00%s" % (key.encode(), text.encode())
        if self._key is None:
            return _from_bytes(_sha256(data).digest(), "big")
        return _from_bytes(_hmac_digest(self._key, data, "sha256"), "big")

    def checksum_of(self, leaves: Mapping[str, str]) -> str:
        """The checksum of a whole state, from scratch: O(leaves)."""
        leaf = self.leaf
        acc = 0
        for key, text in leaves.items():
            acc ^= leaf(key, text)
        return f"{acc:064x}"

    def advance(self, checksum: str, changes: Iterable[LeafChange]) -> str:
        """The checksum after ``changes`` (§3): O(changes). Uses each change's ``old`` text."""
        leaf = self.leaf
        acc = checksum_int(checksum)
        for ch in changes:
            if ch.old is not None:
                acc ^= leaf(ch.key, ch.old)
            if ch.new is not None:
                acc ^= leaf(ch.key, ch.new)
        return f"{acc:064x}"
