"""The exception tree. Every error hotreload raises on purpose derives from `HotReloadError`.

```
HotReloadError
├── ConfigError              a config file, env var or option is invalid
├── ProtocolError            a message or snapshot does not follow the wire protocol
│   ├── SignatureError       a message's HMAC signature is missing or wrong
│   └── InputError           an argument given to the publisher cannot be published
├── SettingsRejected         settings do not validate against the schema (model)
├── DocumentError            a settings document (YAML/JSON/TOML) cannot be read or parsed
├── BackendError             Redis or PostgreSQL could not be reached or failed
├── ConflictError            a publish lost too many races, or its expected version moved on
├── RecoveryNeeded           the namespace on the server is lost, corrupt or older than seen
├── RolloutIncomplete        some live instances did not apply a version in time
├── HistoryError             the event log no longer holds what was asked for
└── StartTimeout             a subscriber did not load its first snapshot in time
```

Third-party exceptions (redis-py, psycopg, pydantic, yaml) are wrapped at the seam with
``raise ... from exc``; the message of every error here is safe to log: it never holds a
password or a key. A pydantic ``ValidationError`` becomes one line through
`describe_validation` (or `validation_problems`, for callers that place each problem).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pydantic is imported by the caller that has an error to describe
    from pydantic import ValidationError


class HotReloadError(Exception):
    """Base of every error raised by hotreload."""


class ConfigError(HotReloadError):
    """The configuration (file, environment or option) is invalid."""


class ProtocolError(HotReloadError):
    """A message or snapshot does not follow the hotreload wire protocol.

    ``reason`` is a short stable label (``size``, ``json``, ``protocol``, ``field``, ``range``,
    ``key``, ``text``, ``namespace``, ``signature``, ``checksum``, ``prefix``, ...: the reject
    reasons of docs/protocol.md §14) for metrics, presence records and the conformance vectors.
    """

    def __init__(self, message: str, *, reason: str = "invalid") -> None:
        super().__init__(message)
        self.reason = reason


class SignatureError(ProtocolError):
    """A message's HMAC signature is missing or does not match."""

    def __init__(self, message: str, *, reason: str = "signature") -> None:
        super().__init__(message, reason=reason)


class InputError(ProtocolError):
    """An argument given to the publisher (a key, a value, a namespace, a version...) cannot be
    published; nothing was sent. The message names the key or path and why."""


class SettingsRejected(HotReloadError):
    """Settings do not validate against the schema; the last good settings stay live."""


class DocumentError(HotReloadError):
    """A settings document cannot be read or parsed.

    ``reason`` is a short stable label for metrics (``missing``, ``read``, ``empty``, ``yaml``,
    ``json``, ``toml``, ``too_large``, ``type``, ``key``); the message is one line naming the
    file and line.
    """

    def __init__(self, message: str, *, reason: str = "invalid") -> None:
        super().__init__(message)
        self.reason = reason


class BackendError(HotReloadError):
    """Redis or PostgreSQL could not be reached, or answered with an error."""


class ConflictError(HotReloadError):
    """A publish kept losing the race against other publishers and gave up, or the namespace
    is no longer at the version the caller expected."""


class RecoveryNeeded(HotReloadError):
    """A partial publish cannot go on: the namespace on the server was lost, is unreadable, or
    is older than this publisher has seen (a restored backup or a replay).

    Publishing the whole settings (``replace``, ``hotreload publish --file``, the daemon) or
    ``hotreload repair`` starts a new epoch from them. ``reason`` is ``lost``, ``corrupt`` or
    ``stale``.
    """

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class RolloutIncomplete(HotReloadError):
    """Some live instances did not apply a version in time (``publish --wait``);
    ``rollout`` (a `hotreload.publisher.Rollout`) says which and why."""

    def __init__(self, message: str, *, rollout: Any) -> None:
        super().__init__(message)
        self.rollout = rollout


class HistoryError(HotReloadError):
    """The event log no longer holds the events that were asked for."""


class StartTimeout(HotReloadError):
    """A subscriber did not load its first snapshot within the given timeout."""


def describe_error(exc: BaseException) -> str:
    """One line about an error (of a server, a driver, a source), to log or show: its first line,
    at most 300 characters, or its type's name when it has no text. libpq's and redis-py's
    messages never hold a password; hotreload's own errors never do."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


# --------------------------------------------------------------------------- pydantic errors


@dataclass(frozen=True, slots=True)
class ValidationProblem:
    """One problem of a pydantic ``ValidationError``: where it is and why, safe to show."""

    loc: tuple[str | int, ...]
    """The path as pydantic gives it (``("db", "hosts", 0)``)."""
    key: str
    """The path as shown: ``db.hosts[0]``, or ``(top level)``."""
    message: str
    """Why: ``unknown key``, ``required key is missing``, or pydantic's message (without its
    ``Value error,`` prefix). Never the rejected input itself."""


def show_path(loc: Sequence[str | int]) -> str:
    """A settings path for messages: ``db.hosts[0].port``; ``(top level)`` when empty."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out or "(top level)"


def validation_problems(exc: ValidationError) -> list[ValidationProblem]:
    """Each problem of ``exc``, in pydantic's order (the one formatter of pydantic errors)."""
    out = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = tuple(p for p in err["loc"] if isinstance(p, (str, int)))
        if err["type"] == "extra_forbidden":
            message = "unknown key"
        elif err["type"] == "missing":
            message = "required key is missing"
        else:
            message = str(err["msg"]).removeprefix("Value error, ")
        out.append(ValidationProblem(loc, show_path(loc), message))
    return out


def describe_validation(exc: ValidationError, *, origin: str | None = None,
                        label: Callable[[ValidationProblem], str] | None = None) -> str:
    """``exc`` as one line: ``origin: key: why; key: why`` (without ``origin``: no prefix).

    ``label`` may replace how a problem's key is shown (e.g. to add its line in a file).
    """
    shown = "; ".join(f"{label(p) if label is not None else p.key}: {p.message}"
                      for p in validation_problems(exc))
    return f"{origin}: {shown}" if origin else shown
