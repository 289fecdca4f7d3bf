"""End to end: psql → PostgreSQL → `hotreload daemon` (a real process) → Redis → a subscriber."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from hotreload import AsyncSubscriber, Invalidation
from hotreload.config import load_config
from tests.conftest import DATABASE_URL, REDIS_URL, await_until

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def psql(sql: str) -> None:
    """Run SQL through the real ``psql`` binary, as an operator would."""
    subprocess.run(["psql", DATABASE_URL, "-v", "ON_ERROR_STOP=1", "-qc", sql], check=True,
                   capture_output=True, timeout=30)


def hotreload(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "hotreload", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.fixture
def setup(tmp_path: Path, namespace: str) -> Iterator[dict[str, Any]]:
    uid = uuid.uuid4().hex[:10]
    names = {"table": f"t_{uid}", "channel": f"c_{uid}", "inv": f"inv_{uid}",
             "app": f"hr-e2e-{uid}"}
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"""
redis: {{url: "{REDIS_URL}"}}
namespace: {namespace}
postgres:
  dsn: "{DATABASE_URL}?application_name={names['app']}"
  settings_table: {names['table']}
  notify_channel: {names['channel']}
  heartbeat_channel: hb_{uid}
  heartbeat_interval: 0.5
  heartbeat_timeout: 2
  reconnect_backoff_max: 0.5
  leader_lock_key: {random.randint(1, 2**31 - 1)}
  channels: [{{channel: {names['inv']}, namespace: {namespace}}}]
daemon: {{http: null, reconcile_interval: 60}}
""")
    install = hotreload("-c", str(cfg), "db", "install")
    _, err = install.communicate(timeout=60)
    assert install.returncode == 0, err
    yield {"cfg": cfg, **names}
    uninstall = hotreload("-c", str(cfg), "db", "uninstall", "--yes")
    _, err = uninstall.communicate(timeout=60)
    assert uninstall.returncode == 0, err


async def test_psql_updates_reach_subscribers_even_across_a_listener_kill(
    setup: dict[str, Any], namespace: str
) -> None:
    table = setup["table"]
    psql(f"INSERT INTO {table} (namespace, key, value) VALUES "
         f"('{namespace}', 'db.pool_size', '10'), ('{namespace}', 'db.host', '\"db1\"')")
    daemon = hotreload("-c", str(setup["cfg"]), "daemon")
    config = load_config(setup["cfg"])
    sub: AsyncSubscriber[Any] = AsyncSubscriber(config, namespace=namespace)
    invalidations: list[Invalidation] = []
    sub.on_invalidate(invalidations.append)
    try:
        await sub.start(timeout=20)
        await await_until(lambda: sub.get("db.pool_size") == 10, 20, "the initial rows")
        assert sub.as_dict() == {"db": {"host": "db1", "pool_size": 10}}

        psql(f"UPDATE {table} SET value = '20' "
             f"WHERE namespace = '{namespace}' AND key = 'db.pool_size'")
        await await_until(lambda: sub.get("db.pool_size") == 20, 10, "the UPDATE")

        psql(f"""NOTIFY {setup['inv']}, '{{"keys": ["user:42"], "prefixes": ["orders:"]}}'""")
        await await_until(lambda: any(i.keys == ("user:42",) for i in invalidations), 10,
                          "the invalidation")

        # Kill the daemon's LISTEN connection; change a row while it reconnects.
        with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
            killed = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s AND query ~* '^(LISTEN|NOTIFY|SELECT 1)'",
                (setup["app"],)).fetchall()
        psql(f"UPDATE {table} SET value = '30' "
             f"WHERE namespace = '{namespace}' AND key = 'db.pool_size'")
        psql(f"DELETE FROM {table} WHERE namespace = '{namespace}' AND key = 'db.host'")
        await await_until(lambda: sub.as_dict() == {"db": {"pool_size": 30}}, 20,
                          "the changes made while reconnecting")
        assert any(killed)
        # notifications sent while it was away are gone: caches were told to drop everything
        await await_until(lambda: any(i.all for i in invalidations), 10, "invalidate-all")
    finally:
        await sub.aclose()
        daemon.send_signal(signal.SIGTERM)
        start = time.monotonic()
        _, err = await asyncio.to_thread(daemon.communicate, timeout=10)
        assert daemon.returncode == 0, err
        assert time.monotonic() - start < 2.5
        assert "Traceback" not in err
