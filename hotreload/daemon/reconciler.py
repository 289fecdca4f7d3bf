"""The daemon's `Sink`: reconciles Redis to the latest desired state of every namespace.

Sources report whole documents; the reconciler keeps only the **latest** one per namespace and a
single merged pending invalidation per namespace, and one worker publishes them with
`AsyncPublisher.replace` / `.invalidate` (idempotent: an unchanged document publishes nothing).
While Redis is down nothing is lost and nothing is replayed: the worker retries with capped,
jittered backoff, and on recovery publishes the latest document of each namespace as one event.
Only a connection-level error means "Redis is down"; any other failure (a wrong-typed key, OOM,
an event too large...) belongs to its namespace alone, which is retried with its own backoff
while the other namespaces keep being published. Each namespace is owned by the first source
that reports a document for it; another source's documents for it are rejected (`conflict`).
It publishes only while its gate is open (the daemon opens it while it is the leader).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

from .._backoff import Backoff
from ..errors import HotReloadError, ProtocolError, describe_error
from ..publisher import PublishResult
from ..transport import is_outage
from ..wire import check_json_value, check_name, flatten_texts
from .metrics import Metrics
from .pending import Desired, NamespaceFailure, PendingInvalidation, SourceState
from .sources.base import Sink

__all__ = ["PROBE_INTERVAL", "PROBE_TIMEOUT", "PublisherLike", "Reconciler"]

log = logging.getLogger("hotreload.daemon.reconciler")

#: Seconds between Redis probes while idle, and the deadline of each probe.
PROBE_INTERVAL = 1.0
PROBE_TIMEOUT = 2.0
#: What a failed probe raises: the transport's `BackendError`, or its deadline. Whether a failed
#: publish means "Redis is unreachable" (keep the state pending, retry with backoff) or is an
#: error of its namespace alone (WRONGTYPE, OOM, READONLY...) is `is_outage`'s to say.
_PROBE_ERRORS: tuple[type[BaseException], ...] = (HotReloadError, TimeoutError, OSError)


class PublisherLike(Protocol):
    """The part of `AsyncPublisher` the reconciler uses (a fake of it serves unit tests)."""

    async def replace(self, document: Mapping[str, Any], *, namespace: str | None = None,
                      source: str | None = None) -> PublishResult: ...

    async def invalidate(self, keys: Sequence[str] = (), prefixes: Sequence[str] = (), *,
                         everything: bool = False, namespace: str | None = None,
                         source: str | None = None) -> PublishResult: ...


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
        self._failures: dict[str, NamespaceFailure] = {}
        self._conflicts: dict[tuple[str, str], str] = {}  # (namespace, source) -> detail
        self._wake = asyncio.Event()
        self._gate = False
        self.redis_up: bool | None = None  # None until the first probe
        self.redis_error: str | None = None
        self.versions: dict[str, int] = {}
        self.sources: dict[str, SourceState] = {}
        self.owners: dict[str, str] = {}  # namespace -> the source feeding it

    # ------------------------------------------------------------------ the Sink protocol

    async def desired(self, namespace: str, document: Mapping[str, Any], *, source: str) -> None:
        try:
            check_name(namespace, "namespace")
            check_json_value(document, "document")
            flatten_texts(document)  # every key and leaf within the protocol's limits
        except (HotReloadError, ValueError, TypeError) as exc:
            self.rejected(source, "document", f"namespace {namespace!r}: {exc}")
            return
        if not self._owns(namespace, source, bool(document)):
            return
        old = self._desired.get(namespace)
        failure = self._failures.get(namespace)
        if failure is not None and (old is None or old.document != document):
            failure.retry_at = 0.0  # a new document: try it at once
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
            check_name(namespace, "namespace")
        except HotReloadError as exc:
            self.rejected(source, "payload", str(exc))
            return
        pending = self._invalidations.get(namespace)
        if pending is None:
            pending = self._invalidations[namespace] = PendingInvalidation(since=time.monotonic())
        pending.merge(keys, prefixes, everything)
        pending.source = source
        self._wake.set()

    def _owns(self, namespace: str, source: str, claims: bool) -> bool:
        """Whether ``source`` may set ``namespace``: the first source reporting a non-empty
        document owns it for the life of the process. Another source's non-empty document is a
        `conflict` (counted once); its empty one ("nothing here") is ignored."""
        owner = self.owners.get(namespace)
        if owner is None:
            if claims:
                self.owners[namespace] = source
            return True
        if owner == source:
            return True
        if not claims:
            self._conflicts.pop((namespace, source), None)
            return False
        if (namespace, source) not in self._conflicts:
            detail = (f"namespace {namespace!r} is already fed by {owner}; "
                      f"{source}'s documents for it are ignored")
            self._conflicts[(namespace, source)] = detail
            self.rejected(source, "conflict", detail)
        return False

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
            "publish_errors": {ns: f.detail for ns, f in sorted(self._failures.items())},
            "conflicts": [detail for _, detail in sorted(self._conflicts.items())],
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
            retry = self._retry_delay()
            try:
                async with asyncio.timeout(self._probe_interval if retry is None
                                           else min(retry, self._probe_interval)):
                    await self._wake.wait()
            except TimeoutError:
                if retry is None or retry > self._probe_interval:
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

    def _retry_delay(self) -> float | None:
        """Seconds until the next retry of a failing namespace is due (None: none waits)."""
        if not self._gate:
            return None
        waiting = [f.retry_at for ns, f in self._failures.items()
                   if ns in self._dirty or ns in self._invalidations]
        return max(0.0, min(waiting) - time.monotonic()) if waiting else None

    async def _flush(self) -> None:
        now = time.monotonic()
        for ns in self.pending():
            if not self._gate or self.redis_up is not True:
                return
            failure = self._failures.get(ns)
            if failure is not None and failure.retry_at > now:
                continue  # this namespace fails by itself: its own backoff
            self._inflight.add(ns)
            try:
                ok = await self._publish_desired(ns)
                if self._gate:
                    ok = await self._publish_invalidation(ns) and ok
            except Exception as exc:  # only outages get here
                self._metrics.publish_errors.inc()
                self._set_down(exc)
                return
            finally:
                self._inflight.discard(ns)
            if ok and self._failures.pop(ns, None) is not None:
                log.info("publishing %s works again", ns, extra={"namespace": ns})

    async def _publish_desired(self, ns: str) -> bool:
        """Publish the latest document of ``ns`` if dirty; False if it failed (not an outage)."""
        if ns not in self._dirty:
            return True
        want = self._desired[ns]
        self._dirty.discard(ns)
        try:
            result = await self._publisher.replace(want.document, namespace=ns,
                                                   source=want.source)
            if not result.changed:
                self.versions[ns] = result.version
                self._metrics.namespace_version.labels(namespace=ns).set(result.version)
        except Exception as exc:  # never kill the worker
            self._dirty.add(ns)
            if is_outage(exc):
                raise
            self._namespace_failed(ns, want.source, exc)
            return False
        self._record(ns, result, want.source, "config", want.since)
        return True

    async def _publish_invalidation(self, ns: str) -> bool:
        """Publish the merged invalidation of ``ns`` if any; False if it failed (not an outage).

        One that cannot be encoded (bigger than ``security.max_message_bytes``) is published as
        "invalidate everything" instead: a cache dropped too much, never a stale one."""
        inv = self._invalidations.pop(ns, None)
        if inv is None:
            return True
        try:
            try:
                result = await self._publisher.invalidate(
                    sorted(inv.keys), sorted(inv.prefixes), everything=inv.everything,
                    namespace=ns, source=inv.source,
                )
            except ProtocolError as exc:
                if inv.everything:
                    raise
                self._metrics.publish_errors.inc()
                log.warning("the invalidation of %s (%d keys, %d prefixes) cannot be published "
                            "(%s); invalidating everything instead", ns, len(inv.keys),
                            len(inv.prefixes), exc,
                            extra={"action": "invalidate_everything", "namespace": ns})
                inv.merge((), (), True)
                if not self._gate:
                    self._requeue(ns, inv)
                    return True
                result = await self._publisher.invalidate(everything=True, namespace=ns,
                                                          source=inv.source)
        except Exception as exc:
            self._requeue(ns, inv)
            if is_outage(exc):
                raise
            self._namespace_failed(ns, inv.source, exc)
            return False
        self._record(ns, result, inv.source, "invalidate", inv.since)
        return True

    def _requeue(self, ns: str, inv: PendingInvalidation) -> None:
        again = self._invalidations.setdefault(ns, PendingInvalidation(since=inv.since))
        again.merge(sorted(inv.keys), sorted(inv.prefixes), inv.everything)
        again.source = again.source or inv.source

    def _namespace_failed(self, ns: str, source: str, exc: Exception) -> None:
        """Not an outage: count it, show it, and retry this namespace alone with backoff."""
        self._metrics.publish_errors.inc()
        what = str(exc) if isinstance(exc, HotReloadError) else f"{type(exc).__name__}: {exc}"
        detail = f"namespace {ns!r}: {what}"
        failure = self._failures.get(ns)
        if failure is None:
            failure = self._failures[ns] = NamespaceFailure(Backoff(self._backoff.cap))
        failure.detail = detail
        failure.retry_at = time.monotonic() + failure.backoff.next()
        if detail not in failure.seen:
            failure.seen.add(detail)
            self.rejected(source, "publish", detail)

    def _record(self, ns: str, result: PublishResult, source: str, kind: str,
                since: float) -> None:
        if not result.changed:
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
            for failure in self._failures.values():
                failure.retry_at = 0.0
            self._wake.set()
            if self._on_reconnect is not None:
                self._on_reconnect()
