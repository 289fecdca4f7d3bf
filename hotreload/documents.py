"""Settings documents (YAML, JSON, TOML): read, parse strictly, check keys, validate.

What a document must be, whatever its format:

* a non-empty file of UTF-8 text holding one mapping at the top level;
* keys are non-empty strings without ``.`` (nesting makes the dotted keys, see `wire.flatten`);
  duplicate keys are an error, not "last one wins";
* values are plain JSON: strings, numbers (no NaN/Infinity), booleans, null, lists, mappings.
  YAML timestamps stay strings as written; TOML dates and YAML ``!!binary`` are rejected.

Every problem raises `DocumentError` (or `SettingsRejected` for a schema mismatch) with one line
that names the file, the line where the format tells it, the key and the reason.
"""

from __future__ import annotations

import hashlib
import importlib
import math
import os
import stat
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, TypeAlias, get_args

from pydantic import BaseModel, ValidationError

from ._parsers import MAX_DOCUMENT_BYTES as MAX_DOCUMENT_BYTES
from ._parsers import MAX_YAML_ALIASES as MAX_YAML_ALIASES
from ._parsers import MAX_YAML_CHARS as MAX_YAML_CHARS
from ._parsers import MAX_YAML_NODES as MAX_YAML_NODES
from ._parsers import PARSERS, too_deep, yaml_line
from .errors import (
    ConfigError,
    DocumentError,
    ProtocolError,
    SettingsRejected,
    ValidationProblem,
    describe_validation,
    show_path,
    validation_problems,
)
from .wire import MAX_DEPTH, MAX_LEAF_DEPTH, check_json_value, flatten

Format: TypeAlias = Literal["yaml", "json", "toml"]
FORMATS: Final[tuple[str, ...]] = get_args(Format)
PathPart: TypeAlias = str | int
_SUFFIXES: Final[dict[str, Format]] = {
    ".yaml": "yaml", ".yml": "yaml", ".json": "json", ".toml": "toml",
}
_READ_CHUNK: Final = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Document:
    """A good settings document: ``data`` nested as written, ``flat`` with dotted keys."""

    origin: str
    format: Format
    data: dict[str, Any]
    flat: dict[str, Any]
    digest: str


@dataclass(frozen=True, slots=True)
class Problem:
    """One bad key: where it is (dotted path, line if known) and why."""

    key: str
    message: str
    line: int | None = None

    def render(self, origin: str) -> str:
        """``file:line: key: why`` (one line, as the CLI prints it)."""
        where = f"{origin}:{self.line}" if self.line else origin
        return f"{where}: {self.key}: {self.message}"


def digest(raw: bytes) -> str:
    """The content hash compared between reads: ``sha256:<hex>``."""
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def detect_format(path: str | os.PathLike[str], format: str | None = None) -> Format:
    """The explicit ``format`` if given, else the one the file's extension says."""
    if format is not None:
        if format not in FORMATS:
            raise ConfigError(f"unknown document format {format!r}: use yaml, json or toml")
        return format  # type: ignore[return-value]
    found = _SUFFIXES.get(Path(path).suffix.lower())
    if found is None:
        raise ConfigError(
            f"{os.fspath(path)}: cannot tell the format from the extension; "
            "use .yaml/.yml/.json/.toml or set format: yaml|json|toml"
        )
    return found


def read_bytes(path: str | os.PathLike[str], *, max_bytes: int = MAX_DOCUMENT_BYTES) -> bytes:
    """The file's bytes (through symlinks); `DocumentError` ``missing``/``read`` otherwise.

    Only a regular file of at most ``max_bytes`` is read. Anything else (a FIFO, a device, a
    directory) is refused without reading from it, and the file is opened non-blocking, so a FIFO
    swapped in at any moment cannot block the caller.
    """
    name = os.fspath(path)
    try:
        _readable(os.stat(path), name, max_bytes)
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        try:
            _readable(os.fstat(fd), name, max_bytes)  # what was opened, if swapped since
            chunks: list[bytes] = []
            size = 0
            while chunk := os.read(fd, _READ_CHUNK):
                size += len(chunk)
                if size > max_bytes:  # grew since the check
                    raise _too_big(name, size, max_bytes)
                chunks.append(chunk)
        finally:
            os.close(fd)
    except FileNotFoundError:
        raise DocumentError(f"{name}: no such file", reason="missing") from None
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise DocumentError(f"{name}: cannot read: {why}", reason="read") from None
    return b"".join(chunks)


