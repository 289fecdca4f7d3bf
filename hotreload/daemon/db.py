"""PostgreSQL: the SQL objects (settings table + NOTIFY trigger), installing and reading them.

The trigger sends only identifiers (PostgreSQL caps a payload below 8000 bytes); readers fetch the
values. Payload on ``notify_channel``, one per changed row::

    {"namespace": "app", "key": "db.pool_size", "op": "update"}   -- insert | update | delete
    {"namespace": "app", "op": "update"}                          -- identifiers too long
    {"op": "truncate"}                                            -- re-read everything

See docs/postgres.md.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import psycopg
from psycopg import sql
from pydantic import SecretStr

from ..config import PostgresSettings
from ..errors import BackendError, HotReloadError, ProtocolError
from ..wire import (
    DEFAULT_MAX_MESSAGE_BYTES,
    MAX_DEPTH,
    MAX_LEAF_DEPTH,
    check_json_value,
    check_key,
    check_name,
    flatten,
    loads,
    unflatten,
)
from .pgconn import PG_ERRORS, AsyncConn, connect, describe

__all__ = [
    "DEFAULT_CHANNEL",
    "DEFAULT_MAX_ROW_BYTES",
    "DEFAULT_TABLE",
    "SqlNames",
    "TableRead",
    "build_documents",
    "decode_value",
    "install",
    "read_all",
    "read_namespace",
    "read_registered",
    "uninstall",
]

log = logging.getLogger("hotreload.daemon.db")
T = TypeVar("T")

_INSTALL_LOCK: Final = 0x686F7472_696E7374  # pg_advisory_xact_lock key serialising installs

DEFAULT_TABLE: Final = "hotreload_settings"
DEFAULT_CHANNEL: Final = "hotreload_settings"
DEFAULT_MAX_ROW_BYTES: Final = DEFAULT_MAX_MESSAGE_BYTES // 2
"""A row whose key and value (as JSON text) take more bytes is skipped without being fetched:
an event carries a value's old and new text and must fit in ``security.max_message_bytes``
(the daemon passes half of that; this is half of its default)."""


# --------------------------------------------------------------------------- SQL objects


@dataclass(frozen=True, slots=True)
class SqlNames:
    """The table and channel the SQL objects use (functions and triggers are named after both)."""

    table: str = DEFAULT_TABLE
    channel: str = DEFAULT_CHANNEL

    @classmethod
    def of(cls, settings: PostgresSettings) -> SqlNames:
        return cls(settings.settings_table, settings.notify_channel)

    def ident(self, suffix: str = "") -> sql.Identifier:
        return sql.Identifier(self.table + suffix)


_INSTALL: Final = """
CREATE TABLE IF NOT EXISTS {table} (
    namespace text NOT NULL,
    key text NOT NULL,
    value jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (namespace, key)
);

CREATE OR REPLACE FUNCTION {payload}(ns text, k text, op text) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $hr$
DECLARE
    p text := json_build_object('namespace', ns, 'key', k, 'op', op)::text;
BEGIN
    IF octet_length(p) >= 8000 THEN
        p := json_build_object('namespace', ns, 'op', op)::text;
    END IF;
    IF octet_length(p) >= 8000 THEN
        p := json_build_object('op', op)::text;
    END IF;
    RETURN p;
END $hr$;

CREATE OR REPLACE FUNCTION {notify}() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $hr$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM pg_notify({channel}, json_build_object('op', 'truncate')::text);
        RETURN NULL;
    END IF;
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify({channel}, {payload}(OLD.namespace, OLD.key, 'delete'));
        RETURN NULL;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        IF (OLD.namespace, OLD.key) IS DISTINCT FROM (NEW.namespace, NEW.key) THEN
            PERFORM pg_notify({channel}, {payload}(OLD.namespace, OLD.key, 'delete'));
        END IF;
    END IF;
    PERFORM pg_notify({channel}, {payload}(NEW.namespace, NEW.key, lower(TG_OP)));
    RETURN NULL;
END $hr$;

CREATE OR REPLACE FUNCTION {touch}() RETURNS trigger LANGUAGE plpgsql AS $hr$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END $hr$;

