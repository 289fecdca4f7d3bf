"""What the routes may ask of the daemon, and where an application keeps it."""

from __future__ import annotations

from typing import Any, Protocol

from aiohttp import web

from ..metrics import Metrics


class HttpDaemon(Protocol):
    """What the routes use of a `hotreload.daemon.Daemon` (a fake of it serves tests)."""

    @property
    def metrics(self) -> Metrics: ...

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """``(ready, details)``: details are served as JSON by ``/readyz``."""
        ...


#: The daemon an application serves: ``request.app[DAEMON]`` in a handler.
DAEMON: web.AppKey[HttpDaemon] = web.AppKey("daemon", HttpDaemon)
