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
from collections.abc import Callable, Iterator, Mapping
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
_ONE_BRACKET: Final = bytes.maketrans(b"]", b"[")
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
    if b"\\" in raw:  # drop the escapes that could hide a quote
        raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    # Keep only quotes and brackets ("{" and "}" become "[" and "]").
    kept = raw.translate(_KEEP, _DROP)
    if kept.count(b"[") <= limit:
        return False
    # Drop the strings. A bracket is inside a string when an odd number of quotes comes before
    # it. Usually every run of quotes between two brackets is even: then no bracket is inside
    # a string and dropping the quotes leaves the skeleton (a few C calls, whatever the number
    # of strings); otherwise split at the quotes and keep what is outside the strings.
    runs = kept.translate(_ONE_BRACKET).split(b"[")
    if any(n & 1 for n in set(map(len, runs))):
        skeleton = b"".join(kept.split(b'"')[0::2])
    else:
        skeleton = kept.translate(None, b'"')
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


#: Below this many bits every int prints (``sys.get_int_max_str_digits()`` is at least 640).
_BIG_INT_BITS: Final = 2048


def check_json_value(value: Any, where: str, *, max_depth: int = MAX_DEPTH) -> None:
    """Raise `ProtocolError` (reason ``text``) unless ``value`` is plain JSON.

    Plain JSON: None, bool, int (that prints), finite float, str (valid Unicode), lists/tuples
    and mappings with string keys (valid Unicode), nesting at most ``max_depth`` levels.
    Iterative: any depth is safe. The message names ``where`` and the path below it
    (``where.db.hosts[2]: nan is not valid JSON``).
    """
    if not _surely_plain(value, max_depth):
        found = _first_problem(value, max_depth)
        if found is not None:
            path, why = found
            raise ProtocolError(f"{where}{path}: {why}", reason="text")


def _surely_plain(value: Any, max_depth: int) -> bool:
    """The fast check: True if ``value`` is plain JSON. False means `_first_problem` decides
    (and explains); the two agree (tests/unit/test_protocol.py)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    pop, push = stack.pop, stack.append
    while stack:
        item, depth = pop()
        t = type(item)
        if item is None or t is bool:
            continue
        if t is str:
            if not item.isascii() and not _encodes(item):
                return False
            continue
        if t is int:
            if item.bit_length() > _BIG_INT_BITS:
                return False
            continue
        if t is float:
            if not math.isfinite(item):
                return False
            continue
        if t is list or t is tuple:
            if depth >= max_depth:
                return False
            for child in item:
                push((child, depth + 1))
            continue
        if t is dict:
            if depth >= max_depth:
                return False
            for k, v in item.items():
                if type(k) is not str or (not k.isascii() and not _encodes(k)):
                    return False
                push((v, depth + 1))
            continue
        return False  # anything unusual (subclasses, other mappings): let the slow walk decide
    return True


def _first_problem(root: Any, max_depth: int) -> tuple[str, str] | None:
    """The path (``.a.b[2]``) to the first bad part of ``root`` and why it is bad, or None."""
    path: list[str | int] = []  # to the node at hand; one part per open container
    stack: list[Iterator[tuple[str | int, Any]]] = []
    node = root
    while True:
        if isinstance(node, (list, tuple, Mapping)) and not isinstance(node, (str, bytes)):
            if len(stack) >= max_depth:
                return "", f"nests more than {max_depth} levels"
            if isinstance(node, Mapping):
                for k in node:
                    if not isinstance(k, str):
                        return _render(path), f"object keys must be strings, not {_short(k)}"
                    if not k.isascii() and not _encodes(k):
                        return (_render([*path, k]),
                                "a key is not valid Unicode (lone surrogate)")
                stack.append(iter(node.items()))
            else:
                stack.append(enumerate(node))
            path.append("")
        else:
            why = _scalar_problem(node)
            if why is not None:
                return _render(path), why
        while stack:
            nxt = next(stack[-1], None)
            if nxt is not None:
                path[-1], node = nxt
                break
            stack.pop()
            path.pop()
        else:
            return None


def _scalar_problem(value: Any) -> str | None:
    if value is None or value is True or value is False:
        return None
    if isinstance(value, str):
        if not value.isascii() and not _encodes(value):
            return "a string is not valid Unicode (lone surrogate)"
        return None
    if isinstance(value, int):
        if value.bit_length() > _BIG_INT_BITS:
            try:
                str(value)
            except ValueError:
                return f"an integer of {value.bit_length()} bits is too long for JSON text"
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{value!r} is not valid JSON"
    return f"{type(value).__name__} is not a JSON value"


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _render(path: list[str | int]) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else "." + _short(part, quote=False)
                   for part in path)


def _short(value: Any, *, quote: bool = True) -> str:
    """``value`` for a one-line message: repr'd if it needs escaping, cut if long."""
    if not isinstance(value, str):
        if type(value) is int and value.bit_length() > 64:
            return "a very long int"
        plain = value is None or type(value) in (int, float, bool)
        return repr(value) if plain else f"a {type(value).__name__}"
    cut = value if len(value) <= 60 else value[:60] + "…"
    if quote or not cut.isprintable() or "." in cut or not _encodes(cut):
        return repr(cut)
    return cut


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
    if not text.isascii() and not _encodes(text):
        raise ProtocolError(f"{where}: a string is not valid Unicode (lone surrogate)",
                            reason="text")
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

