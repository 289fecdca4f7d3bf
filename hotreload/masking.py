"""Which settings are secret, and their values masked: the one rule of what people are shown.

A key is **secret** when one of the words of one of its dotted parts (split at ``_ - .`` and
camelCase) is in `SECRET_WORDS`, or two adjacent words are in `SECRET_PAIRS` (``api_key``,
``privateKey``...), or the whole dotted key matches one of the extra glob patterns a matcher is
given (``daemon.console.secret_keys``: ``*`` any run of characters, ``?`` one, ``[...]`` a set;
case-insensitive). The word rule errs on the side of hiding: ``max_tokens`` is masked too.

A secret's value is replaced by `MASK` whatever its type (a whole sub-object included); inside a
value that is an object each member is judged by its own dotted path; a password inside a
URL-looking string (``postgresql://user:pw@db/app``) becomes ``***``. Pure functions, no I/O:
the console, ``hotreload status`` and the ``/settings`` route of the FastAPI integration mask
with them before anything leaves the process.
"""

from __future__ import annotations

import fnmatch
import functools
import itertools
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from .config import redact_url

__all__ = ["MASK", "SECRET_PAIRS", "SECRET_WORDS", "SecretMatcher", "is_secret_key",
           "mask_secrets", "scrub"]

#: What a secret value is shown as.
MASK: Final = "***"
#: A key with one of these words is a secret.
SECRET_WORDS: Final = frozenset({
    "apikey", "authorization", "credential", "credentials", "passphrase", "passwd", "password",
    "passwords", "privatekey", "pwd", "secret", "secrets", "token", "tokens",
})
#: ... or with two adjacent words of one of these pairs.
SECRET_PAIRS: Final = frozenset({
    ("access", "key"), ("api", "key"), ("client", "secret"), ("hmac", "key"),
    ("private", "key"), ("secret", "key"), ("signing", "key"),
})
#: Secret values shorter than this are not scrubbed out of free text (too many false hits).
_MIN_SCRUB: Final = 4

_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")
_URL_WITH_USERINFO = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://[^/?#]*@")
_KV_PASSWORD = re.compile(r"(?i)\bpassword\s*=")


def _words(name: str) -> list[str]:
    return [w.lower() for w in _WORDS.findall(name)]


@functools.lru_cache(maxsize=4096)
def is_secret_key(key: str) -> bool:
    """Whether any part of the dotted ``key`` looks like the name of a secret (the word rule)."""
    for part in key.split("."):
        words = _words(part)
        if any(w in SECRET_WORDS for w in words):
            return True
        if any(pair in SECRET_PAIRS for pair in itertools.pairwise(words)):
            return True
    return False


@functools.lru_cache(maxsize=64)
def _compile(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(p.lower())})" for p in patterns))


def _mask_string(value: str) -> str:
    if _URL_WITH_USERINFO.match(value) or _KV_PASSWORD.search(value):
        return redact_url(value)
    return value


class SecretMatcher:
    """Tells secret keys (the word rule, plus extra glob ``patterns``) and masks values."""

    def __init__(self, patterns: Iterable[str] = ()) -> None:
        self.patterns = tuple(patterns)
        self._re = _compile(self.patterns)

    def is_secret(self, key: str) -> bool:
        if is_secret_key(key):
            return True
        return self._re is not None and self._re.fullmatch(key.lower()) is not None

    def value(self, key: str, value: Any) -> Any:
        """``value`` (the value of ``key``) with every secret part masked."""
        if self.is_secret(key):
            return MASK
        if isinstance(value, Mapping):
            return {k: self.value(f"{key}.{k}", v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.value(key, v) for v in value]
        if isinstance(value, str):
            return _mask_string(value)
        return value

    def tree(self, tree: Any) -> Any:
        """A copy of a nested document with every secret part masked."""
        if isinstance(tree, Mapping):
            return {k: self.value(str(k), v) for k, v in tree.items()}
        return tree

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


_DEFAULT: Final = SecretMatcher()


def mask_secrets(tree: Any) -> Any:
    """A copy of ``tree`` (plain JSON-like data) with secret-looking keys' values masked (the
    word rule only: for views that have no configured patterns)."""
    if isinstance(tree, Mapping):
        return _DEFAULT.tree(tree)
    if isinstance(tree, (list, tuple)):
        return [mask_secrets(item) for item in tree]
    if isinstance(tree, str):
        return _mask_string(tree)
    return tree


def scrub(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every occurrence of a secret value (of 4 characters or more) masked: for
    free text that may quote a value, such as a model's rejection message."""
    for secret in sorted({s for s in secrets if len(s) >= _MIN_SCRUB}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text
