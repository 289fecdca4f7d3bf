"""JSON values, leaf texts and keys (protocol §2, §12). No I/O.

Everything here is bounded: nesting is measured before the C decoder recurses (so a 10,000-deep
document is a `ProtocolError`, never a `RecursionError` or a crash, whatever
``sys.getrecursionlimit()`` says), keys are checked against the limits of §12, and every error
is a `ProtocolError` with a stable ``reason``.
"""

from __future__ import annotations

import enum
import functools
import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

from ..errors import ProtocolError

__all__ = [
    "MAX_DEPTH",
    "MAX_KEY_BYTES",
    "MAX_KEY_SEGMENTS",
    "MAX_LEAF_DEPTH",
    "MAX_SAFE_INT",
    "MISSING",
    "Missing",
    "canonical_json",
    "check_json_value",
    "check_key",
    "leaf_text",
    "loads",
    "nesting_exceeds",
    "parse_leaf_text",
    "same_value",
    "texts_equal",
]

#: The largest version / seq / epoch time: the largest integer a JSON double holds exactly.
MAX_SAFE_INT: Final = 2**53 - 1
#: §12: a document nests at most 64 levels in all (keys and values).
MAX_DEPTH: Final = 64
#: §2: a leaf's value nests at most 32 levels.
MAX_LEAF_DEPTH: Final = 32
#: §2: a key has 1-32 segments and at most 512 bytes in UTF-8.
MAX_KEY_SEGMENTS: Final = 32
MAX_KEY_BYTES: Final = 512


class Missing(enum.Enum):
    """The type of `MISSING`: "the key did not exist" (``Change.old`` of a new key)."""

    MISSING = "MISSING"

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Final = Missing.MISSING


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


#: The one strict decoder (NaN, Infinity and -Infinity are not JSON).
DECODER: Final = json.JSONDecoder(parse_constant=_reject_constant)
#: Its C scanner: ``SCAN(text, 0)`` -> ``(value, end)``; raises StopIteration or ValueError.
SCAN: Final[Callable[[str, int], tuple[Any, int]]] = DECODER.scan_once  # type: ignore[attr-defined]

_KEEP: Final = bytes.maketrans(b"{}", b"[]")
_DROP: Final = bytes(i for i in range(256) if i not in b'"[]{}')
_PAIR_RE: Final = re.compile(rb"\[\]")
_CONTROL_RE: Final = re.compile(r"[\x00-\x1f]")


def nesting_exceeds(text: str | bytes, limit: int) -> bool:
    """Whether the arrays and objects of JSON ``text`` nest more than ``limit`` levels.

    Depth counts the arrays and objects around the innermost value: ``1`` has depth 0, ``[1]``
    and ``{}`` depth 1, ``{"a": [1]}`` depth 2. Brackets inside strings do not count. Text whose
    brackets do not balance (not JSON anyway) counts as too deep. Linear in the text (C-speed
    byte operations), and free when the text holds at most ``limit`` opening brackets.
    """
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    # Drop the escapes that could hide a quote, keep only quotes and brackets, drop strings.
    kept = raw.replace(b"\\\\", b"").replace(b'\\"', b"").translate(_KEEP, _DROP)
    skeleton = b"".join(kept.split(b'"')[0::2])
    for _ in range(limit):
        if not skeleton:
            return False
        reduced = _PAIR_RE.sub(b"", skeleton)  # peels one level off every innermost pair
        if len(reduced) == len(skeleton):
            return True
        skeleton = reduced
    return bool(skeleton)


def loads(data: bytes | str, *, max_depth: int = MAX_DEPTH, what: str = "message") -> Any:
    """Strict JSON (RFC 8259, UTF-8, no NaN/Infinity), nesting at most ``max_depth`` levels.

    Raises `ProtocolError` (reason ``json``) naming ``what`` was not valid.
    """
    if isinstance(data, str):
        text = data
    else:
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError(f"{what} is not UTF-8: {exc}", reason="json") from None
    if nesting_exceeds(text, max_depth):
        raise ProtocolError(f"{what} nests more than {max_depth} levels (or is not valid JSON)",
                            reason="json")
    try:
        return DECODER.decode(text)
    except RecursionError:  # unreachable after the check above; kept as a second fence
        raise ProtocolError(f"{what} is nested too deeply", reason="json") from None
    except ValueError as exc:
        raise ProtocolError(f"{what} is not valid JSON: {exc}", reason="json") from None


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not a JSON value")


def canonical_json(value: Any) -> str:
    """The canonical text of a JSON value (§2): sorted keys, no spaces, UTF-8, no NaN.

    Mappings of any type serialise as objects, tuples as arrays. Raises `ProtocolError`
    (reason ``text``) for values JSON cannot hold; call `check_json_value` first for the nesting
    and key rules.
    """
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"),
                          sort_keys=True, default=_plain)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ProtocolError(f"value is not valid JSON: {exc}", reason="text") from None