-- Every namespace that ever had a row: a full read reports an empty document for those with no
-- rows left, even if emptied while no daemon ran. The trigger only adds; delete here to forget.
CREATE TABLE IF NOT EXISTS {registry} (namespace text PRIMARY KEY);

CREATE OR REPLACE FUNCTION {register}() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $hr$
BEGIN
    INSERT INTO {registry} (namespace) VALUES (NEW.namespace) ON CONFLICT (namespace) DO NOTHING;
    RETURN NULL;
END $hr$;

DROP TRIGGER IF EXISTS {register_trigger} ON {table};
CREATE TRIGGER {register_trigger} AFTER INSERT OR UPDATE OF namespace ON {table}
    FOR EACH ROW EXECUTE FUNCTION {register}();
-- after the trigger exists (its creation waits for writers in flight): no namespace is missed
INSERT INTO {registry} (namespace) SELECT DISTINCT namespace FROM {table}
    ON CONFLICT (namespace) DO NOTHING;
DROP TRIGGER IF EXISTS {row_trigger} ON {table};
CREATE TRIGGER {row_trigger} AFTER INSERT OR UPDATE OR DELETE ON {table}
    FOR EACH ROW EXECUTE FUNCTION {notify}();
DROP TRIGGER IF EXISTS {truncate_trigger} ON {table};
CREATE TRIGGER {truncate_trigger} AFTER TRUNCATE ON {table}
    FOR EACH STATEMENT EXECUTE FUNCTION {notify}();
DROP TRIGGER IF EXISTS {touch_trigger} ON {table};
CREATE TRIGGER {touch_trigger} BEFORE UPDATE ON {table}
    FOR EACH ROW EXECUTE FUNCTION {touch}();
