"""Every runnable example of examples/ runs, against the real Redis and PostgreSQL.

Each runs in a subprocess as a user would start it, with its own Redis key prefix (and, where it
creates tables, a database of its own), and must exit 0 having printed what it promises.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests.conftest import DATABASE_URL, REDIS_URL, delete_keys

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


@pytest.fixture
def prefix() -> Iterator[str]:
    name = f"ex-{uuid.uuid4().hex[:10]}"
    yield name
    delete_keys(f"{name}:*")


@pytest.fixture
def database() -> Iterator[str]:
    """The URL of a database of this test only (dropped afterwards)."""
    name = f"hr_ex_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(DATABASE_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    base, _, _ = DATABASE_URL.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(DATABASE_URL, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                          .format(sql.Identifier(name)))


def run_example(path: Path, env: dict[str, str], timeout: float = 50,
                args: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, str(path), *args], cwd=ROOT, timeout=timeout,
                            capture_output=True, text=True,
                            env={**os.environ, "REDIS_URL": REDIS_URL, **env})
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_postgres_example(prefix: str, database: str) -> None:
    result = run_example(EXAMPLES / "postgres" / "run.py",
                         {"DATABASE_URL": database, "HOTRELOAD_PREFIX": prefix})
    out = result.stdout.splitlines()
    assert "product:1 costs 20.00" in out
    assert "product:1 costs 25.00 after the settings change" in out
    assert "invalidated product:1" in out
    assert "product:1 costs 27.50 after the row change" in out
    assert out[-1] == "ok"


def test_job_worker_example(prefix: str) -> None:
    result = run_example(EXAMPLES / "workers" / "job_worker.py", {"HOTRELOAD_PREFIX": prefix})
    out = result.stdout.splitlines()
    assert out[0] == "v1: discount 0"
    assert out[1:6] == [f"job {n}: 100.00 EUR (discount 0)" for n in range(1, 6)]
    assert out[6] == "v2: discount 0.2"
    assert out[7:] == [f"job {n}: 80.00 EUR (discount 0.2)" for n in range(6, 11)]


def test_sync_worker_example_follows_changes(prefix: str) -> None:
    from hotreload import HotReloadConfig, Publisher

    namespace = "worker"
    env = {**os.environ, "REDIS_URL": REDIS_URL, "HOTRELOAD_PREFIX": prefix,
           "APP_NAMESPACE": namespace}
    proc = subprocess.Popen([sys.executable, str(EXAMPLES / "workers" / "sync_worker.py"),
                             "--max-changes", "3"], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline() == "ready at v0: batch size 10\n"
        config = HotReloadConfig.from_url(REDIS_URL, namespace=namespace, prefix=prefix)
        with Publisher(config) as pub:
            pub.publish({"worker.batch_size": 50})
            assert proc.stdout.readline() == "v1: batch size 10 -> 50\n"
            pub.publish({"worker.paused": True})
            assert proc.stdout.readline() == "v2: paused\n"
            pub.publish({"worker.paused": False, "worker.batch_size": 5})
            assert sorted([proc.stdout.readline(), proc.stdout.readline()]) == [
                "v3: batch size 50 -> 5\n", "v3: resumed\n"]
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert (proc.returncode, out) == (0, "stopped after 3 change(s)\n"), err
