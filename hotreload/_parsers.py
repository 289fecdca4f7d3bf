"""Parsers of settings documents: strict YAML, JSON and TOML to Python data, or `DocumentError`.

Private to `hotreload.documents`. Each error is one line ``file:line:column: invalid FMT: why``;
a document nested deeper than the parser can recurse is ``file: invalid FMT: nested too deeply``.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Final

import yaml

from .errors import DocumentError

_TOML_POS: Final = re.compile(r"^(?P<msg>.*?) \(at line (?P<line>\d+), column (?P<col>\d+)\)$")


class _Loader(yaml.SafeLoader):
    """`yaml.SafeLoader` that rejects duplicate keys and leaves timestamps as strings."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:  # unhashable: the base class reports it
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    f"found duplicate key {key!r}", key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _parse_yaml(text: str, origin: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{origin}:{mark.line + 1}:{mark.column + 1}" if mark else origin
        problem = exc.problem or exc.context or "syntax error"
        raise DocumentError(f"{where}: invalid YAML: {problem}", reason="yaml") from None
    except yaml.YAMLError as exc:
        raise DocumentError(f"{origin}: invalid YAML: {exc}", reason="yaml") from None
    except RecursionError:
        raise too_deep(origin, "yaml") from None


def too_deep(origin: str, format: str) -> DocumentError:
    """The error for a document nested deeper than Python can recurse through."""
    return DocumentError(f"{origin}: invalid {format.upper()}: nested too deeply", reason=format)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _parse_json(text: str, origin: str) -> Any:
    try:
        return json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as exc:
        raise DocumentError(f"{origin}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}",
                            reason="json") from None
    except ValueError as exc:
        raise DocumentError(f"{origin}: invalid JSON: {exc}", reason="json") from None
    except RecursionError:
        raise too_deep(origin, "json") from None


def _parse_toml(text: str, origin: str) -> Any:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = _TOML_POS.match(str(exc))
        if found is None:
            raise DocumentError(f"{origin}: invalid TOML: {exc}", reason="toml") from None
        raise DocumentError(
            f"{origin}:{found['line']}:{found['col']}: invalid TOML: {found['msg']}",
            reason="toml",
        ) from None
    except RecursionError:
        raise too_deep(origin, "toml") from None


PARSERS: Final[dict[str, Callable[[str, str], Any]]] = {
    "yaml": _parse_yaml, "json": _parse_json, "toml": _parse_toml,
}


def yaml_line(text: str, parts: Sequence[str | int]) -> int | None:
    """The 1-based line of the key at ``parts`` in YAML ``text`` (best effort)."""
    try:
        node: yaml.Node | None = yaml.compose(text, Loader=_Loader)
    except (yaml.YAMLError, RecursionError):
        return None
    line: int | None = None
    for part in parts:
        if isinstance(node, yaml.MappingNode):
            match = [(k, v) for k, v in node.value if k.value == str(part)]
            if not match:
                break
            line, node = match[0][0].start_mark.line + 1, match[0][1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                break
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line
