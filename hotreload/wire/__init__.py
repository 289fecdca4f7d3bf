"""The hotreload wire protocol, version 2 (docs/protocol.md). No I/O.

This package imports nothing of hotreload but `hotreload.errors`; it is the reference beside
docs/protocol.md and what the conformance vectors (conformance/) check.
"""

from .names import DEFAULT_PREFIX, Keys, LegacyKeys, check_name, keys_for, legacy_keys_for

__all__ = ["DEFAULT_PREFIX", "Keys", "LegacyKeys", "check_name", "keys_for", "legacy_keys_for"]
