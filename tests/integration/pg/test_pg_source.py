"""The PostgreSQL source against the real server: trigger, LISTEN, invalidations, reconnects."""

from __future__ import annotations

import asyncio
import logging
import os
import socket

import psycopg
import pytest
from _pg_helpers import (
    PG_URL,
    BlackHoleProxy,
    RecordingSink,
    _free_port,
    make_settings,
    psql,
    terminate,
    unique,
    wait_until,
)
from psycopg import sql

from hotreload.config import PostgresSettings
from hotreload.daemon import db, pgconn
from hotreload.daemon.sources.postgres import PostgresSource

pytestmark = pytest.mark.integration

Running = tuple[PostgresSource, RecordingSink]


def table(s: PostgresSettings) -> str:
    return sql.Identifier(s.settings_table).as_string()


async def test_install_is_idempotent_and_keeps_rows(settings: PostgresSettings) -> None:
    await psql(PG_URL, f"INSERT INTO {table(settings)} VALUES ('app', 'a', '1')")
    await db.install(settings)
    await db.install(settings)
    async with await pgconn.connect(settings) as conn:
        read = await db.read_all(conn, settings.settings_table)
        cur = await conn.execute(
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = %s::regclass AND NOT tgisinternal",
            (settings.settings_table,))
        row = await cur.fetchone()
    assert read.documents == {"app": {"a": 1}}
    assert row == (4,)


async def test_namespace_emptied_while_no_daemon_runs_is_reported_empty(
    settings: PostgresSettings,
) -> None:
    t = table(settings)
    await psql(PG_URL, f"INSERT INTO {t} VALUES ('gone', 'a', '1'), ('kept', 'b', '2')")
    first = RecordingSink()
    await PostgresSource(settings, default_namespace="app").reconcile(first)
    assert sorted(first.desired_calls) == [("gone", {"a": 1}), ("kept", {"b": 2})]
    await psql(PG_URL, f"DELETE FROM {t} WHERE namespace = 'gone'")  # no daemon runs
    second = RecordingSink()  # the next daemon: a fresh source knows nothing
    await PostgresSource(settings, default_namespace="app").reconcile(second)
    assert sorted(second.desired_calls) == [("gone", {}), ("kept", {"b": 2})]


async def test_reinstall_registers_namespaces_of_existing_rows(
    settings: PostgresSettings,
) -> None:
    # a table from before the registry existed: re-running install registers its namespaces
    t = table(settings)
    registry = sql.Identifier(settings.settings_table + "_namespaces").as_string()
    await psql(PG_URL, f"INSERT INTO {t} VALUES ('old', 'a', '1'), ('bad name!', 'a', '1')")
    await psql(PG_URL, f"DROP TABLE {registry}")
    await db.install(settings)
    await psql(PG_URL, f"DELETE FROM {t}")
    sink = RecordingSink()
    await PostgresSource(settings, default_namespace="app").reconcile(sink)
    assert sink.desired_calls == [("old", {})]  # an invalid name is never reported


async def test_missing_registry_warns_once_and_still_reads(
    settings: PostgresSettings, caplog: pytest.LogCaptureFixture,
) -> None:
    registry = sql.Identifier(settings.settings_table + "_namespaces").as_string()
    register = sql.Identifier(settings.settings_table + "_register").as_string()
    await psql(PG_URL, f"DROP TABLE {registry}; DROP FUNCTION {register}() CASCADE")  # old install
    await psql(PG_URL, f"INSERT INTO {table(settings)} VALUES ('app', 'a', '1')")
    source, sink = PostgresSource(settings, default_namespace="app"), RecordingSink()
    await source.reconcile(sink)
    await source.reconcile(sink)
    assert sink.desired_calls == [("app", {"a": 1})] * 2
    warned = [r for r in caplog.records if getattr(r, "action", None) == "no_registry"]
    assert len(warned) == 1


async def test_install_from_a_dsn_or_a_connection() -> None:
    names = db.SqlNames(unique("hr_t"), unique("hr_c"))
    await db.install(PG_URL, names)
    async with await psycopg.AsyncConnection.connect(PG_URL) as conn:
        await db.install(conn, names)
        await db.uninstall(conn, names)
        cur = await conn.execute("SELECT to_regclass(%s)", (names.table,))
        assert await cur.fetchone() == (None,)


