"""``hotreload publish --via postgres``: PostgreSQL stays the single source of truth.

A real daemon process (``hotreload daemon`` with the PostgreSQL source) runs; the CLI writes the
settings table, says so, and with ``--wait`` returns once the namespace shows the values.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from daemon_helpers import ROOT, SpawnDaemon, WriteConfig

from hotreload import AsyncPublisher
from hotreload.daemon import db
from hotreload.daemon.pgwrite import read_document

pytestmark = pytest.mark.integration

DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


async def cli(config: Path, *args: str) -> tuple[int, str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("HOTRELOAD_CONFIG", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hotreload", "-c", str(config), *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
async def pg_config(write_config: WriteConfig) -> Any:
    table = f"hr_via_{uuid.uuid4().hex[:8]}"
    postgres = {"dsn": DATABASE_URL, "settings_table": table, "notify_channel": table,
                "heartbeat_channel": f"{table}_hb",
                "leader_lock_key": uuid.uuid4().int % 2**62, "reconnect_backoff_max": 0.5}
    path, config = write_config(postgres=postgres)
    assert config.postgres is not None
    await db.install(config.postgres)
    yield path, config
    await db.uninstall(config.postgres)


async def test_publish_via_postgres_waits_for_the_daemon(
        pg_config: Any, spawn: SpawnDaemon, uid: str, tmp_path: Path) -> None:
    path, config = pg_config
    ns = f"via-{uid}"
    daemon = spawn(path, cli=True)
    code, out, err = await cli(path, "publish", "-n", ns, "--via", "postgres", "--wait",
                               "--timeout", "20", "db.pool=20", "feature=true")
    assert code == 0, err + daemon.text()[-3000:]
    assert f"written to PostgreSQL (the daemon publishes it): 2 changes in {ns}" in out
    assert "published v1" in out
    async with AsyncPublisher(config, namespace=ns) as reader:
        assert (await reader.snapshot()).settings == {"db": {"pool": 20}, "feature": True}

        # the config makes it the default; --file replaces the whole namespace
        data = yaml.safe_load(path.read_text())
        data["publish_via"] = "postgres"
        path.write_text(yaml.safe_dump(data))
        doc = tmp_path / "settings.yaml"
        doc.write_text("db: {pool: 30, host: h}\n")
        code, out, err = await cli(path, "publish", "-n", ns, "--wait", "--file", str(doc))
        assert code == 0, err
        assert "written to PostgreSQL" in out and "published v2" in out
        assert (await reader.snapshot()).settings == {"db": {"pool": 30, "host": "h"}}

        code, out, _ = await cli(path, "publish", "-n", ns, "--wait", "--file", str(doc))
        assert code == 0 and "no change" in out
    daemon.terminate()


async def test_wait_without_a_daemon_fails_clearly(pg_config: Any, uid: str) -> None:
    path, config = pg_config
    ns = f"via-{uid}"
    code, out, err = await cli(path, "publish", "-n", ns, "--via", "postgres", "--wait",
                               "--timeout", "1", "a=1")
    assert code == 1
    assert "written to PostgreSQL" in out
    assert f"error: written to PostgreSQL, but '{ns}' did not show it within 1s" in err
    rows, _ = await read_document(config, ns)
    assert rows == {"a": 1}  # written, waiting for a daemon: nothing lost


async def test_via_postgres_needs_a_postgres_section(write_config: WriteConfig) -> None:
    path, _ = write_config()
    code, _, err = await cli(path, "publish", "--via", "postgres", "a=1")
    assert code == 1 and "--via postgres needs a postgres section" in err
    code, _, err = await cli(path, "publish", "--via", "postgres", "--canary", "10%", "a=1")
    assert code == 2 and "--canary, --dry-run and --service are for a Redis publish" in err
    data = yaml.safe_load(path.read_text())
    data["publish_via"] = "postgres"
    path.write_text(yaml.safe_dump(data))
    code, _, err = await cli(path, "publish", "a=1")
    assert code == 1 and "publish_via: postgres needs a postgres section" in err


async def test_the_daemon_keeps_following_direct_writes(pg_config: Any, spawn: SpawnDaemon,
                                                        uid: str) -> None:
    """The rows written through the CLI are ordinary rows: a later SQL UPDATE still counts."""
    path, config = pg_config
    ns = f"via-{uid}"
    spawn(path, cli=True)
    code, _, err = await cli(path, "publish", "-n", ns, "--via", "postgres", "--wait", "a.b=1")
    assert code == 0, err
    async with await psycopg.AsyncConnection.connect(DATABASE_URL, autocommit=True) as conn:
        await conn.execute(f'UPDATE "{config.postgres.settings_table}" SET value = %s '
                           "WHERE namespace = %s AND key = %s", ("2", ns, "a.b"))
    async with AsyncPublisher(config, namespace=ns) as reader:
        async def settings() -> Any:
            return (await reader.snapshot()).settings

        deadline = asyncio.get_running_loop().time() + 15
        while await settings() != {"a": {"b": 2}}:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.05)
