"""The SQL examples of docs/postgres.md, run with psql against a fresh database."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest
from _pg_helpers import PG_URL, RecordingSink, make_settings, psql, wait_until
from psycopg import sql

from hotreload.daemon import db
from hotreload.daemon.sources.postgres import PostgresSource

pytestmark = pytest.mark.integration

DOC = Path(__file__).resolve().parents[3] / "docs" / "postgres.md"


def sql_blocks() -> list[str]:
    return re.findall(r"```sql\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)


@pytest.fixture
async def fresh_db() -> AsyncIterator[str]:
    name = f"hr_doc_{uuid.uuid4().hex[:12]}"
    async with await psycopg.AsyncConnection.connect(PG_URL, autocommit=True) as admin:
        await admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield PG_URL.rsplit("/", 1)[0] + "/" + name
    async with await psycopg.AsyncConnection.connect(PG_URL, autocommit=True) as admin:
        await admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(
            sql.Identifier(name)))


async def test_doc_sql_examples(fresh_db: str) -> None:
    writes, notifies, trigger = sql_blocks()
    defaults = {"settings_table": "hotreload_settings", "notify_channel": "hotreload_settings",
                "heartbeat_channel": "hotreload_heartbeat"}
    s = make_settings(fresh_db, channels=[
        "cache_invalidate", {"channel": "orders_changed", "namespace": "orders"}], **defaults)
    await db.install(s)
    source = PostgresSource(s, default_namespace="app")
    sink = RecordingSink()
    task = asyncio.create_task(source.run(sink))
    try:
        await wait_until(lambda: source.connected)
        await psql(fresh_db, writes)
        await sink.wait_desired("app", {"db": {"pool_size": 20},
                                        "features": {"search": True, "beta": {"ratio": 0.1}}})
        sink.invalidations.clear()
        await psql(fresh_db, notifies)
        expected = [("app", ("user.42", "user.43"), (), False),
                    ("orders", (), ("order:2024-",), False),
                    ("app", (), (), True),
                    ("orders", (), (), True)]
        await wait_until(lambda: sink.invalidations == expected, what=f"{sink.invalidations}")
        await psql(fresh_db, "CREATE TABLE users (id int PRIMARY KEY, name text)")
        await psql(fresh_db, trigger)
        await psql(fresh_db, "INSERT INTO users VALUES (7, 'ann')")
        await wait_until(lambda: ("app", ("user.7",), (), False) in sink.invalidations)
        assert not sink.rejections
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