async def test_psql_update_reaches_desired(running: Running, settings: PostgresSettings) -> None:
    _, sink = running
    t = table(settings)
    await psql(PG_URL, f"INSERT INTO {t} VALUES ('app', 'db.pool_size', '10'), "
                       f"('app', 'db.host', '\"pg1\"')")
    await sink.wait_desired("app", {"db": {"pool_size": 10, "host": "pg1"}})
    await psql(PG_URL, f"UPDATE {t} SET value = '20' WHERE namespace = 'app' "
                       "AND key = 'db.pool_size'")
    await sink.wait_desired("app", {"db": {"pool_size": 20, "host": "pg1"}})
    await psql(PG_URL, f"DELETE FROM {t} WHERE key = 'db.host'")
    await sink.wait_desired("app", {"db": {"pool_size": 20}})
    await psql(PG_URL, f"DELETE FROM {t} WHERE namespace = 'app'")
    await sink.wait_desired("app", {})


async def test_truncate_empties_every_namespace(running: Running,
                                                settings: PostgresSettings) -> None:
    _, sink = running
    t = table(settings)
    await psql(PG_URL, f"INSERT INTO {t} VALUES ('n1', 'a', '1'), ('n2', 'b', '[1, 2]')")
    await sink.wait_desired("n1", {"a": 1})
    await sink.wait_desired("n2", {"b": [1, 2]})
    await psql(PG_URL, f"TRUNCATE {t}")
    await sink.wait_desired("n1", {})
    await sink.wait_desired("n2", {})


async def test_bad_row_is_reported_not_fatal(running: Running,
                                             settings: PostgresSettings) -> None:
    _, sink = running
    t = table(settings)
    await psql(PG_URL, f"INSERT INTO {t} VALUES ('app', 'ok', 'true'), ('app', 'bad..key', '1')")
    await sink.wait_desired("app", {"ok": True})
    await wait_until(lambda: any(r[1] == "row" and "bad..key" in r[2] for r in sink.rejections))
    accepted = sink.accepted_count
    await psql(PG_URL, f"DELETE FROM {t} WHERE key = 'bad..key'")
    await wait_until(lambda: sink.accepted_count > accepted, what="accepted again")


async def test_invalidation_channel(running: Running, settings: PostgresSettings) -> None:
    _, sink = running
    first, second = (c.channel for c in settings.invalidation_channels("app"))
    sink.invalidations.clear()
    await psql(PG_URL, f"""NOTIFY {first}, '{{"keys": ["user.42"], "prefixes": ["feed:"]}}'""")
    await wait_until(lambda: ("app", ("user.42",), ("feed:",), False) in sink.invalidations)
    await psql(PG_URL, f"""SELECT pg_notify('{second}', '{{"all": true}}')""")
    await wait_until(lambda: ("other", (), (), True) in sink.invalidations)
    await psql(PG_URL, f"""NOTIFY {first}, '{{"namespace": "ns3", "keys": ["k"]}}'""")
    await wait_until(lambda: ("ns3", ("k",), (), False) in sink.invalidations)


async def test_malformed_payload_is_rejected_and_listener_survives(
    running: Running, settings: PostgresSettings, caplog: pytest.LogCaptureFixture
) -> None:
    _, sink = running
    channel = settings.invalidation_channels("app")[0].channel
    caplog.set_level(logging.WARNING, "hotreload.daemon.sources.postgres")
    for bad in ("not json", "[1]", '{"keys": "x"}', '{"key": ["a"]}', "{}",
                '{"namespace": "bad ns", "all": true}'):
        await psql(PG_URL, f"SELECT pg_notify('{channel}', $${bad}$$)")
    await wait_until(lambda: len([r for r in sink.rejections if r[1] == "payload"]) == 6)
    assert all(channel in r[2] for r in sink.rejections)
    assert not any(getattr(r, "action", None) == "rejected" for r in caplog.records)  # sink's job
    await psql(PG_URL, f"""NOTIFY {channel}, '{{"keys": ["still.alive"]}}'""")
    await wait_until(lambda: ("app", ("still.alive",), (), False) in sink.invalidations)