def _readable(st: os.stat_result, name: str, max_bytes: int) -> None:
    if not stat.S_ISREG(st.st_mode):
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else (
            "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device or socket")
        raise DocumentError(f"{name}: cannot read: not a regular file ({kind})", reason="read")
    if st.st_size > max_bytes:
        raise _too_big(name, st.st_size, max_bytes)


def _too_big(name: str, size: int, max_bytes: int) -> DocumentError:
    return DocumentError(
        f"{name}: cannot read: {size} bytes is over the limit of {max_bytes} bytes", reason="read"
    )


def parse_document(raw: bytes, format: Format, *, origin: str) -> Document:
    """Parse and check ``raw``; the `Document` or a one-line `DocumentError`."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        lineno = raw[: exc.start].count(b"\n") + 1
        raise DocumentError(f"{origin}:{lineno}: not UTF-8 text (byte {exc.start})",
                            reason="read") from None
    if not text.strip():
        raise DocumentError(f"{origin}: the file is empty", reason="empty")
    data = PARSERS[format](text, origin)
    if data is None and format == "yaml":  # only comments (JSON null is the wrong type)
        raise DocumentError(f"{origin}: the document is empty", reason="empty")
    if not isinstance(data, dict):
        raise DocumentError(
            f"{origin}: the top level must be a mapping of settings, not {_kind(data)}",
            reason="type",
        )
    try:
        problem = _check_tree(data, ())
        flat = _leaves(data) if problem is None else {}
    except RecursionError:  # deeper than the parser alone could tell
        raise too_deep(origin, format) from None
    except ProtocolError as exc:  # the protocol's own limits (docs/protocol.md §2, §12)
        reason = "key" if exc.reason == "key" else "type"
        raise DocumentError(f"{origin}: {exc}", reason=reason) from None
    if problem is not None:
        reason, parts, why = problem
        if reason == "depth":
            raise too_deep(origin, format)
        line = yaml_line(text, parts) if format == "yaml" else None
        shown = parts[:-1] if reason == "key" else parts  # the key itself is in ``why``
        raise DocumentError(Problem(show_path(shown), why, line).render(origin), reason=reason)
    return Document(origin, format, data, flat, digest(raw))


def _leaves(data: dict[str, Any]) -> dict[str, Any]:
    """The document's leaves, each key and value checked against the protocol's limits (keys
    of at most 32 segments and 512 bytes, values nesting at most 32 levels, valid Unicode)."""
    flat = flatten(data)
    for key, value in flat.items():
        check_json_value(value, key, max_depth=MAX_LEAF_DEPTH)
    return flat


def schema_import_path(config_dir: str | os.PathLike[str] | None = None) -> list[str]:
    """Where a schema module is looked for before ``sys.path``: the config file's directory
    (when there is one), then the current directory."""
    dirs = [os.path.abspath(config_dir)] if config_dir is not None else []
    return list(dict.fromkeys([*dirs, os.getcwd()]))


@contextmanager
def _on_import_path(dirs: Sequence[str]) -> Iterator[None]:
    """``dirs`` first on ``sys.path`` for the duration of one import, then as before."""
    added = [d for d in dirs if d not in sys.path]
    sys.path[:0] = added
    importlib.invalidate_caches()  # a module written since the last import is found
    try:
        yield
    finally:
        for d in added:
            with suppress(ValueError):
                sys.path.remove(d)


def load_schema(spec: str, *, config_dir: str | os.PathLike[str] | None = None,
                ) -> type[BaseModel]:
    """Import the pydantic model named ``"package.module:ClassName"``.

    The module is looked for in `schema_import_path` (the config file's directory, then the
    current directory), then on ``sys.path``: the daemon and ``hotreload validate`` both import
    through here, so a schema next to ``config.yaml`` works for both.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"schema {spec!r}: use 'package.module:ClassName'")
    try:
        with _on_import_path(schema_import_path(config_dir)):
            obj: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise ConfigError(
            f"schema {spec!r}: cannot import {module_name!r}: {type(exc).__name__}: {exc}"
        ) from None
    for name in attr.split("."):
        try:
            obj = getattr(obj, name)
        except AttributeError:
            raise ConfigError(f"schema {spec!r}: {module_name!r} has no {attr!r}") from None
    if not (isinstance(obj, type) and issubclass(obj, BaseModel)):
        raise ConfigError(f"schema {spec!r}: {attr} is not a pydantic BaseModel class")
    return obj


