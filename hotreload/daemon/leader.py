"""Leader election with a PostgreSQL session-level advisory lock.

The lock lives as long as the session that took it: when the leader dies (even by SIGKILL) the
server ends its session and frees the lock, and a standby polling `pg_try_advisory_lock` every
``leader_poll_interval`` takes over. The leader watches its own session: its connection's socket
(a server-side close is seen at once) and a ``SELECT 1`` every ``leader_check_interval`` with a
deadline (a silent network failure is seen within seconds, helped by keepalives and
``tcp_user_timeout``). The server, in turn, ends a session whose client fell silent (see
`server_session_limits`), so a standby can take over from a cut-off leader. Needs a direct or
session-pooled connection, never transaction pooling.
"""

from __future__ import annotations

import asyncio
import logging
import math
from contextlib import aclosing
from typing import Final

from psycopg import sql

from ..config import PostgresSettings
from ..errors import BackendError
from . import pgconn

log = logging.getLogger("hotreload.daemon.leader")

_FAILURES: Final[tuple[type[Exception], ...]] = (BackendError, TimeoutError, *pgconn.PG_ERRORS)


class LeaderLock:
    """One daemon's claim on leadership; `acquire`, then `wait_lost`, then `release`."""

    def __init__(self, settings: PostgresSettings) -> None:
        self.settings = settings
        self._conn: pgconn.AsyncConn | None = None
        self._leader = False

    @property
    def is_leader(self) -> bool:
        return self._leader

    async def acquire(self) -> None:
        """Return once this process holds the lock (polls while another process holds it).

        Raises `BackendError` when PostgreSQL cannot be reached (or stops answering): the caller
        (`hotreload.daemon.election.Election`) shows the error, backs off and calls again.
        """
        s = self.settings
        if self._leader:
            return
        while not self._leader:
            try:
                got = await self._try_lock()
            except _FAILURES as exc:
                await self._drop()
                if isinstance(exc, BackendError):
                    raise
                raise BackendError(f"leader lock on PostgreSQL {s.display_dsn()}: "
                                   f"{pgconn.describe(exc)}") from exc
            if got:
                self._leader = True
                break
            await asyncio.sleep(s.leader_poll_interval)

    async def wait_lost(self) -> str | None:
        """Return why, when leadership is lost (the lock's session died or cannot be reached).

        Logging the loss is the caller's (`hotreload.daemon.election.Election`): one line per fact.
        """
        s = self.settings
        conn = self._conn
        if not self._leader or conn is None:
            return None
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
        return reason

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
            await self._limit_session(self._conn)
        conn = self._conn
        cur = await pgconn.bounded(conn, conn.execute("SELECT pg_try_advisory_lock(%s)", (
            self.settings.leader_lock_key,)), self.settings.heartbeat_timeout, "leader poll")
        row = await cur.fetchone()
        return bool(row and row[0])

    async def _limit_session(self, conn: pgconn.AsyncConn) -> None:
        """Make the server end this session soon after the client falls silent.

        Otherwise a leader cut off without a FIN keeps its session, and the lock, until the
        server's own keepalive fires (two hours by default), and no standby can take over.
        """
        for name, value in server_session_limits(self.settings, conn.info.server_version):
            await pgconn.bounded(conn, conn.execute(
                sql.SQL("SET {} = {}").format(sql.Identifier(name), sql.Literal(value))),
                self.settings.heartbeat_timeout, "leader session setup")

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await conn.close()
            except _FAILURES as exc:  # pragma: no cover - closing a dead link
                log.debug("closing the leader connection failed: %s", pgconn.describe(exc))


def server_silence_limit(settings: PostgresSettings) -> float:
    """Seconds of client silence after which the server ends the leader's session.

    Longer than the leader's own deadline (``leader_check_interval + heartbeat_timeout``, after
    which it steps down) by a further ``heartbeat_timeout``: the lock is never freed while the
    old leader may still think it leads.
    """
    return settings.leader_check_interval + 2 * settings.heartbeat_timeout


def server_session_limits(settings: PostgresSettings, server_version: int) -> list[tuple[str, str]]:
    """``SET`` parameters for the leader's session (``server_version`` as libpq reports it).

    ``idle_session_timeout`` (PostgreSQL 14+) ends a session idle past `server_silence_limit`:
    the leader runs ``SELECT 1`` every ``leader_check_interval``, so only a vanished client
    trips it. Server-side keepalives (and ``tcp_user_timeout``, 12+) cover older servers; their
    idle time is at least the silence limit too.
    """
    limit = server_silence_limit(settings)
    out: list[tuple[str, str]] = []
    if server_version >= 140000:
        out.append(("idle_session_timeout", f"{round(limit * 1000)}ms"))
    out += [
        ("tcp_keepalives_idle", str(max(settings.keepalives_idle, math.ceil(limit)))),
        ("tcp_keepalives_interval", str(settings.keepalives_interval)),
        ("tcp_keepalives_count", str(settings.keepalives_count)),
    ]
    if server_version >= 120000 and settings.tcp_user_timeout_ms:
        out.append(("tcp_user_timeout",
                    f"{max(settings.tcp_user_timeout_ms, math.ceil(limit * 1000))}ms"))
    return out