async def test_terminated_listener_reconnects_and_reconciles(
    running: Running, settings: PostgresSettings
) -> None:
    source, sink = running
    t = table(settings)
    await psql(PG_URL, f"INSERT INTO {t} VALUES ('app', 'v', '1')")
    await sink.wait_desired("app", {"v": 1})
    sink.invalidations.clear()
    # Kill the source's backends (and wait until they are gone), then write at once: the NOTIFY
    # of this UPDATE has no listener, so only the reconnect's reconcile can see it.
    assert await terminate(settings) >= 1
    await psql(PG_URL, f"UPDATE {t} SET value = '2' WHERE key = 'v'")
    await sink.wait_desired("app", {"v": 2})
    await wait_until(lambda: source.reconnects >= 1, what="a reconnect")
    await wait_until(lambda: ("app", (), (), True) in sink.invalidations
                     and ("other", (), (), True) in sink.invalidations)
    await psql(PG_URL, f"UPDATE {t} SET value = '3' WHERE key = 'v'")
    await sink.wait_desired("app", {"v": 3})


async def test_reconcile_on_demand(settings: PostgresSettings) -> None:
    source = PostgresSource(settings, default_namespace="app")
    sink = RecordingSink()
    await psql(PG_URL, f"INSERT INTO {table(settings)} VALUES ('x', 'a.b', '{{\"c\": 1}}')")
    await source.reconcile(sink)
    assert sink.desired_calls == [("x", {"a": {"b": {"c": 1}}})]
    await psql(PG_URL, f"DELETE FROM {table(settings)}")
    await source.reconcile(sink)
    assert sink.desired_calls[-1] == ("x", {})


async def test_many_updates_coalesce(running: Running, settings: PostgresSettings) -> None:
    _, sink = running
    t = table(settings)
    await psql(PG_URL, f"INSERT INTO {t} SELECT 'bulk', 'k' || i, to_jsonb(i) "
                       "FROM generate_series(1, 500) i")
    await sink.wait_desired("bulk", {f"k{i}": i for i in range(1, 501)})
    assert len([c for c in sink.desired_calls if c[0] == "bulk"]) < 50


async def test_unreachable_server_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    s = make_settings(f"postgresql://postgres@127.0.0.1:{_free_port()}/x",
                      reconnect_backoff_max=0.05)
    source = PostgresSource(s, default_namespace="app")
    caplog.set_level(logging.DEBUG, "hotreload.daemon.sources.postgres")
    task = asyncio.create_task(source.run(RecordingSink()))
    await wait_until(lambda: sum(r.levelno == logging.DEBUG for r in caplog.records) >= 3)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert getattr(warnings[0], "action", None) == "connect_failed"


async def test_black_holed_link_is_detected_by_heartbeat(settings: PostgresSettings) -> None:
    proxy = BlackHoleProxy()
    await proxy.start()
    s = make_settings(proxy.url(), settings_table=settings.settings_table,
                      notify_channel=settings.notify_channel,
                      heartbeat_interval=0.3, heartbeat_timeout=1.0)
    source = PostgresSource(s, default_namespace="app")
    sink = RecordingSink()
    task = asyncio.create_task(source.run(sink))
    try:
        await wait_until(lambda: source.connected)
        proxy.freeze()  # silent: no FIN, no RST, no bytes
        await psql(PG_URL, f"INSERT INTO {table(settings)} VALUES ('app', 'late', '1')")
        await wait_until(lambda: source.reconnects >= 1, 15, "heartbeat reconnect")
        await sink.wait_desired("app", {"late": 1})
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await proxy.close()


@pytest.mark.parametrize("frozen", [False, True])
async def test_cancel_is_prompt(settings: PostgresSettings, frozen: bool) -> None:
    proxy = BlackHoleProxy()
    await proxy.start()
    s = make_settings(proxy.url(), settings_table=settings.settings_table,
                      notify_channel=settings.notify_channel, heartbeat_interval=0.1,
                      heartbeat_timeout=30.0)
    source = PostgresSource(s, default_namespace="app")
    task = asyncio.create_task(source.run(RecordingSink()))
    try:
        await wait_until(lambda: source.connected)
        if frozen:
            proxy.freeze()
            await psql(PG_URL, f"INSERT INTO {table(settings)} VALUES ('app', 'k', '1')")
        t0 = asyncio.get_running_loop().time()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert asyncio.get_running_loop().time() - t0 < 2.0
        assert task.cancelled()
    finally:
        await proxy.close()


async def test_socket_has_keepalives_and_user_timeout() -> None:
    s = make_settings(keepalives_idle=7, keepalives_interval=3, keepalives_count=4,
                      tcp_user_timeout_ms=9000)
    async with await pgconn.connect(s) as conn:
        sock = socket.socket(fileno=os.dup(conn.fileno()))
        try:
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 7
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 3
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 4
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 9000
        finally:
            sock.close()
        assert conn.autocommit