def schema_problems(
    data: Mapping[str, Any], model: type[BaseModel], *, yaml_text: str | None = None
) -> list[Problem]:
    """Every key of ``data`` that ``model`` rejects (empty if it validates)."""
    try:
        model.model_validate(data)
    except ValidationError as exc:
        return [Problem(p.key, p.message, _line(yaml_text, p)) for p in validation_problems(exc)]
    except Exception as exc:  # a crashing validator must not take the caller down
        return [Problem("(top level)", _crashed(exc))]
    return []


def validate_document(
    data: Mapping[str, Any], model: type[BaseModel], *, origin: str = "document",
    yaml_text: str | None = None,
) -> None:
    """Raise `SettingsRejected` naming each key ``model`` rejects, and why."""
    head = f"{origin}: does not match schema {model.__name__}"
    try:
        model.model_validate(data)
    except ValidationError as exc:
        def label(p: ValidationProblem) -> str:
            line = _line(yaml_text, p)
            return f"{p.key} (line {line})" if line else p.key

        raise SettingsRejected(describe_validation(exc, origin=head, label=label)) from None
    except Exception as exc:  # a crashing validator must not take the caller down
        raise SettingsRejected(f"{head}: (top level): {_crashed(exc)}") from None


def _line(yaml_text: str | None, problem: ValidationProblem) -> int | None:
    return yaml_line(yaml_text, problem.loc) if yaml_text is not None else None


def _crashed(exc: Exception) -> str:
    return f"validation failed: {type(exc).__name__}: {exc}"


def check_document(raw: bytes, format: Format, *, origin: str,
                   model: type[BaseModel] | None = None) -> Document:
    """`parse_document` then, with a ``model``, `validate_document`."""
    doc = parse_document(raw, format, origin=origin)
    if model is not None:
        yaml_text = raw.decode("utf-8-sig") if format == "yaml" else None
        validate_document(doc.data, model, origin=origin, yaml_text=yaml_text)
    return doc


def load_document(
    path: str | os.PathLike[str], *, format: str | None = None,
    schema: str | type[BaseModel] | None = None,
    config_dir: str | os.PathLike[str] | None = None,
) -> Document:
    """Read, parse, check and validate the settings file at ``path``."""
    fmt = detect_format(path, format)
    model = load_schema(schema, config_dir=config_dir) if isinstance(schema, str) else schema
    return check_document(read_bytes(path), fmt, origin=os.fspath(path), model=model)


# --------------------------------------------------------------------------- checks


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return f"a {type(value).__name__}"


_Found: TypeAlias = tuple[str, tuple[PathPart, ...], str]


def _check_tree(node: Any, path: tuple[PathPart, ...]) -> _Found | None:
    """The first bad key or value below ``node``: (reason label, path, why)."""
    if node is None or isinstance(node, (str, bool, int)):
        return None
    if isinstance(node, float):
        return None if math.isfinite(node) else ("type", path, f"{node!r} is not a JSON number")
    if isinstance(node, (list, dict)) and len(path) >= MAX_DEPTH:
        return ("depth", path, f"nested more than {MAX_DEPTH} levels deep")
    if isinstance(node, list):
        for i, item in enumerate(node):
            found = _check_tree(item, (*path, i))
            if found is not None:
                return found
        return None
    if isinstance(node, dict):
        in_list = any(isinstance(p, int) for p in path)
        for key, value in node.items():
            if not isinstance(key, str) or not key or ("." in key and not in_list):
                return ("key", (*path, str(key)), f"key {key!r} must be a non-empty string "
                        "without '.' (nest mappings instead)")
            found = _check_tree(value, (*path, key))
            if found is not None:
                return found
        return None
    return ("type", path, f"{_kind(node)} is not a JSON value (quote it)")