def check_json_value(value: Any, where: str, *, max_depth: int = MAX_DEPTH) -> None:
    """Raise `ProtocolError` (reason ``text``) unless ``value`` is plain JSON.

    Plain JSON: None, bool, int, finite float, str (valid Unicode), lists/tuples and mappings
    with string keys, nesting at most ``max_depth`` levels. Iterative: any depth is safe.
    """
    stack: list[tuple[Any, int]] = [(value, 0)]
    pop, push = stack.pop, stack.append
    while stack:
        item, depth = pop()
        t = type(item)
        if item is None or t is bool or t is int:
            continue
        if t is str:
            if not item.isascii():
                _check_unicode(item, where)
            continue
        if t is float:
            if not math.isfinite(item):
                raise ProtocolError(f"{where}: {item!r} is not valid JSON", reason="text")
            continue
        if isinstance(item, (list, tuple)):
            if depth >= max_depth:
                raise ProtocolError(f"{where}: nests more than {max_depth} levels", reason="text")
            for child in item:
                push((child, depth + 1))
            continue
        if isinstance(item, Mapping):
            if depth >= max_depth:
                raise ProtocolError(f"{where}: nests more than {max_depth} levels", reason="text")
            for k, v in item.items():
                if type(k) is not str:
                    raise ProtocolError(f"{where}: object keys must be strings, not {k!r}",
                                        reason="text")
                push((v, depth + 1))
            continue
        if isinstance(item, (str, int)):  # subclasses (str/int enums) serialise as their base
            continue
        if isinstance(item, float):
            if not math.isfinite(item):
                raise ProtocolError(f"{where}: {item!r} is not valid JSON", reason="text")
            continue
        raise ProtocolError(f"{where}: {t.__name__} is not a JSON value", reason="text")


def _check_unicode(text: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ProtocolError(f"{where}: a string is not valid Unicode (lone surrogate)",
                            reason="text") from None


def leaf_text(value: Any, where: str = "value") -> str:
    """The canonical leaf text of ``value`` (§2), checking it is a leaf.

    A leaf is a string, number, bool, null, an array, or the empty object; it nests at most
    `MAX_LEAF_DEPTH` levels. Raises `ProtocolError` (reason ``text``).
    """
    if isinstance(value, Mapping) and value:
        raise ProtocolError(f"{where}: a non-empty object is not a leaf (it spreads over keys)",
                            reason="text")
    check_json_value(value, where, max_depth=MAX_LEAF_DEPTH)
    return canonical_json(value)


def parse_leaf_text(text: str, where: str = "text") -> Any:
    """Parse one leaf text (§2) and check it: JSON, a leaf, at most `MAX_LEAF_DEPTH` levels.

    Returns the value. Raises `ProtocolError` (reason ``text``).
    """
    if type(text) is not str:
        raise ProtocolError(f"{where} must be a string holding JSON text", reason="text")
    if not text.isascii():
        _check_unicode(text, where)
    if nesting_exceeds(text, MAX_LEAF_DEPTH):
        raise ProtocolError(f"{where} nests more than {MAX_LEAF_DEPTH} levels", reason="text")
    try:
        value = DECODER.decode(text)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(f"{where} is not valid JSON text: {exc}", reason="text") from None
    if type(value) is dict and value:
        raise ProtocolError(f"{where} is a non-empty object, which is never a leaf",
                            reason="text")
    return value


@functools.lru_cache(maxsize=65536)
def _key_problem(key: str) -> str | None:
    if not key:
        return "is empty"
    if key.isascii():
        size = len(key)
    else:
        try:
            size = len(key.encode("utf-8"))
        except UnicodeEncodeError:
            return "is not valid Unicode"
    if size > MAX_KEY_BYTES:
        return f"has {size} bytes (at most {MAX_KEY_BYTES})"
    if _CONTROL_RE.search(key):
        return "holds a control character (U+0000-U+001F)"
    parts = key.split(".")
    if len(parts) > MAX_KEY_SEGMENTS:
        return f"has {len(parts)} segments (at most {MAX_KEY_SEGMENTS})"
    if "" in parts:
        return "has an empty segment"
    return None


def key_problem(key: object) -> str | None:
    """Why ``key`` is not a valid settings key (§2), or None. Cached: keys repeat."""
    if type(key) is not str:
        return "is not a string"
    return _key_problem(key)


def check_key(key: str) -> str:
    """Validate a settings key (§2, §12): 1-32 non-empty segments joined by ``.``, at most
    512 bytes of UTF-8, no control characters. Raises `ProtocolError` (reason ``key``)."""
    problem = key_problem(key)
    if problem is not None:
        shown = key[:80] if type(key) is str else key
        raise ProtocolError(f"invalid settings key {shown!r}: it {problem}", reason="key")
    return key


def texts_equal(a: str | bytes | None, b: str | bytes | None) -> bool:
    """Whether two leaf texts are the same leaf value (§2): by text, exactly.

    ``1``, ``1.0`` and ``1e0`` are three different texts. None is "no such key". Bytes (as read
    from Redis) are UTF-8.
    """
    if a is None or b is None:
        return a is b
    if isinstance(a, bytes):
        a = a.decode("utf-8", "surrogateescape")
    if isinstance(b, bytes):
        b = b.decode("utf-8", "surrogateescape")
    return a == b


def same_value(a: Any, b: Any) -> bool:
    """Whether two values have the same canonical leaf text (``true`` is not ``1``, ``1.0``
    is not ``1``), comparing scalars without serialising them."""
    if a is b:
        return True
    t = type(a)
    if t is type(b):
        if t is str or t is int or t is bool:
            return bool(a == b)
        if t is float:  # equal floats print alike, except 0.0 and -0.0
            return bool(a == b) and math.copysign(1.0, a) == math.copysign(1.0, b)
        if t is not list and t is not dict:
            return False
    elif not (isinstance(a, (list, tuple, Mapping)) and isinstance(b, (list, tuple, Mapping))):
        return False
    try:
        return leaf_text(a) == leaf_text(b)
    except ProtocolError:
        return False

