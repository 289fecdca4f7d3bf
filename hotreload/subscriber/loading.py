"""Turning what a (re)load read from the server into one verified state (protocol §8 step 2).

Pure: the transport reads (`RawLoad`, `RawLeaves`), this module checks and assembles, the
subscriber decides whether to adopt. A load that cannot be trusted raises `ProtocolError` with
the reason; a checkpoint that cannot serve (missing, another epoch, a tail that is not
contiguous) returns `NEED_LEAVES`, and the caller reads the leaves instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from ..errors import ProtocolError
from ..transport import RawLeaves, RawLoad
from ..wire import (
    EMPTY_CHECKSUM,
    Canary,
    Change,
    Digester,
    Envelope,
    InvalidationHead,
    check_key,
    decode_checkpoint,
    decode_event,
    decode_head,
    decode_invalidation_head,
    decode_legacy_snapshot,
    parse_leaf_text,
    unflatten,
)
from ..wire.values import DECODER
from .frozen import index_tree, patch_tree
from .state import Tree

#: The most change-log entries a load applies on top of a checkpoint (protocol §12).
MAX_TAIL: Final = 10_000

@dataclass(frozen=True, slots=True)
class State:
    """A namespace's state as loaded: head fields, and the settings as a `Tree` (the nested
    document, its leaves, and the index of every path, built in one pass)."""

    epoch: str | None
    version: int
    checksum: str
    tree: Tree
    canary: Canary | None
    inv: InvalidationHead | None
    legacy: bool = False
    updated_at: float = 0.0


class _NeedLeaves:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_LEAVES"


NEED_LEAVES: Final = _NeedLeaves()


def assemble(ns: str, raw: RawLoad, *, key: bytes | None, max_bytes: int) -> State | _NeedLeaves:
    """The state described by a load's head, checkpoint and log tail (or `NEED_LEAVES`)."""
    inv = decode_invalidation_head(raw.inv)
    head = decode_head(ns, raw.meta, key=key, max_bytes=max_bytes)
    if head is None:
        snap = decode_legacy_snapshot(ns, raw.legacy, key=key) if raw.legacy else None
        if snap is not None:  # protocol 1, not migrated yet (§13): epoch None, its version
            return State(None, snap.version, EMPTY_CHECKSUM, _tree(snap.settings), None, inv,
                         legacy=True)
        return State(None, 0, EMPTY_CHECKSUM, _EMPTY, None, inv)
    try:
        ckpt = decode_checkpoint(ns, raw.checkpoint, key=key)
    except ProtocolError:
        return NEED_LEAVES  # a damaged checkpoint: the leaves are the truth
    if ckpt is None or ckpt.epoch != head.epoch or ckpt.version > head.version:
        return NEED_LEAVES
    want = head.version - ckpt.version
    if want > MAX_TAIL or len(raw.tail) != want:
        return NEED_LEAVES
    tree = _tree(ckpt.settings)
    checksum = ckpt.checksum
    digester = Digester(key)
    expected = ckpt.version + 1
    for data in raw.tail:
        env = decode_event(data, key=key, max_bytes=max_bytes, namespace=ns)
        _check_tail_event(ns, env, head.epoch, expected)
        if env.kind == "config":
            checksum = digester.advance(checksum, env.changes)
            if checksum != env.checksum:
                raise ProtocolError(f"log of {ns!r}: v{env.version} does not give its checksum",
                                    reason="checksum")
            tree = _patched(tree, env.value_changes())
        expected += 1
    if checksum != head.checksum:
        raise ProtocolError(f"{ns!r}: checkpoint and log do not give the head's checksum",
                            reason="checksum")
    return State(head.epoch, head.version, checksum, tree, head.canary, inv,
                 updated_at=head.updated_at)


def assemble_leaves(ns: str, raw: RawLeaves, *, key: bytes | None,
                    inv: InvalidationHead | None = None) -> State:
    """The state described by the head and every leaf (the slow, always available path)."""
    head = decode_head(ns, raw.meta, key=key)
    if head is None:
        return State(None, 0, EMPTY_CHECKSUM, _EMPTY, None, inv)
    texts = {_text(k): _text(v) for k, v in raw.leaves.items()}
    if len(texts) != head.count:
        raise ProtocolError(f"{ns!r}: the head counts {head.count} leaves, the server holds "
                            f"{len(texts)}", reason="checksum")
    checksum = Digester(key).checksum_of(texts)
    if checksum != head.checksum:
        raise ProtocolError(f"{ns!r}: the leaves do not give the head's checksum",
                            reason="checksum")
    flat = _parse_texts(ns, texts)
    return State(head.epoch, head.version, checksum, _tree(unflatten(flat)), head.canary, inv,
                 updated_at=head.updated_at)


_EMPTY: Final[Tree] = ({}, {}, {})


def _tree(nested: dict[str, Any]) -> Tree:
    flat, index = index_tree(nested)
    return nested, flat, index


def _patched(tree: Tree, changes: tuple[Change, ...]) -> Tree:
    """``tree`` with one event's changes: only the changed paths copied, or rebuilt."""
    nested, flat, index = tree
    new_flat = dict(flat)
    for ch in changes:
        if ch.op == "set":
            new_flat[ch.key] = ch.new
        else:
            new_flat.pop(ch.key, None)
    patched = patch_tree(nested, index, changes)
    if patched is None:
        return _tree(unflatten(new_flat))
    return patched[0], new_flat, patched[1]


def _check_tail_event(ns: str, env: Envelope, epoch: str, expected: int) -> None:
    if env.kind == "invalidate" or env.epoch != epoch or env.version != expected:
        raise ProtocolError(f"log of {ns!r} is not contiguous at v{expected}", reason="log")


def _parse_texts(ns: str, texts: dict[str, str]) -> dict[str, Any]:
    """Every leaf checked and parsed: keys one by one (cached), texts with one call of the
    strict C decoder when they are plain (each text exactly one value: the count tells), else
    one by one to name the bad one."""
    for k in texts:
        check_key(k)
    keys = list(texts)
    joined = "[" + ",".join(texts.values()) + "]"
    if "{" not in joined:  # no object anywhere: nothing nests past MAX_LEAF_DEPTH unseen
        try:
            values = DECODER.decode(joined)
            if type(values) is list and len(values) == len(keys) and joined.count("[") <= 1:
                return dict(zip(keys, values, strict=True))
        except (ValueError, RecursionError):
            pass
    out: dict[str, Any] = {}
    for k, text in texts.items():
        out[k] = parse_leaf_text(text, f"{ns!r}: leaf {k[:80]!r}")
    return out


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value
