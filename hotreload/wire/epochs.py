"""Epochs (protocol §4.5): ``<ms>-<16 hex>``, ordered by ``<ms>``.

``<ms>`` is the Unix time in milliseconds when the history began (decimal, no leading zeros, at
most 2^53 - 1); the 16 lowercase hex digits are random. Versions compare only within an epoch.
"""

from __future__ import annotations

import functools
import re
import secrets
import time
from typing import Final, TypeGuard

from ..errors import ProtocolError
from .values import MAX_SAFE_INT

__all__ = ["check_epoch", "compare_epochs", "epoch_ms", "is_epoch", "new_epoch"]

_EPOCH_RE: Final = re.compile(r"(0|[1-9][0-9]{0,15})-[0-9a-f]{16}")


@functools.lru_cache(maxsize=1024)
def _ms(epoch: str) -> int:
    """``<ms>`` of a well-formed epoch, or -1."""
    m = _EPOCH_RE.fullmatch(epoch)
    if m is None:
        return -1
    ms = int(m.group(1))
    return ms if ms <= MAX_SAFE_INT else -1


def is_epoch(value: object) -> TypeGuard[str]:
    """Whether ``value`` is a well-formed epoch."""
    return type(value) is str and _ms(value) >= 0


def check_epoch(value: object, what: str = "epoch") -> str:
    """Return ``value`` if it is a well-formed epoch; else raise `ProtocolError` (``field``)."""
    if type(value) is not str or _ms(value) < 0:
        raise ProtocolError(f"invalid {what} {str(value)[:80]!r}: want <ms>-<16 hex digits>",
                            reason="field")
    return value


def epoch_ms(epoch: str) -> int:
    """The ``<ms>`` of an epoch. Raises `ProtocolError` (reason ``field``) if malformed."""
    check_epoch(epoch)
    return _ms(epoch)


def compare_epochs(a: str, b: str) -> int:
    """-1, 0 or 1 as epoch ``a`` is older than, as old as, or newer than ``b`` (by ``<ms>``).

    0 does not mean "the same epoch": two epochs begun in the same millisecond are different
    histories of the same age.
    """
    ma, mb = epoch_ms(a), epoch_ms(b)
    return (ma > mb) - (ma < mb)


def new_epoch(after: str | None = None, *, now_ms: int | None = None) -> str:
    """A new epoch: now, and newer than ``after`` (the newest epoch seen of the namespace)."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    if after is not None:
        ms = max(ms, epoch_ms(after) + 1)
    if not 0 <= ms <= MAX_SAFE_INT:
        raise ProtocolError(f"epoch time {ms} out of range", reason="range")
    return f"{ms}-{secrets.token_hex(8)}"
