"""Redis itself goes away (a throwaway server): reads fall back to the loader, writes fail
loudly, and after a restart the cache resyncs and is trusted again."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from hotreload import AsyncSubscriber, BackendError, HotReloadConfig
from hotreload.cache import AsyncTwoLevelCache

from .conftest import Store, await_until

pytestmark = pytest.mark.integration


class RedisServer:
    """A `redis-server` on a free loopback port, in a temp dir, without persistence."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed (.ci/run installs it)")
        self.binary = binary
        self.workdir = workdir
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                with redis.Redis(port=self.port, socket_connect_timeout=0.2) as client:
                    client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    srv = RedisServer(tmp_path)
    srv.start()
    yield srv
    srv.stop()


async def test_reads_survive_redis_going_away(server: RedisServer) -> None:
    config = HotReloadConfig.from_url(server.url, namespace="down")
    sub: AsyncSubscriber[Any] = AsyncSubscriber(config)
    await sub.start()
    cache = AsyncTwoLevelCache(sub, name="c")
    store = Store(k="v1")
    try:
        await await_until(lambda: cache.trusted, what="trusted")
        assert await cache.get("k", store.load) == "v1"
        assert await cache.get("k", store.load) == "v1"
        assert store.count("k") == 1

        server.stop()
        await await_until(lambda: not cache.trusted, what="the subscriber to notice")
        store.rows["k"] = "v2"
        t0 = time.monotonic()
        assert await cache.get("k", store.load) == "v2"  # no L1 while blind, L2 unreachable
        assert await cache.get("k", store.load) == "v2"  # L2 skipped: straight to the loader
        assert time.monotonic() - t0 < 15
        assert store.count("k") == 3
        assert cache.stats()["l2_errors"] >= 1
        with pytest.raises(BackendError):
            await cache.invalidate("k")

        server.start()  # an empty server: the subscriber must reload and clear L1
        await await_until(lambda: cache.trusted, timeout=20, what="the cache to be trusted again")
        assert len(cache.l1) == 0
        await await_until(cache._l2_usable, what="the L2 back-off to end")
        assert await cache.get("k", store.load) == "v2"
        assert await cache.get("k", store.load) == "v2"
        assert store.count("k") == 4
    finally:
        await cache.aclose()
        await sub.aclose()
