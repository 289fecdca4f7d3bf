"""Names: prefixes, namespaces, and the Redis keys and channels of a namespace (protocol §1, §4)."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Final

from ..errors import ProtocolError

__all__ = ["DEFAULT_PREFIX", "Keys", "LegacyKeys", "check_name", "keys_for", "legacy_keys_for"]

DEFAULT_PREFIX: Final = "hotreload"

_NAME_RE: Final = re.compile(r"[A-Za-z0-9_.\-]{1,128}")


@functools.lru_cache(maxsize=4096)
def _valid_name(value: str) -> bool:
    return _NAME_RE.fullmatch(value) is not None


def check_name(value: str, what: str) -> str:
    """Validate a namespace or prefix: 1-128 of ``A-Z a-z 0-9 _ . -``."""
    if type(value) is not str or not _valid_name(value):
        raise ProtocolError(f"invalid {what} {value!r}: use 1-128 characters of A-Z a-z 0-9 _ . -",
                            reason="field")
    return value


@dataclass(frozen=True, slots=True)
class Keys:
    """The Redis keys and channels of one namespace (protocol §4)."""

    namespace: str
    prefix: str
    base: str
    meta: str
    leaves: str
    checkpoint: str
    log: str
    config_channel: str
    inv: str
    inv_log: str
    inv_channel: str
    presence: str

    def presence_record(self, instance: str) -> str:
        return f"{self.presence}:{instance}"

    def cache(self, name: str) -> str:
        """The base of the L2 keys of cache ``name`` (docs/cache.md)."""
        return f"{self.base}:cache:{name}:"


@functools.lru_cache(maxsize=1024)
def keys_for(namespace: str, prefix: str = DEFAULT_PREFIX) -> Keys:
    """The keys of ``namespace``: ``<prefix>:{<namespace>}:...``, braces literal (a hash tag)."""
    check_name(namespace, "namespace")
    check_name(prefix, "prefix")
    base = f"{prefix}:{{{namespace}}}"
    return Keys(
        namespace=namespace,
        prefix=prefix,
        base=base,
        meta=f"{base}:meta",
        leaves=f"{base}:leaves",
        checkpoint=f"{base}:checkpoint",
        log=f"{base}:changes",
        config_channel=f"{base}:config",
        inv=f"{base}:inv",
        inv_log=f"{base}:invlog",
        inv_channel=f"{base}:invalidate",
        presence=f"{base}:presence",
    )


@dataclass(frozen=True, slots=True)
class LegacyKeys:
    """Where protocol 1 kept a namespace (protocol §13)."""

    snapshot: str
    log: str
    channel: str


def legacy_keys_for(namespace: str, prefix: str = DEFAULT_PREFIX) -> LegacyKeys:
    check_name(namespace, "namespace")
    check_name(prefix, "prefix")
    base = f"{prefix}:{{{namespace}}}"
    return LegacyKeys(f"{base}:snapshot", f"{base}:log", f"{base}:events")
