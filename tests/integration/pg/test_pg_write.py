"""`hotreload.daemon.pgwrite.write_settings`: a publish written through the settings table.

The same operations given to `AsyncPublisher.publish`/`replace` (on real Redis) and to
`write_settings` (on real PostgreSQL) give the same document: the planning is shared. Rows change
as little as possible, bad rows are left alone and reported, and a bad argument fails before
anything is written.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from _pg_helpers import PG_URL

from hotreload import AsyncPublisher, InputError
from hotreload.config import HotReloadConfig, PostgresSettings, build_config
from hotreload.daemon.pgwrite import read_document, write_settings
from tests.conftest import REDIS_URL, delete_keys, unique

pytestmark = pytest.mark.integration


def _config(settings: PostgresSettings) -> HotReloadConfig:
    return build_config({"redis": {"url": REDIS_URL}}, postgres=settings)


def _rows(settings: PostgresSettings, ns: str) -> dict[str, str]:
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        cur = conn.execute(f'SELECT key, value::text FROM "{settings.settings_table}" '
                           "WHERE namespace = %s ORDER BY key", (ns,))
        return {k: v for k, v in cur.fetchall()}


OPERATIONS: list[tuple[str, dict[str, Any]]] = [
    ("publish", {"sets": {"db.host": "a", "db.pool": 5, "feature": True}}),
    ("publish", {"sets": {"db": {"host": "b", "replica": {"n": 2}}}}),  # an object: a subtree
    ("publish", {"sets": {"db.replica.n": 3, "flags": []}}),
    ("publish", {"deletes": ["db.replica"]}),
    ("publish", {"sets": {"feature.ratio": 0.5}}),  # a key below a leaf replaces the leaf
    ("publish", {"sets": {"feature": {}}}),  # the empty object is a leaf
    ("publish", {"sets": {"db": 7}, "deletes": ["flags"]}),  # a leaf over an object
    ("replace", {"document": {"db": {"host": "c"}, "list": [1, {"x": None}], "e": {}}}),
    ("publish", {"sets": {}, "deletes": ["nothing.here"]}),  # no change
]


async def test_the_same_operations_give_the_same_document(settings: PostgresSettings) -> None:
    ns = unique("w")
    config = _config(settings)
    try:
        async with AsyncPublisher(config, namespace=ns) as pub:
            for verb, args in OPERATIONS:
                if verb == "replace":
                    published = await pub.replace(args["document"])
                    written = await write_settings(config, ns, document=args["document"])
                else:
                    published = await pub.publish(args.get("sets"), args.get("deletes", ()))
                    written = await write_settings(config, ns, args.get("sets"),
                                                   args.get("deletes", ()))
                snap = await pub.snapshot()
                document, bad = await read_document(config, ns)
                assert bad == []
                assert document == snap.settings == written.document, (verb, args)
                assert written.changed == published.changed, (verb, args)
                assert written.changes == published.changes, (verb, args)
    finally:
        delete_keys(f"hotreload:{{{ns}}}:*")


async def test_rows_change_as_little_as_possible(settings: PostgresSettings) -> None:
    ns = unique("w")
    config = _config(settings)
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        for key, value in (("db", '{"host": "a", "pool": 5}'), ("features.search", "true"),
                           ("z", '"keep"')):
            conn.execute(f'INSERT INTO "{settings.settings_table}" (namespace, key, value) '
                         "VALUES (%s, %s, %s)", (ns, key, value))
    result = await write_settings(config, ns, {"db.pool": 6, "new.key": [1]})
    assert result.upserted == 2 and result.deleted == 0
    assert _rows(settings, ns) == {"db": '{"host": "a", "pool": 6}', "features.search": "true",
                                   "new.key": "[1]", "z": '"keep"'}
    result = await write_settings(config, ns, deletes=["db.host", "features"])
    assert result.deleted == 1
    assert _rows(settings, ns) == {"db": '{"pool": 6}', "new.key": "[1]", "z": '"keep"'}
    result = await write_settings(config, ns, deletes=["db"])
    assert _rows(settings, ns) == {"new.key": "[1]", "z": '"keep"'}


async def test_bad_rows_are_left_alone_and_reported(settings: PostgresSettings) -> None:
    ns = unique("w")
    config = _config(settings)
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        for key, value in (("a..b", "1"), ("ok", "1"), ("ok.below", "2")):
            conn.execute(f'INSERT INTO "{settings.settings_table}" (namespace, key, value) '
                         "VALUES (%s, %s, %s)", (ns, key, value))
    result = await write_settings(config, ns, {"more": 2})
    assert result.document == {"ok": 1, "more": 2}
    assert len(result.skipped) == 2 and any("'a..b'" in line for line in result.skipped)
    assert set(_rows(settings, ns)) == {"a..b", "ok", "ok.below", "more"}


async def test_bad_arguments_fail_before_anything_is_written(settings: PostgresSettings) -> None:
    ns = unique("w")
    unreachable = settings.model_copy(update={"dsn": settings.dsn.__class__(
        "postgresql://postgres@127.0.0.1:1/none")})
    for call in (write_settings(_config(unreachable), ns, {"a..b": 1}),
                 write_settings(_config(unreachable), ns, {"x": float("nan")}),
                 write_settings(_config(unreachable), ns, {"x": 1}, document={"y": 2}),
                 write_settings(_config(unreachable), "bad ns", {"x": 1})):
        with pytest.raises(InputError):
            await call
    config = _config(settings)
    huge = "x" * (config.security.max_message_bytes // 2)
    with pytest.raises(InputError, match="could never be published"):
        await write_settings(config, ns, {"big": huge})
    assert _rows(settings, ns) == {}
