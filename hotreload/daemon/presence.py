"""Subscriber gauges from presence records: who is behind, rejecting, or cut off.

Subscribers export no metrics of their own; each writes a presence record (protocol §11) every
``version_check_interval``. The daemon reads the records of the namespaces it serves every
`PRESENCE_INTERVAL` seconds, with the namespace's head, and sets the ``hotreload_instances*``
gauges (docs/daemon.md, docs/operations.md).

An instance is **behind** when the version it reports is older than the head the daemon had
already seen before that instance last refreshed its record: it had its chance to catch up and
did not (allowing `HEAD_GRACE` for the event in flight). A record refreshed before the head
moved is not counted, so a publish does not make
every pod look behind until its next refresh, and a pod stuck while the namespace keeps changing
still is (the daemon keeps the heads it saw for `HEAD_MEMORY` seconds). Clocks of pods and daemon
are compared: keep them synchronised (NTP), as everywhere in Kubernetes.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from ..errors import HotReloadError, describe_error
from ..transport import Transport
from ..wire import decode_head_triplet
from ..wire.presence import PresenceRecord, decode_presence
from .metrics import Metrics

__all__ = ["HEAD_GRACE", "HEAD_MEMORY", "PRESENCE_INTERVAL", "HeadLog", "PresenceCounts",
           "count_presence", "refresh_presence"]

log = logging.getLogger("hotreload.daemon.presence")

#: Seconds between two readings of the presence records (and heads) of every namespace.
PRESENCE_INTERVAL: Final = 5.0
#: How long the daemon remembers the heads it saw (longer than any refresh interval).
HEAD_MEMORY: Final = 600.0
#: A record refreshed this soon after the daemon saw a head may not show it yet (the event was
#: in flight): it is compared with the head seen this many seconds earlier.
HEAD_GRACE: Final = 1.0


@dataclass(frozen=True, slots=True)
class PresenceCounts:
    """What the gauges of one namespace show."""

    instances: int = 0
    behind: int = 0
    rejected: int = 0
    link_down: int = 0
    max_lag: int = 0


class HeadLog:
    """The heads of one namespace as the daemon saw them: ``(seen_at, epoch, version)``."""

    def __init__(self, memory: float = HEAD_MEMORY) -> None:
        self.memory = memory
        self._seen: collections.deque[tuple[float, str | None, int]] = collections.deque()

    def observe(self, epoch: str | None, version: int, now: float) -> None:
        if not self._seen or self._seen[-1][1:] != (epoch, version):
            self._seen.append((now, epoch, version))
        while len(self._seen) > 1 and self._seen[1][0] < now - self.memory:
            self._seen.popleft()  # keep the newest head older than the memory

    @property
    def current(self) -> tuple[str | None, int] | None:
        return self._seen[-1][1:] if self._seen else None

    def expected_at(self, t: float) -> tuple[str | None, int] | None:
        """The newest head seen at or before ``t`` (None: none seen by then)."""
        found = None
        for seen_at, epoch, version in self._seen:
            if seen_at > t:
                break
            found = (epoch, version)
        return found


def count_presence(records: Iterable[PresenceRecord], heads: HeadLog) -> PresenceCounts:
    """The gauges' values for one namespace's live records (pure)."""
    instances = behind = rejected = link_down = max_lag = 0
    current = heads.current
    for rec in records:
        instances += 1
        rejected += rec.rejected is not None
        link_down += rec.link != "up"
        expected = heads.expected_at(rec.refreshed_at - HEAD_GRACE)
        if expected is not None and expected[1] > 0 and (
                rec.epoch != expected[0] or rec.version < expected[1]):
            behind += 1
        if current is not None and rec.epoch == current[0]:
            max_lag = max(max_lag, current[1] - rec.version)
    return PresenceCounts(instances, behind, rejected, link_down, max_lag)


async def refresh_presence(transport: Transport, metrics: Metrics, namespaces: Iterable[str],
                           heads: dict[str, HeadLog], *,
                           clock: Callable[[], float] = time.time) -> None:
    """Read each namespace's head and presence records and set its gauges. A namespace that
    cannot be read keeps its previous values (``hotreload_redis_up`` tells why)."""
    for ns in sorted(set(namespaces)):
        try:
            raw = await transport.head(ns)
            epoch, version, _ = decode_head_triplet(raw.meta_epoch, raw.meta_version,
                                                    raw.meta_checksum)
            log_ = heads.setdefault(ns, HeadLog())
            log_.observe(epoch, version, clock())
            records = [r for r in map(decode_presence, await transport.read_presence(ns))
                       if r is not None]
        except HotReloadError as exc:
            log.debug("presence of %s not read: %s", ns, describe_error(exc))
            continue
        counts = count_presence(records, log_)
        metrics.instances.labels(namespace=ns).set(counts.instances)
        metrics.instances_behind.labels(namespace=ns).set(counts.behind)
        metrics.instances_rejected.labels(namespace=ns).set(counts.rejected)
        metrics.instances_link_down.labels(namespace=ns).set(counts.link_down)
        metrics.instances_max_lag.labels(namespace=ns).set(counts.max_lag)
