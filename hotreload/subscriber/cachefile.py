"""The last-known-good file: a subscriber's last applied settings, kept on local disk.

With ``cache_file`` set, a subscriber rewrites the file (atomically, checksummed) shortly after
each change it applies, and when Redis is unreachable at start it starts from the file instead
of failing (its link state says ``stale`` until it has resynced with Redis). A file that is
missing, unreadable, of another namespace, or whose checksum does not match is ignored with one
warning.

Format: the first line is the hex SHA-256 of the rest; the rest is one JSON object
``{"format": "hotreload-lkg/1", "namespace", "epoch", "version", "checksum", "settings",
"written_at"}``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from ..errors import ProtocolError
from ..wire import MAX_DEPTH, loads

__all__ = ["LastKnownGood", "read_cache_file", "write_cache_file"]

FORMAT: Final = "hotreload-lkg/1"
#: A cache file larger than this is not read (it is not one this library wrote).
MAX_FILE_BYTES: Final = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class LastKnownGood:
    """What a cache file holds."""

    namespace: str
    epoch: str | None
    version: int
    checksum: str
    settings: dict[str, Any]
    written_at: float


def write_cache_file(path: str | os.PathLike[str], lkg: LastKnownGood) -> None:
    """Write ``lkg`` to ``path`` atomically: a temporary file in the same directory, fsync'd,
    then renamed over the old one (readers see the old file or the new one, never half)."""
    body = json.dumps({
        "format": FORMAT, "namespace": lkg.namespace, "epoch": lkg.epoch,
        "version": lkg.version, "checksum": lkg.checksum, "settings": lkg.settings,
        "written_at": lkg.written_at}, ensure_ascii=False, separators=(",", ":")).encode()
    data = hashlib.sha256(body).hexdigest().encode() + b"\n" + body
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent or ".")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def read_cache_file(path: str | os.PathLike[str], namespace: str) -> LastKnownGood:
    """The settings in ``path``; raises `ProtocolError` (with why) when it cannot be used."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ProtocolError(f"cannot read the cache file {path}: {exc.strerror}",
                            reason="read") from None
    if len(data) > MAX_FILE_BYTES:
        raise ProtocolError(f"the cache file {path} is too large", reason="size")
    digest, sep, body = data.partition(b"\n")
    if not sep or hashlib.sha256(body).hexdigest().encode() != digest.strip():
        raise ProtocolError(f"the cache file {path} is damaged (its checksum does not match)",
                            reason="checksum")
    doc = loads(body, max_depth=MAX_DEPTH + 2, what=f"the cache file {path}")
    if type(doc) is not dict or doc.get("format") != FORMAT:
        raise ProtocolError(f"{path} is not a hotreload cache file", reason="format")
    if doc.get("namespace") != namespace:
        raise ProtocolError(f"the cache file {path} holds namespace {doc.get('namespace')!r},"
                            f" not {namespace!r}", reason="namespace")
    settings, version, epoch = doc.get("settings"), doc.get("version"), doc.get("epoch")
    if (type(settings) is not dict or type(version) is not int or version < 0
            or (epoch is not None and type(epoch) is not str)
            or type(doc.get("checksum")) is not str):
        raise ProtocolError(f"the cache file {path} is malformed", reason="format")
    written = doc.get("written_at")
    return LastKnownGood(namespace, epoch, version, doc["checksum"], settings,
                         float(written) if isinstance(written, (int, float)) else time.time())