"""

_UNINSTALL: Final = """
DROP TABLE IF EXISTS {table};
DROP TABLE IF EXISTS {registry};
DROP FUNCTION IF EXISTS {register}();
DROP FUNCTION IF EXISTS {notify}();
DROP FUNCTION IF EXISTS {touch}();
DROP FUNCTION IF EXISTS {payload}(text, text, text);
"""


#: The functions `_UNINSTALL` drops: name suffix and argument types.
_FUNCTIONS: Final = (("_register", ""), ("_notify", ""), ("_touch", ""),
                     ("_payload", "text, text, text"))


def _render(template: str, names: SqlNames) -> sql.Composed:
    return sql.SQL(template).format(
        table=names.ident(),
        payload=names.ident("_payload"),
        notify=names.ident("_notify"),
        touch=names.ident("_touch"),
        registry=names.ident("_namespaces"),
        register=names.ident("_register"),
        register_trigger=names.ident("_register"),
        row_trigger=names.ident("_notify_row"),
        truncate_trigger=names.ident("_notify_truncate"),
        touch_trigger=names.ident("_touch"),
        channel=sql.Literal(names.channel),
    )


Target = AsyncConn | PostgresSettings | str


async def _run_script(target: Target, names: SqlNames | None, what: str,
                      body: Callable[[AsyncConn, SqlNames], Awaitable[T]]) -> T:
    """``body`` in one transaction holding the install lock (connecting first if need be)."""
    if isinstance(target, str):
        target = PostgresSettings(dsn=SecretStr(target))
    if names is None:
        names = SqlNames.of(target) if isinstance(target, PostgresSettings) else SqlNames()
    conn = await connect(target, purpose="hotreload-db") if isinstance(
        target, PostgresSettings) else target
    try:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_INSTALL_LOCK,))
            return await body(conn, names)
    except PG_ERRORS as exc:
        raise BackendError(f"{what} {names.table}: {describe(exc)}") from exc
    finally:
        if conn is not target:
            await conn.close()


async def install(target: Target, names: SqlNames | None = None) -> None:
    """Create (or update) the table, functions and triggers, idempotently, in one transaction.

    ``target`` is an open connection, a DSN, or the settings to connect with; ``names`` defaults
    to the settings' table and channel (else ``hotreload_settings`` for both).
    """

    async def body(conn: AsyncConn, names: SqlNames) -> SqlNames:
        await conn.execute(_render(_INSTALL, names))
        return names

    done = await _run_script(target, names, "installing", body)
    log.info("installed table %s (channel %s)", done.table, done.channel,
             extra={"action": "installed"})


async def uninstall(target: Target, names: SqlNames | None = None) -> list[str]:
    """Drop the table (with its rows!), functions and triggers, in one transaction.

    Returns what was there to drop, e.g. ``["table hotreload_settings (12 rows)",
    "function hotreload_settings_notify()", ...]`` (triggers go with their table); an empty
    list when nothing was installed.
    """

    async def body(conn: AsyncConn, names: SqlNames) -> list[str]:
        found = await _installed(conn, names)
        await conn.execute(_render(_UNINSTALL, names))
        return found

    dropped = await _run_script(target, names, "uninstalling", body)
    log.info("dropped %s", ", ".join(dropped) or "nothing (not installed)",
             extra={"action": "uninstalled"})
    return dropped


async def _installed(conn: AsyncConn, names: SqlNames) -> list[str]:
    """The SQL objects of ``names`` that exist, as `uninstall` reports them."""
    found: list[str] = []
    for suffix in ("", "_namespaces"):
        ident = names.ident(suffix)
        cur = await conn.execute("SELECT to_regclass(%s) IS NOT NULL", (ident.as_string(conn),))
        row = await cur.fetchone()
        if row and row[0]:
            cur = await conn.execute(sql.SQL("SELECT count(*) FROM {}").format(ident))
            count = await cur.fetchone()
            rows = int(count[0]) if count else 0
            found.append(f"table {names.table}{suffix} ({rows} row{'' if rows == 1 else 's'})")
    for suffix, args in _FUNCTIONS:
        ident = names.ident(suffix)
        cur = await conn.execute("SELECT to_regprocedure(%s) IS NOT NULL",
                                 (f"{ident.as_string(conn)}({args})",))
        row = await cur.fetchone()
        if row and row[0]:
            found.append(f"function {names.table}{suffix}({args})")
    return found


# --------------------------------------------------------------------------- reading


@dataclass(slots=True)
class TableRead:
    """Nested documents by namespace, and one line per row that was skipped."""

    documents: dict[str, dict[str, Any]] = field(default_factory=dict)
    problems: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Unusable:
    """The value of a row that cannot be used, and why (one line)."""

    why: str


def build_documents(rows: Iterable[tuple[str, str, Any]]) -> TableRead:
    """Rows ``(namespace, dotted key, JSON value)`` to nested documents (pure; no I/O).

    A row with an invalid namespace or key (docs/protocol.md §2: at most 32 segments and 512
    bytes, the segments of an object value included), a value that is not plain JSON or whose
    leaves nest more than `MAX_LEAF_DEPTH` levels, or whose key clashes with another row's
    (``db`` = 5 beside ``db.pool`` = 3), is skipped and reported in ``problems``; the others
    still count. A row whose value is an object contributes that whole subtree.
    """
    flat: dict[str, dict[str, Any]] = {}
    inner: dict[str, set[str]] = {}
    out = TableRead()
    for ns, key, value in sorted(rows, key=lambda r: (r[0], r[1])):
        where = f"row ({_short(ns)}, {_short(key)})"
        try:
            check_name(ns, "namespace")
        except HotReloadError as exc:
            out.problems.setdefault(ns, []).append(f"{where}: {exc}")
            continue
        leaves = flat.setdefault(ns, {})
        parents = inner.setdefault(ns, set())
        try:
            entries = _entries(key, value)
            _check_clash(entries, leaves, parents)
        except HotReloadError as exc:
            out.problems.setdefault(ns, []).append(f"{where}: {exc}")
            continue
        for k, v in entries.items():
            leaves[k] = v
            parts = k.split(".")
            parents.update(".".join(parts[:i]) for i in range(1, len(parts)))
    for ns, leaves in flat.items():
        # An empty object with keys below it (rows ``e`` = {} and ``e.f`` = 1) is that object.
        parents = inner[ns]
        out.documents[ns] = unflatten({k: v for k, v in leaves.items()
                                       if not (v == {} and k in parents)})
    return out


def _entries(key: str, value: Any) -> dict[str, Any]:
    """The leaves one row sets, each key and value checked (`ProtocolError` otherwise)."""
    check_key(key)
    if isinstance(value, _Unusable):
        raise ProtocolError(value.why)
    nested: Any = value
    for segment in reversed(key.split(".")):  # the row as a document: keys in full
        nested = {segment: nested}
    entries = flatten(nested)
    for k, v in entries.items():
        check_json_value(v, k, max_depth=MAX_LEAF_DEPTH)
    return entries


def _short(text: Any) -> str:
    """``text`` for a one-line message: repr'd, cut if long."""
    if not isinstance(text, str):
        return f"a {type(text).__name__}"
    return repr(text if len(text) <= 60 else text[:60] + "…")


