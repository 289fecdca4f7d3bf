"""The health/metrics HTTP server and the backoff helper (no services)."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import pytest

from hotreload._backoff import Backoff
from hotreload.daemon.http import HealthServer, parse_address
from hotreload.daemon.metrics import Metrics
from hotreload.errors import ConfigError


def test_parse_address() -> None:
    assert parse_address("127.0.0.1:9464") == ("127.0.0.1", 9464)
    assert parse_address("[::1]:0") == ("::1", 0)
    for bad in ("9464", ":9464", "host:", "host:99999", "host:x"):
        with pytest.raises(ConfigError):
            parse_address(bad)


def make_server(ready: bool = True) -> HealthServer:
    metrics = Metrics()
    metrics.leader.set(1)
    details: dict[str, Any] = {"role": "leader", "reason": None if ready else "redis down"}
    return HealthServer("127.0.0.1:0", readiness=lambda: (ready, details),
                        metrics=metrics.render)


def test_routes() -> None:
    server = make_server()
    assert server.respond(b"GET /healthz HTTP/1.1\r\n\r\n")[0] == "200 OK"
    status, ctype, body = server.respond(b"GET /readyz?verbose=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (status, ctype) == ("200 OK", "application/json")
    assert json.loads(body) == {"ready": True, "role": "leader", "reason": None}
    status, ctype, body = server.respond(b"GET /metrics HTTP/1.0\r\n\r\n")
    assert ctype.startswith("text/plain; version=0.0.4")
    assert b"hotreload_leader 1.0" in body
    assert server.respond(b"GET /nope HTTP/1.1\r\n\r\n")[0] == "404 Not Found"
    assert server.respond(b"POST /healthz HTTP/1.1\r\n\r\n")[0] == "405 Method Not Allowed"
    assert server.respond(b"garbage\r\n\r\n")[0] == "400 Bad Request"


def test_not_ready_is_503_with_a_reason() -> None:
    status, _, body = make_server(ready=False).respond(b"GET /readyz HTTP/1.1\r\n\r\n")
    assert status == "503 Service Unavailable"
    assert json.loads(body)["reason"] == "redis down"


async def http_get(port: int, path: str, method: str = "GET") -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


async def test_serves_over_tcp() -> None:
    server = make_server()
    await server.start()
    try:
        assert server.port != 0
        assert await http_get(server.port, "/healthz") == (200, b"ok\n")
        status, body = await http_get(server.port, "/metrics")
        assert status == 200
        assert b"# TYPE hotreload_events_published_total counter" in body
        assert await http_get(server.port, "/healthz", "HEAD") == (200, b"")
    finally:
        await server.aclose()


async def test_port_in_use_is_a_config_error() -> None:
    first = make_server()
    await first.start()
    try:
        second = HealthServer(first.address, readiness=lambda: (True, {}), metrics=lambda: b"")
        with pytest.raises(ConfigError, match="cannot listen"):
            await second.start()
    finally:
        await first.aclose()


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
