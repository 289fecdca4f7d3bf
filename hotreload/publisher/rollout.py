"""Who runs which version: reading presence records, and judging a rollout (``publish --wait``).

Pure: `judge` takes the live presence records (docs/protocol.md §11) and says, for a version of
an epoch, which instances have applied it (or a later one) and why each other one has not.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..errors import RolloutIncomplete
from ..wire.presence import PresenceRecord

__all__ = ["Pending", "Rollout", "in_scope", "judge", "lag"]


@dataclass(frozen=True, slots=True)
class Pending:
    """An instance that has not applied the version, and why (one line)."""

    instance: PresenceRecord
    reason: str


@dataclass(frozen=True, slots=True)
class Rollout:
    """Where a version stands across the live instances of a namespace (in scope)."""

    namespace: str
    version: int
    epoch: str | None
    applied: tuple[PresenceRecord, ...] = ()
    pending: tuple[Pending, ...] = field(default=())

    @property
    def complete(self) -> bool:
        return not self.pending

    def describe(self) -> list[str]:
        """Human lines: a summary, then one line per instance that has not applied it."""
        total = len(self.applied) + len(self.pending)
        head = (f"{self.namespace} v{self.version}: applied by {len(self.applied)} of {total} "
                "instance" + ("" if total == 1 else "s"))
        return [head] + [f"  {p.instance.instance} ({p.instance.service or 'no service'}): "
                         f"{p.reason}" for p in self.pending]

    def raise_for_incomplete(self) -> None:
        if self.pending:
            raise RolloutIncomplete("; ".join(self.describe()), rollout=self)


def in_scope(record: PresenceRecord, service: str | None) -> bool:
    """Whether an instance belongs to ``service`` (a glob; None: every instance)."""
    return service is None or fnmatch.fnmatchcase(record.service, service)


def lag(record: PresenceRecord, version: int, epoch: str | None) -> int | None:
    """How many versions ``record`` is behind ``version`` of ``epoch`` (None: another epoch)."""
    if record.epoch != epoch:
        return None
    return max(0, version - record.version)


def judge(namespace: str, records: Iterable[PresenceRecord], version: int, epoch: str | None,
          *, service: str | None = None, now: float | None = None) -> Rollout:
    """Which instances in scope run ``version`` of ``epoch`` (or later), and why not the rest."""
    now = time.time() if now is None else now
    applied: list[PresenceRecord] = []
    pending: list[Pending] = []
    for rec in sorted(records, key=lambda r: r.instance):
        if not in_scope(rec, service):
            continue
        if rec.epoch == epoch and rec.version >= version:
            applied.append(rec)
            continue
        rejected = rec.rejected or {}
        rejected_version = rejected.get("version")
        if (rec.epoch == epoch and isinstance(rejected_version, int)
                and rejected_version >= version):
            reason = f"rejected v{rejected_version} by its model: {rejected.get('reason')}"
        elif rec.link == "down":
            reason = f"disconnected (last report {now - rec.refreshed_at:.0f}s ago, at v" \
                     f"{rec.version})"
        elif rec.epoch != epoch:
            reason = f"on another history (epoch {rec.epoch}, v{rec.version})"
        else:
            reason = f"behind: at v{rec.version}"
            if rec.received_version >= version:
                reason += f" (received v{rec.received_version}, not applied)"
        pending.append(Pending(rec, reason))
    return Rollout(namespace, version, epoch, tuple(applied), tuple(pending))
