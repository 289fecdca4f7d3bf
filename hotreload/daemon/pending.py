"""The reconciler's bookkeeping (no I/O): latest desired documents, merged invalidations,
each namespace's publish failures, and each source's error and rejection counts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._backoff import Backoff

#: A merged pending invalidation with more keys and prefixes than this becomes "everything".
MAX_PENDING_KEYS = 1000


@dataclass(slots=True)
class Desired:
    document: Mapping[str, Any]
    source: str
    since: float  # when the oldest unpublished report arrived (monotonic)


@dataclass(slots=True)
class PendingInvalidation:
    keys: set[str] = field(default_factory=set)
    prefixes: set[str] = field(default_factory=set)
    everything: bool = False
    source: str = ""
    since: float = 0.0

    def merge(self, keys: Sequence[str], prefixes: Sequence[str], everything: bool) -> None:
        self.keys.update(keys)
        self.prefixes.update(prefixes)
        self.everything = self.everything or everything
        if self.everything or len(self.keys) + len(self.prefixes) > MAX_PENDING_KEYS:
            self.everything = True
            self.keys.clear()
            self.prefixes.clear()


@dataclass(slots=True)
class SourceState:
    """What status shows of one source: its current error and rejection counts by reason."""

    last_error: dict[str, Any] | None = None
    rejections: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"last_error": self.last_error, "rejections": dict(self.rejections)}


@dataclass(slots=True)
class NamespaceFailure:
    """Why publishing one namespace fails (not an outage) and when to try it again."""

    backoff: Backoff
    detail: str = ""
    retry_at: float = 0.0  # monotonic
    seen: set[str] = field(default_factory=set)  # details already counted as rejections
