"""What can still be read of a damaged namespace (for `hotreload repair --keep-readable`). No I/O.

`salvage` takes what the server's keys hold (`RawSurvey`), describes it, and keeps every leaf
that is still a valid leaf: a UTF-8 key that is a valid settings key, a UTF-8 text that is valid
leaf JSON, and no other kept leaf below it. When the leaves cannot be read at all (the key is
absent or not a hash), it falls back to the checkpoint's document if that one checks out.

What is kept is what is *readable*, not what is authentic: leaves are not signed one by one
(the head's checksum covers them all, and the head may be what is damaged). Review the list of
kept and dropped keys that `hotreload repair` shows before confirming.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from ..errors import ProtocolError
from ..transport import RawSurvey
from ..wire import check_key, decode_checkpoint, decode_head, parse_leaf_text, unflatten

From = Literal["leaves", "checkpoint", "nothing"]


@dataclass(frozen=True, slots=True)
class Salvage:
    """The readable part of a namespace's state on the server.

    ``document``: the nested settings made of the leaves kept (or of the checkpoint, see
    ``taken_from``); ``dropped``: ``(key, why)`` for each leaf left out; ``found``: one line
    per key of the namespace saying what it holds; ``healthy``: the head and leaves read and
    check out (nothing to repair)."""

    namespace: str
    document: dict[str, Any]
    kept: int
    dropped: tuple[tuple[str, str], ...]
    found: tuple[str, ...]
    taken_from: From
    healthy: bool


def salvage(namespace: str, raw: RawSurvey, *, key: bytes | None, max_bytes: int,
            checksum_of: Any) -> Salvage:
    """The `Salvage` of ``raw``; ``checksum_of(texts)`` is the deployment's checksum (§3)."""
    found: list[str] = []
    head_ok = _describe_head(namespace, raw, key, max_bytes, found)
    kept: dict[str, str] = {}
    values: dict[str, Any] = {}
    dropped: list[tuple[str, str]] = []
    leaves_type = raw.types.get("leaves", "none")
    if leaves_type == "hash":
        for field, text in raw.leaves.items():
            name, problem = _leaf(field, text)
            if problem is not None:
                dropped.append((name, problem))
                continue
            kept[name] = text.decode("utf-8")
            values[name] = parse_leaf_text(kept[name])
        for upper in _prefixes(kept):
            dropped.append((upper, "a value where keys below it are also set (dropped, the "
                                   "keys below it kept)"))
            del kept[upper]
            del values[upper]
        found.append(f"leaves: {len(raw.leaves)} fields, {len(kept)} readable")
    elif leaves_type == "none":
        found.append("leaves: absent")
    else:
        found.append(f"leaves: a {leaves_type}, not a hash (unreadable)")
    healthy = head_ok is not None and leaves_type in ("hash", "none") and not dropped and (
        len(kept) == head_ok[1] and checksum_of(kept) == head_ok[2])
    if head_ok is not None and not healthy:
        found.append("leaves: do not match the head's count and checksum")
    ckpt_doc = _describe_checkpoint(namespace, raw, key, found)
    log_type = raw.types.get("log", "none")
    found.append("change log: " + ("absent" if log_type == "none" else f"a {log_type}"))
    dropped.sort()
    if kept or leaves_type == "hash":
        return Salvage(namespace, unflatten(values), len(kept), tuple(dropped), tuple(found),
                       "leaves", healthy)
    if ckpt_doc is not None:
        return Salvage(namespace, ckpt_doc, 0, tuple(dropped), tuple(found), "checkpoint",
                       healthy)
    return Salvage(namespace, {}, 0, tuple(dropped), tuple(found), "nothing", healthy)


def _describe_head(namespace: str, raw: RawSurvey, key: bytes | None, max_bytes: int,
                   found: list[str]) -> tuple[str, int, str] | None:
    """Describe the head; (epoch, count, checksum) when it is readable."""
    kind = raw.types.get("meta", "none")
    if kind == "none":
        found.append("head: absent (never published, or lost)")
        return None
    if kind != "hash":
        found.append(f"head: a {kind}, not a hash (unreadable)")
        return None
    try:
        head = decode_head(namespace, raw.meta, key=key, max_bytes=max_bytes)
    except ProtocolError as exc:
        found.append(f"head: unreadable ({exc})")
        return None
    if head is None:  # pragma: no cover - a hash with fields is never "absent"
        found.append("head: empty")
        return None
    found.append(f"head: v{head.version} of epoch {head.epoch}, {head.count} keys")
    return head.epoch, head.count, head.checksum


def _describe_checkpoint(namespace: str, raw: RawSurvey, key: bytes | None,
                         found: list[str]) -> dict[str, Any] | None:
    kind = raw.types.get("checkpoint", "none")
    if kind != "hash":
        found.append("checkpoint: absent" if kind == "none"
                     else f"checkpoint: a {kind}, not a hash (unreadable)")
        return None
    try:
        ckpt = decode_checkpoint(namespace, raw.checkpoint, key=key)
    except ProtocolError as exc:
        found.append(f"checkpoint: unreadable ({exc})")
        return None
    if ckpt is None:  # pragma: no cover - a hash with fields is never "absent"
        return None
    found.append(f"checkpoint: v{ckpt.version} of epoch {ckpt.epoch}, {ckpt.count} keys")
    document: dict[str, Any] = ckpt.settings
    return document


def _leaf(field: bytes, text: bytes) -> tuple[str, str | None]:
    """The leaf's key (as shown) and why it cannot be kept (None: it can)."""
    try:
        name = field.decode("utf-8")
    except UnicodeDecodeError:
        return field.decode("utf-8", "replace"), "the key is not UTF-8"
    try:
        check_key(name)
    except ProtocolError as exc:
        return name, str(exc)
    try:
        parse_leaf_text(text.decode("utf-8"), f"the value of {name!r}")
    except UnicodeDecodeError:
        return name, "the value is not UTF-8"
    except ProtocolError as exc:
        return name, str(exc)
    return name, None


def _prefixes(keys: dict[str, str]) -> list[str]:
    """The keys that are a dotted prefix of another key."""
    out = []
    for name in keys:
        i = name.find(".")
        while i > 0:
            if name[:i] in keys:
                out.append(name[:i])
            i = name.find(".", i + 1)
    return sorted(set(out))
