"""The state a subscriber keeps: the current settings, its counters, the link's health."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Current", "Link", "Stats", "Tree"]


@dataclass(frozen=True, slots=True)
class Current:
    version: int
    flat: dict[str, Any]
    nested: dict[str, Any]
    settings: Any
    index: dict[str, Any]


Tree = tuple[dict[str, Any], dict[str, Any], dict[str, Any]]  # nested, flat, index


@dataclass(slots=True)
class Stats:
    events: int = 0
    invalidations: int = 0
    rejected_messages: int = 0
    rejected_settings: int = 0
    resyncs: int = 0
    replays: int = 0
    reloads: int = 0
    reconnects: int = 0
    heartbeat_timeouts: int = 0
    mismatches: int = 0
    holds: int = 0
    last_rejected_version: int = 0


@dataclass(slots=True)
class Link:
    connected: bool = False
    last_rx: float = 0.0
    ping_sent: float | None = None
    next_version_check: float = 0.0
    down_logged: bool = False
    ever_connected: bool = False
    last_failure: str = ""
    errors: int = field(default=0)
    behind_target: int | None = None
    behind_check: float = 0.0
