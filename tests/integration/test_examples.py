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
