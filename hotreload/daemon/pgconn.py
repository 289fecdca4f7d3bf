"""Connections to PostgreSQL (never pooled), deadlines on queries, and the error seam.

The PostgreSQL counterpart of `hotreload.transport`: every connection carries libpq keepalives,
``tcp_user_timeout`` and ``connect_timeout`` from `PostgresSettings`; the password (from the DSN
or ``postgres.password``) goes into the conninfo and nowhere else.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, Final, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from ..config import PostgresSettings
from ..errors import BackendError, ConfigError
from ..errors import describe_error as describe

#: Errors of psycopg (and the socket below it) that mean "the server or the link failed".
PG_ERRORS: Final[tuple[type[Exception], ...]] = (psycopg.Error, OSError)

AsyncConn = psycopg.AsyncConnection[Any]
T = TypeVar("T")

__all__ = ["PG_ERRORS", "AsyncConn", "bounded", "connect", "conninfo", "describe"]


def conninfo(settings: PostgresSettings, *, application_name: str = "hotreload") -> str:
    """The libpq connection string with keepalives and timeouts (holds the password: never log)."""
    dsn = settings.dsn.get_secret_value()
    try:
        given = conninfo_to_dict(dsn)
    except psycopg.Error:
        raise ConfigError(f"postgres.dsn is not a valid connection string: {settings.display_dsn()}"
                          ) from None
    params: dict[str, Any] = {
        "connect_timeout": settings.connect_timeout,
        "keepalives": 1,
        "keepalives_idle": settings.keepalives_idle,
        "keepalives_interval": settings.keepalives_interval,
        "keepalives_count": settings.keepalives_count,
    }
    if settings.tcp_user_timeout_ms:
        params["tcp_user_timeout"] = settings.tcp_user_timeout_ms
    if "application_name" not in given:
        params["application_name"] = application_name
    if settings.password is not None:
        params["password"] = settings.password.get_secret_value()
    return make_conninfo(dsn, **params)


async def bounded(conn: AsyncConn, call: Awaitable[T], limit: float, what: str) -> T:
    """Await a query with a deadline; past it (or if cancelled) close ``conn``, then cancel.

    Closing first matters: psycopg answers a cancelled query with a cancel request and waits up
    to 10 s for the server, which on a dead link only delays the reconnect.
    """
    task = asyncio.ensure_future(call)
    try:
        done, _ = await asyncio.wait({task}, timeout=limit)
    finally:
        if not task.done():
            await conn.close()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    if not done:
        raise BackendError(f"{what}: no answer from PostgreSQL within {limit:g} s")
    return task.result()


async def connect(settings: PostgresSettings, *, purpose: str = "hotreload") -> AsyncConn:
    """A new autocommit connection (never pooled); failures become `BackendError`."""
    info = conninfo(settings, application_name=purpose)
    try:
        return await psycopg.AsyncConnection.connect(info, autocommit=True)
    except PG_ERRORS as exc:
        raise BackendError(
            f"cannot connect to PostgreSQL {settings.display_dsn()}: {describe(exc)}"
        ) from exc
