"""`HttpServer`: the daemon's aiohttp application on a TCP address, on the daemon's loop."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from ...errors import ConfigError
from .app import create_app
from .base import HttpDaemon
from .console import Console
from .guard import is_loopback

#: Seconds the server waits for requests in flight when it stops (the daemon's whole stop
#: stays well under 2 s).
SHUTDOWN_TIMEOUT: Final = 0.25


def parse_address(value: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:9464`` for IPv6) to a (host, port) pair; port 0 picks a free one."""
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(f"daemon.http: {value!r} must be host:port, e.g. 127.0.0.1:9464")
    return host, int(port)


class HttpServer:
    """Serves `create_app(daemon, console)` on ``address`` from `start` until `aclose`."""

    def __init__(self, address: str, daemon: HttpDaemon, console: Console | None = None
                 ) -> None:
        self.host, self.port = parse_address(address)
        self.app = create_app(daemon, console, loopback=is_loopback(self.host))
        self._runner: web.AppRunner | None = None

    @property
    def address(self) -> str:
        """The bound address (the real port when 0 was asked for)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    async def start(self) -> None:
        """Listen; `ConfigError` if the address cannot be bound (in use, not local...)."""
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except OSError as exc:
            await runner.cleanup()
            raise ConfigError(f"daemon.http: cannot listen on {self.address}: "
                              f"{exc.strerror or exc}") from None
        self.port = int(runner.addresses[0][1])
        self._runner = runner

    async def aclose(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
