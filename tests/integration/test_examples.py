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


@pytest.fixture
def shop_daemon(tmp_path: Path, prefix: str, database: str) -> Iterator[Path]:
    """examples/postgres set up as its README says, and its daemon running: the config path."""
    import yaml

    config = yaml.safe_load((EXAMPLES / "postgres" / "config.yaml").read_text())
    config["redis"]["url"] = REDIS_URL
    config["postgres"]["dsn"] = database
    config["prefix"] = prefix
    config["daemon"]["http"] = "off"
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    cli = [sys.executable, "-m", "hotreload", "-c", str(path)]
    subprocess.run([*cli, "db", "install"], check=True, capture_output=True, timeout=30)
    with psycopg.connect(database, autocommit=True) as db:
        db.execute((EXAMPLES / "postgres" / "schema.sql").read_text())
    daemon = subprocess.Popen([*cli, "daemon"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        yield path
    finally:
        daemon.terminate()
        assert daemon.wait(timeout=10) == 0


def test_fastapi_app_example(shop_daemon: Path, prefix: str, database: str) -> None:
    import httpx

    from tests.conftest import wait_until
    from tests.integration.servers_http import uvicorn

    env = {"REDIS_URL": REDIS_URL, "DATABASE_URL": database, "HOTRELOAD_PREFIX": prefix}
    with uvicorn("app:app", env, app_dir=EXAMPLES / "fastapi_app") as served, \
            httpx.Client(base_url=served.url, timeout=5) as http, \
            psycopg.connect(database, autocommit=True) as db:

        def price() -> str:
            response = http.get("/products/1")
            assert response.status_code == 200, response.text
            return str(response.json()["price"])

        # the daemon publishes the settings rows (v1) as it starts: the defaults price the same
        wait_until(lambda: http.get("/settings").json()["version"] >= 1, 15, "v1 from the daemon")
        assert http.get("/products/1").json() == {"id": 1, "name": "teapot", "price": "20.00"}
        assert http.get("/products/99").status_code == 404

        db.execute("UPDATE hotreload_settings SET value = '1.25' "
                   "WHERE namespace = 'shop' AND key = 'pricing.multiplier'")
        wait_until(lambda: price() == "25.00", 10, "the new multiplier")
        db.execute("UPDATE products SET price = 22 WHERE id = 1")
        wait_until(lambda: price() == "27.50", 10, "the new row")

        assert http.get("/search", params={"q": "tea"}).status_code == 404
        db.execute("INSERT INTO hotreload_settings (namespace, key, value) "
                   """VALUES ('shop', 'features.search', 'true'), """
                   """('shop', 'payments.api_key', '"sk_live_123"') """
                   "ON CONFLICT (namespace, key) DO UPDATE SET value = EXCLUDED.value")
        wait_until(lambda: http.get("/search", params={"q": "tea"}).status_code == 200, 10,
                   "search switched on")
        assert http.get("/search", params={"q": "tea"}).json() == [{"id": 1, "name": "teapot"}]
        state = http.get("/settings").json()
        assert (state["namespace"], state["link"], state["last_error"]) == ("shop", "up", None)
        assert state["settings"]["pricing"] == {"multiplier": "1.25"}
        assert state["settings"]["payments"] == {"provider": "none", "api_key": "***"}
