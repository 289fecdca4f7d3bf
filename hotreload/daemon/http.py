"""A tiny HTTP/1.1 server for ``/healthz``, ``/readyz`` and ``/metrics`` (asyncio, no framework).

It answers one GET per connection and closes it, which is all Kubernetes probes and Prometheus
scrapers need. Readiness and metrics come from callables, so the server knows nothing else.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from ..errors import ConfigError

log = logging.getLogger("hotreload.daemon.http")

METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
READ_TIMEOUT = 5.0
MAX_REQUEST_BYTES = 8192

#: ``readiness()`` returns ``(ready, details)``; details are served as JSON.
Readiness = Callable[[], tuple[bool, dict[str, Any]]]


def parse_address(value: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:9464`` for IPv6) to a (host, port) pair; port 0 picks a free one."""
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(f"daemon.http: {value!r} must be host:port, e.g. 127.0.0.1:9464")
    return host, int(port)


class HealthServer:
    """Serves the probes and metrics on ``address`` until `aclose`."""

    def __init__(self, address: str, *, readiness: Readiness,
                 metrics: Callable[[], bytes]) -> None:
        self.host, self.port = parse_address(address)
        self._readiness = readiness
        self._metrics = metrics
        self._server: asyncio.Server | None = None

    @property
    def address(self) -> str:
        """The bound address (the real port when 0 was asked for)."""
        return f"{self.host}:{self.port}"

    async def start(self) -> None:
        try:
            self._server = await asyncio.start_server(self._handle, self.host, self.port)
        except OSError as exc:
            raise ConfigError(f"daemon.http: cannot listen on {self.address}: "
                              f"{exc.strerror or exc}") from None
        sock = self._server.sockets[0]
        self.port = int(sock.getsockname()[1])

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(READ_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
            status, ctype, body = self.respond(head[:MAX_REQUEST_BYTES])
            length = len(body)
            if head.startswith(b"HEAD "):
                body = b""
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError,
                ConnectionError):
            writer.close()
            return
        writer.write(
            f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {length}\r\n"
            f"Connection: close\r\n\r\n".encode() + body
        )
        try:
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    def respond(self, head: bytes) -> tuple[str, str, bytes]:
        """The (status line, content type, body) for a raw request head (no I/O)."""
        parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return "400 Bad Request", "text/plain", b"bad request\n"
        method, target = parts[0], parts[1].split("?", 1)[0]
        if method not in ("GET", "HEAD"):
            return "405 Method Not Allowed", "text/plain", b"method not allowed\n"
        if target == "/healthz":
            return "200 OK", "text/plain", b"ok\n"
        if target == "/readyz":
            ready, details = self._readiness()
            body = json.dumps({"ready": ready, **details}, default=str).encode() + b"\n"
            status = "200 OK" if ready else "503 Service Unavailable"
            return status, "application/json", body
        if target == "/metrics":
            return "200 OK", METRICS_CONTENT_TYPE, self._metrics()
        return "404 Not Found", "text/plain", b"not found\n"
