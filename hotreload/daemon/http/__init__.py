"""The daemon's HTTP side (aiohttp): `create_app` builds the application from the daemon, and
`HttpServer` serves it on the daemon's event loop.

Each group of routes is a module with a ``setup(app)``, registered in `create_app`: `health`
(``/healthz``, ``/readyz``, ``/metrics``), and, when the console is on, `api` (the JSON API under
``/api/``) and `page` (the console page at ``/``), both behind `guard`. `Console` holds what they
show; `views` builds the JSON documents.
"""

from .app import create_app
from .base import DAEMON, HttpDaemon
from .console import Console
from .guard import console_enabled
from .server import HttpServer, parse_address

__all__ = ["DAEMON", "Console", "HttpDaemon", "HttpServer", "console_enabled", "create_app",
           "parse_address"]
