"""The PostgreSQL source: the settings table as desired state, NOTIFY channels as invalidations.

One session = two autocommit connections, never pooled: the *listener* (LISTEN, heartbeats;
`notifies()` holds its lock) and the *reader* (every SELECT). On each (re)connect: LISTEN first,
then read the whole table and report it, then "invalidate everything" for each invalidation
channel (notifications sent while disconnected are gone), then consume notifications. A worker
task does the reads and sink calls, so the listener never stops reading; repeated notifications
for one namespace coalesce into one read.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable
from contextlib import aclosing
from typing import Final

from psycopg import Notify, sql

from ..._backoff import Backoff
from ...config import PostgresSettings
from ...errors import BackendError, HotReloadError, ProtocolError
from ...wire import check_name
from .. import db, pgconn
from .base import Sink
from .pg_payload import InvalidationRequest, parse_invalidation, settings_namespace

log = logging.getLogger("hotreload.daemon.sources.postgres")

SOURCE: Final = "postgres"
_FAILURES: Final[tuple[type[Exception], ...]] = (BackendError, *pgconn.PG_ERRORS)


class _ReadAll:
    """Queue item: re-read the whole table."""


_READ_ALL: Final = _ReadAll()
_Item = str | _ReadAll | InvalidationRequest  # str = re-read that namespace


class PostgresSource:
    """Desired state from the settings table; invalidations from NOTIFY channels."""

    name = SOURCE

    def __init__(self, settings: PostgresSettings, *, default_namespace: str,
                 max_row_bytes: int = db.DEFAULT_MAX_ROW_BYTES) -> None:
        self.settings = settings
        self.max_row_bytes = max_row_bytes  # a bigger row is skipped: it could never publish
        self.channels = {c.channel: c for c in settings.invalidation_channels(default_namespace)}
        # Namespaces each invalidation channel has carried: all get "everything" on reconnect.
        self._carried = {c.channel: {c.namespace or default_namespace}
                         for c in self.channels.values()}
        self._known: set[str] = set()  # namespaces that had rows at the last read
        self._no_registry = False  # warned that the namespace registry table is missing
        self._bad: dict[str, list[str]] = {}  # bad rows by namespace, as reported
        self._lock = asyncio.Lock()  # one read-and-report at a time: no stale overtaking
        self._reader: pgconn.AsyncConn | None = None
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._pending: set[str] = set()
        self._all_pending = False
        self.connected = False
        self.error: str | None = None  # why it is not connected (None while connected)
        self.reconnects = 0
        self._started = self._ever = False
        self._down_since: float | None = None

    # ----------------------------------------------------------------------- public

    async def run(self, sink: Sink) -> None:
        backoff = Backoff(self.settings.reconnect_backoff_max)
        while True:
            self._started = False
            try:
                await self._session(sink)
            except _FAILURES as exc:
                self._went_down(pgconn.describe(exc))
            except Exception as exc:  # a bug must not stop the source: log it, reconnect
                log.exception("PostgreSQL source failed")
                self._went_down(f"{type(exc).__name__}: {exc}")
            finally:
                self.connected = False
            if self._started:
                backoff.reset()
            await asyncio.sleep(backoff.next())

    async def reconcile(self, sink: Sink) -> None:
        reader = self._reader
        if reader is not None and not reader.closed:
            await self._reconcile_on(reader, sink)
            return
        conn = await pgconn.connect(self.settings, purpose="hotreload-read")
        try:
            await self._reconcile_on(conn, sink)
        finally:
            await conn.close()

    # ----------------------------------------------------------------------- one session

    async def _session(self, sink: Sink) -> None:
        s = self.settings
        listener = await pgconn.connect(s, purpose="hotreload-listen")
        try:
            reader = await pgconn.connect(s, purpose="hotreload-read")
            try:
                for channel in (s.notify_channel, s.heartbeat_channel, *self.channels):
                    await listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                self._reset_queue()
                await self._reconcile_on(reader, sink)
                for channel in self.channels:
                    for ns in sorted(self._carried[channel]):
                        await self._safe(sink.invalidate(ns, everything=True, source=SOURCE))
                self._reader = reader
                self._up()
                await _first_failure(self._listen(listener, sink), self._work(reader, sink))
            finally:
                self._reader = None
                await reader.close()
        finally:
            await listener.close()

    async def _listen(self, conn: pgconn.AsyncConn, sink: Sink) -> None:
        s = self.settings
        pid = conn.info.backend_pid
        token: str | None = None
        deadline = last_rx = time.monotonic()
        while True:
            wait = s.heartbeat_interval if token is None else deadline - time.monotonic()
            async with aclosing(conn.notifies(timeout=max(0.0, wait))) as notes:
                async for note in notes:
                    last_rx = time.monotonic()
                    if note.channel != s.heartbeat_channel:
                        self._dispatch(note, sink)
                    elif note.pid == pid and note.payload == token:
                        token = None
            now = time.monotonic()
            if token is not None and now >= deadline:
                raise BackendError(f"no heartbeat back within {s.heartbeat_timeout} s")
            if token is None and now - last_rx >= s.heartbeat_interval:
                token = uuid.uuid4().hex
                deadline = now + s.heartbeat_timeout
                await pgconn.bounded(conn, conn.execute("SELECT pg_notify(%s, %s)", (
                    s.heartbeat_channel, token)), s.heartbeat_timeout, "heartbeat")

    def _dispatch(self, note: Notify, sink: Sink) -> None:
        if note.channel == self.settings.notify_channel:
            ns = settings_namespace(note.payload)
            if ns is None:
                self._enqueue(_READ_ALL)
            elif not self._all_pending and ns not in self._pending:
                self._pending.add(ns)
                self._enqueue(ns)
            return
        config = self.channels.get(note.channel)
        if config is None:
            return
        try:
            request = parse_invalidation(note.payload, config.namespace or "")
        except ProtocolError as exc:
            sink.rejected(SOURCE, "payload", f"channel {note.channel}: {exc}")  # it logs
            return
        self._carried[note.channel].add(request.namespace)
        self._enqueue(request)

    async def _work(self, reader: pgconn.AsyncConn, sink: Sink) -> None:
        while True:
            item = await self._queue.get()
            if isinstance(item, _ReadAll):
                self._all_pending = False
                self._pending.clear()
                await self._reconcile_on(reader, sink)
            elif isinstance(item, str):
                if item in self._pending:
                    self._pending.discard(item)
                    await self._refresh(reader, sink, item)
            else:
                await self._safe(sink.invalidate(
                    item.namespace, item.keys, item.prefixes, everything=item.everything,
                    source=SOURCE))

    # ----------------------------------------------------------------------- reads

    async def _reconcile_on(self, conn: pgconn.AsyncConn, sink: Sink) -> None:
        async with self._lock:
            table = self.settings.settings_table
            # the registry first: a namespace registered and then emptied reads as empty
            registered = await pgconn.bounded(conn, db.read_registered(conn, table),
                                              self.settings.query_timeout, "reading the settings")
            read = await pgconn.bounded(
                conn, db.read_all(conn, table, max_row_bytes=self.max_row_bytes),
                self.settings.query_timeout, "reading the settings")
            if registered is None and not self._no_registry:
                self._no_registry = True
                log.warning("table %s_namespaces is missing: namespaces emptied while no daemon "
                            "ran are not cleared; run `hotreload db install`", table,
                            extra={"action": "no_registry"})
            for ns, doc in sorted(read.documents.items()):
                await self._safe(sink.desired(ns, doc, source=SOURCE))
            vanished = self._known | {ns for ns in registered or () if _valid_namespace(ns)}
            for ns in sorted(vanished - read.documents.keys()):
                await self._safe(sink.desired(ns, {}, source=SOURCE))
            self._known = set(read.documents)
            self._report(sink, read.problems, None)
        log.debug("reconciled %d namespace(s) from PostgreSQL", len(read.documents))

    async def _refresh(self, conn: pgconn.AsyncConn, sink: Sink, ns: str) -> None:
        async with self._lock:
            read = await pgconn.bounded(
                conn, db.read_namespace(conn, ns, self.settings.settings_table,
                                        max_row_bytes=self.max_row_bytes),
                self.settings.query_timeout, "reading the settings")
            await self._safe(sink.desired(ns, read.documents.get(ns, {}), source=SOURCE))
            if ns in read.documents:
                self._known.add(ns)
            else:
                self._known.discard(ns)
            self._report(sink, read.problems, ns)

    def _report(self, sink: Sink, problems: dict[str, list[str]], scope: str | None) -> None:
        before = self._bad
        after = {} if scope is None else {k: v for k, v in before.items() if k != scope}
        after.update({ns: lines for ns, lines in problems.items() if lines})
        for ns, lines in after.items():
            for line in lines:
                if line not in before.get(ns, []):
                    sink.rejected(SOURCE, "row", line)  # the sink counts, shows and logs it
        self._bad = after
        if not after and (before or scope is None):
            sink.accepted(SOURCE)

    # ----------------------------------------------------------------------- helpers

    def _enqueue(self, item: _Item) -> None:
        if isinstance(item, _ReadAll):
            if self._all_pending:
                return
            self._all_pending = True
        self._queue.put_nowait(item)

    def _reset_queue(self) -> None:
        self._queue = asyncio.Queue()
        self._pending.clear()
        self._all_pending = False

    async def _safe(self, call: Awaitable[None]) -> None:
        try:
            await call
        except Exception as exc:
            log.error("the daemon failed to take a PostgreSQL update: %s: %s",
                      type(exc).__name__, exc, extra={"action": "sink_error"})

    def _up(self) -> None:
        self.connected = self._started = True
        self.error = None
        where = self.settings.display_dsn()
        if self._ever:
            self.reconnects += 1
            outage = time.monotonic() - (self._down_since or time.monotonic())
            log.info("reconnected to PostgreSQL %s after %.1f s; reconciled", where, outage,
                     extra={"action": "reconnected"})
        else:
            log.info("listening on PostgreSQL %s (channels: %s)", where,
                     ", ".join([self.settings.notify_channel, *self.channels]),
                     extra={"action": "listening"})
        self._ever, self._down_since = True, None

    def _went_down(self, why: str) -> None:
        self.error = why
        if self._down_since is not None:
            log.debug("PostgreSQL still unreachable: %s", why)
            return
        self._down_since = time.monotonic()
        where = self.settings.display_dsn()
        if self._ever:
            log.warning("lost PostgreSQL %s: %s; reconnecting", where, why,
                        extra={"action": "disconnected"})
        else:
            log.warning("cannot reach PostgreSQL %s: %s; retrying", where, why,
                        extra={"action": "connect_failed"})


def _valid_namespace(name: str) -> bool:
    try:
        check_name(name, "namespace")
    except HotReloadError:
        return False
    return True


async def _first_failure(*coros: Awaitable[None]) -> None:
    """Run forever-loops together; the first one to fail (or return) stops the others."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