def decode_value(text: str | None, size: int | None, max_row_bytes: int) -> Any:
    """A row's value from its JSON text (None: SQL NULL) and the size of its key and value.

    Never raises: what cannot be used comes back as a marker that `build_documents` reports.
    """
    if size is None:
        return _Unusable("the value is NULL (the JSON null is 'null')")
    if text is None or size > max_row_bytes:
        return _Unusable(f"key and value take {size} bytes, over the limit of {max_row_bytes} "
                         "bytes (half of security.max_message_bytes)")
    try:
        return loads(text, max_depth=MAX_DEPTH, what="the value")
    except ProtocolError as exc:
        return _Unusable(str(exc))


def _check_clash(entries: dict[str, Any], leaves: dict[str, Any], parents: set[str]) -> None:
    for k, v in entries.items():
        parts = k.split(".")
        ancestors = [".".join(parts[:i]) for i in range(1, len(parts))]
        clash = next((a for a in ancestors if a in leaves and leaves[a] != {}), None)
        if k in leaves or (k in parents and v != {}) or clash is not None:
            raise ProtocolError(f"key {k!r} clashes with another row ({clash or k!r} is set)")


# Values come as text, decoded here (psycopg's jsonb loader recurses without a bound); a value
# too big is not even sent. ``value::text`` also reads a hand-made ``json`` or ``text`` column.
_SELECT: Final = """
SELECT namespace, key,
       CASE WHEN octet_length(key) + octet_length(value::text) <= %s THEN value::text END,
       octet_length(key) + octet_length(value::text)
FROM {}"""


async def read_all(conn: AsyncConn, table: str = DEFAULT_TABLE, *,
                   max_row_bytes: int = DEFAULT_MAX_ROW_BYTES) -> TableRead:
    """Every namespace of the settings table, in one statement (one snapshot)."""
    query = sql.SQL(_SELECT).format(sql.Identifier(table))
    return await _read(conn, query, (max_row_bytes,), max_row_bytes)


async def read_namespace(conn: AsyncConn, namespace: str, table: str = DEFAULT_TABLE, *,
                         max_row_bytes: int = DEFAULT_MAX_ROW_BYTES) -> TableRead:
    """One namespace of the settings table (absent from ``documents`` if it has no rows)."""
    query = sql.SQL(_SELECT + " WHERE namespace = %s").format(sql.Identifier(table))
    return await _read(conn, query, (max_row_bytes, namespace), max_row_bytes)


async def read_registered(conn: AsyncConn, table: str = DEFAULT_TABLE) -> set[str] | None:
    """Every namespace that ever had a row (table ``<table>_namespaces``, kept by a trigger).

    None if that table does not exist (installed by an older version: re-run ``db install``).
    """
    query = sql.SQL("SELECT namespace FROM {}").format(sql.Identifier(table + "_namespaces"))
    try:
        cur = await conn.execute(query)
        rows = await cur.fetchall()
    except psycopg.errors.UndefinedTable:
        return None
    except PG_ERRORS as exc:
        raise BackendError(f"cannot read the namespace registry: {describe(exc)}") from exc
    return {r[0] for r in rows}


async def _read(conn: AsyncConn, query: sql.Composed, params: tuple[Any, ...],
                max_row_bytes: int) -> TableRead:
    try:
        cur = await conn.execute(query, params)
        rows = await cur.fetchall()
    except PG_ERRORS as exc:
        raise BackendError(f"cannot read the settings table: {describe(exc)}") from exc
    return build_documents((r[0], r[1], decode_value(r[2], r[3], max_row_bytes)) for r in rows)
