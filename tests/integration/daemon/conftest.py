"""Fixtures of the daemon tests: unique prefixes, throwaway Redis servers, daemon subprocesses."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from daemon_helpers import (
    REDIS_URL,
    RUNNER,
    DaemonProcess,
    RedisServer,
    SpawnDaemon,
    WriteConfig,
)

from hotreload.config import HotReloadConfig, build_config
from tests.conftest import delete_keys


@pytest.fixture
def uid() -> str:
    return uuid.uuid4().hex[:12]


@pytest.fixture
def prefix(uid: str) -> Iterator[str]:
    """A key prefix of this test only; its keys are deleted afterwards."""
    name = f"t-{uid}"
    yield name
    delete_keys(f"{name}:*")


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    workdir = tmp_path / "redis"
    workdir.mkdir()
    server = RedisServer(workdir)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def write_config(tmp_path: Path, prefix: str) -> WriteConfig:
    """``write_config(name, **sections)`` writes a YAML config and returns (path, config)."""

    def write(name: str = "config.yaml", *, redis_url: str = REDIS_URL,
              **sections: Any) -> tuple[Path, HotReloadConfig]:
        data: dict[str, Any] = {"redis": {"url": redis_url}, "prefix": prefix}
        data.setdefault("daemon", {"http": None})
        for key, value in sections.items():
            if isinstance(value, dict) and isinstance(data.get(key), dict):
                data[key] = {**data[key], **value}
            else:
                data[key] = value
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data))
        return path, build_config(data)

    return write


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[SpawnDaemon]:
    """``spawn(config_path, file=..., namespace=...)`` runs `_runner.py` (test source);
    ``spawn(config_path, cli=True)`` runs ``python -m hotreload -c CONFIG daemon``."""
    procs: list[DaemonProcess] = []

    def start(config: Path, *, file: Path | None = None, namespace: str = "app",
              cli: bool = False, extra: tuple[str, ...] = ()) -> DaemonProcess:
        log_path = tmp_path / f"daemon-{len(procs)}.log"
        if cli:
            args = [sys.executable, "-m", "hotreload", "--log-format", "json", "-v",
                    "-c", str(config), "daemon", *extra]
        else:
            if file is None:
                raise ValueError("the runner needs the file to poll")
            args = [sys.executable, str(RUNNER), str(config), str(file), namespace]
        proc = DaemonProcess(args, log_path)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.close()


@pytest.fixture
async def subscriber_factory() -> AsyncIterator[Callable[..., Any]]:
    from hotreload.subscriber import AsyncSubscriber

    subs: list[AsyncSubscriber[Any]] = []

    async def make(config: HotReloadConfig, namespace: str) -> AsyncSubscriber[Any]:
        sub: AsyncSubscriber[Any] = AsyncSubscriber(config, namespace=namespace)
        await sub.start(timeout=10)
        subs.append(sub)
        return sub

    yield make
    for sub in subs:
        await sub.aclose()


@pytest.fixture
async def running() -> AsyncIterator[Any]:
    """``start(daemon)`` runs a `Daemon` in this loop; every one is stopped at the end."""
    from hotreload.daemon.core import Daemon

    daemons: list[tuple[Daemon, asyncio.Task[None]]] = []

    def start(daemon: Daemon) -> Daemon:
        daemons.append((daemon, asyncio.create_task(daemon.run())))
        return daemon

    yield start
    for daemon, task in daemons:
        daemon.stop()
        await asyncio.wait_for(task, 10)
