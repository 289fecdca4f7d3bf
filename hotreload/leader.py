"""Leader election with a PostgreSQL session-level advisory lock.

The lock lives as long as the session that took it: when the leader dies (even by SIGKILL) the
server ends its session and frees the lock, and a standby polling `pg_try_advisory_lock` every
``leader_poll_interval`` takes over. The leader watches its own session: its connection's socket
(a server-side close is seen at once) and a ``SELECT 1`` every ``leader_check_interval`` with a
deadline (a silent network failure is seen within seconds, helped by keepalives and
``tcp_user_timeout``). Needs a direct or session-pooled connection, never transaction pooling.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import aclosing
from typing import Final

from . import pgconn
from .config import PostgresSettings
from .errors import BackendError

log = logging.getLogger("hotreload.leader")

_FAILURES: Final[tuple[type[Exception], ...]] = (BackendError, TimeoutError, *pgconn.PG_ERRORS)


class LeaderLock:
    """One daemon's claim on leadership; `acquire`, then `wait_lost`, then `release`."""

    def __init__(self, settings: PostgresSettings) -> None:
        self.settings = settings
        self._conn: pgconn.AsyncConn | None = None
        self._leader = False
        self._warned = False

    @property
    def is_leader(self) -> bool:
        return self._leader

    async def acquire(self) -> None:
        """Return once this process holds the lock (polls while another process holds it)."""
        s = self.settings
        if self._leader:
            return
        attempt = 0
        while not self._leader:
            try:
                got = await self._try_lock()
                attempt, self._warned = 0, False
                if got:
                    self._leader = True
                    break
                delay = s.leader_poll_interval
            except _FAILURES as exc:
                await self._drop()
                if not self._warned:
                    log.warning("leader election: PostgreSQL %s unreachable: %s; retrying",
                                s.display_dsn(), pgconn.describe(exc),
                                extra={"action": "leader_connect_failed"})
                    self._warned = True
                else:
                    log.debug("leader election: still unreachable: %s", pgconn.describe(exc))
                backoff = pgconn.backoff_delay(attempt, s.reconnect_backoff_max)
                delay = max(s.leader_poll_interval, backoff)
                attempt += 1
            await asyncio.sleep(delay)
        log.info("became the leader (advisory lock %d)", s.leader_lock_key,
                 extra={"action": "leader_acquired"})

    async def wait_lost(self) -> None:
        """Return when leadership is lost (the lock's session died or cannot be reached)."""
        s = self.settings
        conn = self._conn
        if not self._leader or conn is None:
            return
        try:
            while True:
                # notifies() waits on the socket: a closed session raises at once.
                async with aclosing(conn.notifies(timeout=s.leader_check_interval)) as notes:
                    async for _ in notes:
                        pass
                await pgconn.bounded(conn, conn.execute("SELECT 1"), s.heartbeat_timeout,
                                 "leader check")
        except _FAILURES as exc:
            reason = pgconn.describe(exc)
        self._leader = False
        await self._drop()
        log.warning("lost leadership: %s", reason, extra={"action": "leader_lost"})

    async def release(self) -> None:
        """Give the lock up (if held) and close the connection."""
        conn, was_leader = self._conn, self._leader
        self._leader = False
        if conn is not None and was_leader and not conn.closed:
            try:
                await pgconn.bounded(conn, conn.execute("SELECT pg_advisory_unlock(%s)", (
                    self.settings.leader_lock_key,)), self.settings.heartbeat_timeout, "unlock")
            except _FAILURES as exc:
                log.debug("advisory unlock failed (closing frees it): %s", pgconn.describe(exc))
        await self._drop()
        if was_leader:
            log.info("released leadership", extra={"action": "leader_released"})

    async def _try_lock(self) -> bool:
        if self._conn is None or self._conn.closed:
            self._conn = await pgconn.connect(self.settings, purpose="hotreload-leader")
        conn = self._conn
        cur = await pgconn.bounded(conn, conn.execute("SELECT pg_try_advisory_lock(%s)", (
            self.settings.leader_lock_key,)), self.settings.heartbeat_timeout, "leader poll")
        row = await cur.fetchone()
        return bool(row and row[0])

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await conn.close()
            except _FAILURES as exc:  # pragma: no cover - closing a dead link
                log.debug("closing the leader connection failed: %s", pgconn.describe(exc))
