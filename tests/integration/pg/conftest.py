"""Fixtures for the PostgreSQL source and leader tests (real PostgreSQL; isolation by names)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from _pg_helpers import (
    PG_BIN,
    Cluster,
    RecordingSink,
    _as_postgres,
    _free_port,
    make_settings,
    unique,
    wait_until,
)

from hotreload.config import PostgresSettings
from hotreload.daemon import db
from hotreload.daemon.sources.postgres import PostgresSource


@pytest.fixture
async def settings() -> AsyncIterator[PostgresSettings]:
    s = make_settings(channels=[unique("hr_inv"), {"channel": unique("hr_inv2"),
                                                    "namespace": "other"}])
    await db.install(s)
    yield s
    await db.uninstall(s)


Running = tuple[PostgresSource, RecordingSink]


@pytest.fixture
async def running(settings: PostgresSettings) -> AsyncIterator[Running]:
    source = PostgresSource(settings, default_namespace="app")
    sink = RecordingSink()
    task = asyncio.create_task(source.run(sink))
    await wait_until(lambda: source.connected or task.done(), what="source connected")
    yield source, sink
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    if task.done() and not task.cancelled() and task.exception() is not None:
        raise task.exception()  # type: ignore[misc]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    if not (PG_BIN / "initdb").exists():
        pytest.fail("PostgreSQL server binaries not installed (.ci/run installs them)")
    base = Path(tempfile.mkdtemp(prefix="hr-pg-"))
    datadir = base / "data"
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
    subprocess.run(_as_postgres(str(PG_BIN / "initdb"), "-D", str(datadir), "-U", "postgres",
                                "--auth=trust", "-E", "UTF8", "--no-sync"),
                   check=True, capture_output=True, timeout=120)
    c = Cluster(datadir, _free_port())
    c.start()
    try:
        yield c
    finally:
        try:
            c.stop()
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(base, ignore_errors=True)
