"""Hostile rows in the settings table (issue 8): each is skipped and reported, never fatal.

A single 2,000-level jsonb row used to stop the whole PostgreSQL source ("maximum recursion depth
exceeded while decoding a JSON object" in psycopg's jsonb loader, on every read): every
namespace fed by PostgreSQL froze until the row was deleted.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from _pg_helpers import PG_URL, RecordingSink, psql, wait_until
from psycopg import sql

from hotreload.config import PostgresSettings
from hotreload.daemon import db
from hotreload.daemon.sources.postgres import PostgresSource
from hotreload.wire import MAX_KEY_SEGMENTS, MAX_LEAF_DEPTH

pytestmark = pytest.mark.integration

DEEP = "[" * 2000 + "]" * 2000


def table(s: PostgresSettings) -> str:
    return sql.Identifier(s.settings_table).as_string()


def rejected(sink: RecordingSink, *needles: str) -> bool:
    return any(r[1] == "row" and all(n in r[2] for n in needles) for r in sink.rejections)


Started = tuple[PostgresSource, RecordingSink]


@pytest.fixture
async def start(settings: PostgresSettings) -> AsyncIterator[Callable[[], Awaitable[Started]]]:
    """Starts a source once the test has written its rows (its first full read sees them)."""
    tasks: list[asyncio.Task[None]] = []

    async def starter() -> Started:
        source = PostgresSource(settings, default_namespace="app")
        sink = RecordingSink()
        task = asyncio.create_task(source.run(sink))
        tasks.append(task)
        await wait_until(lambda: source.connected or task.done(), what="source connected")
        return source, sink

    yield starter
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_2000_level_jsonb_row_is_skipped_and_everything_else_publishes(
    running: tuple[PostgresSource, RecordingSink], settings: PostgresSettings
) -> None:
    source, sink = running
    t = table(settings)
    await psql(PG_URL, f"INSERT INTO {t} VALUES ('app', 'db.pool', '10'), ('other', 'x', '1')")
    await sink.wait_desired("app", {"db": {"pool": 10}})
    await sink.wait_desired("other", {"x": 1})

    await psql(PG_URL, f"INSERT INTO {t} VALUES ('app', 'deep', '{DEEP}')")
    await wait_until(lambda: rejected(sink, "('app', 'deep')", "the value nests more than 64"),
                     what=f"the deep row reported, rejections={sink.rejections}")
    # the same namespace's good rows and every other namespace keep being published
    await psql(PG_URL, f"UPDATE {t} SET value = '20' WHERE namespace = 'app' AND key = 'db.pool'")
    await sink.wait_desired("app", {"db": {"pool": 20}})
    await psql(PG_URL, f"UPDATE {t} SET value = '2' WHERE namespace = 'other'")
    await sink.wait_desired("other", {"x": 2})
    await source.reconcile(sink)  # a full read (start-up, reconnect, periodic) too
    assert sink.last("app") == {"db": {"pool": 20}} and sink.last("other") == {"x": 2}
    assert source.connected and source.reconnects == 0

    accepted = sink.accepted_count
    await psql(PG_URL, f"DELETE FROM {t} WHERE key = 'deep'")
    await wait_until(lambda: sink.accepted_count > accepted, what="accepted again")


async def test_a_deep_row_present_at_start_up_does_not_stop_the_source(
    start: Callable[[], Awaitable[Started]], settings: PostgresSettings
) -> None:
    t = table(settings)
    await psql(PG_URL, f"INSERT INTO {t} VALUES ('app', 'deep', '{DEEP}'), ('app', 'ok', '1'), "
                       f"('other', 'y', '{{\"z\": [1]}}')")
    _, sink = await start()
    await sink.wait_desired("app", {"ok": 1})
    await sink.wait_desired("other", {"y": {"z": [1]}})
    assert rejected(sink, "('app', 'deep')", "the value nests more than 64 levels")
    await psql(PG_URL, f"INSERT INTO {t} VALUES ('other', 'w', 'true')")
    await sink.wait_desired("other", {"y": {"z": [1]}, "w": True})


async def test_every_kind_of_bad_jsonb_row_is_skipped_and_reported(
    start: Callable[[], Awaitable[Started]], settings: PostgresSettings
) -> None:
    t = table(settings)
    deep_key = ".".join(["k"] * (MAX_KEY_SEGMENTS + 1))
    too_deep_leaf = "[" * (MAX_LEAF_DEPTH + 1) + "]" * (MAX_LEAF_DEPTH + 1)
    await psql(PG_URL, f"""INSERT INTO {t} VALUES
        ('app', 'good', '"kept"'),
        ('app', 'deep', '{"[" * 150 + "]" * 150}'),
        ('app', 'a.b', '{too_deep_leaf}'),
        ('app', 'bad..key', '1'),
        ('app', '', '1'),
        ('app', '{deep_key}', '1'),
        ('app', 'huge', to_jsonb(repeat('x', 600000))),
        ('app', 'obj', '{{"dotted.name": 1}}'),
        ('app', 'c', '1'),
        ('app', 'c.d', '2'),
        ('app', 'e', '{{"f": 1}}'),
        ('app', 'e.f', '2'),
        ('app', 'big', '1e5000'),
        ('app', 'nan', to_jsonb('NaN'::float8)),
        ('bad name!', 'x', '1'),
        ('other', 'fine', '[1, 2]')
    """)
    source, sink = await start()
    await sink.wait_desired("other", {"fine": [1, 2]})
    await sink.wait_desired("app", {"good": "kept", "c": 1, "e": {"f": 1}, "nan": "NaN"})
    for row, why in [
        ("('app', 'deep')", "the value nests more than 64 levels"),
        ("('app', 'a.b')", "a.b: nests more than 32 levels"),
        ("('app', 'bad..key')", "invalid settings key"),
        ("('app', '')", "invalid settings key"),
        ("has 33 segments (at most 32)", "invalid settings key"),
        ("('app', 'huge')", f"over the limit of {db.DEFAULT_MAX_ROW_BYTES} bytes"),
        ("('app', 'obj')", "invalid settings key 'obj.dotted.name'"),
        ("('app', 'c.d')", "clashes with another row"),
        ("('app', 'e.f')", "clashes with another row"),
        ("('app', 'big')", "not valid JSON"),
        ("('bad name!', 'x')", "invalid namespace"),
    ]:
        assert rejected(sink, row, why), (row, why, sink.rejections)
    assert len({r[2] for r in sink.rejections}) == 11, sink.rejections
    assert all("\n" not in r[2] and len(r[2]) < 400 for r in sink.rejections)
    # each bad row is reported once, not on every read
    await source.reconcile(sink)
    assert len(sink.rejections) == 11


async def test_rows_a_looser_column_allows_are_skipped_too(
    start: Callable[[], Awaitable[Started]], settings: PostgresSettings
) -> None:
    """A table made by hand with ``value text`` (nullable) instead of ``jsonb NOT NULL``."""
    t = table(settings)
    await psql(PG_URL, f"ALTER TABLE {t} ALTER COLUMN value DROP NOT NULL, "
                       "ALTER COLUMN value TYPE text")
    await psql(PG_URL, f"""INSERT INTO {t} VALUES
        ('app', 'ok', '{{"n": 1}}'),
        ('app', 'null', NULL),
        ('app', 'json_null', 'null'),
        ('app', 'text', 'not json'),
        ('app', 'nan', 'NaN'),
        ('app', 'inf', '{{"x": Infinity}}'),
        ('app', 'overflow', '1e999'),
        ('app', 'surrogate', '"\\ud800"'),
        ('app', 'deep', '{DEEP}'),
        ('other', 'fine', 'true')
    """)
    _, sink = await start()
    await sink.wait_desired("other", {"fine": True})
    await sink.wait_desired("app", {"ok": {"n": 1}, "json_null": None})
    for row, why in [
        ("('app', 'null')", "the value is NULL"),
        ("('app', 'text')", "not valid JSON"),
        ("('app', 'nan')", "not valid JSON"),
        ("('app', 'inf')", "not valid JSON"),
        ("('app', 'overflow')", "inf is not valid JSON"),
        ("('app', 'surrogate')", "lone surrogate"),
        ("('app', 'deep')", "the value nests more than 64 levels"),
    ]:
        assert rejected(sink, row, why), (row, why, sink.rejections)
    assert len(sink.rejections) == 7, sink.rejections
    await psql(PG_URL, f"UPDATE {t} SET value = '2' WHERE namespace = 'other'")
    await sink.wait_desired("other", {"fine": 2})


async def test_deeply_nested_notify_payloads_do_not_stop_the_listener(
    running: tuple[PostgresSource, RecordingSink], settings: PostgresSettings
) -> None:
    """A deep payload on the settings channel crashed the listener (it reconnected)."""
    source, sink = running
    t = table(settings)
    deep = "[" * 7000  # a NOTIFY payload stays below 8000 bytes
    await psql(PG_URL, f"SELECT pg_notify('{settings.notify_channel}', repeat('[', 7000))")
    channel = next(iter(source.channels))
    await psql(PG_URL, f"SELECT pg_notify('{channel}', '{deep}')")
    await wait_until(lambda: any(r[1] == "payload" and "nests more than" in r[2]
                                 for r in sink.rejections), what=f"{sink.rejections}")
    await psql(PG_URL, f"INSERT INTO {t} VALUES ('app', 'after', '1')")
    await sink.wait_desired("app", {"after": 1})
    assert source.connected and source.reconnects == 0
