"""The seam between a source of desired state and the daemon that reconciles Redis to it.

A source is level-triggered: whenever it has reason to believe something changed (a file event,
a NOTIFY, a reconnect, a periodic tick) it re-reads its whole desired state for the namespaces it
owns and hands it to the sink. The sink diffs against what is published, so repeating the same
state is free and a lost notification costs latency, never correctness.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol


class Sink(Protocol):
    """What the daemon offers its sources."""

    async def desired(self, namespace: str, document: Mapping[str, Any], *, source: str) -> None:
        """The full desired settings of ``namespace`` (nested document) are now ``document``."""

    async def invalidate(
        self,
        namespace: str,
        keys: Sequence[str] = (),
        prefixes: Sequence[str] = (),
        *,
        everything: bool = False,
        source: str,
    ) -> None:
        """Broadcast a cache invalidation to ``namespace``'s subscribers."""

    def rejected(self, source: str, reason: str, detail: str) -> None:
        """A document or payload was rejected: count it (metrics), show it (status) and log it
        (one ``rejected`` line: sources do not log their rejections themselves).

        ``reason`` is a short stable label (``yaml``, ``schema``, ``missing``, ``payload``...),
        ``detail`` the one-line human message (file, line/key and why).
        """

    def accepted(self, source: str) -> None:
        """The source's last read was good again (clears its error in status)."""


class Source(Protocol):
    """A source of desired state; `run` returns only when cancelled.

    A source reports to the sink under its ``name``; one that reports under other names too
    (the file source: ``file:<path>`` per file) lists them in an optional ``reporters``
    attribute, so the daemon's status shows them as part of this source.
    """

    name: str

    async def run(self, sink: Sink) -> None:
        """Watch for changes and report desired state to ``sink`` until cancelled."""

    async def reconcile(self, sink: Sink) -> None:
        """Re-read everything now and report it (start-up, reconnect, periodic)."""
