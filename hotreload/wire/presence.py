"""Presence records: who follows a namespace, at which version (docs/protocol.md §11).

A subscriber writes its record when it starts, every backstop interval (in the same round trip
as its version check), when its link state or last rejection changes, and right after applying
an event that asks for an acknowledgement; never per ordinary event. Readers (`hotreload
status`, ``publish --wait``, the console) decode them with `decode_presence`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Literal

__all__ = ["LinkState", "PresenceRecord", "decode_presence"]

LinkState = Literal["up", "down", "stale"]


@dataclass(frozen=True, slots=True)
class PresenceRecord:
    """One subscriber's report of itself."""

    instance: str
    service: str
    version: int
    epoch: str | None
    received_version: int
    link: LinkState
    canary: str | None = None
    rejected: dict[str, Any] | None = None
    started_at: float = 0.0
    refreshed_at: float = 0.0
    host: str = ""
    pid: int = 0
    applied_at: float = 0.0
    """When this instance applied ``version`` (Unix time; 0: unknown)."""

    def encode(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":"), ensure_ascii=False).encode()


_LINKS: dict[str, LinkState] = {"up": "up", "down": "down", "stale": "stale"}


def decode_presence(data: bytes | str) -> PresenceRecord | None:
    """A record as written by `PresenceRecord.encode`; None when it is not one (skipped)."""
    try:
        doc = json.loads(data)
        if not isinstance(doc, dict):
            return None
        rejected = doc.get("rejected")
        return PresenceRecord(
            instance=str(doc["instance"]), service=str(doc.get("service") or ""),
            version=int(doc["version"]), epoch=doc.get("epoch") or None,
            received_version=int(doc.get("received_version") or doc["version"]),
            link=_LINKS.get(str(doc.get("link")), "stale"),
            canary=doc.get("canary") or None,
            rejected=rejected if isinstance(rejected, dict) else None,
            started_at=float(doc.get("started_at") or 0.0),
            refreshed_at=float(doc.get("refreshed_at") or 0.0),
            host=str(doc.get("host") or ""), pid=int(doc.get("pid") or 0),
            applied_at=float(doc.get("applied_at") or 0.0))
    except (ValueError, KeyError, TypeError):
        return None
