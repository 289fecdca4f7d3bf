"""Which settings are secret, and their values masked: the one rule of what operators see.

A key is **secret** when its dotted name matches one of the glob patterns (``*`` any run of
characters, ``?`` one, ``[...]`` a set; case-insensitive, the whole dotted key): with the
defaults, ``db.password``, ``api.token`` and ``stripe.secret_key`` are. Inside a value that is
an object, each member is judged by its own dotted path (``db.conn.password``), and the items of
a list by the list's path, so a secret nested in a leaf is masked too. A masked value is
replaced by `MASK`, whatever its type. Pure functions, no I/O: the daemon's console masks with
them before anything leaves the process (docs/daemon.md), and any other reader can.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

__all__ = ["DEFAULT_SECRET_KEYS", "MASK", "SecretMatcher", "scrub"]

#: What a secret value is replaced with.
MASK: Final = "***"

#: The default patterns of `daemon.console.secret_keys`.
DEFAULT_SECRET_KEYS: Final[tuple[str, ...]] = (
    "*password*", "*passwd*", "*secret*", "*token*", "*key*", "*credential*",
)

#: Secret values shorter than this are not scrubbed out of free text (too many false hits).
_MIN_SCRUB: Final = 4


@functools.lru_cache(maxsize=64)
def _compile(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(p.lower())})" for p in patterns))


class SecretMatcher:
    """Tells secret keys by ``patterns`` and masks their values."""

    def __init__(self, patterns: Iterable[str] = DEFAULT_SECRET_KEYS) -> None:
        self.patterns = tuple(patterns)
        self._re = _compile(self.patterns)

    def is_secret(self, key: str) -> bool:
        return self._re is not None and self._re.fullmatch(key.lower()) is not None

    def value(self, key: str, value: Any) -> Any:
        """``value`` (the value of ``key``) with every secret part masked."""
        if self.is_secret(key):
            return MASK
        if isinstance(value, Mapping):
            return {k: self.value(f"{key}.{k}", v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.value(key, v) for v in value]
        return value

    def secret_texts(self, flat: Mapping[str, Any]) -> list[str]:
        """The secret string values (and numbers) of ``flat`` settings, for `scrub`."""
        out: list[str] = []

        def walk(key: str, value: Any, secret: bool) -> None:
            secret = secret or self.is_secret(key)
            if isinstance(value, Mapping):
                for k, v in value.items():
                    walk(f"{key}.{k}", v, secret)
            elif isinstance(value, (list, tuple)):
                for v in value:
                    walk(key, v, secret)
            elif secret and value is not None and not isinstance(value, bool):
                out.append(str(value))

        for key, value in flat.items():
            walk(key, value, False)
        return out


def scrub(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every occurrence of a secret value (of 4 characters or more) masked: for
    free text that may quote a value, such as a model's rejection message."""
    for secret in sorted({s for s in secrets if len(s) >= _MIN_SCRUB}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text
