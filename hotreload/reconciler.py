"""The daemon's `Sink`: reconciles Redis to the latest desired state of every namespace.

Sources report whole documents; the reconciler keeps only the **latest** one per namespace and a
single merged pending invalidation per namespace, and one worker publishes them with
`AsyncPublisher.replace` / `.invalidate` (idempotent: an unchanged document publishes nothing).
While Redis is down nothing is lost and nothing is replayed: the worker retries with capped,
jittered backoff, and on recovery publishes the latest document of each namespace as one event.
It publishes only while its gate is open (the daemon opens it while it is the leader).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

from . import protocol as p
from ._backoff import Backoff
from ._pending import Desired, PendingInvalidation, SourceState
from .connection import REDIS_ERRORS, describe_error
from .errors import BackendError, HotReloadError
from .metrics import Metrics
from .publisher import PublishResult
from .sources.base import Sink

log = logging.getLogger("hotreload.reconciler")

#: Seconds between Redis probes while idle, and the deadline of each probe.
PROBE_INTERVAL = 1.0
PROBE_TIMEOUT = 2.0
#: Errors meaning "Redis is unreachable": keep the state pending and retry with backoff.
_DOWN_ERRORS: tuple[type[BaseException], ...] = (BackendError, *REDIS_ERRORS)
_PROBE_ERRORS: tuple[type[BaseException], ...] = (HotReloadError, TimeoutError, *REDIS_ERRORS)


class PublisherLike(Protocol):
    """The part of `AsyncPublisher` the reconciler uses (a fake of it serves unit tests)."""

    async def replace(self, document: Mapping[str, Any], *, namespace: str | None = None,
                      source: str | None = None) -> PublishResult: ...

    async def invalidate(self, keys: Sequence[str] = (), prefixes: Sequence[str] = (), *,
                         everything: bool = False, namespace: str | None = None,
                         source: str | None = None) -> PublishResult: ...

    async def version(self, namespace: str | None = None) -> int: ...


class Reconciler(Sink):
    """Implements `Sink`; `run()` is the publishing worker (run it as a task)."""

    def __init__(
        self,
        publisher: PublisherLike,
        metrics: Metrics,
        *,
        ping: Callable[[], Awaitable[object]],
        backoff_max: float,
        on_reconnect: Callable[[], None] | None = None,
        probe_interval: float = PROBE_INTERVAL,
    ) -> None:
        self._publisher = publisher
        self._metrics = metrics
        self._ping = ping
        self._backoff = Backoff(backoff_max)
        self._on_reconnect = on_reconnect
        self._probe_interval = probe_interval
        self._desired: dict[str, Desired] = {}
        self._dirty: set[str] = set()
        self._invalidations: dict[str, PendingInvalidation] = {}
        self._inflight: set[str] = set()
        self._wake = asyncio.Event()
        self._gate = False
        self.redis_up: bool | None = None  # None until the first probe
        self.redis_error: str | None = None
        self.versions: dict[str, int] = {}
        self.sources: dict[str, SourceState] = {}

    # ------------------------------------------------------------------ the Sink protocol

    async def desired(self, namespace: str, document: Mapping[str, Any], *, source: str) -> None:
        try:
            p.check_name(namespace, "namespace")
            p.check_json_value(document, "document")
            p.flatten(document)
        except (HotReloadError, ValueError, TypeError) as exc:
            self.rejected(source, "document", f"namespace {namespace!r}: {exc}")
            return
        old = self._desired.get(namespace)
        since = old.since if old is not None and namespace in self._dirty else time.monotonic()
        self._desired[namespace] = Desired(document, source, since)
        self._dirty.add(namespace)
        self._wake.set()

    async def invalidate(self, namespace: str, keys: Sequence[str] = (),
                         prefixes: Sequence[str] = (), *, everything: bool = False,
                         source: str) -> None:
        if not (keys or prefixes or everything):
            return
        try:
            p.check_name(namespace, "namespace")
        except HotReloadError as exc:
            self.rejected(source, "payload", str(exc))
            return
        pending = self._invalidations.get(namespace)
        if pending is None:
            pending = self._invalidations[namespace] = PendingInvalidation(since=time.monotonic())
        pending.merge(keys, prefixes, everything)
        pending.source = source
        self._wake.set()

    def rejected(self, source: str, reason: str, detail: str) -> None:
        state = self.sources.setdefault(source, SourceState())
        if state.last_error is not None and state.last_error.get("detail") == detail:
            return  # the same problem read again (periodic reconcile): counted once
        state.last_error = {"reason": reason, "detail": detail, "ts": time.time()}
        state.rejections[reason] = state.rejections.get(reason, 0) + 1
        self._metrics.rejections.labels(source=source, reason=reason).inc()
        self._metrics.source_up.labels(source=source).set(0)
        log.warning("rejected by %s (%s): %s", source, reason, detail,
                    extra={"action": "rejected", "source": source, "reason": reason})

    def accepted(self, source: str) -> None:
        state = self.sources.setdefault(source, SourceState())
        if state.last_error is not None:
            log.info("%s is good again", source, extra={"action": "accepted", "source": source})
        state.last_error = None
        self._metrics.source_up.labels(source=source).set(1)

    def failed(self, source: str, detail: str) -> None:
        """A source's `run` crashed (the daemon restarts it): show it in status."""
        state = self.sources.setdefault(source, SourceState())
        state.last_error = {"reason": "failed", "detail": detail, "ts": time.time()}
        self._metrics.source_up.labels(source=source).set(0)
        log.error("source %s failed, restarting: %s", source, detail,
                  extra={"action": "source_failed", "source": source})

    # ------------------------------------------------------------------ control

    @property
    def gate_open(self) -> bool:
        return self._gate

    def open_gate(self) -> None:
        """Start publishing (leader): every known namespace is reconciled first."""
        self._gate = True
        self._dirty.update(self._desired)
        self._wake.set()

    def close_gate(self) -> None:
        """Stop publishing (standby); desired state keeps being tracked."""
        self._gate = False

    def pending(self) -> list[str]:
        """Namespaces with something not yet published (or being published)."""
        return sorted(self._dirty | set(self._invalidations) | self._inflight)

    def status(self) -> dict[str, Any]:
        return {
            "redis": {None: "unknown", True: "up", False: "down"}[self.redis_up],
            "redis_error": self.redis_error,
            "publishing": self._gate,
            "versions": dict(sorted(self.versions.items())),
            "pending": self.pending(),
        }

    # ------------------------------------------------------------------ the worker

    async def run(self) -> None:
        """Publish pending state whenever there is some; probe Redis while idle."""
        while True:
            if self.redis_up is not True:
                if self.redis_up is False:
                    await asyncio.sleep(self._backoff.next())
                if not await self.probe():
                    continue
            try:
                async with asyncio.timeout(self._probe_interval):
                    await self._wake.wait()
            except TimeoutError:
                await self.probe()
                continue
            self._wake.clear()
            if self._gate:
                await self._flush()

    async def probe(self) -> bool:
        """PING Redis (with a deadline); update the up/down state; True if reachable."""
        try:
            async with asyncio.timeout(PROBE_TIMEOUT):
                await self._ping()
        except _PROBE_ERRORS as exc:
            self._set_down(exc)
            return False
        self._set_up()
        return True

    async def _flush(self) -> None:
        for ns in self.pending():
            if not self._gate or self.redis_up is not True:
                return
            self._inflight.add(ns)
            try:
                if ns in self._dirty:
                    await self._publish_desired(ns)
                if ns in self._invalidations:
                    await self._publish_invalidation(ns)
            except _DOWN_ERRORS as exc:
                self._metrics.publish_errors.inc()
                self._set_down(exc)
                return
            finally:
                self._inflight.discard(ns)

    async def _publish_desired(self, ns: str) -> None:
        want = self._desired[ns]
        self._dirty.discard(ns)
        try:
            result = await self._publisher.replace(want.document, namespace=ns,
                                                   source=want.source)
        except _DOWN_ERRORS:
            self._dirty.add(ns)
            raise
        except Exception as exc:  # too big, conflict storm, a bug: never kill the worker
            self._publish_failed(want.source, ns, exc)
            return
        self._record(ns, result, want.source, "config", want.since)
        if result.version is None:
            self.versions[ns] = await self._publisher.version(ns)
            self._metrics.namespace_version.labels(namespace=ns).set(self.versions[ns])

    async def _publish_invalidation(self, ns: str) -> None:
        inv = self._invalidations.pop(ns)
        try:
            result = await self._publisher.invalidate(
                sorted(inv.keys), sorted(inv.prefixes), everything=inv.everything,
                namespace=ns, source=inv.source,
            )
        except _DOWN_ERRORS:
            again = self._invalidations.setdefault(ns, PendingInvalidation(since=inv.since))
            again.merge(sorted(inv.keys), sorted(inv.prefixes), inv.everything)
            again.source = again.source or inv.source
            raise
        except Exception as exc:
            self._publish_failed(inv.source, ns, exc)
            return
        self._record(ns, result, inv.source, "invalidate", inv.since)

    def _publish_failed(self, source: str, ns: str, exc: Exception) -> None:
        """Not an outage: count it and show it; the next report of the source retries."""
        self._metrics.publish_errors.inc()
        what = str(exc) if isinstance(exc, HotReloadError) else f"{type(exc).__name__}: {exc}"
        self.rejected(source, "publish", f"namespace {ns!r}: {what}")

    def _record(self, ns: str, result: PublishResult, source: str, kind: str,
                since: float) -> None:
        if result.version is None:
            return
        self.versions[ns] = result.version
        self._metrics.events_published.labels(source=source, kind=kind).inc()
        self._metrics.namespace_version.labels(namespace=ns).set(result.version)
        self._metrics.publish_latency.observe(max(0.0, time.monotonic() - since))

    def _set_down(self, exc: BaseException) -> None:
        self.redis_error = describe_error(exc)
        self._metrics.redis_up.set(0)
        if self.redis_up is not False:
            self.redis_up = False
            log.warning("Redis unreachable, retrying with backoff up to %.1fs: %s",
                        self._backoff.cap, self.redis_error, extra={"action": "redis_down"})
        else:
            log.debug("Redis still unreachable: %s", self.redis_error)

    def _set_up(self) -> None:
        was, self.redis_up = self.redis_up, True
        self.redis_error = None
        self._backoff.reset()
        self._metrics.redis_up.set(1)
        if was is False:
            log.info("Redis reachable again; publishing the latest state",
                     extra={"action": "redis_up"})
            self._metrics.redis_reconnects.inc()
            self._dirty.update(self._desired)
            self._wake.set()
            if self._on_reconnect is not None:
                self._on_reconnect()
