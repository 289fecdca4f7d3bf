"""Hiding secrets in settings shown to people: one rule for every read-only view.

`mask_secrets` is what the ``/settings`` route of `hotreload.integrations.fastapi` shows (and what
any other view of a namespace's settings should use): the value of every key whose name looks
like a secret is replaced by `MASK` (a whole sub-object included), and a password inside a
URL-looking string value (``postgresql://user:pw@db/app``) by ``***`` (`redact_url`).

A key looks like a secret when one of its words (split at ``_ - .`` and camelCase) is in
`SECRET_WORDS`, or two adjacent words are in `SECRET_PAIRS` (``api_key``, ``privateKey``...).
It errs on the side of hiding: ``max_tokens`` is masked too.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from typing import Any, Final

from .config import redact_url

__all__ = ["MASK", "SECRET_PAIRS", "SECRET_WORDS", "is_secret_key", "mask_secrets"]

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

_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")
_URL_WITH_USERINFO = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://[^/?#]*@")
_KV_PASSWORD = re.compile(r"(?i)\bpassword\s*=")


def _words(name: str) -> list[str]:
    return [w.lower() for w in _WORDS.findall(name)]


def is_secret_key(key: str) -> bool:
    """Whether any part of the dotted ``key`` looks like the name of a secret."""
    for part in key.split("."):
        words = _words(part)
        if any(w in SECRET_WORDS for w in words):
            return True
        if any(pair in SECRET_PAIRS for pair in itertools.pairwise(words)):
            return True
    return False


def _mask_string(value: str) -> str:
    if _URL_WITH_USERINFO.match(value) or _KV_PASSWORD.search(value):
        return redact_url(value)
    return value


def mask_secrets(tree: Any) -> Any:
    """A copy of ``tree`` (plain JSON-like data) with secret-looking keys' values masked."""
    if isinstance(tree, Mapping):
        return {key: MASK if is_secret_key(str(key)) else mask_secrets(value)
                for key, value in tree.items()}
    if isinstance(tree, list | tuple):
        return [mask_secrets(item) for item in tree]
    if isinstance(tree, str):
        return _mask_string(tree)
    return tree
