"""Checks of the arguments given to the publisher: each bad one is one `InputError` line. No I/O.

The checks of keys and values themselves live in `hotreload.wire` (they raise `ProtocolError`;
`input_errors` reports those as `InputError`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from ..errors import InputError, ProtocolError


def check_text(value: Any, what: str) -> str:
    """``value`` if it is a str that UTF-8 can encode (no lone surrogate), else `InputError`."""
    if not isinstance(value, str):
        raise InputError(f"{what} must be a string, not {shown(value)}")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InputError(f"{what} {value[:40]!r} holds a lone surrogate (not valid UTF-8)"
                             ) from None
    return value


@contextmanager
def input_errors() -> Iterator[None]:
    """A bad argument is an `InputError` (the checks of `protocol` raise `ProtocolError`)."""
    try:
        yield
    except InputError:
        raise
    except ProtocolError as exc:
        raise InputError(str(exc)) from None


def strings(values: Iterable[str], what: str) -> tuple[str, ...]:
    """``values`` as a tuple of UTF-8-encodable strings; a bare string is refused."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise InputError(f"{what} must be a list of strings, not {kind(values)}")
    out = tuple(values)
    for i, item in enumerate(out):
        check_text(item, f"{what}[{i}]")
    return out


def mapping(value: Any, what: str) -> Mapping[Any, Any]:
    """``value`` if it is a mapping (of dotted keys or settings)."""
    if not isinstance(value, Mapping):
        raise InputError(f"{what} must be a mapping of settings, not {kind(value)}")
    return value


def flag(value: object, what: str) -> bool:
    if not isinstance(value, bool):
        raise InputError(f"{what} must be True or False, not {kind(value)}")
    return value


def check_version(value: object, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{what}, not {kind(value)}")


def kind(value: object) -> str:
    return "None" if value is None else f"a {type(value).__name__}"


def shown(value: object) -> str:
    """A short number or None as itself (``not 5``), anything else by its type."""
    if type(value) in (int, float, bool) and len(repr(value)) <= 20:
        return repr(value)
    return kind(value)
