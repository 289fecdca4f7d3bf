"""Writing settings through the PostgreSQL settings table, the source of truth (docs/postgres.md).

`write_settings` turns a publish (dotted keys to set and delete, or a whole document) into the
upserts and deletes of the namespace's rows, in one transaction; the daemon then publishes it.
The planning is the publisher's (`plan_update` / `plan_replace`), so dotted keys, objects and
deletions mean exactly what they mean to `Publisher.publish` and `replace`.

Rows are changed as little as possible: a row whose part of the document is unchanged is left
alone; a row whose part changed gets its new value (an object row gets its new subtree); a row
whose part is gone is deleted; new values are new rows, one per leaf. Rows the daemon skips as
bad stay as they are (and are reported).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from psycopg import sql

from ..config import HotReloadConfig, PostgresSettings
from ..errors import BackendError, ConfigError, InputError, ProtocolError
from ..publisher.state import NamespaceState, plan_replace, plan_update, value_changes
from ..wire import (
    Change,
    canonical_json,
    check_json_value,
    check_name,
    flatten,
    flatten_texts,
    loads,
    unflatten,
)
from . import db
from .pgconn import PG_ERRORS, AsyncConn, connect, describe

__all__ = ["PgWrite", "read_document", "write_settings"]

log = logging.getLogger("hotreload.daemon.pgwrite")


@dataclass(frozen=True, slots=True)
class PgWrite:
    """What `write_settings` did: the namespace's document after it, the changes (values, as
    a publish reports them), the rows written and deleted, and the bad rows left alone."""

    namespace: str
    changed: bool
    changes: tuple[Change, ...]
    document: dict[str, Any]
    upserted: int = 0
    deleted: int = 0
    skipped: tuple[str, ...] = ()


async def write_settings(
    config: HotReloadConfig,
    namespace: str,
    sets: Mapping[str, Any] | None = None,
    deletes: Iterable[str] = (),
    document: Mapping[str, Any] | None = None,
) -> PgWrite:
    """Set ``sets`` and delete ``deletes`` (dotted keys, as `Publisher.publish`), or make the
    namespace exactly ``document`` (as `Publisher.replace`), in the settings table, in one
    transaction. A bad argument raises `InputError` before anything is written."""
    settings = _settings(config)
    ns, plan = _plan(namespace, sets, deletes, document)
    max_row = config.security.max_message_bytes // 2
    conn = await connect(settings, purpose="hotreload-write")
    try:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s), hashtext(%s))",
                               (settings.settings_table, ns))
            rows, skipped = await _rows(conn, settings.settings_table, ns, max_row)
            current = _document(rows)
            state = NamespaceState.from_texts(flatten_texts(current), flatten(current))
            changes, parsed = plan(state)
            public = value_changes(state, changes, parsed)
            state.apply(changes, parsed)
            if not changes:
                return PgWrite(ns, False, (), current, skipped=tuple(skipped))
            upserts, removals = _row_changes(rows, state.values)
            for key, value in upserts.items():
                text = canonical_json(value)
                if len(key.encode()) + len(text.encode()) > max_row:
                    raise InputError(f"the value of {key!r} takes {len(text.encode())} bytes: a "
                                     f"row over {max_row} bytes (half of "
                                     "security.max_message_bytes) could never be published")
            table = sql.Identifier(settings.settings_table)
            for key in removals:
                await conn.execute(sql.SQL("DELETE FROM {} WHERE namespace = %s AND key = %s")
                                   .format(table), (ns, key))
            for key, value in upserts.items():
                await conn.execute(sql.SQL(
                    "INSERT INTO {} (namespace, key, value) VALUES (%s, %s, %s::jsonb) "
                    "ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value"
                ).format(table), (ns, key, canonical_json(value)))
    except PG_ERRORS as exc:
        raise BackendError(f"writing {ns!r} to the settings table {settings.settings_table}: "
                           f"{describe(exc)}") from exc
    finally:
        await conn.close()
    log.info("wrote %s to the settings table: %d rows upserted, %d deleted", ns, len(upserts),
             len(removals), extra={"action": "pg_written", "namespace": ns})
    return PgWrite(ns, True, public, unflatten(state.values), len(upserts), len(removals),
                   tuple(skipped))


async def read_document(config: HotReloadConfig, namespace: str
                        ) -> tuple[dict[str, Any], list[str]]:
    """The namespace's document in the settings table (``{}``: no rows), and one line per bad
    row the daemon skips."""
    settings = _settings(config)
    ns = check_name(namespace, "namespace")
    conn = await connect(settings, purpose="hotreload-read")
    try:
        read = await db.read_namespace(conn, ns, settings.settings_table,
                                       max_row_bytes=config.security.max_message_bytes // 2)
    finally:
        await conn.close()
    return read.documents.get(ns, {}), read.problems.get(ns, [])


# --------------------------------------------------------------------------- planning


def _settings(config: HotReloadConfig) -> PostgresSettings:
    if config.postgres is None:
        raise ConfigError("writing through PostgreSQL needs a postgres section in the config")
    return config.postgres


def _plan(namespace: str, sets: Mapping[str, Any] | None, deletes: Iterable[str],
          document: Mapping[str, Any] | None) -> tuple[str, Any]:
    """The checked namespace and the planning function (every check before any I/O)."""
    try:
        ns = check_name(namespace, "namespace")
        if document is not None:
            if sets or list(deletes):
                raise InputError("give a document, or keys to set and delete, not both")
            if not isinstance(document, Mapping):
                raise InputError("the document must be a mapping of settings")
            check_json_value(document, "document")
            doc = loads(canonical_json(document))
            plan_replace(NamespaceState(), doc)
            return ns, lambda st: plan_replace(st, doc)
        if sets is not None and not isinstance(sets, Mapping):
            raise InputError("sets must be a mapping of dotted keys to values")
        todo, gone = dict(sets or {}), list(deletes)
        plan_update(NamespaceState(), todo, gone)
        return ns, lambda st: plan_update(st, todo, gone)
    except InputError:
        raise
    except ProtocolError as exc:
        raise InputError(str(exc)) from None


def _document(rows: Mapping[str, Any]) -> dict[str, Any]:
    """The namespace's document made of its good rows (the daemon's assembly)."""
    read = db.build_documents(("ns", key, value) for key, value in rows.items())
    return read.documents.get("ns", {})


def _row_changes(rows: Mapping[str, Any], leaves: Mapping[str, Any]
                 ) -> tuple[dict[str, Any], list[str]]:
    """The rows to upsert (key -> value) and to delete so that the rows make ``leaves``."""
    upserts: dict[str, Any] = {}
    removals: list[str] = []
    covered: set[str] = set()
    for key, value in rows.items():
        below = key + "."
        part = {k: v for k, v in leaves.items() if k == key or k.startswith(below)}
        covered.update(part)
        if not part:
            removals.append(key)
            continue
        new = part[key] if key in part else unflatten(
            {k[len(below):]: v for k, v in part.items()})
        if canonical_json(new) != canonical_json(value):
            upserts[key] = new
    for key, value in leaves.items():
        if key not in covered:
            upserts[key] = value
    return upserts, sorted(removals)


async def _rows(conn: AsyncConn, table: str, ns: str, max_row: int
                ) -> tuple[dict[str, Any], list[str]]:
    """The namespace's good rows (key -> value, locked for this transaction) and the bad ones
    (described, left alone)."""
    query = sql.SQL(
        "SELECT key, CASE WHEN octet_length(key) + octet_length(value::text) <= %s "
        "THEN value::text END, octet_length(key) + octet_length(value::text) "
        "FROM {} WHERE namespace = %s ORDER BY key FOR UPDATE").format(sql.Identifier(table))
    cur = await conn.execute(query, (max_row, ns))
    raw = {key: db.decode_value(text, size, max_row) for key, text, size in await cur.fetchall()}
    read = db.build_documents(("ns", key, value) for key, value in raw.items())
    bad = read.problems.get("ns", [])
    good_keys = _good_rows(raw, read.documents.get("ns", {}))
    return {k: raw[k] for k in good_keys}, [line.replace("'ns'", repr(ns)) for line in bad]


def _good_rows(raw: Mapping[str, Any], document: Mapping[str, Any]) -> list[str]:
    """The rows whose every leaf is in ``document`` (the others were skipped as bad)."""
    leaves = flatten(document)
    good = []
    for key, value in raw.items():
        nested: Any = value
        for segment in reversed(key.split(".")):
            nested = {segment: nested}
        try:
            part = flatten(nested)
        except ProtocolError:
            continue
        if all(k in leaves and type(v) is type(leaves[k])
               and canonical_json(leaves[k]) == canonical_json(v) for k, v in part.items()):
            good.append(key)
    return good
