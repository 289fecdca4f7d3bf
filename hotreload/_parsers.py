"""Parsers of settings documents: strict YAML, JSON and TOML to Python data, or `DocumentError`.

Private to `hotreload.documents` (`BoundedLoader` also reads ``config.yaml``). Each error is one
line ``file:line:column: invalid FMT: why``; a document nested deeper than `MAX_DEPTH` (or than
the parser can recurse) is ``file: invalid FMT: nested too deeply``.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Final

import yaml

from .errors import DocumentError
from .wire import MAX_DEPTH

MAX_DOCUMENT_BYTES: Final = 16 * 1024 * 1024
"""A settings file larger than this (16 MiB) is rejected (``read``) without being read."""
MAX_YAML_ALIASES: Final = 10_000
"""A YAML document may use aliases (``*name``) at most this many times."""
MAX_YAML_NODES: Final = 1_000_000
"""A YAML document may hold at most this many nodes, every alias expanded: an anchor bomb of a
few hundred bytes ("billion laughs") is rejected while parsing, before any work on what it
expands to."""
MAX_YAML_CHARS: Final = MAX_DOCUMENT_BYTES
"""... and at most this many characters of scalars (keys and values), every alias expanded."""

_TOML_POS: Final = re.compile(r"^(?P<msg>.*?) \(at line (?P<line>\d+), column (?P<col>\d+)\)$")


class _TooDeep(yaml.composer.ComposerError):
    """A YAML document nests more than `MAX_DEPTH` collections."""


class _TooLarge(yaml.composer.ComposerError):
    """A YAML document expands (through its aliases) past a limit."""


class BoundedLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that bounds what a document expands to while composing it.

    Before any Python object is built, the document must stay within `MAX_DEPTH` levels,
    `MAX_YAML_ALIASES` alias uses, and (with every alias expanded, as the data will be)
    `MAX_YAML_NODES` nodes and `MAX_YAML_CHARS` characters of scalars; an alias to a node that
    contains it (a recursive structure, not JSON) is refused. Each node is sized once (an alias
    reuses its anchor's size), so the check costs O(document), not O(expansion).
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._sizes: dict[yaml.Node, tuple[int, int]] = {}  # node -> (nodes, chars) expanded
        self._aliases = 0
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event: Any = self.peek_event()  # type: ignore[no-untyped-call]
        mark: Any = event.start_mark
        if isinstance(event, yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_YAML_ALIASES:
                raise _TooLarge(None, None, f"more than {MAX_YAML_ALIASES} aliases", mark)
            node = super().compose_node(parent, index)
            if node is not None and node not in self._sizes:
                raise yaml.composer.ComposerError(
                    None, None, f"alias *{event.anchor} is inside its own anchor (not JSON)", mark)
            return node
        nested = isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent))
        if nested:
            if self._depth >= MAX_DEPTH:
                raise _TooDeep(None, None, "nested too deeply", mark)
            self._depth += 1
        try:
            node = super().compose_node(parent, index)
        finally:
            if nested:
                self._depth -= 1
        if node is not None:
            self._size(node)
        return node

    def _size(self, node: yaml.Node) -> None:
        sizes = self._sizes
        if isinstance(node, yaml.ScalarNode):
            nodes, chars = 1, len(node.value)
        else:
            children = ([c for pair in node.value for c in pair]
                        if isinstance(node, yaml.MappingNode) else node.value)
            nodes, chars = 1, 0
            for child in children:
                n, c = sizes[child]
                nodes += n
                chars += c
        sizes[node] = (nodes, chars)
        if nodes > MAX_YAML_NODES:
            raise _TooLarge(None, None, f"with its aliases expanded, the document holds more "
                            f"than {MAX_YAML_NODES} nodes", node.start_mark)
        if chars > MAX_YAML_CHARS:
            raise _TooLarge(None, None, f"with its aliases expanded, the document holds more "
                            f"than {MAX_YAML_CHARS} characters of text", node.start_mark)


def load_yaml(text: str) -> Any:
    """`yaml.safe_load` within the bounds of `BoundedLoader` (for ``config.yaml``)."""
    return yaml.load(text, Loader=BoundedLoader)  # a SafeLoader subclass


class _Loader(BoundedLoader):
    """`BoundedLoader` that rejects duplicate keys and leaves timestamps as strings."""

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
    except _TooDeep:
        raise too_deep(origin, "yaml") from None
    except _TooLarge as exc:
        mark = exc.problem_mark
        where = f"{origin}:{mark.line + 1}:{mark.column + 1}" if mark else origin
        raise DocumentError(f"{where}: YAML too large: {exc.problem}",
                            reason="too_large") from None
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
