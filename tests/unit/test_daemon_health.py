"""The daemon's HTTP application and server (aiohttp), and the backoff helper (no services)."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from hotreload._backoff import Backoff
from hotreload.daemon.http import HttpServer, create_app, parse_address
from hotreload.daemon.metrics import Metrics
from hotreload.errors import ConfigError


def test_parse_address() -> None:
    assert parse_address("127.0.0.1:9464") == ("127.0.0.1", 9464)
    assert parse_address("[::1]:0") == ("::1", 0)
    for bad in ("9464", ":9464", "host:", "host:99999", "host:x"):
        with pytest.raises(ConfigError):
            parse_address(bad)


class FakeDaemon:
    """What the routes use of a daemon."""

    def __init__(self, ready: bool = True) -> None:
        self.metrics = Metrics()
        self.metrics.leader.set(1)
        self.ready = ready

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        return self.ready, {"role": "leader", "reason": None if self.ready else "redis down"}


@pytest.fixture
async def client() -> AsyncIterator[tuple[TestClient[Any, Any], FakeDaemon]]:
    daemon = FakeDaemon()
    async with TestClient(TestServer(create_app(daemon))) as c:
        yield c, daemon


async def test_routes(client: tuple[TestClient[Any, Any], FakeDaemon]) -> None:
    c, _ = client
    resp = await c.get("/healthz")
    assert (resp.status, await resp.text()) == (200, "ok\n")
    resp = await c.get("/readyz?verbose=1")
    assert (resp.status, resp.content_type) == (200, "application/json")
    assert json.loads(await resp.text()) == {"ready": True, "role": "leader", "reason": None}
    resp = await c.get("/metrics")
    assert resp.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    body = await resp.read()
    assert b"hotreload_leader 1.0" in body
    assert b"# TYPE hotreload_events_published_total counter" in body
    assert (await c.get("/nope")).status == 404
    assert (await c.post("/healthz")).status == 405
    resp = await c.head("/healthz")
    assert (resp.status, await resp.read()) == (200, b"")


async def test_not_ready_is_503_with_a_reason(
        client: tuple[TestClient[Any, Any], FakeDaemon]) -> None:
    c, daemon = client
    daemon.ready = False
    resp = await c.get("/readyz")
    assert resp.status == 503
    assert json.loads(await resp.text())["reason"] == "redis down"


async def raw_request(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    data = await reader.read()
    writer.close()
    await writer.wait_closed()
    return data


async def test_serves_over_tcp_on_a_free_port() -> None:
    server = HttpServer("127.0.0.1:0", FakeDaemon())
    await server.start()
    try:
        assert server.port != 0 and server.address == f"127.0.0.1:{server.port}"
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://{server.address}/healthz") as resp:
                assert (resp.status, await resp.text()) == (200, "ok\n")
            async with session.get(f"http://{server.address}/readyz") as resp:
                assert resp.status == 200
        answer = await raw_request(server.port, b"garbage\r\n\r\n")
        assert answer.split(b" ", 2)[1] == b"400"
    finally:
        await server.aclose()
    with pytest.raises(OSError):  # closed: nothing listens any more
        await raw_request(server.port, b"GET /healthz HTTP/1.0\r\n\r\n")


async def test_stops_promptly_with_a_keep_alive_connection_open() -> None:
    server = HttpServer("127.0.0.1:0", FakeDaemon())
    await server.start()
    session = aiohttp.ClientSession()
    try:
        async with session.get(f"http://{server.address}/healthz") as resp:
            assert resp.status == 200  # the connection stays open in the session's pool
        async with asyncio.timeout(1.0):
            await server.aclose()
    finally:
        await session.close()


async def test_port_in_use_is_a_config_error() -> None:
    first = HttpServer("127.0.0.1:0", FakeDaemon())
    await first.start()
    try:
        second = HttpServer(first.address, FakeDaemon())
        with pytest.raises(ConfigError, match="cannot listen"):
            await second.start()
    finally:
        await first.aclose()


def test_an_ipv6_address_is_shown_in_brackets() -> None:
    assert HttpServer("[::1]:9464", FakeDaemon()).address == "[::1]:9464"


def test_backoff_is_capped_and_jittered() -> None:
    backoff = Backoff(2.0, base=0.1, rng=random.Random(1))
    delays = [backoff.next() for _ in range(12)]
    assert all(0 < d <= 2.0 for d in delays)
    assert delays[0] <= 0.1
    assert max(delays[-4:]) > 1.0
    assert len(set(delays)) == len(delays)
    backoff.reset()
    assert backoff.next() <= 0.1
    with pytest.raises(ValueError):
        Backoff(0)


def test_describe_daemon() -> None:
    from hotreload.daemon.core import describe_daemon

    lines = describe_daemon({
        "host": "h", "pid": 7, "role": "leader", "redis": "up", "versions": {"app": 3},
        "sources": {"files": {"running": True, "rejections": {"yaml": 2},
                              "last_error": {"reason": "yaml", "detail": "a.yaml:3: bad"}}},
    })
    assert lines == [
        "daemon h:7 leader, redis up, published app v3",
        "  source files: running, rejections yaml=2; last error (yaml): a.yaml:3: bad",
    ]


def test_the_daemon_has_one_backoff() -> None:
    """Every retry loop of the daemon sleeps `Backoff.next()`: none draws its own jitter."""
    import re
    from pathlib import Path

    import hotreload.daemon

    root = Path(hotreload.daemon.__file__).parent
    own = [str(p.relative_to(root)) for p in sorted(root.rglob("*.py"))
           if re.search(r"^\s*(import random|from random )|\*\* *min\(attempt",
                        p.read_text(encoding="utf-8"), flags=re.M)]
    assert own == []
