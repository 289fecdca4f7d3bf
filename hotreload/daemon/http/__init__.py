"""The daemon's HTTP side (aiohttp): `create_app` builds the application from the daemon, and
`HttpServer` serves it on the daemon's event loop.

Each group of routes is a module with a ``setup(app)``: `health` (``/healthz``, ``/readyz``,
``/metrics``) today; a JSON API under ``/api/`` and a console page at ``/`` are added the same
way, beside it, and registered in `create_app`.
"""

from .app import create_app
from .base import DAEMON, HttpDaemon
from .server import HttpServer, parse_address

__all__ = ["DAEMON", "HttpDaemon", "HttpServer", "create_app", "parse_address"]
