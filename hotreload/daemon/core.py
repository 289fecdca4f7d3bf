"""The publisher daemon: runs the sources, elects a leader, reconciles Redis, serves health.

With ``postgres`` configured, only the holder of the PostgreSQL advisory lock publishes: a
standby keeps its sources running (gate closed) and, when it acquires the lock, reconciles every
source before it publishes anything. Without PostgreSQL every daemon publishes; duplicates are
harmless because publishes are idempotent compare-and-sets.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
from collections.abc import Sequence
from typing import Any, Literal

from .._backoff import Backoff
from .._version import __version__
from ..config import HotReloadConfig
from ..errors import describe_error
from ..publisher import AsyncPublisher
from ..transport import Transport, open_transport
from .election import Election, Role
from .http import Console, HttpServer, console_enabled
from .metrics import Metrics
from .pending import SourceState
from .presence import PRESENCE_INTERVAL, HeadLog, refresh_presence
from .reconciler import Reconciler
from .setup import LeaderLike, build_leader, build_sources
from .sources.base import Source
from .status import (
    STATUS_INTERVAL,
    delete_status,
    describe_daemon,
    read_daemon_status,
    status_name,
    write_status,
)

__all__ = ["Daemon", "LeaderLike", "build_leader", "build_sources", "describe_daemon",
           "read_daemon_status"]

log = logging.getLogger("hotreload.daemon")

#: Seconds a source's (re)reconcile may take before the daemon stops waiting for it.
RECONCILE_TIMEOUT = 10.0
#: Budget of each shutdown step (the whole stop stays well under 2 s).
STOP_STEP_TIMEOUT = 0.5
#: A source that ran this long before failing restarts without accumulated backoff.
SOURCE_STABLE_SECONDS = 30.0


class Daemon:
    """``await Daemon(config).run()`` until `stop()` (or SIGTERM/SIGINT with handle_signals)."""

    def __init__(
        self,
        config: HotReloadConfig,
        *,
        sources: Sequence[Source] | None = None,
        leader: LeaderLike | Literal["auto"] | None = "auto",
        handle_signals: bool = False,
    ) -> None:
        self.config = config
        self.sources = list(build_sources(config) if sources is None else sources)
        self.leader = build_leader(config) if leader == "auto" else leader
        self.handle_signals = handle_signals
        self.metrics = Metrics()
        self.transport: Transport = open_transport(config)
        self.publisher = AsyncPublisher(config, source="daemon", transport=self.transport)
        self.reconciler = Reconciler(
            self.publisher, self.metrics, ping=self.transport.ping,
            backoff_max=config.daemon.redis_backoff_max, on_reconnect=self.request_reconcile,
        )
        self.http: HttpServer | None = None
        self.console: Console | None = None
        if config.daemon.http is not None:
            if console_enabled(config.daemon):
                self.console = Console(config, self.transport, fed=self._fed_namespaces)
            self.http = HttpServer(config.daemon.http, self, self.console)
        self.election = Election(
            self.leader, backoff_max=config.daemon.redis_backoff_max, on_lead=self._lead,
            on_follow=self.reconciler.close_gate, on_change=self._role_changed,
        )
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.started_at = time.time()
        self._running: dict[str, bool] = {s.name: False for s in self.sources}
        self._stop = asyncio.Event()
        self._reconcile_now = asyncio.Event()
        self._status_now = asyncio.Event()
        self._crash: BaseException | None = None
        self._tasks: list[asyncio.Task[None]] = []
        #: Seconds between two readings of the subscribers' presence records (the gauges).
        self.presence_interval = PRESENCE_INTERVAL
        self._heads: dict[str, HeadLog] = {}

    @property
    def status_name(self) -> str:
        """The name of this daemon's status document: ``{host}:{pid}``."""
        return status_name(self.host, self.pid)

    @property
    def role(self) -> Role | None:
        """``leader``, ``standby``, or None while unknown."""
        return self.election.role

    # ------------------------------------------------------------------ public control

    def stop(self) -> None:
        """Ask `run` to return (safe from a signal handler on the loop)."""
        self._stop.set()

    def request_reconcile(self) -> None:
        """Make every source re-read and report its whole state soon."""
        self._reconcile_now.set()

    def _fed_namespaces(self) -> dict[str, str | None]:
        """The namespaces the sources feed, with the source owning each (None: unknown)."""
        fed: dict[str, str | None] = dict.fromkeys(self.reconciler.versions)
        fed.update(self.reconciler.owners)
        return fed

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        reasons = []
        if self.reconciler.redis_up is not True:
            reasons.append(f"redis {self.reconciler.status()['redis']}: "
                           f"{self.reconciler.redis_error or 'not probed yet'}")
        reasons += [f"source {name} is not running" for name, up in self._running.items()
                    if not up]
        for src in self.sources:  # a source with a connection (PostgreSQL) must have it up
            if self._running.get(src.name) and getattr(src, "connected", True) is False:
                why = getattr(src, "error", None) or "connecting"
                reasons.append(f"source {src.name} is not connected: {why}")
        if self.role is None:
            reasons.append(f"role unknown: {self.election.error or 'starting'}")
        return not reasons, {"role": self.role, "reason": "; ".join(reasons) or None}

    def status(self) -> dict[str, Any]:
        rec = self.reconciler
        return {
            "host": self.host, "pid": self.pid, "version": __version__,
            "role": self.role, "leader_error": self.election.error,
            "started_at": self.started_at, "updated_at": time.time(),
            "http": self.http.address if self.http else None,
            "sources": self._sources_status(), **rec.status(),
        }

    def _sources_status(self) -> dict[str, dict[str, Any]]:
        """Each source once: whether it runs, its newest current error, its rejections (summed
        over the names it reports under, e.g. one per file). A name no source claims is shown
        on its own with ``running`` None (unknown)."""
        owner = {name: src.name for src in self.sources
                 for name in (src.name, *getattr(src, "reporters", ()))}
        merged: dict[str, list[SourceState]] = {name: [] for name in self._running}
        for name, state in self.reconciler.sources.items():
            merged.setdefault(owner.get(name, name), []).append(state)
        out: dict[str, dict[str, Any]] = {}
        for name, states in merged.items():
            errors = [s.last_error for s in states if s.last_error is not None]
            rejections: dict[str, int] = {}
            for state in states:
                for reason, n in state.rejections.items():
                    rejections[reason] = rejections.get(reason, 0) + n
            out[name] = {"running": self._running.get(name),
                         "last_error": max(errors, key=lambda e: e.get("ts", 0), default=None),
                         "rejections": dict(sorted(rejections.items()))}
        return out

    # ------------------------------------------------------------------ run

    async def run(self) -> None:
        """Run until `stop()`; re-raises the error of a crashed core task."""
        loop = asyncio.get_running_loop()
        if self.handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop)
        try:
            if self.http is not None:
                await self.http.start()
            for src in self.sources:  # first: a source may need its run() before reconcile()
                self._spawn(self._run_source(src), f"source-{src.name}", critical=False)
            self._spawn(self.reconciler.run(), "reconciler", critical=True)
            self._spawn(self.election.run(), "election", critical=True)
            self._spawn(self._reconcile_loop(), "reconcile", critical=True)
            self._spawn(self._status_loop(), "status", critical=False)
            self._spawn(self._presence_loop(), "presence", critical=False)
            log.info("daemon %s started (pid %d): %d source(s), Redis %s, HTTP %s, %s",
                     __version__, self.pid, len(self.sources), self.config.redis.display_url(),
                     self.http.address if self.http else "off",
                     "leader election via PostgreSQL" if self.leader else "no leader election",
                     extra={"action": "started", "sources": [s.name for s in self.sources]})
            await self._stop.wait()
        finally:
            await self._shutdown()
            if self.handle_signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)
        if self._crash is not None:
            raise self._crash

    def _spawn(self, coro: Any, name: str, *, critical: bool) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro, name=f"hotreload-{name}")
        self._tasks.append(task)
        if critical:
            task.add_done_callback(self._on_critical_done)

    def _on_critical_done(self, task: asyncio.Task[None]) -> None:
        exc = None if task.cancelled() else task.exception()
        if exc is not None and self._crash is None:
            self._crash = exc
            log.error("daemon task %s failed: %s", task.get_name(),
                      describe_error(exc), exc_info=exc,
                      extra={"action": "crashed"})
            self.stop()

    async def _shutdown(self) -> None:
        log.info("daemon stopping", extra={"action": "stopping"})
        self.reconciler.close_gate()
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=STOP_STEP_TIMEOUT)
        steps = [asyncio.create_task(delete_status(self.transport, self.status_name))]
        if self.leader is not None:
            steps.append(asyncio.create_task(self.leader.release()))
        if self.http is not None:
            steps.append(asyncio.create_task(self.http.aclose()))
        done, pending = await asyncio.wait(steps, timeout=STOP_STEP_TIMEOUT)
        for step in pending:
            step.cancel()
        for step in done:
            exc = None if step.cancelled() else step.exception()
            if exc is not None:
                log.debug("shutdown step failed: %s", describe_error(exc))
        try:
            async with asyncio.timeout(STOP_STEP_TIMEOUT):
                await self.publisher.aclose()
                await self.transport.aclose()
        except Exception as exc:
            log.debug("closing Redis failed: %s", describe_error(exc))
        self.election.set_role(None)
        log.info("daemon stopped", extra={"action": "stopped"})

    # ------------------------------------------------------------------ loops

    async def _lead(self) -> None:
        await self.reconcile_sources()  # the latest state first, then publish
        self.reconciler.open_gate()

    def _role_changed(self, role: Role | None) -> None:
        self.metrics.leader.set(1 if role == "leader" else 0)
        self._status_now.set()

    async def reconcile_sources(self) -> None:
        """Every source re-reads and reports its whole state (each within a deadline)."""
        for src in self.sources:
            try:
                async with asyncio.timeout(RECONCILE_TIMEOUT):
                    await src.reconcile(self.reconciler)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("reconcile of %s failed: %s", src.name, describe_error(exc),
                            extra={"action": "reconcile_failed", "source": src.name})

    async def _reconcile_loop(self) -> None:
        interval = self.config.daemon.reconcile_interval
        while True:
            try:
                async with asyncio.timeout(interval):
                    await self._reconcile_now.wait()
            except TimeoutError:
                pass
            self._reconcile_now.clear()
            await self.reconcile_sources()

    async def _status_loop(self) -> None:
        while True:
            self._status_now.clear()
            await write_status(self.transport, self.status_name, self.status())
            try:  # every STATUS_INTERVAL, and at once when the role changes
                async with asyncio.timeout(STATUS_INTERVAL):
                    await self._status_now.wait()
            except TimeoutError:
                pass

    def namespaces(self) -> set[str]:
        """The namespaces this daemon serves: those its sources feed or invalidate."""
        found = {f.namespace for f in self.config.sources.files}
        if self.config.postgres is not None:
            found |= {c.namespace or self.config.namespace
                      for c in self.config.postgres.invalidation_channels(self.config.namespace)}
        return found | set(self.reconciler.owners) | set(self.reconciler.versions)

    async def _presence_loop(self) -> None:
        """Every `presence_interval`: the subscriber gauges from presence records."""
        while True:
            try:
                async with asyncio.timeout(self.presence_interval):
                    await refresh_presence(self.transport, self.metrics, self.namespaces(),
                                           self._heads)
            except TimeoutError:
                log.debug("reading the presence records took longer than %.1fs",
                          self.presence_interval)
            await asyncio.sleep(self.presence_interval)

    async def _run_source(self, src: Source) -> None:
        backoff = Backoff(self.config.daemon.redis_backoff_max)
        while True:
            self._running[src.name] = True
            began = time.monotonic()
            try:
                await src.run(self.reconciler)
                detail = "run() returned"
            except asyncio.CancelledError:
                self._running[src.name] = False
                raise
            except Exception as exc:
                detail = describe_error(exc)
                log.debug("source %s crashed", src.name, exc_info=exc)
            self._running[src.name] = False
            self.reconciler.failed(src.name, detail)
            if time.monotonic() - began > SOURCE_STABLE_SECONDS:
                backoff.reset()
            await asyncio.sleep(backoff.next())

